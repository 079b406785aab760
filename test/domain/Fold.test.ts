import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import type { MemoryCreated, MemoryDeleted, MemoryEvent, MemoryUpdated } from "../../src/domain/Events.js"
import * as Fold from "../../src/domain/Fold.js"
import * as Hlc from "../../src/domain/Hlc.js"
import type { MemoryFields, Patch } from "../../src/domain/Memory.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"

// Given/when/then over hand-made events. `at(wall)` stamps on client "c" unless told otherwise; event ids are
// UUID-shaped and sort by their last digits, so ties on the stamp are decided by them.
const ID = "m1"
const at = (wall: number, counter = 0, clientId = "c") => Hlc.encode({ wall, counter, clientId })
const eid = (n: number) => `00000000-0000-7000-8000-${String(n).padStart(12, "0")}`
const fields: MemoryFields = {
  content: "original",
  category: "general",
  tags: ["t"],
  keywords: ["k"],
  importance: 0.5,
  sensitive: false
}
const clientOf = (hlc: string) => Hlc.decode(hlc)!.clientId

const create = (n: number, hlc: string, over: Partial<MemoryFields> = {}, id = ID): MemoryCreated => ({
  id: eid(n),
  type: "memory.created",
  version: 1,
  hlc,
  clientId: clientOf(hlc),
  payload: { id, ...fields, ...over, createdAt: 100, updatedAt: 100 }
})
const update = (n: number, hlc: string, patch: Patch, updatedAt = 200, id = ID): MemoryUpdated => ({
  id: eid(n),
  type: "memory.updated",
  version: 1,
  hlc,
  clientId: clientOf(hlc),
  payload: { id, patch, updatedAt }
})
const remove = (n: number, hlc: string, id = ID): MemoryDeleted => ({
  id: eid(n),
  type: "memory.deleted",
  version: 1,
  hlc,
  clientId: clientOf(hlc),
  payload: { id, deletedAt: 300 }
})

const stateOf = (events: ReadonlyArray<MemoryEvent>, id = ID): Fold.MemoryState => {
  const s = Fold.fold(events).get(id)
  assert.isDefined(s)
  return s!
}
/** Every order of a small list (the fold must not care). */
const permutations = <A>(xs: ReadonlyArray<A>): Array<Array<A>> =>
  xs.length <= 1
    ? [Array.from(xs)]
    : xs.flatMap((x, i) => permutations(xs.filter((_, j) => j !== i)).map((p) => [x, ...p]))
const inEveryOrder = (events: ReadonlyArray<MemoryEvent>, check: (s: Fold.MemoryState) => void) => {
  for (const order of permutations(events)) check(stateOf(order))
}

