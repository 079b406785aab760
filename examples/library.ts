/**
 * memsync as a library: open a store on a SQLite file, write, read, search, and check the view against the log.
 *
 * Run it with `npx tsx examples/library.ts [FILE]` (default: a fresh temporary file). test/docs/library.test.ts runs
 * the exported `main` against a temporary database and checks what it prints.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import * as MemoryStore from "../src/store/MemoryStore.js"
import * as Replay from "../src/store/Replay.js"

/** The program: it needs a `MemoryStore` (and, for `Replay.verify`, the database under it) in context. */
export const program = Effect.gen(function* () {
  const store = yield* MemoryStore.MemoryStore

  // Writes are validated, become events, and land in the log and the view in one transaction.
  const staging = yield* store.create({
    content: "The staging database moved to eu-west-1",
    category: "ops",
    tags: ["infra"],
    importance: 0.8
  })
  const standup = yield* store.create({ content: "Standup moved to 9:30" })
  yield* store.update(staging.id, { tags: ["infra", "aws"] })
  yield* store.remove(standup.id)

  // Reads come from the materialized view.
  const current = yield* store.get(staging.id)
  yield* Console.log(`get: ${current.content} [${current.category}] tags=${current.tags.join(",")}`)
  const visible = yield* store.list()
  const all = yield* store.list({ includeDeleted: true })
  yield* Console.log(`list: ${visible.length} visible, ${all.length} including deleted`)
  const hits = yield* store.search("staging database")
  yield* Console.log(`search: ${hits.map((hit) => hit.memory.content).join(" | ")}`)

  // Failures are typed: a deleted memory is a MemoryNotFound, not an exception.
  const gone = yield* store.get(standup.id).pipe(
    Effect.map(() => "still there"),
    Effect.catchTag("MemoryNotFound", (error) => Effect.succeed(error.deleted ? "deleted" : "never existed"))
  )
  yield* Console.log(`get removed: ${gone}`)

  // The log keeps every event; the view is a function of it.
  const history = yield* store.history(staging.id)
  yield* Console.log(`history: ${history.map((event) => event.type).join(", ")}`)
  const stats = yield* store.stats
  yield* Console.log(`stats: ${stats.events} events, ${stats.memories} memories, ${stats.deleted} deleted`)
  const report = yield* Replay.verify()
  yield* Console.log(`verify: ${report.ok ? "ok" : "drift"}`)
  return { id: staging.id, events: stats.events, ok: report.ok }
})

/** The program over a database file (created when missing); the store is closed when it ends. */
export const main = (filename: string) => program.pipe(Effect.provide(MemoryStore.layer({ filename })))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const filename = process.argv[2] ?? join(mkdtempSync(join(tmpdir(), "memsync-example-")), "memsync.db")
  NodeRuntime.runMain(main(filename))
}
