/**
 * Benchmark: the inspection tools over a large log (1M events at scale 1).
 *
 * - replay of the whole log into a new database file (`Snapshot.toFile`): events/s and peak RSS, in a child process
 *   so the RSS is the replay's own. Target: >= 80k events/s and <= 400 MB.
 * - export to NDJSON and import of that file into an empty replica: events/s, each in a child process.
 * Baselines, measured in the same run on the same file: raw better-sqlite3 iteration over the same event rows (what
 * any reader of the log must pay), and for import a raw parse-and-insert of the same lines into a bare table.
 *
 * The log is generated once per run through `MemoryStore.ingest` in batches of 5,000 (bench/gen.ts mix: 50% create,
 * 35% update, 15% delete, 4 writers), into a temp directory removed at the end.
 *
 * Standalone: `npx tsx bench/inspect.ts [--scale 0.1]`. Children: `bench/inspect.ts --child <job> <args...>`.
 */
import Sqlite from "better-sqlite3"
import { Effect, Schema } from "effect"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import * as EventSource from "../src/inspect/EventSource.js"
import * as Lines from "../src/inspect/Lines.js"
import * as Snapshot from "../src/inspect/Snapshot.js"
import * as Transfer from "../src/inspect/Transfer.js"
import * as MemoryStore from "../src/store/MemoryStore.js"
import { makeGenerator } from "./gen.js"
import {
  BARE_TABLE,
  dbSizeMb,
  emit,
  fmt,
  makeTempDir,
  maxRssMb,
  openBare,
  printTable,
  progress,
  runChild,
  type Row
} from "./lib.js"

/** Targets of the issue. */
export const TARGET_REPLAY_EVENTS_PER_S = 80_000
export const TARGET_REPLAY_RSS_MB = 400

const ChildResult = Schema.Struct({
  events: Schema.Number,
  seconds: Schema.Number,
  cpuSeconds: Schema.Number,
  maxRssMb: Schema.Number
})
type ChildResult = typeof ChildResult.Type