describe("Fold: a single memory's life", () => {
  it("a create makes a visible memory with every field", () => {
    const s = stateOf([create(1, at(10))])
    assert.isTrue(Fold.isVisible(s))
    assert.deepStrictEqual(Fold.toMemory(s), { id: ID, ...fields, createdAt: 100, updatedAt: 100 })
  })

  it("an update before its create is hidden; once the create arrives the newer update's fields win", () => {
    const early = stateOf([update(2, at(20), { content: "patched", importance: 0.9 })])
    assert.isFalse(early.created)
    assert.isFalse(Fold.isVisible(early))
    assert.isUndefined(Fold.toMemory(early))
    assert.strictEqual(early.content?.value, "patched")

    inEveryOrder([update(2, at(20), { content: "patched", importance: 0.9 }), create(1, at(10))], (s) => {
      assert.isTrue(Fold.isVisible(s))
      assert.deepStrictEqual(Fold.toMemory(s), {
        id: ID,
        ...fields,
        content: "patched",
        importance: 0.9,
        createdAt: 100,
        updatedAt: 200
      })
    })
  })

  it("an update older than the create loses to the create's values", () => {
    inEveryOrder([create(1, at(10)), update(2, at(5), { content: "stale" }, 50)], (s) => {
      assert.strictEqual(s.content?.value, "original")
      assert.strictEqual(s.updatedAt?.value, 100)
    })
  })

  it("a delete wins over earlier AND later updates, in any order", () => {
    inEveryOrder(
      [create(1, at(10)), update(2, at(15), { content: "before" }), remove(3, at(20)), update(4, at(30), { tags: [] })],
      (s) => {
        assert.isTrue(s.deleted)
        assert.isFalse(Fold.isVisible(s))
        assert.strictEqual(s.deletedAt?.value, 300)
        // The registers still follow LWW (a rebuild must agree), but readers never see them.
        assert.deepStrictEqual(s.tags?.value, [])
      }
    )
  })

  it("a create that sorts after the delete does not resurrect the memory", () => {
    inEveryOrder([remove(3, at(20)), create(1, at(50))], (s) => {
      assert.isTrue(s.created)
      assert.isTrue(s.deleted)
      assert.isFalse(Fold.isVisible(s))
    })
  })

  it("a delete alone is a tombstone for a memory never seen", () => {
    const s = stateOf([remove(3, at(20))])
    assert.deepStrictEqual(s, {
      id: ID,
      created: false,
      deleted: true,
      deletedAt: { value: 300, key: `${at(20)} ${eid(3)}` }
    })
  })

  it("ties on the stamp are broken by the event id", () => {
    const hlc = at(20, 3)
    inEveryOrder(
      [create(1, at(10)), update(7, hlc, { content: "seven" }), update(8, hlc, { content: "eight" })],
      (s) => {
        assert.strictEqual(s.content?.value, "eight")
        assert.strictEqual(s.content?.key, `${hlc} ${eid(8)}`)
      }
    )
    inEveryOrder([update(9, hlc, { category: "nine" }), update(8, hlc, { category: "eight" })], (s) =>
      assert.strictEqual(s.category?.value, "nine")
    )
  })

  it("equal walls and counters are ordered by client id, a prefix first", () => {
    inEveryOrder([update(9, at(20, 1, "a-b"), { content: "a-b" }), update(1, at(20, 1, "a"), { content: "a" })], (s) =>
      assert.strictEqual(s.content?.value, "a-b")
    )
  })

  it("the counter orders events within one millisecond", () => {
    inEveryOrder([update(9, at(20, 1), { content: "first" }), update(1, at(20, 2), { content: "second" })], (s) =>
      assert.strictEqual(s.content?.value, "second")
    )
  })

  it("is per-field LWW: concurrent updates of different fields both survive", () => {
    inEveryOrder(
      [
        create(1, at(10)),
        update(2, at(20, 0, "a"), { content: "from a" }, 201),
        update(3, at(20, 0, "b"), { tags: ["from-b"] }, 202),
        update(4, at(15, 0, "z"), { content: "older", importance: 1 }, 150)
      ],
      (s) => {
        const m = Fold.toMemory(s)
        assert.deepStrictEqual(m, {
          id: ID,
          ...fields,
          content: "from a",
          tags: ["from-b"],
          importance: 1,
          createdAt: 100,
          updatedAt: 202
        })
      }
    )
  })

  it("keeps memories apart", () => {
    const states = Fold.fold([
      create(1, at(10), {}, "x"),
      create(2, at(10), { content: "y" }, "y"),
      remove(3, at(11), "x")
    ])
    assert.deepStrictEqual([...states.keys()].sort(), ["x", "y"])
    assert.isTrue(states.get("x")!.deleted)
    assert.strictEqual(states.get("y")!.content?.value, "y")
    assert.isFalse(states.get("y")!.deleted)
  })

  it("fold of nothing is empty", () => {
    assert.strictEqual(Fold.fold([]).size, 0)
  })
})

// States of ONE memory, made from generated events (so registers carry realistic keys).
const oneMemory = { memoryIds: ["m"] }
const stateArb = Arbitraries.memoryEvent(oneMemory).map(Fold.fromEvent)
const statesArb = fc
  .uniqueArray(Arbitraries.memoryEvent(oneMemory), { selector: (e) => e.id, minLength: 3, maxLength: 3 })
  .map((es) => es.map(Fold.fromEvent) as [Fold.MemoryState, Fold.MemoryState, Fold.MemoryState])
