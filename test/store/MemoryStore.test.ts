import { assert, describe, it, layer } from "@effect/vitest"
import { Chunk, Effect, Either, FastCheck as fc, Fiber, Layer, Option, Random, Schema, Stream, TestClock } from "effect"
import type { Envelope } from "../../src/domain/Events.js"
import * as Hlc from "../../src/domain/Hlc.js"
import * as IdGenerator from "../../src/domain/IdGenerator.js"
import { CreateInput, withDefaults, type Memory, type Patch } from "../../src/domain/Memory.js"
import * as Database from "../../src/store/Database.js"
import type { StorageError, ValidationError } from "../../src/store/Errors.js"
import * as Materializer from "../../src/store/Materializer.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as Replay from "../../src/store/Replay.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"

const fresh = () => MemoryStore.layer({ filename: ":memory:" })
/** Deterministic ids and client id: ids from the `Random` in context, time from the `TestClock`. */
const seeded = (clientId: string) =>
  MemoryStore.layerWithIds({ filename: ":memory:", clientId }).pipe(Layer.provide(IdGenerator.layerRandom))

/** Every row of every table a write may touch: a failed write must leave all of it as it was. */
const snapshot = Effect.gen(function* () {
  const db = yield* Database.Database
  return yield* db.raw((h) => ({
    events: h.prepare(`SELECT * FROM events ORDER BY seq`).all(),
    outbox: h.prepare(`SELECT * FROM outbox ORDER BY seq`).all(),
    memories: h.prepare(`SELECT * FROM memories ORDER BY id`).all(),
    fts: h.prepare(`SELECT rowid, content, tags FROM memories_fts ORDER BY rowid`).all(),
    meta: h.prepare(`SELECT * FROM memsync_meta ORDER BY key`).all()
  }))
})

/** Run `attempt`, expect it to fail with `tag`, and check that the database did not change. */
const failsCleanly = <E extends { readonly _tag: string }>(attempt: Effect.Effect<unknown, E>, tag: string) =>
  Effect.gen(function* () {
    const before = yield* snapshot
    const result = yield* Effect.either(attempt)
    // Not Effect.flip: a success would then fail the test with the whole (possibly 64 KiB) value as its message.
    if (Either.isRight(result)) return assert.fail(`expected ${tag}, but it succeeded`)
    const error = result.left
    assert.strictEqual(error._tag, tag)
    const after = yield* snapshot
    assert.deepStrictEqual(after, before)
    return error
  })

/** A remote event written by another client. */
const remote = (over: Partial<Envelope> & Pick<Envelope, "id" | "type" | "payload">, wall = 5_000): Envelope => ({
  version: 1,
  hlc: Hlc.encode({ wall, counter: 0, clientId: "remote-1" }),
  clientId: "remote-1",
  ...over
})
const eid = (n: number) => `01890a5d-ac96-774b-bcce-${String(n).padStart(12, "0")}`

/** Wait until a forked watcher is parked on its subscription (so a publish cannot slip past it). */
const awaitSuspended = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 100; i++) {
      const status = yield* fiber.status
      if (status._tag === "Suspended") return
      yield* Effect.yieldNow()
    }
    assert.fail("watcher never subscribed")
  })

/** Join a watcher that should already have what it waits for; fail (instead of hanging) when it does not. */
const joinSoon = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 100; i++) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) return yield* done.value
      yield* Effect.yieldNow()
    }
    yield* Fiber.interrupt(fiber)
    return assert.fail("the watcher did not receive the expected changes")
  })

