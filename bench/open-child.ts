/**
 * Child process: open a database and answer a first `get`, timed from opening the layer to the result (module
 * loading is done before the clock starts). With `--bare`, the baseline: better-sqlite3 open + one SELECT by id.
 *
 * Usage: tsx bench/open-child.ts <file> <memoryId> [--bare]
 */
import Sqlite from "better-sqlite3"
import { Effect } from "effect"
import * as MemoryStore from "../src/store/MemoryStore.js"
import { emit } from "./lib.js"

const [file, id, mode] = process.argv.slice(2)
if (file === undefined || id === undefined) throw new Error("usage: open-child.ts <file> <memoryId> [--bare]")

if (mode === "--bare") {
  const started = performance.now()
  const db = new Sqlite(file)
  const row = db.prepare(`SELECT * FROM memories WHERE id = ?`).get(id)
  const ms = performance.now() - started
  db.close()
  emit({ ms, found: row !== undefined })
} else {
  const started = performance.now()
  const ms = await Effect.gen(function* () {
    const store = yield* MemoryStore.MemoryStore
    const memory = yield* store.get(id)
    if (memory.id !== id) return yield* Effect.dieMessage("get returned another memory")
    return performance.now() - started
  }).pipe(Effect.provide(MemoryStore.layer({ filename: file, create: false })), Effect.runPromise)
  emit({ ms, found: true })
}
