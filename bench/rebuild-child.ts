/**
 * Child process: `Replay.rebuild` of an existing database, measured in a fresh process so the peak RSS is the
 * rebuild's own (plus the runtime's). With `--bare`, the baseline instead: raw better-sqlite3 reading every event
 * row in seq order and parsing its payload (the floor any rebuild has to pay).
 *
 * Usage: tsx bench/rebuild-child.ts <file> [--bare] [--page N]
 * Prints one JSON line: events, seconds, CPU seconds, RSS after opening, peak RSS sampled per page, and `maxRSS`.
 */
import Sqlite from "better-sqlite3"
import { Effect, Layer } from "effect"
import * as Database from "../src/store/Database.js"
import * as Materializer from "../src/store/Materializer.js"
import * as Replay from "../src/store/Replay.js"
import { emit, fmt, maxRssMb, progress, rssMb } from "./lib.js"

const args = process.argv.slice(2)
const file = args[0]
if (file === undefined) throw new Error("usage: rebuild-child.ts <file> [--bare] [--page N]")
const pageAt = args.indexOf("--page")
const pageSize = pageAt >= 0 ? Number(args[pageAt + 1]) : undefined

let peak = rssMb()
const sample = () => {
  const now = rssMb()
  if (now > peak) peak = now
}

if (args.includes("--bare")) {
  const db = new Sqlite(file, { readonly: true })
  const rssStart = rssMb()
  const started = performance.now()
  const cpu = process.cpuUsage()
  let events = 0
  let parsed = 0
  for (const row of db
    .prepare(`SELECT seq, id, type, version, hlc, client_id, payload FROM events ORDER BY seq`)
    .raw()
    .iterate()) {
    // raw() rows are arrays of column values; the payload is column 6.
    const payload: unknown = JSON.parse(String((row as Array<unknown>)[6]))
    if (payload !== null) parsed++
    if (++events % 10_000 === 0) sample()
  }
  const seconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  db.close()
  emit({
    events: Math.max(events, parsed),
    memories: 0,
    seconds,
    cpuSeconds: (used.user + used.system) / 1e6,
    rssStartMb: rssStart,
    rssPeakSampledMb: peak,
    maxRssMb: maxRssMb()
  })
} else {
  const layer = Materializer.layer.pipe(Layer.provideMerge(Database.layer({ filename: file, create: false })))
  const result = await Effect.gen(function* () {
    const rssStart = rssMb()
    const started = performance.now()
    const cpu = process.cpuUsage()
    let lastReport = 0
    const r = yield* Replay.rebuild({
      ...(pageSize === undefined ? {} : { pageSize }),
      onProgress: ({ done, total }) =>
        Effect.sync(() => {
          sample()
          if (done - lastReport >= total / 5 || done === total) {
            lastReport = done
            const s = (performance.now() - started) / 1000
            progress(`rebuilt ${fmt(done)} / ${fmt(total)} events (${fmt(done / s)} events/s, rss ${fmt(peak)} MB)`)
          }
        })
    })
    const seconds = (performance.now() - started) / 1000
    const used = process.cpuUsage(cpu)
    sample()
    return {
      events: r.events,
      memories: r.memories,
      seconds,
      cpuSeconds: (used.user + used.system) / 1e6,
      rssStartMb: rssStart
    }
  }).pipe(Effect.provide(layer), Effect.runPromise)
  emit({ ...result, rssPeakSampledMb: peak, maxRssMb: maxRssMb() })
}
