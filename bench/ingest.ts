/**
 * Benchmark 1: bulk ingest through the batch path (`MemoryStore.ingest`: append new events + fold into the view and
 * FTS, one transaction per batch) against raw better-sqlite3 inserting the same event rows into a bare table with
 * one prepared statement in one transaction. Both write to fresh WAL files (synchronous=NORMAL); the runs alternate
 * (raw, store, raw, store...) so machine noise hits both, and the medians are compared.
 */
import { Effect, Layer } from "effect"
import { join } from "node:path"
import type { Envelope } from "../src/domain/Events.js"
import * as EventLog from "../src/store/EventLog.js"
import * as MemoryStore from "../src/store/MemoryStore.js"
import { makeGenerator } from "./gen.js"
import { BARE_TABLE, fmt, median, openBare, progress, removeDb, type Row } from "./lib.js"

/** Options of the ingest benchmark. */
export interface IngestOptions {
  readonly dir: string
  readonly events: number
  readonly batch: number
  readonly reps: number
}

/** Target: the batch path keeps at least this fraction of raw insert throughput. */
export const TARGET_RATIO = 0.35

/** Wall and CPU (user + system) seconds of one run. */
export interface Timing {
  readonly seconds: number
  readonly cpuSeconds: number
}

const cpuSeconds = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** Raw better-sqlite3: one prepared INSERT per event, one transaction. */
export const rawInsert = (file: string, events: ReadonlyArray<Envelope>): Timing => {
  const db = openBare(file)
  db.exec(BARE_TABLE)
  const insert = db.prepare(
    `INSERT INTO bare (id, type, version, memory_id, hlc, client_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?)`
  )
  const started = performance.now()
  const cpu = cpuSeconds()
  db.transaction(() => {
    // The same row values the event log stores (payload serialized here too, as the store must).
    for (const e of events) insert.run(...EventLog.params(e))
  })()
  const timing = { seconds: (performance.now() - started) / 1000, cpuSeconds: cpuSeconds() - cpu }
  db.close()
  return timing
}

/**
 * The floor under the batch path: raw better-sqlite3 inserting the same rows, in the same batches, into the real
 * `events` table (a memsync file, migrations applied): its unique event id, its `memory_id` and `hlc` indexes and
 * `AUTOINCREMENT`, which the log needs for idempotent ingest, `history(id)` and the clock, and nothing of the view.
 */
export const rawEventLog = async (file: string, events: ReadonlyArray<Envelope>, batch: number): Promise<Timing> => {
  await Effect.runPromise(Effect.scoped(Layer.build(MemoryStore.layer({ filename: file }))))
  const db = openBare(file)
  db.pragma("cache_size = -65536")
  const insert = db.prepare(
    `INSERT INTO events (id, type, version, memory_id, hlc, client_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT(id) DO NOTHING`
  )
  const started = performance.now()
  const cpu = cpuSeconds()
  for (let i = 0; i < events.length; i += batch) {
    db.transaction(() => {
      for (let k = i; k < Math.min(i + batch, events.length); k++) insert.run(...EventLog.params(events[k]!))
    })()
  }
  const timing = { seconds: (performance.now() - started) / 1000, cpuSeconds: cpuSeconds() - cpu }
  db.close()
  return timing
}

/** The batch path: `MemoryStore.ingest` in batches of `batch` (layer open excluded). */
export const storeIngest = (file: string, events: ReadonlyArray<Envelope>, batch: number): Promise<Timing> =>
  Effect.gen(function* () {
    const store = yield* MemoryStore.MemoryStore
    const started = performance.now()
    const cpu = cpuSeconds()
    for (let i = 0; i < events.length; i += batch) yield* store.ingest(events.slice(i, i + batch))
    return { seconds: (performance.now() - started) / 1000, cpuSeconds: cpuSeconds() - cpu }
  }).pipe(Effect.provide(MemoryStore.layer({ filename: file })), Effect.runPromise)

/** Run the benchmark; returns summary rows. */
export const runIngest = async (o: IngestOptions): Promise<ReadonlyArray<Row>> => {
  const gen = makeGenerator({ seed: 1 })
  const events = gen.take(o.events)
  const { created, updated, deleted } = gen.counts
  console.log(
    `\n[ingest] ${fmt(o.events)} events (${fmt(created)} create / ${fmt(updated)} update / ${fmt(deleted)} delete), ` +
      `batches of ${fmt(o.batch)}, ${o.reps} repetitions, raw and store alternating`
  )
  const raw: Array<number> = []
  const floor: Array<number> = []
  const store: Array<number> = []
  const rawCpu: Array<number> = []
  const storeCpu: Array<number> = []
  for (let rep = 0; rep < o.reps; rep++) {
    const rawFile = join(o.dir, `ingest-raw-${rep}.db`)
    const storeFile = join(o.dir, `ingest-store-${rep}.db`)
    const logFile = join(o.dir, `ingest-log-${rep}.db`)
    const r = rawInsert(rawFile, events)
    const f = await rawEventLog(logFile, events, o.batch)
    const s = await storeIngest(storeFile, events, o.batch)
    raw.push(o.events / r.seconds)
    floor.push(o.events / f.seconds)
    store.push(o.events / s.seconds)
    rawCpu.push(o.events / r.cpuSeconds)
    storeCpu.push(o.events / s.cpuSeconds)
    removeDb(rawFile)
    removeDb(storeFile)
    removeDb(logFile)
    progress(
      `rep ${rep + 1}: raw ${fmt(raw[rep]!)} ev/s, events table alone ${fmt(floor[rep]!)} ev/s, ` +
        `store ${fmt(store[rep]!)} ev/s`
    )
  }
  const rawMed = median(raw)
  const storeMed = median(store)
  const ratio = storeMed / rawMed
  const cpuRatio = median(storeCpu) / median(rawCpu)
  console.log(`  raw better-sqlite3 (bare table, 1 tx):       ${fmt(rawMed)} events/s (median)`)
  const floorRatio = median(floor) / rawMed
  console.log(
    `  raw better-sqlite3 into the real events table (its indexes, batches of ${fmt(o.batch)}): ` +
      `${fmt(median(floor))} events/s (median), ${floorRatio.toFixed(2)}x raw`
  )
  console.log(`  MemoryStore.ingest (batches of ${fmt(o.batch)}): ${fmt(storeMed)} events/s (median)`)
  console.log(
    `  ratio ${ratio.toFixed(2)}x raw (target >= ${TARGET_RATIO}x): ${ratio >= TARGET_RATIO ? "PASS" : "MISS"}`
  )
  return [
    {
      bench: "1 ingest",
      metric: `events/s (${fmt(o.events)}, batch ${fmt(o.batch)})`,
      value: fmt(storeMed),
      baseline: `${fmt(rawMed)} raw`,
      ratio: `${ratio.toFixed(2)}x`,
      target: `>= ${TARGET_RATIO}x raw`,
      pass: ratio >= TARGET_RATIO
    },
    {
      bench: "1 ingest",
      metric: "floor: raw inserts into the events table alone",
      value: fmt(median(floor)),
      baseline: `${fmt(rawMed)} raw`,
      ratio: `${floorRatio.toFixed(2)}x`,
      target: "(info)"
    },
    {
      bench: "1 ingest",
      metric: "events per CPU-second",
      value: fmt(median(storeCpu)),
      baseline: `${fmt(median(rawCpu))} raw`,
      ratio: `${cpuRatio.toFixed(2)}x`,
      target: "(info)"
    }
  ]
}
