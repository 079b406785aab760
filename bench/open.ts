/**
 * Benchmark 4: open a database holding 100k events and answer a first `get`, in a fresh child process each time,
 * timed inside the child from opening `MemoryStore.layer` to the result. Baseline: better-sqlite3 open + one SELECT
 * by id, also in a fresh child. The database is built first through the batch path.
 */
import { Schema } from "effect"
import { join } from "node:path"
import { BuildResult } from "./rebuild.js"
import { fmt, median, progress, removeDb, runChild, type Row } from "./lib.js"

/** Options of the open benchmark. */
export interface OpenOptions {
  readonly dir: string
  readonly events: number
  readonly reps: number
}

/** Target: open + first get under this many milliseconds. */
export const TARGET_MS = 300

const OpenResult = Schema.Struct({ ms: Schema.Number, found: Schema.Boolean })

/** Run the benchmark; returns summary rows. */
export const runOpen = async (o: OpenOptions): Promise<ReadonlyArray<Row>> => {
  const file = join(o.dir, "open.db")
  console.log(
    `\n[open] building a ${fmt(o.events)}-event database, then ${o.reps} cold opens + first get (fresh processes)`
  )
  const built = (await runChild("build-child.ts", [file, String(o.events), "5000", "11"], BuildResult)).result
  const id = built.liveId
  const store: Array<number> = []
  const bare: Array<number> = []
  const wall: Array<number> = []
  for (let rep = 0; rep < o.reps; rep++) {
    const b = (await runChild("open-child.ts", [file, id, "--bare"], OpenResult)).result
    const s = await runChild("open-child.ts", [file, id], OpenResult)
    if (!b.found || !s.result.found) throw new Error("open: the memory was not found")
    bare.push(b.ms)
    store.push(s.result.ms)
    wall.push(s.wallMs)
    progress(`rep ${rep + 1}: layer open + get ${s.result.ms.toFixed(1)} ms; bare open + SELECT ${b.ms.toFixed(2)} ms`)
  }
  removeDb(file)
  const storeMs = median(store)
  const bareMs = median(bare)
  const pass = storeMs < TARGET_MS
  console.log(`  MemoryStore.layer open + first get: ${storeMs.toFixed(1)} ms (median)`)
  console.log(`  bare better-sqlite3 open + SELECT:  ${bareMs.toFixed(2)} ms`)
  console.log(`  whole child process (node + tsx + imports + open + get): ${median(wall).toFixed(0)} ms (info)`)
  console.log(`  target < ${TARGET_MS} ms: ${pass ? "PASS" : "MISS"}`)
  return [
    {
      bench: "4 open",
      metric: `open + first get (${fmt(o.events)} events)`,
      value: `${storeMs.toFixed(1)} ms`,
      baseline: `${bareMs.toFixed(2)} ms bare`,
      ratio: `${(storeMs / bareMs).toFixed(0)}x`,
      target: `< ${TARGET_MS} ms`,
      pass
    },
    {
      bench: "4 open",
      metric: "child process wall (incl. node/tsx start)",
      value: `${median(wall).toFixed(0)} ms`,
      baseline: "",
      ratio: "",
      target: "(info)"
    }
  ]
}