/** Run the benchmark at `scale` (1 = 1M events); prints its figures and returns summary rows. */
export const runInspectBench = async (options: { readonly scale: number }): Promise<ReadonlyArray<Row>> => {
  const n = Math.max(10_000, Math.round(1_000_000 * options.scale))
  const { dir, cleanup } = makeTempDir()
  try {
    const source = join(dir, "source.db")
    console.log(`\n[inspect] ${fmt(n)} events: replay into a new file, export, import (each in a child process)`)
    const generated = await generate(source, n)
    progress(`generated through MemoryStore.ingest in ${generated.toFixed(1)} s (${fmt(dbSizeMb(source), 0)} MB)`)

    const raw = rawRead(source)
    progress(`raw read baseline: ${fmt(raw)} events/s`)
    const replay = await child("replay", [source, join(dir, "replay.db")])
    progress(
      `replay: ${fmt(replay.events / replay.seconds)} events/s (${cpuPerEvent(replay)}), ` +
        `peak RSS ${fmt(replay.maxRssMb)} MB`
    )
    const ndjson = join(dir, "export.ndjson")
    const exported = await child("export", [source, ndjson])
    progress(`export: ${fmt(exported.events / exported.seconds)} events/s (${cpuPerEvent(exported)})`)
    const imported = await child("import", [ndjson, join(dir, "import.db")])
    progress(`import: ${fmt(imported.events / imported.seconds)} events/s (${cpuPerEvent(imported)})`)
    const rawImport = await child("import-raw", [ndjson, join(dir, "import-raw.db")])
    progress(
      `raw parse + insert baseline: ${fmt(rawImport.events / rawImport.seconds)} events/s (${cpuPerEvent(rawImport)})`
    )

    const rate = (r: ChildResult) => r.events / r.seconds
    const replayRate = rate(replay)
    const rows: Array<Row> = [
      {
        bench: "inspect replay",
        metric: `events/s (${fmt(n)} into a new file)`,
        value: fmt(replayRate),
        baseline: `${fmt(raw)} raw read`,
        ratio: `${(replayRate / raw).toFixed(2)}x`,
        target: `>= ${fmt(TARGET_REPLAY_EVENTS_PER_S)}/s`,
        pass: replayRate >= TARGET_REPLAY_EVENTS_PER_S
      },
      {
        bench: "inspect replay",
        metric: "CPU per event",
        value: cpuPerEvent(replay),
        baseline: "",
        ratio: "",
        target: `<= ${(1e6 / TARGET_REPLAY_EVENTS_PER_S).toFixed(1)} us (1 core)`,
        pass: (replay.cpuSeconds * 1e6) / replay.events <= 1e6 / TARGET_REPLAY_EVENTS_PER_S
      },
      {
        bench: "inspect replay",
        metric: "peak RSS MB",
        value: fmt(replay.maxRssMb),
        baseline: "",
        ratio: "",
        target: `<= ${TARGET_REPLAY_RSS_MB} MB`,
        pass: replay.maxRssMb <= TARGET_REPLAY_RSS_MB
      },
      {
        bench: "inspect export",
        metric: `events/s (NDJSON file)`,
        value: fmt(rate(exported)),
        baseline: `${fmt(raw)} raw read`,
        ratio: `${(rate(exported) / raw).toFixed(2)}x`,
        target: ""
      },
      {
        bench: "inspect import",
        metric: `events/s (into an empty replica)`,
        value: fmt(rate(imported)),
        baseline: `${fmt(rate(rawImport))} raw parse+insert`,
        ratio: `${(rate(imported) / rate(rawImport)).toFixed(2)}x`,
        target: ""
      }
    ]
    return rows
  } finally {
    cleanup()
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** Fill `file` with `n` generated events through the store's batch path; returns seconds. */
const generate = (file: string, n: number): Promise<number> =>
  Effect.gen(function* () {
    const store = yield* MemoryStore.MemoryStore
    const gen = makeGenerator({ seed: 11 })
    const started = performance.now()
    for (let done = 0; done < n; done += 5_000) yield* store.ingest(gen.take(Math.min(5_000, n - done)))
    return (performance.now() - started) / 1000
  }).pipe(Effect.provide(MemoryStore.layer({ filename: file })), Effect.runPromise)

/** Raw better-sqlite3: iterate every event row in log order. Returns events/s. */
const rawRead = (file: string): number => {
  const db = new Sqlite(file, { readonly: true })
  const started = performance.now()
  let count = 0
  for (const row of db.prepare(`SELECT * FROM events ORDER BY seq`).iterate()) if (row !== undefined) count++
  const seconds = (performance.now() - started) / 1000
  db.close()
  return count / seconds
}

const child = async (job: string, args: ReadonlyArray<string>): Promise<ChildResult> =>
  (await runChild("inspect.ts", ["--child", job, ...args], ChildResult)).result

/** The jobs a child runs; each emits one ChildResult line. */
const JOBS: Record<string, (args: ReadonlyArray<string>) => Promise<ChildResult>> = {
  replay: ([source, out]) =>
    timed(
      Effect.map(Snapshot.toFile(out!, { _tag: "Seq", seq: Number.MAX_SAFE_INTEGER }), (s) => s.events).pipe(
        Effect.provide(EventSource.layer({ filename: source! }))
      )
    ),
  export: ([source, out]) =>
    timed(
      Effect.map(Transfer.exportToFile(out!, { includeSensitive: true }), (s) => s.events).pipe(
        Effect.provide(EventSource.layer({ filename: source! }))
      )
    ),
  import: ([file, db]) =>
    timed(
      Effect.flatMap(Transfer.replicaTarget, (t) => Transfer.importFile(file!, t)).pipe(
        Effect.map((r) => r.imported),
        Effect.provide(MemoryStore.layer({ filename: db! }))
      )
    ),
  "import-raw": ([file, db]) =>
    timed(
      Effect.scoped(
        Effect.gen(function* () {
          const lines = yield* Lines.reader(file!)
          const bare = openBare(db!)
          bare.exec(BARE_TABLE)
          const insert = bare.prepare(
            `INSERT INTO bare (id, type, version, memory_id, hlc, client_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?)`
          )
          let count = 0
          bare.exec("BEGIN")
          for (let page = lines.next(5_000); page.length > 0; page = lines.next(5_000)) {
            for (const l of page) {
              const e = JSON.parse(l.text)
              if (e.memsync !== undefined) continue
              insert.run(e.id, e.type, e.version, e.payload.id, e.hlc, e.clientId, JSON.stringify(e.payload))
              count++
            }
          }
          bare.exec("COMMIT")
          bare.close()
          return count
        })
      )
    )
}

const timed = async <E>(effect: Effect.Effect<number, E>): Promise<ChildResult> => {
  const started = performance.now()
  const cpu = process.cpuUsage()
  const events = await Effect.runPromise(effect)
  const used = process.cpuUsage(cpu)
  return {
    events,
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: (used.user + used.system) / 1e6,
    maxRssMb: maxRssMb()
  }
}

/** CPU microseconds per event of a child's job (user + system: what a loaded machine distorts least). */
const cpuPerEvent = (r: ChildResult): string => `${((r.cpuSeconds * 1e6) / r.events).toFixed(1)} us CPU/event`

const main = async () => {
  const argv = process.argv.slice(2)
  const at = argv.indexOf("--child")
  if (at !== -1) {
    const job = JOBS[argv[at + 1] ?? ""]
    if (job === undefined) throw new Error(`unknown job ${argv[at + 1]}`)
    emit(await job(argv.slice(at + 2)))
    return
  }
  const s = argv.indexOf("--scale")
  const scale = s === -1 ? 1 : Number(argv[s + 1])
  printTable(await runInspectBench({ scale }))
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