const sortedStates = (m: Map<string, Fold.MemoryState>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1))

describe("Fold.merge is a semilattice join", () => {
  it.prop(
    "commutative, associative, idempotent",
    [statesArb],
    ([[a, b, c]]) => {
      assert.deepStrictEqual(Fold.merge(a, b), Fold.merge(b, a))
      assert.deepStrictEqual(Fold.merge(Fold.merge(a, b), c), Fold.merge(a, Fold.merge(b, c)))
      assert.deepStrictEqual(Fold.merge(a, a), a)
      const ab = Fold.merge(a, b)
      assert.deepStrictEqual(Fold.merge(ab, b), ab)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "each register of a join holds the greater key of its inputs",
    [stateArb, stateArb],
    ([a, b]) => {
      const m = Fold.merge(a, b)
      for (const r of Fold.REGISTERS) {
        const keys = [a[r]?.key, b[r]?.key].filter((k): k is string => k !== undefined).sort()
        assert.strictEqual(m[r]?.key, keys[keys.length - 1])
      }
      assert.strictEqual(m.created, a.created || b.created)
      assert.strictEqual(m.deleted, a.deleted || b.deleted)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "fold depends only on the set of events: any order, any duplication",
    [Arbitraries.eventSet({ maxLength: 25 }), Arbitraries.deliveryPlan()],
    ([events, plan]) => {
      const batches = Arbitraries.planDelivery(events, plan)
      const reference = sortedStates(Fold.fold(events))
      assert.deepStrictEqual(sortedStates(Fold.fold(batches.flat())), reference)
      // Folding batch by batch and merging the partial maps gives the same states.
      const merged = new Map<string, Fold.MemoryState>()
      for (const batch of batches) {
        for (const s of Fold.fold(batch).values()) {
          const prev = merged.get(s.id)
          merged.set(s.id, prev === undefined ? s : Fold.merge(prev, s))
        }
      }
      assert.deepStrictEqual(sortedStates(merged), reference)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "absorb writes into a state exactly what merge with the event's own state gives",
    [Arbitraries.eventSet({ maxLength: 25 }), Arbitraries.deliveryPlan()],
    ([events, plan]) => {
      // Duplicates included: absorbing an event twice must change nothing, as merge is idempotent.
      const delivered = Arbitraries.planDelivery(events, plan).flat()
      const absorbed = new Map<string, Fold.MutableState>()
      for (const e of delivered) {
        const s = absorbed.get(e.payload.id)
        if (s === undefined) absorbed.set(e.payload.id, Fold.fromEvent(e))
        else Fold.absorb(s, e)
      }
      assert.deepStrictEqual(sortedStates(absorbed), sortedStates(Fold.fold(events)))
      for (const e of delivered) {
        const base = Fold.fold(delivered.filter((x) => x.payload.id === e.payload.id && x.id !== e.id))
        const before = base.get(e.payload.id)
        if (before === undefined) continue
        const target: Fold.MutableState = { ...before }
        Fold.absorb(target, e)
        assert.deepStrictEqual(target, Fold.merge(before, Fold.fromEvent(e)))
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "a memory is visible iff some create and no delete is held",
    [Arbitraries.eventSet({ maxLength: 25 })],
    ([events]) => {
      for (const [id, s] of Fold.fold(events)) {
        const touching = events.filter((e) => e.payload.id === id)
        const hasCreate = touching.some((e) => e.type === "memory.created")
        const hasDelete = touching.some((e) => e.type === "memory.deleted")
        assert.strictEqual(Fold.isVisible(s), hasCreate && !hasDelete)
        assert.strictEqual(Fold.toMemory(s) !== undefined, hasCreate)
      }
    },
    { fastCheck: { numRuns: 200 } }
  )
})