describe("MemoryStore: writes and reads", () => {
  it.effect("create, get, update, remove, list, history, stats", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(1_700_000_000_000)
      const store = yield* MemoryStore.MemoryStore
      const m = yield* store.create({ content: "buy milk", tags: ["home", "home"], importance: 0.2 })
      assert.deepStrictEqual(m, {
        id: m.id,
        content: "buy milk",
        category: "general",
        tags: ["home"],
        keywords: [],
        importance: 0.2,
        sensitive: false,
        createdAt: 1_700_000_000_000,
        updatedAt: 1_700_000_000_000
      })
      assert.deepStrictEqual(yield* store.get(m.id), m)

      yield* TestClock.adjust(1000)
      const u = yield* store.update(m.id, { content: "buy oat milk", sensitive: true })
      assert.deepStrictEqual(u, { ...m, content: "buy oat milk", sensitive: true, updatedAt: 1_700_000_001_000 })
      assert.deepStrictEqual(yield* store.get(m.id), u)

      const other = yield* store.create({ content: "call mum", category: "family" })
      assert.deepStrictEqual(
        (yield* store.list({ category: "family" })).map((x) => x.id),
        [other.id]
      )
      assert.deepStrictEqual(
        (yield* store.list({ tag: "home" })).map((x) => x.id),
        [m.id]
      )

      yield* store.remove(m.id)
      assert.deepStrictEqual(
        (yield* store.list()).map((x) => x.id),
        [other.id]
      )
      const withDeleted = yield* store.list({ includeDeleted: true })
      assert.deepStrictEqual(
        withDeleted.map((x) => [x.id, x.deleted]).sort(),
        [
          [m.id, true],
          [other.id, false]
        ].sort()
      )

      const history = yield* store.history(m.id)
      assert.deepStrictEqual(
        history.map((e) => e.type),
        ["memory.created", "memory.updated", "memory.deleted"]
      )
      for (let i = 1; i < history.length; i++) assert.isTrue(history[i - 1]!.hlc < history[i]!.hlc)
      for (const e of history) assert.strictEqual(e.clientId, store.clientId)

      const stats = yield* store.stats
      assert.deepStrictEqual(stats, {
        memories: 1,
        deleted: 1,
        events: 4,
        eventsByType: { "memory.created": 2, "memory.updated": 1, "memory.deleted": 1 },
        unknownEvents: 0,
        pendingOutbox: 4,
        deadLetters: 0
      })
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("ids and stamps are reproducible with layerWithIds + IdGenerator.layerRandom under one seed", () =>
    Effect.gen(function* () {
      const run = (seed: string) =>
        Effect.gen(function* () {
          const store = yield* MemoryStore.MemoryStore
          assert.strictEqual(store.clientId, "sim-1")
          const a = yield* store.create({ content: "one" })
          const b = yield* store.create({ content: "two" })
          const events = [...(yield* store.history(a.id)), ...(yield* store.history(b.id))]
          return events.map((e) => `${e.id} ${e.hlc} ${JSON.stringify(e.payload)}`)
        }).pipe(Effect.provide(seeded("sim-1")), Effect.withRandom(Random.make(seed)))
      const first = yield* run("s")
      assert.deepStrictEqual(yield* run("s"), first)
      assert.notDeepEqual(yield* run("t"), first)
    })
  )
})

/** What a batch of creates adds to a store, with ids and timestamps stripped (a multiset of field values). */
const observeCreates = (
  store: MemoryStore.MemoryStore,
  write: Effect.Effect<ReadonlyArray<Memory>, ValidationError | StorageError>
) =>
  Effect.gen(function* () {
    const before = yield* store.stats
    const returned = yield* write
    const after = yield* store.stats
    // What a write returns is what the view holds.
    assert.deepStrictEqual(yield* Effect.forEach(returned, (m) => store.get(m.id)), returned)
    return {
      fields: fieldsMultiset(returned),
      ids: new Set(returned.map((m) => m.id)).size,
      memories: after.memories - before.memories,
      events: after.events - before.events,
      created: (after.eventsByType["memory.created"] ?? 0) - (before.eventsByType["memory.created"] ?? 0),
      outbox: after.pendingOutbox - before.pendingOutbox
    }
  })
const fieldsMultiset = (ms: ReadonlyArray<Memory>): Array<string> =>
  ms
    .map(({ content, category, tags, keywords, importance, sensitive }) =>
      JSON.stringify([content, category, tags, keywords, importance, sensitive])
    )
    .sort()

const decodeInput = Schema.decodeSync(CreateInput)

// Both ways write to one database shared by all runs (opening one per run would dominate the cost), and are
// compared by what each adds: fields, memories, events and outbox rows.
layer(fresh())("MemoryStore.createMany (one database for all runs)", (it) => {
  it.effect.prop(
    "gives the same view, events and outbox rows as one create per input",
    [fc.array(Arbitraries.createInput, { maxLength: 12 })],
    ([inputs]) =>
      Effect.gen(function* () {
        const store = yield* MemoryStore.MemoryStore
        const many = yield* observeCreates(store, store.createMany(inputs))
        const one = yield* observeCreates(
          store,
          Effect.forEach(inputs, (i) => store.create(i))
        )
        assert.deepStrictEqual(many, one)
        // And both are what the inputs say, defaults filled in: one memory, one event, one outbox row per input.
        const expected = fieldsMultiset(
          inputs.map((i) => ({ id: "", ...withDefaults(decodeInput(i)), createdAt: 0, updatedAt: 0 }))
        )
        assert.deepStrictEqual(many, {
          fields: expected,
          ids: inputs.length,
          memories: inputs.length,
          events: inputs.length,
          created: inputs.length,
          outbox: inputs.length
        })
      }),
    { fastCheck: { numRuns: 200 } }
  )
})

describe("MemoryStore.createMany", () => {
  it.effect("is all or nothing: one bad input writes nothing", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      yield* store.create({ content: "already here" })
      const inputs: Array<CreateInput> = [{ content: "fine" }, { content: "   " }, { content: "also fine" }]
      yield* failsCleanly(store.createMany(inputs), "ValidationError")
      assert.deepStrictEqual(yield* store.createMany([]), [])
      assert.strictEqual((yield* store.stats).events, 1)
    }).pipe(Effect.provide(fresh()))
  )
})

