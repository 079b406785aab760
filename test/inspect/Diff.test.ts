/**
 * Diff: a planted divergence is found and its first event named; identical logs are identical whatever the arrival
 * order; a replica compares with a server space; and, on generated splits of an event set, the first divergence is
 * exactly the first `(hlc, id)` prefix whose folds differ (checked by brute force).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { orderKey, type Envelope } from "../../src/domain/Events.js"
import * as Fold from "../../src/domain/Fold.js"
import * as Diff from "../../src/inspect/Diff.js"
import * as EventSource from "../../src/inspect/EventSource.js"
import { knownEvents } from "../../src/store/Materializer.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"
import { created, deadLetter, ingest, serve, sortStates, tempDir, unknownKind, updated } from "./fixtures.js"

const diffFiles = (a: string, b: string, spaces: { a?: string; b?: string } = {}) =>
  Effect.scoped(
    Effect.gen(function* () {
      const left = yield* EventSource.open({ filename: a, space: spaces.a })
      const right = yield* EventSource.open({ filename: b, space: spaces.b })
      return yield* Diff.diff(left, right)
    })
  )

describe("Diff", () => {
  it.effect("finds a planted divergence and names the first diverging event", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const base = [created("m1", "a", 10), created("m2", "a", 11), updated("m1", "b", 20, { tags: ["x"] })]
      const invisible = unknownKind("m1", "a", 5)
      const onlyA = updated("m2", "a", 30, { content: "A's words" })
      const onlyB = created("m3", "b", 25)
      const mine = updated("m1", "c", 40, { importance: 0.1 })
      const theirs: Envelope = { ...mine, payload: { id: "m1", patch: { importance: 0.2 }, updatedAt: 0 } }
      yield* ingest(`${dir}/a.db`, [...base, invisible, onlyA, mine])
      yield* ingest(`${dir}/b.db`, [theirs, onlyB, ...base.reverse()])
      const r = yield* diffFiles(`${dir}/a.db`, `${dir}/b.db`)
      assert.isFalse(r.identical)
      assert.deepStrictEqual(r.onlyInA.items.map((e) => e.id).sort(), [invisible.id, onlyA.id].sort())
      assert.deepStrictEqual(
        r.onlyInB.items.map((e) => e.id),
        [onlyB.id]
      )
      assert.deepStrictEqual(
        r.conflicting.items.map((e) => e.id),
        [mine.id]
      )
      assert.deepStrictEqual(r.memoriesOnlyInB.items, ["m3"])
      assert.deepStrictEqual(
        r.memoriesDiffering.items.map((m) => [m.id, m.fields.map((f) => f.field)]),
        [
          ["m1", ["importance", "updatedAt"]],
          ["m2", ["content", "updatedAt"]]
        ]
      )
      // The unknown kind (offset 5) is the earliest difference but reaches no view: m3's create (25) is first.
      assert.strictEqual(r.firstDivergence?.event.id, onlyB.id)
      assert.strictEqual(r.firstDivergence?.heldBy, "b")
    })
  )

  it.effect("the same events in another order are identical; a dead letter on one side is a divergence", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const events = [created("m1", "a", 1), updated("m1", "b", 2, { content: "x" }), created("m2", "a", 3)]
      yield* ingest(`${dir}/a.db`, events)
      yield* ingest(`${dir}/b.db`, [...events].reverse())
      const same = yield* diffFiles(`${dir}/a.db`, `${dir}/b.db`)
      assert.isTrue(same.identical)
      assert.isNull(same.firstDivergence)
      yield* deadLetter(`${dir}/b.db`, [events[1]!.id])
      const r = yield* diffFiles(`${dir}/a.db`, `${dir}/b.db`)
      assert.isFalse(r.identical)
      assert.strictEqual(r.deadLetterMismatch.count, 1)
      assert.strictEqual(r.firstDivergence?.event.id, events[1]!.id)
      assert.strictEqual(r.firstDivergence?.heldBy, "a")
    })
  )

  it.effect("an id both hold with different bodies, dead-lettered by A: B's copy is the divergence, and why", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const base = created("m1", "a", 1)
      const mine = updated("m1", "a", 5, { content: "A's body" })
      // Same id and stamp, another body: only the payload tells the copies apart.
      const theirs: Envelope = { ...mine, payload: { id: "m1", patch: { content: "B's body" }, updatedAt: 0 } }
      yield* ingest(`${dir}/a.db`, [base, mine])
      yield* ingest(`${dir}/b.db`, [theirs, base])
      yield* deadLetter(`${dir}/a.db`, [mine.id])
      const r = yield* diffFiles(`${dir}/a.db`, `${dir}/b.db`)
      assert.deepStrictEqual(
        r.conflicting.items.map((m) => [m.id, m.a.deadLettered, m.b.deadLettered]),
        [[mine.id, true, false]]
      )
      assert.strictEqual(r.firstDivergence?.heldBy, "b")
      assert.strictEqual(r.firstDivergence?.event.seq, 1, "B's copy (seq 1 in B), not A's (seq 2 in A)")
      assert.strictEqual(
        r.firstDivergence?.why,
        "both hold this id with different bodies; A dead-lettered its copy (the server rejected it), so only B's copy is folded"
      )
    })
  )

  it.effect("compares a replica with a server space", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const events = [created("m1", "a", 1), created("m2", "b", 2)]
      const unsent = updated("m2", "a", 3, { sensitive: true })
      yield* serve(`${dir}/server.db`, "s", events)
      yield* ingest(`${dir}/replica.db`, [...events, unsent])
      const r = yield* diffFiles(`${dir}/replica.db`, `${dir}/server.db`, { b: "s" })
      assert.strictEqual(r.b.kind, "server")
      assert.deepStrictEqual(
        r.onlyInA.items.map((e) => e.id),
        [unsent.id]
      )
      assert.strictEqual(r.onlyInB.count, 0)
      assert.strictEqual(r.firstDivergence?.event.id, unsent.id)
    })
  )

  it.effect.prop(
    "the first divergence is the first (hlc, id) prefix whose folds differ",
    [
      Arbitraries.mixedEventSet({ maxLength: 16 }).chain((set) =>
        fc.tuple(fc.constant(set), fc.array(fc.nat(2), { minLength: set.all.length, maxLength: set.all.length }))
      )
    ],
    ([[set, sides]]) =>
      Effect.gen(function* () {
        const dir = tempDir()
        // 0: both hold it, 1: only A, 2: only B.
        const a = set.all.filter((_, i) => sides[i] !== 2)
        const b = set.all.filter((_, i) => sides[i] !== 1)
        yield* ingest(`${dir}/a.db`, a)
        yield* ingest(`${dir}/b.db`, b)
        const r = yield* diffFiles(`${dir}/a.db`, `${dir}/b.db`)
        const union = [...set.all].sort((x, y) => (orderKey(x) < orderKey(y) ? -1 : 1))
        const inA = new Set(a.map((e) => e.id))
        const inB = new Set(b.map((e) => e.id))
        const foldOf = (events: ReadonlyArray<Envelope>) => sortStates(Fold.fold(knownEvents(events)))
        let expected: string | null = null
        for (let i = 0; i < union.length; i++) {
          const prefix = union.slice(0, i + 1)
          const fa = foldOf(prefix.filter((e) => inA.has(e.id)))
          const fb = foldOf(prefix.filter((e) => inB.has(e.id)))
          if (JSON.stringify(fa) !== JSON.stringify(fb)) {
            expected = union[i]!.id
            break
          }
        }
        assert.strictEqual(r.firstDivergence?.event.id ?? null, expected)
        assert.strictEqual(r.identical, a.length === b.length && sides.every((s) => s === 0))
      }),
    { fastCheck: { numRuns: 15 } }
  )
})
