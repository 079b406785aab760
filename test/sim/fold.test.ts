/**
 * Pure fold and materializer properties at scale (TESTING.md P3–P5): >= 1,000 runs of up to 200 events each.
 *
 * - P5 order independence: the fold of a set is the same whatever the order; folding parts and merging the results
 *   equals folding the whole (so any batching gives the same view).
 * - P3 idempotence: delivering events again changes nothing.
 * - The SQL materializer, fed the set in shuffled batches with re-deliveries through the store's ingest path, holds
 *   exactly the fold's states; P4: a rebuild from the log holds them too.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer } from "effect"
import { copyFileSync, mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import * as Fold from "../../src/domain/Fold.js"
import * as IdGenerator from "../../src/domain/IdGenerator.js"
import * as Materializer from "../../src/store/Materializer.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as Replay from "../../src/store/Replay.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"
import * as EventLoop from "../../src/testing/EventLoop.js"
import * as Pbt from "../../src/testing/Pbt.js"
import * as SimReplica from "../../src/testing/SimReplica.js"
import * as Simulation from "../../src/testing/Simulation.js"

const RUNS = 1_000
const FILE = "test/sim/fold.test.ts"
const events = Arbitraries.eventSet({ maxLength: 200, size: "max" })
const sorted = (states: Map<string, Fold.MemoryState>) => [...states.entries()].sort(([a], [b]) => (a < b ? -1 : 1))

/** Merge two folded maps (the view of a union is the merge of the views: the fold is a semilattice). */
const mergeMaps = (a: Map<string, Fold.MemoryState>, b: Map<string, Fold.MemoryState>) => {
  const out = new Map(a)
  for (const [id, s] of b) out.set(id, out.has(id) ? Fold.merge(out.get(id)!, s) : s)
  return out
}

describe("fold and materializer at scale (P3–P5)", () => {
  it("P5: any order, and any split merged back, folds to the same states", async () => {
    const property = fc.property(
      events.chain((es) => fc.tuple(fc.constant(es), Arbitraries.permutation(es), fc.nat({ max: es.length }))),
      ([es, shuffled, cut]) => {
        const whole = sorted(Fold.fold(es))
        assert.deepStrictEqual(sorted(Fold.fold(shuffled)), whole)
        const merged = mergeMaps(Fold.fold(shuffled.slice(0, cut)), Fold.fold(shuffled.slice(cut)))
        assert.deepStrictEqual(sorted(merged), whole)
      }
    )
    await Pbt.check("fold-order", FILE, property, RUNS)
  })

  it("P3: delivering any events again changes nothing", async () => {
    const property = fc.property(
      events.chain((es) => fc.tuple(fc.constant(es), Arbitraries.delivery(es, { maxBatch: 20 }))),
      ([es, batches]) => {
        const states = new Map<string, Fold.MemoryState>()
        for (const batch of batches) for (const e of batch) Fold.foldInto(states, e)
        assert.deepStrictEqual(sorted(states), sorted(Fold.fold(es)))
      }
    )
    await Pbt.check("fold-idempotence", FILE, property, RUNS)
  })

  it("the SQL view equals the fold for shuffled, batched, re-delivered sets; a rebuild equals it (P4)", async () => {
    const dir = mkdtempSync(join(Simulation.DEFAULT_CONFIG.dir, "memsync-fold-"))
    const template = await Effect.runPromise(SimReplica.template(Simulation.DEFAULT_CONFIG.dir))
    let n = 0
    try {
      const property = fc.asyncProperty(
        Arbitraries.mixedEventSet({ maxLength: 200, size: "max" }).chain((set) =>
          fc.tuple(fc.constant(set), Arbitraries.delivery(set.all, { maxBatch: 40 }))
        ),
        async ([set, batches]) => {
          // A copy of a migrated empty file opens much faster than migrating `:memory:` on every run.
          const filename = join(dir, `${n++}.db`)
          copyFileSync(template, filename)
          const program = Effect.gen(function* () {
            const store = yield* MemoryStore.MemoryStore
            const view = yield* Materializer.Materializer
            for (const batch of batches) yield* store.ingest(batch)
            const expected = sorted(Fold.fold(set.known))
            assert.deepStrictEqual(sorted(yield* view.readStates()), expected)
            yield* Replay.rebuild({ pageSize: 37 })
            assert.deepStrictEqual(sorted(yield* view.readStates()), expected)
          })
          await Effect.runPromise(
            program.pipe(
              Effect.provide(
                MemoryStore.layerWithIds({ filename, clientId: "fold" }).pipe(Layer.provide(IdGenerator.layer))
              )
            )
          )
          for (const suffix of ["", "-wal", "-shm"]) rmSync(filename + suffix, { force: true })
          // Every run is synchronous SQLite work under promises that never reach the event loop: without a turn, the
          // loop's timers did not run once in the whole property (38 s measured), past vitest's 60 s RPC deadline on
          // a slower machine (see EventLoop.turn).
          await Effect.runPromise(EventLoop.turn)
        }
      )
      await Pbt.check("materializer", FILE, property, RUNS)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 900_000)
})
