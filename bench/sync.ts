/**
 * Sync benchmarks, against a real `memsync serve` child process over loopback HTTP (so the server's work runs on its
 * own thread, as it would on another machine, and the figures are the client's end-to-end cost):
 *
 * (a) catch-up: an empty replica pulls and applies a server log of 100k events (`SyncEngine.syncNow` with the default
 *     page size: pull pages over HTTP, decode, ingest + fold into the view and FTS, cursor, then the head/digest
 *     check). Baseline: raw better-sqlite3 inserting the same rows into a bare table in one transaction, measured in
 *     the same run. Target: >= 20k events/s end to end (wall clock). Also shown: events per CPU-second of replica and
 *     server together (the server's CPU read from /proc), which a loaded machine distorts much less than wall time;
 *     and the floor: the SQLite statements of one more catch-up, recorded and replayed alone on a fresh file with the
 *     store's checkpointer (bench/statements.ts), i.e. what SQLite costs for this work with no JavaScript around it.
 * (b) commit latency: p99 of `MemoryStore.create` with the sync engine running in the background (pushing to the
 *     server over HTTP while the writes go on) against the same writes without an engine. Writes are paced (a 1 ms
 *     pause between them, as an interactive writer's would be) so the engine's fibers get to run between them; the
 *     engine pulls (and pushes) every 50 ms. Target: p99 ratio <= 2x.
 *
 * `npx tsx bench/sync.ts [--scale 0.1] [--reps N]`; bench/run.ts calls `runSyncBench`.
 */
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { Envelope } from "../src/domain/Events.js"
import * as ServerLog from "../src/server/ServerLog.js"
import * as EventLog from "../src/store/EventLog.js"
import * as MemoryStore from "../src/store/MemoryStore.js"
import * as HttpTransport from "../src/sync/HttpTransport.js"
import * as SyncEngine from "../src/sync/SyncEngine.js"
import { makeGenerator, makeInputs } from "./gen.js"
import { makeRecorder, replay, type Recorder } from "./statements.js"
import {
  BARE_TABLE,
  childNodeFlags,
  fmt,
  makeTempDir,
  median,
  openBare,
  percentile,
  printTable,
  progress,
  removeDb,
  type Row
} from "./lib.js"

/** Options of the sync benchmarks. */
export interface SyncBenchOptions {
  /** 1 = 100k events to catch up, 2,000 paced creates per latency run. */
  readonly scale: number
  /** Repetitions of each measurement (default 3). */
  readonly reps?: number
  /** A directory for the databases (default: a fresh temp directory, removed at the end). */
  readonly dir?: string
}

/** Target: catch-up throughput, events/s end to end. */
export const TARGET_CATCHUP_EVENTS_PER_SECOND = 20_000
/** Target: create p99 with the engine running at most this multiple of create p99 without it. */
export const TARGET_P99_FACTOR = 2

const BIN = fileURLToPath(new URL("../bin/memsync.js", import.meta.url))
const CATCHUP_SPACE = "catchup"
const CATCHUP_TOKEN = "bench-catchup-token"
const createToken = (rep: number) => `bench-create-token-${rep}`
const WARMUP = 200
const PULL_INTERVAL_MS = 50

/** Run both benchmarks; returns summary rows (and prints the details as it goes). */
export const runSyncBench = async (options: SyncBenchOptions): Promise<ReadonlyArray<Row>> => {
  const { dir, cleanup } = options.dir === undefined ? makeTempDir() : { dir: options.dir, cleanup: () => {} }
  const reps = options.reps ?? 3
  const events = Math.max(1, Math.round(100_000 * options.scale))
  const creates = Math.max(1, Math.round(2_000 * options.scale))
  try {
    const serverDb = join(dir, "sync-server.db")
    const generated = makeGenerator({ seed: 11 }).take(events)
    progress(`filling the server log with ${fmt(events)} events`)
    await fillServer(serverDb, generated)
    const tokens = [
      `${CATCHUP_TOKEN}=${CATCHUP_SPACE}`,
      ...Array.from({ length: reps }, (_, i) => `${createToken(i)}=c${i}`)
    ]
    const server = await startServer(serverDb, tokens)
    try {
      const catchup = await benchCatchup(dir, server, generated, reps)
      const latency = await benchLatency(dir, server.url, creates, reps)
      return [...catchup, ...latency]
    } finally {
      await server.stop()
    }
  } finally {
    cleanup()
  }
}

// --- (a) catch-up ---------------------------------------------------------------------------------------------

