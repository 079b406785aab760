/**
 * MemoryStore write paths: one normalization of tags and keywords on every path, existence checks that cannot race a
 * concurrent delete, and the counts and pages readers see (`stats.deleted`, `list` with `offset`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Option, Ref, TestClock, Tracer } from "effect"
import type { Envelope } from "../../src/domain/Events.js"
import * as Hlc from "../../src/domain/Hlc.js"
import * as IdGenerator from "../../src/domain/IdGenerator.js"
import * as Database from "../../src/store/Database.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"

const fresh = () => MemoryStore.layer({ filename: ":memory:" })

/** Every row a write touches. */
const rows = Effect.flatMap(Database.Database, (db) =>
  db.raw((h) => ({
    events: h.prepare(`SELECT * FROM events ORDER BY seq`).all(),
    outbox: h.prepare(`SELECT * FROM outbox ORDER BY seq`).all(),
    memories: h.prepare(`SELECT * FROM memories ORDER BY id`).all()
  }))
)

/** `attempt` fails with a ValidationError naming `message`, and writes nothing. */
const refused = (
  attempt: Effect.Effect<unknown, { readonly _tag: string; readonly message: string }>,
  message: string
) =>
  Effect.gen(function* () {
    const before = yield* rows
    const result = yield* Effect.either(attempt)
    if (Either.isRight(result)) return assert.fail(`expected a ValidationError (${message}), but it succeeded`)
    assert.strictEqual(result.left._tag, "ValidationError")
    assert.include(result.left.message, message)
    assert.deepStrictEqual(yield* rows, before)
  })

/** The tags and keywords the log holds for a memory, event by event (what other replicas will receive). */
const loggedLabels = (store: MemoryStore.MemoryStore, id: string) =>
  Effect.map(store.history(id), (events) =>
    events.map((e) => {
      const p = e.payload
      const fields = typeof p === "object" && p !== null && "patch" in p ? p.patch : p
      return typeof fields === "object" && fields !== null
        ? {
            tags: "tags" in fields ? fields.tags : undefined,
            keywords: "keywords" in fields ? fields.keywords : undefined
          }
        : {}
    })
  )

describe("MemoryStore: tags and keywords are normalized the same way on every write path", () => {
  it.effect("create, createMany and update drop duplicates (first one kept), in the view and in the log", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const made = yield* store.create({ content: "one", tags: ["b", "a", "b"], keywords: ["k", "k"] })
      assert.deepStrictEqual([made.tags, made.keywords], [["b", "a"], ["k"]])
      const [x, y] = yield* store.createMany([
        { content: "two", tags: ["t", "t", "u"] },
        { content: "three", keywords: ["z", "y", "z", "y"] }
      ])
      assert.deepStrictEqual(
        [x!.tags, y!.keywords],
        [
          ["t", "u"],
          ["z", "y"]
        ]
      )
      const updated = yield* store.update(made.id, { tags: ["b", "b"], keywords: ["j", "k", "j"] })
      assert.deepStrictEqual([updated.tags, updated.keywords], [["b"], ["j", "k"]])
      assert.deepStrictEqual(yield* store.get(made.id), updated)
      assert.deepStrictEqual(yield* loggedLabels(store, made.id), [
        { tags: ["b", "a"], keywords: ["k"] },
        { tags: ["b"], keywords: ["j", "k"] }
      ])
      assert.deepStrictEqual(yield* loggedLabels(store, x!.id), [{ tags: ["t", "u"], keywords: [] }])
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("an empty or blank tag or keyword is a ValidationError on create, createMany and update", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const m = yield* store.create({ content: "kept", tags: ["t"] })
      const message = "must not be empty or blank"
      for (const bad of ["", " ", "\t\n", "\u3000"]) {
        yield* refused(store.create({ content: "x", tags: ["ok", bad] }), `tags.1: tags and keywords ${message}`)
        yield* refused(store.create({ content: "x", keywords: [bad] }), `keywords.0: tags and keywords ${message}`)
        yield* refused(store.createMany([{ content: "fine" }, { content: "x", tags: [bad] }]), message)
        yield* refused(store.update(m.id, { tags: [bad] }), `tags.0: tags and keywords ${message}`)
        yield* refused(store.update(m.id, { content: "y", keywords: ["k", bad] }), message)
      }
      assert.deepStrictEqual(yield* store.get(m.id), m)
    }).pipe(Effect.provide(fresh()))
  )
})

