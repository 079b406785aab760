/**
 * Server benchmark: the sync protocol over loopback HTTP against a real `memsync serve` process.
 *
 * - push: 4 concurrent clients (typed `HttpApiClient`, the client's real encode/decode path), batches of 500, into
 *   one space; events/s over the whole run. Baseline: raw better-sqlite3 inserting the same `server_events` rows
 *   (prepared statement, one transaction per 500 rows) into a fresh file.
 * - pull: catch-up of everything pushed, pages of 1000, one client; events/s. Baseline: raw keyset reads of the same
 *   pages from that table.
 * - informational: `ServerLog.push` in-process (admission + storage, no HTTP), to show what HTTP adds.
 *
 * The server runs in its own process (as deployed), so on a 2-core machine client and server each get a core.
 * Run alone: `npx tsx bench/server.ts [--scale 0.1]`.
 */
import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Either, Layer, Context } from "effect"
import { spawn } from "node:child_process"
import { mkdirSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { Envelope } from "../src/domain/Events.js"
import * as Admission from "../src/server/Admission.js"
import * as ServerLog from "../src/server/ServerLog.js"
import { SyncApi } from "../src/sync/Protocol.js"
import { makeGenerator } from "./gen.js"
import { childNodeFlags, fmt, makeTempDir, median, openBare, progress, removeDb, type Row } from "./lib.js"

/** Options of the server benchmark. */
export interface ServerBenchOptions {
  /** 1 = 100k events. */
  readonly scale: number
  /** A directory for the database files (default: a fresh temp directory, removed afterwards). */
  readonly dir?: string
}

/** Targets on this machine. */
export const PUSH_TARGET = 15_000
export const PULL_TARGET = 40_000

const CLIENTS = 4
const PUSH_BATCH = 500
const PULL_PAGE = 1000
const TOKEN = "bench-token-0001"
const BIN = join(dirname(fileURLToPath(import.meta.url)), "../bin/memsync.js")

/** Run the benchmark, print its figures, and return summary rows. */
export const runServerBench = async (options: ServerBenchOptions): Promise<ReadonlyArray<Row>> => {
  const temp = options.dir === undefined ? makeTempDir() : undefined
  const dir = options.dir ?? temp!.dir
  mkdirSync(dir, { recursive: true })
  try {
    return await run(dir, Math.max(CLIENTS * PUSH_BATCH, Math.round(100_000 * options.scale)))
  } finally {
    temp?.cleanup()
  }
}

const run = async (dir: string, count: number): Promise<ReadonlyArray<Row>> => {
  // Wall times a few minutes in the past, so the server's drift check passes them.
  const events = makeGenerator({ seed: 7, startMillis: Date.now() - 10 * 60 * 1000 }).take(count)
  console.log(
    `\n[server] ${fmt(count)} events over loopback HTTP: push with ${CLIENTS} clients in batches of ${PUSH_BATCH}, ` +
      `pull in pages of ${PULL_PAGE}`
  )

  const baselineFile = join(dir, "bench-server-raw.db")
  const rawInsertRates: Array<number> = []
  const rawReadRates: Array<number> = []
  for (let rep = 0; rep < 3; rep++) {
    await createServerDb(baselineFile)
    const { insertRate, readRate } = rawBaseline(baselineFile, events)
    rawInsertRates.push(insertRate)
    rawReadRates.push(readRate)
  }
  const rawInsert = median(rawInsertRates)
  const rawRead = median(rawReadRates)
  progress(`raw better-sqlite3: insert ${fmt(rawInsert)} rows/s, keyset read ${fmt(rawRead)} rows/s (median of 3)`)

  const inProcess = await inProcessPush(join(dir, "bench-server-inproc.db"), events)
  progress(`ServerLog.push in-process (no HTTP): ${fmt(inProcess)} events/s`)

  const serverFile = join(dir, "bench-server.db")
  removeDb(serverFile)
  const server = await startServer(serverFile)
  try {
    const { pushRate, pullRate, pulled, cpu } = await Effect.runPromise(overHttp(server.url, events, server.cpuMs))
    if (pulled !== count) throw new Error(`pulled ${pulled} events, pushed ${count}`)
    progress(`HTTP push: ${fmt(pushRate)} events/s; HTTP pull: ${fmt(pullRate)} events/s`)
    // CPU per event, by process: on a shared machine wall-clock rates swing with the load, CPU time much less.
    const perEvent = (ms: number | undefined) => (ms === undefined ? "?" : ((ms * 1000) / count).toFixed(1))
    progress(
      `CPU µs/event — push: server ${perEvent(cpu.pushServer)}, clients ${perEvent(cpu.pushClient)}; ` +
        `pull: server ${perEvent(cpu.pullServer)}, client ${perEvent(cpu.pullClient)}`
    )
    const rows: Array<Row> = [
      row("push (HTTP, 4 clients)", pushRate, rawInsert, PUSH_TARGET),
      row("pull catch-up (HTTP)", pullRate, rawRead, PULL_TARGET),
      {
        bench: "server",
        metric: "push in-process (no HTTP)",
        value: `${fmt(inProcess)} ev/s`,
        baseline: `${fmt(rawInsert)} rows/s`,
        ratio: `${(inProcess / rawInsert).toFixed(2)}x`,
        target: "-"
      }
    ]
    for (const r of rows) {
      console.log(`  ${r.metric}: ${r.value} (raw ${r.baseline}, ${r.ratio}; target ${r.target}) ${passText(r)}`)
    }
    return rows
  } finally {
    const code = await server.stop()
    if (code !== 0) console.log(`  warning: memsync serve exited with ${code}`)
  }
}

const row = (metric: string, rate: number, baseline: number, target: number): Row => ({
  bench: "server",
  metric,
  value: `${fmt(rate)} ev/s`,
  baseline: `${fmt(baseline)} rows/s`,
  ratio: `${(rate / baseline).toFixed(2)}x`,
  target: `>= ${fmt(target)} ev/s`,
  pass: rate >= target
})

const passText = (r: Row) => (r.pass === undefined ? "" : r.pass ? "PASS" : "MISS")

/** Make an empty server database (the real schema) through ServerLog. */
const createServerDb = (file: string) => {
  removeDb(file)
  return Effect.runPromise(Effect.scoped(Effect.asVoid(Layer.build(ServerLog.layer({ filename: file })))))
}

/** Raw better-sqlite3 on the same table: insert the rows (batches of 500), then read them back in keyset pages. */
const rawBaseline = (file: string, events: ReadonlyArray<Envelope>) => {
  const now = Date.now()
  // Admission (decode, hash) happens outside the timing: the baseline is the storage alone.
  const rows = events.map((e) => Either.getOrThrow(Admission.admit(e, now, Admission.DEFAULT_LIMITS)))
  const db = openBare(file)
  const insert = db.prepare(
    `INSERT INTO server_events
       (space, seq, id, type, version, memory_id, hlc, client_id, payload, body_hash, received_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
  )
  let started = performance.now()
  for (let i = 0; i < rows.length; i += PUSH_BATCH) {
    db.transaction(() => {
      for (let j = i; j < Math.min(rows.length, i + PUSH_BATCH); j++) {
        const c = rows[j]!
        insert.run("bench", j + 1, c.id, c.type, c.version, c.memoryId, c.hlc, c.clientId, c.payload, c.bodyHash, now)
      }
    })()
  }
  const insertRate = rows.length / ((performance.now() - started) / 1000)
  const page = db.prepare(
    `SELECT seq, id, type, version, hlc, client_id, payload FROM server_events
     WHERE space = ? AND seq > ? ORDER BY seq LIMIT ?`
  )
  started = performance.now()
  let after = 0
  let read = 0
  for (;;) {
    const got = page.all("bench", after, PULL_PAGE) as Array<{ seq: number }>
    read += got.length
    if (got.length < PULL_PAGE) break
    after = got[got.length - 1]!.seq
  }
  const readRate = read / ((performance.now() - started) / 1000)
  db.close()
  return { insertRate, readRate }
}

const inProcessPush = (file: string, events: ReadonlyArray<Envelope>) => {
  removeDb(file)
  return Effect.gen(function* () {
    const log = Context.get(yield* Layer.build(ServerLog.layer({ filename: file })), ServerLog.ServerLog)
    const started = performance.now()
    for (let i = 0; i < events.length; i += PUSH_BATCH) yield* log.push("bench", events.slice(i, i + PUSH_BATCH))
    return events.length / ((performance.now() - started) / 1000)
  }).pipe(Effect.scoped, Effect.runPromise)
}

const overHttp = (url: string, events: ReadonlyArray<Envelope>, serverCpuMs: () => number | undefined) =>
  Effect.gen(function* () {
    const clientCpuMs = () => {
      const u = process.cpuUsage()
      return (u.user + u.system) / 1000
    }
    const delta = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? undefined : b - a
    const makeClient = HttpApiClient.make(SyncApi, {
      baseUrl: url,
      transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(TOKEN))
    })
    const share = Math.ceil(events.length / CLIENTS)
    const pushOne = (part: ReadonlyArray<Envelope>) =>
      Effect.gen(function* () {
        const client = yield* makeClient
        for (let i = 0; i < part.length; i += PUSH_BATCH) {
          const r = yield* client.sync.push({ payload: { events: part.slice(i, i + PUSH_BATCH) } })
          const refused = r.results.find((x) => x.status === "rejected")
          if (refused !== undefined) return yield* Effect.dieMessage(`push refused: ${JSON.stringify(refused)}`)
        }
      })
    const s0 = serverCpuMs()
    const c0 = clientCpuMs()
    let started = performance.now()
    yield* Effect.all(
      Array.from({ length: CLIENTS }, (_, c) => pushOne(events.slice(c * share, (c + 1) * share))),
      { concurrency: "unbounded" }
    )
    const pushRate = events.length / ((performance.now() - started) / 1000)
    const s1 = serverCpuMs()
    const c1 = clientCpuMs()

    const client = yield* makeClient
    started = performance.now()
    let after = 0
    let pulled = 0
    for (;;) {
      const page = yield* client.sync.pull({ urlParams: { after, limit: PULL_PAGE } })
      pulled += page.events.length
      if (!page.hasMore) break
      after = page.events[page.events.length - 1]!.seq
    }
    const pullRate = pulled / ((performance.now() - started) / 1000)
    const cpu = {
      pushServer: delta(s0, s1),
      pushClient: c1 - c0,
      pullServer: delta(s1, serverCpuMs()),
      pullClient: clientCpuMs() - c1
    }
    return { pushRate, pullRate, pulled, cpu }
  }).pipe(Effect.provide(NodeHttpClient.layerUndici))

/** Start `memsync serve` on a free loopback port; resolves with its URL once it prints it. */
const startServer = (file: string) =>
  new Promise<{ url: string; stop: () => Promise<number | null>; cpuMs: () => number | undefined }>(
    (resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          ...childNodeFlags,
          BIN,
          "serve",
          "--port",
          "0",
          "--db",
          file,
          "--token",
          `${TOKEN}=bench`,
          "--rate-limit",
          "0"
        ],
        { stdio: ["ignore", "pipe", "inherit"] }
      )
      let out = ""
      let resolved = false
      const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)))
      // Request logs keep coming on stdout: keep reading (a full pipe would stall the server), keep only the start.
      child.stdout.setEncoding("utf8")
      child.stdout.on("data", (chunk: string) => {
        if (resolved) return
        out += chunk
        const m = /listening on (http:\/\/\S+)/.exec(out)
        if (m !== null) {
          resolved = true
          resolve({
            url: m[1]!,
            cpuMs: () => processCpuMs(child.pid),
            stop: () => {
              child.kill("SIGTERM")
              return exited
            }
          })
        }
      })
      child.on("exit", (code) => {
        if (!resolved) reject(new Error(`memsync serve exited with ${code} before listening: ${out}`))
      })
    }
  )

/** User + system CPU time of a process in ms, from /proc (Linux); undefined elsewhere. */
const processCpuMs = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  try {
    // Fields 14 and 15 (utime, stime) in clock ticks, counted after the ")" that ends the command name.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS
  } catch {
    return undefined
  }
}

const CLOCK_TICKS = 100

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const at = process.argv.indexOf("--scale")
  const scale = at >= 0 ? Number(process.argv[at + 1]) : 1
  await runServerBench({ scale: scale > 0 ? scale : 1 })
}