describe("MemoryStore: bad input fails with a typed error and changes nothing", () => {
  it.effect("invalid creates and updates are ValidationErrors", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const m = yield* store.create({ content: "keep me", tags: ["t"] })
      const validation = [
        store.create({ content: "a".repeat(64 * 1024 + 1) }),
        store.create({ content: "é".repeat(32 * 1024) + "a" }),
        store.create({ content: "" }),
        store.create({ content: " \n\t " }),
        store.create({ content: "x", importance: 2 }),
        store.create({ content: "x", importance: Number.NaN }),
        store.create({ content: "x", tags: [""] }),
        store.update(m.id, {}),
        store.update(m.id, { importance: -0.1 }),
        store.update(m.id, { content: "" }),
        store.update(m.id, { content: "😀".repeat(16 * 1024) + "!" })
      ]
      for (const attempt of validation) {
        const e = yield* failsCleanly(attempt, "ValidationError")
        assert.isTrue(e.message.length > 0)
      }
      // Exactly at the limit is fine.
      yield* store.create({ content: "é".repeat(32 * 1024) })
      assert.deepStrictEqual(yield* store.get(m.id), m)
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("unknown ids are MemoryNotFound (deleted: false); deleted ids say deleted: true", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const gone = yield* store.create({ content: "to delete" })
      yield* store.remove(gone.id)
      for (const [id, deleted] of [
        ["no-such-id", false],
        [gone.id, true]
      ] as const) {
        for (const attempt of [store.get(id), store.update(id, { content: "x" }), store.remove(id)]) {
          const e = yield* failsCleanly(attempt, "MemoryNotFound")
          assert.deepStrictEqual(
            { id: e._tag === "MemoryNotFound" ? e.id : "", deleted: e._tag === "MemoryNotFound" && e.deleted },
            { id, deleted }
          )
        }
      }
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("a memory known only from an update (its create not here yet) is not found", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      yield* store.ingest([
        remote({ id: eid(1), type: "memory.updated", payload: { id: "later", patch: { content: "x" }, updatedAt: 1 } })
      ])
      const e = yield* failsCleanly(store.get("later"), "MemoryNotFound")
      assert.isFalse(e._tag === "MemoryNotFound" && e.deleted)
      yield* failsCleanly(store.update("later", { content: "y" }), "MemoryNotFound")
      assert.deepStrictEqual(yield* store.list({ includeDeleted: true }), [])
    }).pipe(Effect.provide(fresh()))
  )
})

