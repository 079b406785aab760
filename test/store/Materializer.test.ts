import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import type { Envelope } from "../../src/domain/Events.js"
import * as Fold from "../../src/domain/Fold.js"
import * as Materializer from "../../src/store/Materializer.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as Replay from "../../src/store/Replay.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"

// DESIGN §3: the view is a function of the SET of events held. The pure `Fold.fold` is the reference; the SQL
// materializer, fed the same set in any order, batching and duplication, must hold exactly the same states —
// every register's value AND key, and the created/deleted flags.

const fresh = () => MemoryStore.layer({ filename: ":memory:" })
const sorted = (states: Map<string, Fold.MemoryState>) => [...states.entries()].sort(([a], [b]) => (a < b ? -1 : 1))

const planArb = fc
  .record({ events: Arbitraries.mixedEventSet({ maxLength: 40 }), plan: Arbitraries.deliveryPlan({ maxBatch: 10 }) })
  .map(({ events, plan }) => ({ events, batches: Arbitraries.planDelivery(events.all, plan) }))

/** Deliver every batch through the store's ingest path; check that each id is stored exactly once. */
const deliver = (plan: {
  readonly events: Arbitraries.MixedEvents
  readonly batches: ReadonlyArray<ReadonlyArray<Envelope>>
}) =>
  Effect.gen(function* () {
    const store = yield* MemoryStore.MemoryStore
    const seen = new Set<string>()
    for (const batch of plan.batches) {
      const fresh = yield* store.ingest(batch)
      for (const e of fresh) {
        assert.isFalse(seen.has(e.id), `event ${e.id} was ingested twice`)
        seen.add(e.id)
      }
    }
    assert.strictEqual(seen.size, plan.events.all.length)
  })

describe("Materializer vs Fold", () => {
  // (a) and (b) share each generated case: (b) starts from the database (a) leaves, which saves a database per run.
  it.effect.prop(
    "the SQL view equals the pure fold of the event set (shuffled, batched, re-delivered); a rebuild equals it too",
    [planArb],
    ([plan]) =>
      Effect.gen(function* () {
        yield* deliver(plan)
        const store = yield* MemoryStore.MemoryStore
        const view = yield* Materializer.Materializer
        const expected = sorted(Fold.fold(plan.events.known))

        // (a) incremental view = fold.
        const incremental = sorted(yield* view.readStates())
        assert.deepStrictEqual(incremental, expected)

        // Readers see exactly the fold's memories: created ones, with the deleted flag.
        const listed = yield* store.list({ includeDeleted: true, limit: 1000 })
        const fromFold = expected.flatMap(([, s]) => {
          const m = Fold.toMemory(s)
          return m === undefined ? [] : [{ ...m, deleted: s.deleted }]
        })
        assert.deepStrictEqual(
          [...listed].sort((a, b) => (a.id < b.id ? -1 : 1)),
          fromFold
        )

        const stats = yield* store.stats
        assert.strictEqual(stats.events, plan.events.all.length)
        assert.strictEqual(stats.unknownEvents, plan.events.unknown.length)
        assert.strictEqual(stats.pendingOutbox, 0)
        assert.strictEqual(stats.memories, fromFold.filter((m) => !m.deleted).length)

        // (b) verify agrees, a rebuild from the log (in pages smaller than the log) gives the same states, and
        // verify still agrees afterwards (FTS index included).
        const before = yield* Replay.verify({ pageSize: 7 })
        assert.isTrue(before.ok, JSON.stringify(before))
        assert.strictEqual(before.events, plan.events.all.length)
        const rebuilt = yield* Replay.rebuild({ pageSize: 7 })
        assert.strictEqual(rebuilt.events, plan.events.all.length)
        assert.strictEqual(rebuilt.memories, stats.memories)
        assert.deepStrictEqual(sorted(yield* view.readStates()), incremental)
        const after = yield* Replay.verify()
        assert.isTrue(after.ok, JSON.stringify(after))

        // The upsert itself is idempotent: applying everything again, bypassing the log's dedupe, changes nothing.
        yield* view.apply(plan.batches.flat())
        assert.deepStrictEqual(sorted(yield* view.readStates()), expected)
      }).pipe(Effect.provide(fresh())),
    { fastCheck: { numRuns: 200 } }
  )

  it.effect(
    "events whose ids or text SQLite cannot store as written are invalid: the view and the fold skip them",
    () =>
      Effect.gen(function* () {
        const created = (n: number, id: string, content: string): Envelope => ({
          id: `01890a5d-ac96-774b-bcce-00000000000${n}`,
          type: "memory.created",
          version: 1,
          hlc: `00000000000500${n}:000000:peer`,
          clientId: "peer",
          payload: {
            id,
            content,
            category: "c",
            tags: [],
            keywords: [],
            importance: 0.5,
            sensitive: false,
            createdAt: 1,
            updatedAt: 1
          }
        })
        // Two distinct ids that are the same string once SQLite has replaced the unpaired surrogate with U+FFFD.
        const events = [created(1, "x\uD800", "one"), created(2, "x\uDC00", "two"), created(3, "fine", "bad \uDFFF")]
        const store = yield* MemoryStore.MemoryStore
        const view = yield* Materializer.Materializer
        yield* store.ingest(events)
        const expected = sorted(Fold.fold(Materializer.knownEvents(events)))
        assert.deepStrictEqual(expected, [])
        assert.deepStrictEqual(sorted(yield* view.readStates()), expected)
        assert.strictEqual((yield* store.stats).events, 3)
      }).pipe(Effect.provide(fresh()))
  )

  it.effect("verify notices a view that drifted from the log", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const m = yield* store.create({ content: "drift me" })
      const view = yield* Materializer.Materializer
      // Write a state the log does not justify, straight into the view.
      yield* view.applyStates([
        { id: m.id, created: true, deleted: false, content: { value: "forged", key: "999999999999999:000000:x z" } }
      ])
      const report = yield* Replay.verify()
      assert.isFalse(report.ok)
      assert.strictEqual(report.differingCount, 1)
      assert.deepStrictEqual(
        report.differing[0]?.fields.map((f) => f.field),
        ["content"]
      )
      yield* Replay.rebuild()
      assert.isTrue((yield* Replay.verify()).ok)
      assert.strictEqual((yield* store.get(m.id)).content, "drift me")
    }).pipe(Effect.provide(fresh()))
  )
})