/**
 * A store whose id generator can be held: `hold` makes the next `next` wait (after signalling `entered`) until
 * `release` completes. Event ids are taken after the existence check of `update`/`remove`, so a write can be
 * paused between its check and its commit.
 */
const heldIds = Effect.gen(function* () {
  const held = yield* Ref.make(Option.none<{ entered: Deferred.Deferred<void>; release: Deferred.Deferred<void> }>())
  const production = Effect.flatMap(IdGenerator.IdGenerator, (g) => g.next).pipe(Effect.provide(IdGenerator.layer))
  const next = Effect.gen(function* () {
    const hold = yield* Ref.getAndSet(held, Option.none())
    if (Option.isSome(hold)) {
      yield* Deferred.succeed(hold.value.entered, undefined)
      yield* Deferred.await(hold.value.release)
    }
    return yield* production
  })
  const layer = MemoryStore.layerWithIds({ filename: ":memory:" }).pipe(
    Layer.provide(Layer.succeed(IdGenerator.IdGenerator, { next }))
  )
  const hold = Effect.gen(function* () {
    const gate = { entered: yield* Deferred.make<void>(), release: yield* Deferred.make<void>() }
    yield* Ref.set(held, Option.some(gate))
    return gate
  })
  return { layer, hold }
})

/** Give a forked write every chance to finish; a write waiting for the database's write lock never does. */
const settle = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200 && Option.isNone(yield* Fiber.poll(fiber)); i++) yield* Effect.yieldNow()
  })

describe("MemoryStore: update and remove check the id inside their write transaction", () => {
  it.effect("a delete cannot slip between update's check and its commit", () =>
    Effect.gen(function* () {
      const { layer, hold } = yield* heldIds
      yield* Effect.gen(function* () {
        const store = yield* MemoryStore.MemoryStore
        const m = yield* store.create({ content: "raced" })
        const gate = yield* hold
        const updating = yield* Effect.fork(Effect.either(store.update(m.id, { content: "edited" })))
        // The update has checked the id and is about to stamp its event.
        yield* Deferred.await(gate.entered)
        const removing = yield* Effect.fork(Effect.either(store.remove(m.id)))
        yield* settle(removing)
        yield* Deferred.succeed(gate.release, undefined)
        const updated = yield* Fiber.join(updating)
        const removed = yield* Fiber.join(removing)
        const types = (yield* store.history(m.id)).map((e) => e.type)
        // Checked outside the transaction, the delete commits first and the update then writes its event and
        // fails on reading the result back: a failed call that left an event in the log.
        assert.isTrue(Either.isRight(updated), `update failed after writing: ${JSON.stringify(types)}`)
        assert.isTrue(Either.isRight(removed))
        assert.deepStrictEqual(types, ["memory.created", "memory.updated", "memory.deleted"])
      }).pipe(Effect.provide(layer))
    })
  )

  it.effect("of two removes of one id, exactly one succeeds and one tombstone is written", () =>
    Effect.gen(function* () {
      const { layer, hold } = yield* heldIds
      yield* Effect.gen(function* () {
        const store = yield* MemoryStore.MemoryStore
        const m = yield* store.create({ content: "removed twice" })
        const gate = yield* hold
        const first = yield* Effect.fork(Effect.either(store.remove(m.id)))
        yield* Deferred.await(gate.entered)
        const second = yield* Effect.fork(Effect.either(store.remove(m.id)))
        yield* settle(second)
        yield* Deferred.succeed(gate.release, undefined)
        const results = [yield* Fiber.join(first), yield* Fiber.join(second)]
        const types = (yield* store.history(m.id)).map((e) => e.type)
        assert.deepStrictEqual(types, ["memory.created", "memory.deleted"])
        assert.deepStrictEqual(
          results.map((r) => (Either.isRight(r) ? "ok" : r.left._tag)),
          ["ok", "MemoryNotFound"]
        )
      }).pipe(Effect.provide(layer))
    })
  )
})