describe("MemoryStore.search", () => {
  it.effect("treats FTS syntax as text: never fails, still finds the literal words", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const target = yield* store.create({
        content: 'she said "hello" AND left (quickly): near-x NEAR(y) star* not',
        tags: ["col:tag"]
      })
      const other = yield* store.create({ content: "completely unrelated words", keywords: ["filler"] })
      const ids = (q: string) => Effect.map(store.search(q), (hits) => hits.map((h) => h.memory.id).sort())

      const findsTarget = ['"hello"', "hello", "AND", "and", "(quickly", "quickly)", "left:", "-x", "NEAR(", "NEAR(y"]
      for (const q of [...findsTarget, "star*", "sta*", '"she said', "NOT", "col:tag", "x AND y"]) {
        assert.deepStrictEqual(yield* ids(q), [target.id], q)
      }
      assert.deepStrictEqual(yield* ids("words"), [other.id])
      assert.deepStrictEqual(yield* ids("unrel*"), [other.id])
      assert.deepStrictEqual(yield* ids("filler"), [other.id])
      // Words are ANDed, and OR is a word like any other (as an operator, these would match both memories).
      assert.deepStrictEqual(yield* ids("hello words"), [])
      assert.deepStrictEqual(yield* ids("hello OR words"), [])
      // Nothing searchable at all: an empty result, not an error.
      for (const q of ['"', "*", "(", ":", "-", "", "   ", '" * ( : - )', "**", "NEAR("]) {
        const hits = yield* store.search(q)
        if (q === "NEAR(")
          assert.deepStrictEqual(
            hits.map((h) => h.memory.id),
            [target.id]
          )
        else assert.deepStrictEqual(hits, [], q)
      }
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("ranks better matches first and hides deleted and updated-away content", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const weak = yield* store.create({ content: "a long note that mentions apple once among many other words" })
      const strong = yield* store.create({ content: "apple apple", tags: ["apple"] })
      const hits = yield* store.search("apple")
      assert.deepStrictEqual(
        hits.map((h) => h.memory.id),
        [strong.id, weak.id]
      )
      assert.isTrue(hits[0]!.rank <= hits[1]!.rank)
      yield* store.remove(strong.id)
      yield* store.update(weak.id, { content: "pears only" })
      assert.deepStrictEqual(yield* store.search("apple"), [])
      assert.deepStrictEqual(
        (yield* store.search("pears")).map((h) => h.memory.id),
        [weak.id]
      )
    }).pipe(Effect.provide(fresh()))
  )
})