const benchCatchup = async (
  dir: string,
  server: ServeChild,
  generated: ReadonlyArray<Envelope>,
  reps: number
): Promise<ReadonlyArray<Row>> => {
  const n = generated.length
  console.log(
    `\n[sync catch-up] an empty replica pulls and applies ${fmt(n)} events from memsync serve over loopback HTTP ` +
      `(default page size), ${reps} repetitions, alternating with raw better-sqlite3 inserts of the same rows`
  )
  const rates: Array<number> = []
  const cpuRates: Array<number> = []
  const raws: Array<number> = []
  const rawCpus: Array<number> = []
  for (let rep = 0; rep < reps; rep++) {
    const rawFile = join(dir, `catchup-raw-${rep}.db`)
    const raw = rawInsert(rawFile, generated)
    raws.push(n / raw.seconds)
    rawCpus.push(n / raw.cpuSeconds)
    removeDb(rawFile)
    const file = join(dir, `catchup-replica-${rep}.db`)
    const serverCpu0 = server.cpuSeconds()
    const result = await catchUp(file, server.url)
    const serverCpu = server.cpuSeconds() - serverCpu0
    removeDb(file)
    if (result.pulled !== n) throw new Error(`catch-up pulled ${result.pulled} events, expected ${n}`)
    rates.push(n / result.seconds)
    cpuRates.push(n / (result.cpuSeconds + serverCpu))
    progress(
      `rep ${rep + 1}: catch-up ${fmt(rates[rep]!)} ev/s (${result.seconds.toFixed(2)} s wall; cpu: replica ` +
        `${result.cpuSeconds.toFixed(2)} s + server ${serverCpu.toFixed(2)} s), raw insert ${fmt(raws[rep]!)} ev/s`
    )
  }
  // The floor: the statements of one more (untimed) catch-up, replayed alone on a fresh file.
  progress("recording the SQLite statements of one more catch-up, to replay them alone")
  const recordedFile = join(dir, "catchup-recorded.db")
  const recorder = makeRecorder()
  await catchUp(recordedFile, server.url, recorder)
  const statements = recorder.stop()
  removeDb(recordedFile)
  const floors: Array<number> = []
  for (let rep = 0; rep < reps; rep++) {
    const file = join(dir, `catchup-floor-${rep}.db`)
    floors.push(n / (await replay(file, statements)))
    removeDb(file)
  }
  const floor = median(floors)
  const rate = median(rates)
  const cpuRate = median(cpuRates)
  const raw = median(raws)
  const rawCpu = median(rawCpus)
  const pass = rate >= TARGET_CATCHUP_EVENTS_PER_SECOND
  console.log(`  catch-up end to end (pull + apply + check): ${fmt(rate)} events/s (median, wall clock)`)
  console.log(`  same, per CPU-second of replica + server:   ${fmt(cpuRate)} events/s (less sensitive to load)`)
  console.log(
    `  raw better-sqlite3 insert, same rows:       ${fmt(raw)} events/s (median), ${fmt(rawCpu)} per CPU-second`
  )
  console.log(
    `  floor: the replica's SQLite statements alone: ${fmt(floor)} events/s (median of ${reps} replays of ` +
      `${fmt(statements.length)} recorded statements; ${floors.map((f) => fmt(f)).join(", ")})`
  )
  console.log(
    `  ${(rate / raw).toFixed(2)}x raw, ${(rate / floor).toFixed(2)}x the SQLite floor; target >= ` +
      `${fmt(TARGET_CATCHUP_EVENTS_PER_SECOND)} events/s: ` +
      (pass ? "PASS" : "MISS")
  )
  return [
    {
      bench: "sync catch-up",
      metric: `events/s (${fmt(n)} events, empty replica)`,
      value: fmt(rate),
      baseline: `${fmt(raw)} raw`,
      ratio: `${(rate / raw).toFixed(2)}x`,
      target: `>= ${fmt(TARGET_CATCHUP_EVENTS_PER_SECOND)}/s`,
      pass
    },
    {
      bench: "sync catch-up",
      metric: "floor: the replica's SQLite statements alone",
      value: fmt(floor),
      baseline: `${fmt(raw)} raw`,
      ratio: `${(floor / raw).toFixed(2)}x`,
      target: "(info)"
    },
    {
      bench: "sync catch-up",
      metric: "events per CPU-second (replica + server)",
      value: fmt(cpuRate),
      baseline: `${fmt(rawCpu)} raw`,
      ratio: `${(cpuRate / rawCpu).toFixed(2)}x`,
      target: "(info)"
    }
  ]
}