describe("MemoryStore: what readers count and page through", () => {
  it.effect("stats.deleted counts memories created and deleted, like list: not tombstones of unknown ids", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const tombstone: Envelope = {
        id: "01890a5d-ac96-774b-bcce-000000000001",
        type: "memory.deleted",
        version: 1,
        payload: { id: "never-created-here", deletedAt: 1 },
        hlc: Hlc.encode({ wall: 1_000, counter: 0, clientId: "peer" }),
        clientId: "peer"
      }
      assert.strictEqual((yield* store.ingest([tombstone])).length, 1)
      assert.deepStrictEqual(yield* store.list({ includeDeleted: true }), [])
      const before = yield* store.stats
      assert.deepStrictEqual([before.memories, before.deleted, before.events], [0, 0, 1])

      const gone = yield* store.create({ content: "created, then deleted" })
      yield* store.remove(gone.id)
      yield* store.create({ content: "live" })
      const after = yield* store.stats
      const listed = yield* store.list({ includeDeleted: true })
      assert.deepStrictEqual([after.memories, after.deleted], [1, 1])
      assert.strictEqual(listed.filter((m) => m.deleted).length, after.deleted)
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("list pages with limit and offset, newest first, after filtering", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(1_700_000_000_000)
      const store = yield* MemoryStore.MemoryStore
      const ids: Array<string> = []
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust(1_000)
        const m = yield* store.create({ content: `memory ${i}`, tags: i % 2 === 0 ? ["even"] : ["odd"] })
        ids.push(m.id)
      }
      yield* store.remove(ids[3]!)
      const page = (options: MemoryStore.ListOptions) => Effect.map(store.list(options), (ms) => ms.map((m) => m.id))
      const [m0, m1, m2, m3, m4] = ids
      assert.deepStrictEqual(yield* page({}), [m4, m2, m1, m0])
      assert.deepStrictEqual(yield* page({ limit: 2, offset: 0 }), [m4, m2])
      assert.deepStrictEqual(yield* page({ limit: 2, offset: 1 }), [m2, m1])
      assert.deepStrictEqual(yield* page({ limit: 2, offset: 3 }), [m0])
      assert.deepStrictEqual(yield* page({ offset: 4 }), [])
      assert.deepStrictEqual(yield* page({ limit: 0 }), [])
      assert.deepStrictEqual(yield* page({ includeDeleted: true, limit: 2, offset: 1 }), [m3, m2])
      assert.deepStrictEqual(yield* page({ tag: "even", offset: 1 }), [m2, m0])
    }).pipe(Effect.provide(fresh()))
  )
})

describe("MemoryStore: tracing", () => {
  it.effect("create is a span named MemoryStore.create under an installed tracer", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const started: Array<string> = []
      const tracer = Tracer.make({
        span: (name, parent, context, links, startTime, kind) => {
          started.push(name)
          return Effect.runSync(
            Effect.map(Effect.tracer, (builtin) => builtin.span(name, parent, context, links, startTime, kind))
          )
        },
        context: (f) => f()
      })
      yield* store.create({ content: "traced" }).pipe(Effect.withTracer(tracer))
      assert.deepStrictEqual(started, ["MemoryStore.create"])
    }).pipe(Effect.provide(fresh()))
  )
})