describe("MemoryStore.ingest", () => {
  it.effect("keeps an unknown event type in the log, counts it, and skips it in the view", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const view = yield* Materializer.Materializer
      const m = yield* store.create({ content: "stay as you are" })
      const before = yield* view.readStates()
      const unknown = [
        remote({ id: eid(1), type: "memory.archived", payload: { id: m.id, reason: "old" } }),
        remote({ id: eid(2), type: "memory.created", version: 2, payload: { id: m.id, content: "v2 shape" } }),
        remote({
          id: eid(3),
          type: "memory.updated",
          version: 2,
          payload: { id: "brand-new", patch: { content: "z" } }
        })
      ]
      const added = yield* store.ingest(unknown)
      assert.deepStrictEqual(
        added.map((e) => e.id),
        unknown.map((e) => e.id)
      )
      assert.deepStrictEqual(yield* view.readStates(), before)
      assert.deepStrictEqual(yield* store.get(m.id), m)
      const history = yield* store.history(m.id)
      assert.deepStrictEqual(
        history.map((e) => e.type),
        ["memory.created", "memory.archived", "memory.created"]
      )
      assert.deepStrictEqual(history[1]!.payload, { id: m.id, reason: "old" })
      const stats = yield* store.stats
      assert.strictEqual(stats.unknownEvents, 3)
      assert.strictEqual(stats.events, 4)
      assert.strictEqual(stats.eventsByType["memory.archived"], 1)
      assert.strictEqual(stats.pendingOutbox, 1)
      // Ingesting them again is a no-op, and a rebuild agrees with the view.
      assert.deepStrictEqual(yield* store.ingest(unknown), [])
      assert.strictEqual((yield* store.stats).events, 4)
      yield* Replay.rebuild()
      assert.deepStrictEqual(yield* view.readStates(), before)
      assert.isTrue((yield* Replay.verify()).ok)
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("folds remote events, advances the clock past them, and writes no outbox rows", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(1_000)
      const store = yield* MemoryStore.MemoryStore
      const ahead = 9_999_000
      const created = remote(
        {
          id: eid(10),
          type: "memory.created",
          payload: {
            id: "r1",
            content: "from afar",
            category: "general",
            tags: [],
            keywords: [],
            importance: 0.5,
            sensitive: false,
            createdAt: 1,
            updatedAt: 1
          }
        },
        ahead
      )
      yield* store.ingest([created])
      assert.strictEqual((yield* store.get("r1")).content, "from afar")
      assert.strictEqual((yield* store.stats).pendingOutbox, 0)
      // A local write after seeing the remote stamp sorts after it, although the local wall clock is far behind.
      const u = yield* store.update("r1", { content: "edited here" })
      assert.strictEqual(u.content, "edited here")
      const [, mine] = yield* store.history("r1")
      assert.isTrue(mine!.hlc > created.hlc, `${mine!.hlc} > ${created.hlc}`)
      assert.strictEqual(Hlc.decode(mine!.hlc)?.wall, ahead)
    }).pipe(Effect.provide(fresh()))
  )
})

describe("MemoryStore: deeply nested input", () => {
  // A payload thousands of arrays deep overflowed the call stack in Effect's schema error formatter (a defect that
  // crashed the ingest); the store must answer with typed results instead.
  const deep = (n: number): unknown => {
    let v: unknown = []
    for (let i = 1; i < n; i++) v = [v]
    return v
  }

  it.effect("ingest stores deep events, skips them in the view and keeps going", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const view = yield* Materializer.Materializer
      const good = remote({
        id: eid(3),
        type: "memory.updated",
        payload: { id: "r1", patch: { content: "fine" }, updatedAt: 2 }
      })
      const events = [
        remote({ id: eid(1), type: "memory.created", payload: { id: "r1", content: "x", tags: deep(5000) } }),
        remote({ id: eid(2), type: "memory.updated", payload: deep(5000) }),
        remote({ id: eid(4), type: "memory.archived", payload: { id: "r1", why: deep(5000) } }),
        good
      ]
      const added = yield* store.ingest(events)
      assert.deepStrictEqual(
        added.map((e) => e.id),
        events.map((e) => e.id)
      )
      // Only the valid update reaches the view (it has no create, so the memory stays hidden).
      const states = yield* view.readStates()
      assert.deepStrictEqual(Array.from(states.keys()), ["r1"])
      assert.isFalse(states.get("r1")!.created)
      // The log still reads back and replays.
      assert.strictEqual((yield* store.history("r1")).length, 3)
      yield* Replay.rebuild()
      assert.isTrue((yield* Replay.verify()).ok)
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("deep fields in a create or update are ValidationErrors, not crashes", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const m = yield* store.create({ content: "keep me" })
      // The casts stand for a JavaScript caller, who can pass anything whatever the types say.
      const attempts = [
        store.create({ content: deep(100_000) } as CreateInput),
        store.create({ content: "x", tags: deep(100_000) } as CreateInput),
        store.update(m.id, { tags: deep(100_000) } as Patch)
      ]
      for (const attempt of attempts) {
        const e = yield* failsCleanly(attempt, "ValidationError")
        assert.include(e.message, "nesting depth limit")
      }
    }).pipe(Effect.provide(fresh()))
  )
})

