/**
 * Child process: fill a fresh database with `events` generated events through the batch path
 * (`MemoryStore.ingest`), printing progress on stderr and a JSON result line on stdout.
 *
 * Usage: tsx bench/build-child.ts <file> <events> <batch> [seed]
 */
import { Effect } from "effect"
import * as MemoryStore from "../src/store/MemoryStore.js"
import { makeGenerator } from "./gen.js"
import { emit, fmt, progress } from "./lib.js"

const [file, eventsArg, batchArg, seedArg] = process.argv.slice(2)
if (file === undefined || eventsArg === undefined || batchArg === undefined) {
  throw new Error("usage: build-child.ts <file> <events> <batch> [seed]")
}
const total = Number(eventsArg)
const batch = Number(batchArg)
const gen = makeGenerator({ seed: Number(seedArg ?? 3) })
const every = Math.max(batch, Math.round(total / 10 / batch) * batch)

const program = Effect.gen(function* () {
  const store = yield* MemoryStore.MemoryStore
  const started = performance.now()
  for (let done = 0; done < total;) {
    const events = gen.take(Math.min(batch, total - done))
    yield* store.ingest(events)
    done += events.length
    if (done % every === 0 || done === total) {
      const s = (performance.now() - started) / 1000
      progress(`built ${fmt(done)} / ${fmt(total)} events (${fmt(done / s)} events/s)`)
    }
  }
  return (performance.now() - started) / 1000
})

const seconds = await program.pipe(Effect.provide(MemoryStore.layer({ filename: file })), Effect.runPromise)
emit({ events: total, seconds, liveId: gen.liveId() ?? "", counts: gen.counts })
