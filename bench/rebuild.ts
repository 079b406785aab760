/**
 * Benchmark 3: `Replay.rebuild` of a 1M-event log. The log is built first through the batch path in a child
 * process (not measured beyond its progress); each rebuild then runs in a fresh child process, so the peak RSS
 * (`process.resourceUsage().maxRSS`) is the rebuild's own. Baseline, also in a fresh child: raw better-sqlite3
 * reading every event row in seq order and parsing its payload — the floor of any rebuild.
 */
import { Schema } from "effect"
import { join } from "node:path"
import { dbSizeMb, fmt, median, progress, removeDb, runChild, type Row } from "./lib.js"

/** Options of the rebuild benchmark. */
export interface RebuildOptions {
  readonly dir: string
  readonly events: number
  readonly reps: number
  /** Batch size used to build the log. */
  readonly buildBatch: number
}

/** Targets: events/s and peak RSS. */
export const TARGET_EVENTS_PER_SEC = 80_000
export const TARGET_PEAK_RSS_MB = 400

/** What build-child prints. */
export const BuildResult = Schema.Struct({
  events: Schema.Number,
  seconds: Schema.Number,
  liveId: Schema.String,
  counts: Schema.Struct({ created: Schema.Number, updated: Schema.Number, deleted: Schema.Number })
})

const ChildResult = Schema.Struct({
  events: Schema.Number,
  memories: Schema.Number,
  seconds: Schema.Number,
  cpuSeconds: Schema.Number,
  rssStartMb: Schema.Number,
  rssPeakSampledMb: Schema.Number,
  maxRssMb: Schema.Number
})

/** Run the benchmark; returns summary rows. */
export const runRebuild = async (o: RebuildOptions): Promise<ReadonlyArray<Row>> => {
  const file = join(o.dir, "rebuild.db")
  console.log(
    `\n[rebuild] building a ${fmt(o.events)}-event log through MemoryStore.ingest (batches of ${fmt(o.buildBatch)})`
  )
  const built = await runChild("build-child.ts", [file, String(o.events), String(o.buildBatch)], BuildResult)
  const b = built.result
  console.log(
    `  built in ${b.seconds.toFixed(1)} s (${fmt(b.events / b.seconds)} events/s; ${fmt(b.counts.created)} create / ` +
      `${fmt(b.counts.updated)} update / ${fmt(b.counts.deleted)} delete), file ${fmt(dbSizeMb(file))} MB`
  )
  console.log(`  rebuild: ${o.reps} repetitions, each in a fresh child process, alternating with the raw scan`)
  const rebuilds: Array<typeof ChildResult.Type> = []
  const scans: Array<typeof ChildResult.Type> = []
  for (let rep = 0; rep < o.reps; rep++) {
    const scan = (await runChild("rebuild-child.ts", [file, "--bare"], ChildResult)).result
    scans.push(scan)
    const r = (await runChild("rebuild-child.ts", [file], ChildResult)).result
    rebuilds.push(r)
    progress(
      `rep ${rep + 1}: rebuild ${fmt(r.events / r.seconds)} events/s in ${r.seconds.toFixed(2)} s ` +
        `(${cpuUs(r)} us CPU/event), ` +
        `maxRSS ${fmt(r.maxRssMb)} MB (rss at start ${fmt(r.rssStartMb)} MB); ` +
        `raw scan ${fmt(scan.events / scan.seconds)} events/s (${cpuUs(scan)} us CPU/event), ` +
        `maxRSS ${fmt(scan.maxRssMb)} MB`
    )
  }
  removeDb(file)
  const rate = median(rebuilds.map((r) => r.events / r.seconds))
  const scanRate = median(scans.map((r) => r.events / r.seconds))
  const rss = Math.max(...rebuilds.map((r) => r.maxRssMb))
  const scanRss = Math.max(...scans.map((r) => r.maxRssMb))
  const startRss = median(rebuilds.map((r) => r.rssStartMb))
  const memories = rebuilds[0]?.memories ?? 0
  const cpu = median(rebuilds.map((r) => (r.cpuSeconds * 1e6) / r.events))
  const scanCpu = median(scans.map((r) => (r.cpuSeconds * 1e6) / r.events))
  const rateOk = rate >= TARGET_EVENTS_PER_SEC
  const rssOk = rss <= TARGET_PEAK_RSS_MB
  console.log(`  Replay.rebuild:  ${fmt(rate)} events/s (median), ${fmt(memories)} live memories after`)
  console.log(`  raw scan:        ${fmt(scanRate)} events/s (read + JSON.parse every row)`)
  console.log(
    `  peak RSS:        ${fmt(rss)} MB (worst repetition; the process held ${fmt(startRss)} MB after opening)`
  )
  console.log(
    `  events/s target >= ${fmt(TARGET_EVENTS_PER_SEC)}: ${rateOk ? "PASS" : "MISS"}; ` +
      `peak RSS target <= ${TARGET_PEAK_RSS_MB} MB: ${rssOk ? "PASS" : "MISS"}`
  )
  return [
    {
      bench: "3 rebuild",
      metric: `events/s (${fmt(o.events)} events)`,
      value: fmt(rate),
      baseline: `${fmt(scanRate)} raw scan`,
      ratio: `${(rate / scanRate).toFixed(2)}x`,
      target: `>= ${fmt(TARGET_EVENTS_PER_SEC)}/s`,
      pass: rateOk
    },
    {
      bench: "3 rebuild",
      metric: "CPU per event",
      value: `${cpu.toFixed(1)} us`,
      baseline: `${scanCpu.toFixed(1)} us raw scan`,
      ratio: `${(cpu / scanCpu).toFixed(2)}x`,
      target: `<= ${(1e6 / TARGET_EVENTS_PER_SEC).toFixed(1)} us (1 core)`,
      pass: cpu <= 1e6 / TARGET_EVENTS_PER_SEC
    },
    {
      bench: "3 rebuild",
      metric: "peak RSS (maxRSS)",
      value: `${fmt(rss)} MB`,
      baseline: `${fmt(scanRss)} MB raw scan`,
      ratio: `${(rss / scanRss).toFixed(2)}x`,
      target: `<= ${TARGET_PEAK_RSS_MB} MB`,
      pass: rssOk
    }
  ]
}

const cpuUs = (r: typeof ChildResult.Type): string => ((r.cpuSeconds * 1e6) / r.events).toFixed(1)