describe("MemoryStore.changes", () => {
  it.effect("a watcher forked before a create receives a local Change with the memory id", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const watcher = yield* store.changes.pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      yield* awaitSuspended(watcher)
      const m = yield* store.create({ content: "watch me" })
      const [change] = Chunk.toArray(yield* joinSoon(watcher))
      assert.strictEqual(change?.source, "local")
      assert.deepStrictEqual(change?.memoryIds, [m.id])
      assert.deepStrictEqual(
        change?.eventIds,
        (yield* store.history(m.id)).map((e) => e.id)
      )
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("an ingest publishes source remote; failed writes and re-deliveries publish nothing", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const watcher = yield* store.changes.pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      yield* awaitSuspended(watcher)
      const e = remote({ id: eid(20), type: "memory.deleted", payload: { id: "r2", deletedAt: 3 } })
      yield* store.ingest([e])
      yield* store.ingest([e])
      yield* Effect.flip(store.create({ content: "" }))
      yield* Effect.flip(store.update("nope", { content: "x" }))
      const m = yield* store.create({ content: "second change" })
      const changes = Chunk.toArray(yield* joinSoon(watcher))
      assert.deepStrictEqual(changes, [
        { source: "remote", memoryIds: ["r2"], eventIds: [e.id] },
        { source: "local", memoryIds: [m.id], eventIds: changes[1]!.eventIds }
      ])
      assert.strictEqual(changes[1]!.eventIds.length, 1)
    }).pipe(Effect.provide(fresh()))
  )
})

// Text that SQLite cannot store as written (unpaired surrogates) must be refused, never silently altered.
const utf16Text = (maxLength: number) =>
  fc
    .array(fc.oneof(fc.char16bits(), fc.constantFrom("\uD83D", "\uDE00", "😀", "é")), { maxLength })
    .map((cs) => cs.join(""))
const survivesUtf8 = (s: string) => Buffer.from(s, "utf8").toString("utf8") === s

layer(fresh())("MemoryStore: text round trips (one database for all runs)", (it) => {
  it.effect.prop(
    "what create returns is what get and list read back, for any UTF-16 text, or it is a ValidationError",
    [utf16Text(12), utf16Text(6), utf16Text(4)],
    ([content, category, tag]) =>
      Effect.gen(function* () {
        const store = yield* MemoryStore.MemoryStore
        const storable = survivesUtf8(content) && survivesUtf8(category)
        const result = yield* Effect.either(store.create({ content: `w ${content}`, category, tags: [`t${tag}`] }))
        if (Either.isLeft(result)) {
          assert.strictEqual(result.left._tag, "ValidationError")
          assert.isFalse(storable, `refused storable text: ${JSON.stringify(result.left.message)}`)
          return
        }
        assert.isTrue(storable, "accepted text that SQLite cannot store as written")
        const m = result.right
        assert.deepStrictEqual(yield* store.get(m.id), m)
        const listed = yield* store.list({ category, limit: 10_000 })
        assert.deepStrictEqual(
          listed.find((x) => x.id === m.id),
          { ...m, deleted: false }
        )
      }),
    { fastCheck: { numRuns: 200 } }
  )
})
