/**
 * memsync benchmark suite: `npm run bench [-- --only ingest,create,rebuild,open,server,sync,inspect] [--scale 0.1] [--reps N]
 * [--batch N] [--json out.json]`.
 *
 * Every figure is printed next to a baseline measured in the same run (the machine is shared and noisy: trust the
 * ratios over the absolute numbers), with PASS/MISS against its target. A miss never fails the process.
 * See bench/README.md.
 */
import Sqlite from "better-sqlite3"
import { writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { runCreate } from "./create.js"
import { runIngest } from "./ingest.js"
import { makeTempDir, printTable, type Row } from "./lib.js"
import { runOpen } from "./open.js"
import { runInspectBench } from "./inspect.js"
import { runRebuild } from "./rebuild.js"
import { runServerBench } from "./server.js"
import { runSyncBench } from "./sync.js"

const BENCHES = ["ingest", "create", "rebuild", "open", "server", "sync", "inspect"] as const
type Bench = (typeof BENCHES)[number]

const args = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const at = args.indexOf(`--${name}`)
  if (at >= 0) return args[at + 1]
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
}
const isBench = (s: string): s is Bench => BENCHES.some((b) => b === s)

const only = (option("only") ?? BENCHES.join(",")).split(",").map((s) => s.trim())
const unknown = only.filter((s) => !isBench(s))
if (unknown.length > 0) {
  console.error(`unknown benchmark(s): ${unknown.join(", ")} (known: ${BENCHES.join(", ")})`)
  process.exit(2)
}
const selected = new Set(only.filter(isBench))
const scale = Number(option("scale") ?? 1)
const repsOverride = option("reps") === undefined ? undefined : Number(option("reps"))
const batch = Number(option("batch") ?? 1000)
const jsonOut = option("json")
if (!(scale > 0) || !(batch > 0) || (repsOverride !== undefined && !(repsOverride > 0))) {
  console.error("--scale, --batch and --reps take positive numbers")
  process.exit(2)
}
const sized = (n: number) => Math.max(1, Math.round(n * scale))
const reps = (n: number) => repsOverride ?? n

const probe = new Sqlite(":memory:")
const sqliteVersion = String(probe.prepare("SELECT sqlite_version()").pluck().get())
probe.close()
console.log(
  `memsync bench: node ${process.version}, SQLite ${sqliteVersion}, ${cpus().length} cpus, ` +
    `load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}, scale ${scale}`
)

const { dir, cleanup } = makeTempDir()
const rows: Array<Row> = []
const started = performance.now()
try {
  if (selected.has("ingest")) rows.push(...(await runIngest({ dir, events: sized(100_000), batch, reps: reps(3) })))
  if (selected.has("create")) rows.push(...(await runCreate({ dir, creates: sized(2_000), reps: reps(3) })))
  if (selected.has("rebuild")) {
    rows.push(...(await runRebuild({ dir, events: sized(1_000_000), reps: reps(1), buildBatch: 5_000 })))
  }
  if (selected.has("open")) rows.push(...(await runOpen({ dir, events: sized(100_000), reps: reps(5) })))
  if (selected.has("server")) rows.push(...(await runServerBench({ scale })))
  if (selected.has("sync")) rows.push(...(await runSyncBench({ scale })))
  if (selected.has("inspect")) rows.push(...(await runInspectBench({ scale })))
} finally {
  cleanup()
}

console.log(`\nSummary (${((performance.now() - started) / 1000).toFixed(0)} s, load now ${loadavg()[0]!.toFixed(2)})`)
printTable(rows)
if (jsonOut !== undefined) writeFileSync(jsonOut, JSON.stringify({ scale, batch, rows }, null, 2))