/** Raw better-sqlite3: the same rows the event log stores, one prepared INSERT each, one transaction. */
const rawInsert = (file: string, events: ReadonlyArray<Envelope>): { seconds: number; cpuSeconds: number } => {
  const db = openBare(file)
  db.exec(BARE_TABLE)
  const insert = db.prepare(
    `INSERT INTO bare (id, type, version, memory_id, hlc, client_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?)`
  )
  const cpu = process.cpuUsage()
  const started = performance.now()
  db.transaction(() => {
    for (const e of events) insert.run(...EventLog.params(e))
  })()
  const seconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  db.close()
  return { seconds, cpuSeconds: (used.user + used.system) / 1e6 }
}

/**
 * One catch-up of a fresh replica (wall and this process's CPU seconds); the layer's opening is not timed. A recorder
 * records the statements of the catch-up itself (not of the opening).
 */
const catchUp = (file: string, url: string, recorder?: Recorder) =>
  Effect.gen(function* () {
    const engine = yield* SyncEngine.SyncEngine
    recorder?.start()
    const cpu = process.cpuUsage()
    const started = performance.now()
    // A failed catch-up must not leave every later statement of the process recorded.
    const summary = yield* Effect.ensuring(
      engine.syncNow,
      Effect.sync(() => recorder?.stop())
    )
    const seconds = (performance.now() - started) / 1000
    const used = process.cpuUsage(cpu)
    return { seconds, cpuSeconds: (used.user + used.system) / 1e6, pulled: summary.pulled }
  }).pipe(
    Effect.provide(
      SyncEngine.layer({ token: CATCHUP_TOKEN, background: false }).pipe(
        Layer.provideMerge(Layer.merge(MemoryStore.layer({ filename: file }), HttpTransport.layer({ baseUrl: url })))
      )
    ),
    quiet,
    Effect.runPromise
  )

// --- (b) commit latency -----------------------------------------------------------------------------------------

const benchLatency = async (dir: string, url: string, n: number, reps: number): Promise<ReadonlyArray<Row>> => {
  console.log(
    `\n[sync commit latency] ${fmt(n)} paced MemoryStore.create calls (1 ms apart, ${WARMUP} warm-up) with the sync ` +
      `engine pushing in the background (pull/push every ${PULL_INTERVAL_MS} ms) vs without, ${reps} repetitions`
  )
  const without: Array<{ p50: number; p99: number }> = []
  const withEngine: Array<{ p50: number; p99: number; pushedDuring: number }> = []
  for (let rep = 0; rep < reps; rep++) {
    const plainFile = join(dir, `latency-plain-${rep}.db`)
    const syncedFile = join(dir, `latency-synced-${rep}.db`)
    without.push(await paced(plainFile, n, undefined))
    withEngine.push(await paced(syncedFile, n, { url, token: createToken(rep) }))
    removeDb(plainFile)
    removeDb(syncedFile)
    const w = withEngine[rep]!
    const o = without[rep]!
    progress(
      `rep ${rep + 1}: without p50 ${ms(o.p50)} p99 ${ms(o.p99)}; with engine p50 ${ms(w.p50)} p99 ${ms(w.p99)} ` +
        `(${fmt(w.pushedDuring)} of ${fmt(n + WARMUP)} pushed during the run)`
    )
  }
  const p99Without = median(without.map((s) => s.p99))
  const p99With = median(withEngine.map((s) => s.p99))
  const p50Without = median(without.map((s) => s.p50))
  const p50With = median(withEngine.map((s) => s.p50))
  const ratio = p99With / p99Without
  const pass = ratio <= TARGET_P99_FACTOR
  console.log(`  MemoryStore.create, no engine:          p50 ${ms(p50Without)}  p99 ${ms(p99Without)} (median of reps)`)
  console.log(`  MemoryStore.create, engine pushing:     p50 ${ms(p50With)}  p99 ${ms(p99With)}`)
  console.log(`  p99 ratio ${ratio.toFixed(2)}x (target <= ${TARGET_P99_FACTOR}x): ${pass ? "PASS" : "MISS"}`)
  return [
    {
      bench: "sync create",
      metric: `p99 create, engine pushing (${fmt(n)})`,
      value: ms(p99With),
      baseline: `${ms(p99Without)} no engine`,
      ratio: `${ratio.toFixed(2)}x`,
      target: `<= ${TARGET_P99_FACTOR}x`,
      pass
    },
    {
      bench: "sync create",
      metric: "p50 create, engine pushing",
      value: ms(p50With),
      baseline: `${ms(p50Without)} no engine`,
      ratio: `${(p50With / p50Without).toFixed(2)}x`,
      target: "(info)"
    }
  ]
}

