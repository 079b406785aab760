/**
 * Small helpers shared by the benchmarks: statistics, temp files, child processes, printing.
 */
import Sqlite from "better-sqlite3"
import { Schema } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The median of a non-empty list. */
export const median = (xs: ReadonlyArray<number>): number => percentile(xs, 50)

/** The p-th percentile (nearest rank) of a non-empty list. */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? NaN
}

/** A fresh temp directory for this run; `cleanup` removes it (also on Ctrl-C). */
export const makeTempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "memsync-bench-"))
  const cleanup = () => rmSync(dir, { recursive: true, force: true })
  process.once("SIGINT", () => {
    cleanup()
    process.exit(130)
  })
  return { dir, cleanup }
}

/** Remove a SQLite file and its WAL/SHM companions. */
export const removeDb = (file: string): void => {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true })
}

/** Size of a database file (plus its WAL), in MB. */
export const dbSizeMb = (file: string): number => {
  let bytes = 0
  for (const f of [file, `${file}-wal`]) if (existsSync(f)) bytes += statSync(f).size
  return bytes / 1024 / 1024
}

/** Open a bare better-sqlite3 file database with the same pragmas memsync sets (WAL, synchronous=NORMAL). */
export const openBare = (file: string): Sqlite.Database => {
  const db = new Sqlite(file)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  return db
}

/** The bare events-shaped table the baselines write to. */
export const BARE_TABLE = `CREATE TABLE IF NOT EXISTS bare (
  id TEXT, type TEXT, version INTEGER, memory_id TEXT, hlc TEXT, client_id TEXT, payload TEXT
)`

/** Peak resident set size of this process so far, in MB (`maxRSS` is reported in KiB). */
export const maxRssMb = (): number => process.resourceUsage().maxRSS / 1024

/** Current resident set size, in MB. */
export const rssMb = (): number => process.memoryUsage().rss / 1024 / 1024

const here = dirname(fileURLToPath(import.meta.url))

/**
 * Extra node flags for every child process a benchmark starts (servers included), from `MEMSYNC_BENCH_NODE_FLAGS`:
 * e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` profiles each child (see README, "Profiling").
 */
export const childNodeFlags: ReadonlyArray<string> = (process.env.MEMSYNC_BENCH_NODE_FLAGS ?? "")
  .split(" ")
  .filter((f) => f !== "")

/**
 * Run `bench/<script>` in a fresh node process (through tsx's loader) and decode the JSON its last stdout line
 * holds. stderr is passed through, so progress shows up live.
 */
export const runChild = <A, I>(
  script: string,
  args: ReadonlyArray<string>,
  schema: Schema.Schema<A, I>,
  nodeFlags: ReadonlyArray<string> = []
): Promise<{ result: A; wallMs: number }> =>
  new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn(
      process.execPath,
      [...childNodeFlags, ...nodeFlags, "--import", "tsx", join(here, script), ...args],
      {
        stdio: ["ignore", "pipe", "inherit"]
      }
    )
    let out = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => (out += chunk))
    child.on("error", reject)
    child.on("close", (code) => {
      const wallMs = performance.now() - started
      if (code !== 0) return reject(new Error(`${script} exited with ${code}: ${out.trim()}`))
      const last = out.trim().split("\n").pop() ?? ""
      try {
        resolve({ result: Schema.decodeUnknownSync(Schema.parseJson(schema))(last), wallMs })
      } catch (e) {
        reject(new Error(`${script}: cannot read its result ${JSON.stringify(last)}: ${String(e)}`))
      }
    })
  })

/** Write one JSON result line (children). */
export const emit = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

/** Progress lines go to stderr, so stdout stays machine-readable. */
export const progress = (line: string): void => {
  process.stderr.write(`  ${line}\n`)
}

/** Format a number with thousands separators and `digits` decimals. */
export const fmt = (n: number, digits = 0): string =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** One line of the final summary. */
export interface Row {
  readonly bench: string
  readonly metric: string
  readonly value: string
  readonly baseline: string
  readonly ratio: string
  readonly target: string
  /** undefined: informational, no target. */
  readonly pass?: boolean
}

/** Print rows as an aligned table. */
export const printTable = (rows: ReadonlyArray<Row>): void => {
  const header = ["benchmark", "metric", "value", "baseline", "ratio", "target", "result"]
  const cells = rows.map((r) => [
    r.bench,
    r.metric,
    r.value,
    r.baseline,
    r.ratio,
    r.target,
    r.pass === undefined ? "" : r.pass ? "PASS" : "MISS"
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) =>
    c
      .map((x, i) => x.padEnd(widths[i]!))
      .join("  ")
      .trimEnd()
  console.log(line(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const c of cells) console.log(line(c))
}