/** `n` paced creates after a warm-up, with or without a background engine; latencies of the timed creates. */
const paced = (file: string, n: number, sync: { readonly url: string; readonly token: string } | undefined) =>
  Effect.gen(function* () {
    const storeLayer = MemoryStore.layer({ filename: file })
    const ctx = yield* Layer.build(
      sync === undefined
        ? storeLayer
        : SyncEngine.layer({ token: sync.token, pullIntervalMs: PULL_INTERVAL_MS }).pipe(
            Layer.provideMerge(Layer.merge(storeLayer, HttpTransport.layer({ baseUrl: sync.url })))
          )
    )
    const store = Context.get(ctx, MemoryStore.MemoryStore)
    const inputs = makeInputs(WARMUP + n, 5)
    const samples: Array<number> = []
    for (let i = 0; i < inputs.length; i++) {
      const t0 = performance.now()
      yield* store.create(inputs[i]!)
      const t1 = performance.now()
      if (i >= WARMUP) samples.push(t1 - t0)
      yield* Effect.sleep(1)
    }
    const pending = (yield* store.stats).pendingOutbox
    return {
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      pushedDuring: sync === undefined ? 0 : inputs.length - pending
    }
  }).pipe(Effect.scoped, quiet, Effect.runPromise)

// --- the server ---------------------------------------------------------------------------------------------------

/** Write `events` into a server database through `ServerLog.push` (admission, seqs, digest), in batches of 1,000. */
const fillServer = (file: string, events: ReadonlyArray<unknown>) =>
  Effect.gen(function* () {
    const log = yield* ServerLog.ServerLog
    for (let i = 0; i < events.length; i += 1_000) {
      const response = yield* log.push(CATCHUP_SPACE, events.slice(i, i + 1_000))
      const refused = response.results.filter((r) => r.status === "rejected")
      if (refused.length > 0)
        return yield* Effect.dieMessage(`the server refused an event: ${JSON.stringify(refused[0])}`)
    }
  }).pipe(Effect.provide(ServerLog.layer({ filename: file })), quiet, Effect.runPromise)

/** A `memsync serve` child process. */
interface ServeChild {
  readonly url: string
  /** CPU seconds (user + system) the server process has used so far (NaN where /proc is not available). */
  readonly cpuSeconds: () => number
  readonly stop: () => Promise<void>
}

/** `memsync serve` on a free loopback port, without a rate limit; its request logs are drained and dropped. */
const startServer = (db: string, tokens: ReadonlyArray<string>) =>
  new Promise<ServeChild>((resolve, reject) => {
    const args = ["serve", "--host", "127.0.0.1", "--port", "0", "--db", db, "--rate-limit", "0"]
    const child = spawn(process.execPath, [...childNodeFlags, BIN, ...args, ...tokens.flatMap((t) => ["--token", t])], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    const exited = new Promise<number | null>((done) => child.on("close", done))
    let out = ""
    let found = false
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      if (found) return
      out += chunk
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1]
      if (url === undefined) return
      found = true
      resolve({
        url,
        cpuSeconds: () => processCpuSeconds(child.pid),
        stop: async () => {
          child.kill("SIGTERM")
          const code = await exited
          if (code !== 0) throw new Error(`memsync serve exited with ${code}`)
        }
      })
    })
    child.on("error", reject)
    void exited.then((code) => {
      if (!found) reject(new Error(`memsync serve exited with ${code} before listening: ${out}`))
    })
  })

/** utime + stime of a process from /proc/PID/stat (fields 14 and 15, in clock ticks). */
const processCpuSeconds = (pid: number | undefined): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / clockTicks()
  } catch {
    return NaN
  }
}

let ticks: number | undefined
const clockTicks = (): number => {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
    } catch {
      ticks = 100
    }
  }
  return ticks
}

/** The engine logs warnings and errors only: a benchmark's output stays readable. */
const quiet = <A, E, R>(self: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(self, LogLevel.Warning)

const ms = (x: number): string => `${x.toFixed(3)} ms`

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2)
  const option = (name: string): string | undefined => {
    const at = args.indexOf(`--${name}`)
    return at >= 0 ? args[at + 1] : args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  }
  const scale = Number(option("scale") ?? 1)
  const reps = Number(option("reps") ?? 3)
  if (!(scale > 0) || !(reps >= 1)) {
    console.error("--scale takes a positive number, --reps a positive integer")
    process.exit(2)
  }
  const started = performance.now()
  const rows = await runSyncBench({ scale, reps: Math.floor(reps) })
  console.log(`\nSummary (${((performance.now() - started) / 1000).toFixed(0)} s)`)
  printTable(rows)
}
