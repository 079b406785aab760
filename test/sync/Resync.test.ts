/**
 * Resync's agreement check under concurrency: a push recorded while a resync runs is normal life, not disagreement;
 * and a push answer that arrives before a reset is never recorded after it. First contact: no server seq is recorded
 * before the replica knows which server log it talks to (its epoch).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Ref, TestClock } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as IdGenerator from "../../src/domain/IdGenerator.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as SyncEngine from "../../src/sync/SyncEngine.js"
import { TransientError } from "../../src/sync/Errors.js"
import { Transport } from "../../src/sync/Transport.js"
import * as MemoryTransport from "../../src/testing/MemoryTransport.js"
import { makeReplica, makeServer, SPACE, TOKEN, waitUntil } from "./harness.js"

describe("resync agreement", () => {
  it.scoped("a push recorded right after resync asked for the head is not a disagreement", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      // Runs once, right after the next head request is answered (as a concurrent push fiber could).
      const afterHead = yield* Ref.make<Effect.Effect<void, unknown> | undefined>(undefined)
      const transport = Layer.effect(
        Transport,
        Effect.map(MemoryTransport.make(server, { [TOKEN]: SPACE }), ({ transport: inner }) =>
          Transport.of({
            ...inner,
            head: (t) =>
              Effect.tap(inner.head(t), () =>
                Effect.orDie(Effect.flatMap(Ref.getAndSet(afterHead, undefined), (f) => f ?? Effect.void))
              )
          })
        )
      )
      const store = MemoryStore.layerWithIds({ filename: ":memory:", clientId: "a" }).pipe(
        Layer.provide(IdGenerator.layerRandom)
      )
      const ctx = yield* Layer.build(
        SyncEngine.layer({ token: TOKEN, background: false }).pipe(Layer.provideMerge(Layer.merge(store, transport)))
      )
      const engine = Context.get(ctx, SyncEngine.SyncEngine)
      const replica = Context.get(ctx, MemoryStore.MemoryStore)
      const wire = Context.get(ctx, Transport)
      yield* replica.create({ content: "one" })
      yield* engine.syncNow

      yield* Ref.set(
        afterHead,
        Effect.gen(function* () {
          yield* replica.create({ content: "two" })
          const generation = yield* engine.ledger.generation
          const batch = yield* engine.ledger.outboxBatch(10)
          const answer = yield* wire.push(
            TOKEN,
            batch.map(({ seq: _seq, ...e }) => e)
          )
          yield* engine.ledger.recordPush(answer.results, 0, generation)
        })
      )
      assert.isFalse(yield* engine.resync, "no repair: the replica and the server agree")
      assert.strictEqual((yield* engine.ledger.counts).pending, 0)
    })
  )

  it.scoped("a push answer read before a reset is not recorded after it: the events stay queued", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
      yield* a.store.create({ content: "pending" })
      const ledger = a.engine.ledger
      const generation = yield* ledger.generation
      const [event] = yield* ledger.outboxBatch(10)
      yield* ledger.resetForEpoch("another-epoch")
      const outcome = yield* ledger.recordPush([{ status: "accepted", id: event!.id, seq: 7 }], 0, generation)
      assert.isUndefined(outcome)
      assert.strictEqual(yield* ledger.recordedUpTo, 0, "no seq from the old server's answer")
      assert.strictEqual((yield* ledger.counts).pending, 1, "still queued for the new server")
      const fresh = yield* ledger.recordPush(
        [{ status: "accepted", id: event!.id, seq: 1 }],
        0,
        yield* ledger.generation
      )
      assert.strictEqual(fresh?.acked, 1)
    })
  )
})

/** The replica's recorded server seqs, as `id → seq`, and its cursor and epoch. */
const bookkeeping = (a: Effect.Effect.Success<ReturnType<typeof makeReplica>>) =>
  a.database.raw((db) => ({
    seqs: Object.fromEntries(
      db.prepare(`SELECT event_id, seq FROM server_seqs`).raw().all() as Array<[string, number]>
    ),
    cursor: db.prepare(`SELECT value FROM sync_state WHERE key = 'cursor'`).pluck().get(),
    epoch: db.prepare(`SELECT value FROM sync_state WHERE key = 'epoch'`).pluck().get()
  }))

/** A transport whose head requests time out while `works` is false; every other call goes through. */
const headLostUnless =
  (works: Ref.Ref<boolean>) =>
  (inner: Transport): Transport =>
    Transport.of({
      ...inner,
      head: (t) =>
        Effect.flatMap(Ref.get(works), (ok) =>
          ok ? inner.head(t) : new TransientError({ kind: "timeout", message: "head lost" })
        )
    })

/**
 * Replica a (head requests switchable through `headWorks`) syncs a1 and a2 with one log, then its server is replaced
 * by another log (another epoch) into which replica b synced `others`. `before` is a's bookkeeping from the first log.
 */
const replacedLog = (others: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const first = yield* makeServer()
    const headWorks = yield* Ref.make(true)
    const a = yield* makeReplica(first, {
      clientId: "a",
      engine: { background: false },
      wrap: headLostUnless(headWorks)
    })
    for (const content of ["a1", "a2"]) yield* a.store.create({ content })
    yield* a.engine.syncNow
    const before = yield* bookkeeping(a)
    const second = yield* makeServer()
    const b = yield* makeReplica(second, { clientId: "b", engine: { background: false } })
    for (const content of others) yield* b.store.create({ content })
    yield* b.engine.syncNow
    yield* a.controls.replaceServer(second)
    return { a, second, headWorks, before }
  })

describe("first contact", () => {
  it.scoped("nothing is pushed or pulled before the server's epoch is known", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const headWorks = yield* Ref.make(false)
      const a = yield* makeReplica(server, {
        engine: { background: false },
        wrap: headLostUnless(headWorks)
      })
      yield* a.store.create({ content: "written offline" })
      const failed = yield* Effect.flip(a.engine.syncNow)
      assert.strictEqual(failed._tag, "TransientError")
      assert.deepStrictEqual(yield* bookkeeping(a), { seqs: {}, cursor: undefined, epoch: undefined })
      assert.strictEqual((yield* server.head(SPACE)).head, 0, "the push waited for the epoch")
      assert.strictEqual((yield* a.engine.ledger.counts).pending, 1)

      yield* Ref.set(headWorks, true)
      yield* a.engine.syncNow
      const after = yield* bookkeeping(a)
      assert.strictEqual(after.epoch, server.epoch)
      assert.strictEqual(Object.values(after.seqs).join(), "1")
      assert.strictEqual((yield* a.engine.ledger.counts).pending, 0)
    })
  )

  it.scoped(
    "seqs recorded without an epoch are re-checked, never filed under a log that orders the ids otherwise",
    () =>
      Effect.gen(function* () {
        const dir = mkdtempSync(join(tmpdir(), "memsync-contact-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
        const filename = join(dir, "a.db")
        const first = yield* makeServer()
        const events = yield* Effect.scoped(
          Effect.gen(function* () {
            const a = yield* makeReplica(first, { filename, engine: { background: false } })
            for (const content of ["one", "two", "three"]) yield* a.store.create({ content })
            yield* a.engine.syncNow
            // Bookkeeping as an older memsync left it: seqs and a cursor, no epoch.
            yield* a.database.raw((db) => db.prepare(`DELETE FROM sync_state WHERE key = 'epoch'`).run())
            return (yield* first.pull(SPACE, 0, 100)).events
          })
        )
        // Another log holding the same ids in another order: same head, same (order-blind) digest.
        const second = yield* makeServer()
        yield* second.push(
          SPACE,
          [...events].reverse().map(({ seq: _seq, ...e }) => e)
        )
        assert.strictEqual((yield* second.head(SPACE)).digest, (yield* first.head(SPACE)).digest)

        // The re-check pulls before it pushes: nothing the server holds is sent back to it.
        const pushedEvents = yield* Ref.make(0)
        const a = yield* makeReplica(second, {
          filename,
          engine: { background: false },
          wrap: (inner) =>
            Transport.of({
              ...inner,
              push: (t, envelopes) =>
                Effect.zipRight(
                  Ref.update(pushedEvents, (n) => n + envelopes.length),
                  inner.push(t, envelopes)
                )
            })
        })
        yield* a.engine.syncNow
        assert.strictEqual(yield* Ref.get(pushedEvents), 0)
        const after = yield* bookkeeping(a)
        assert.strictEqual(after.epoch, second.epoch)
        const served = (yield* second.pull(SPACE, 0, 100)).events
        assert.deepStrictEqual(after.seqs, Object.fromEntries(served.map((e) => [e.id, e.seq])))
        assert.strictEqual(after.cursor, "3")
        assert.strictEqual((yield* a.engine.ledger.counts).pending, 0)
      })
  )

  it.scoped("a pull never applies a page of another log: it stops at the changed epoch, and resync repairs", () =>
    Effect.gen(function* () {
      // The log is replaced by a longer one (another epoch): from a's cursor, seqs 3 and 4 exist there too.
      const { a, second, headWorks, before } = yield* replacedLog(["b1", "b2", "b3", "b4"])
      assert.strictEqual(before.cursor, "2")

      // Resync cannot run (no head), so only the pull sees the new log: it must apply nothing and record nothing.
      yield* Ref.set(headWorks, false)
      assert.strictEqual((yield* Effect.flip(a.engine.syncNow))._tag, "TransientError")
      assert.deepStrictEqual(yield* bookkeeping(a), before)
      assert.deepStrictEqual(
        // Sorted: created in the same (test clock) millisecond, they are listed in the order of their random ids.
        (yield* a.store.list({})).map((m) => m.content).sort(),
        ["a1", "a2"],
        "no event of the other log was applied"
      )

      // With the head back, resync adopts the new log and both sides converge.
      yield* Ref.set(headWorks, true)
      yield* a.engine.syncNow
      const after = yield* bookkeeping(a)
      assert.strictEqual(after.epoch, second.epoch)
      assert.strictEqual((yield* second.head(SPACE)).head, 6)
      assert.strictEqual((yield* a.store.list({})).length, 6)
      assert.strictEqual((yield* a.engine.ledger.counts).pending, 0)
    })
  )

  it.scoped("a push records no answer of another log: its events stay queued, and resync repairs", () =>
    Effect.gen(function* () {
      // The log is replaced (another epoch) and a writes again: the new log accepts a3, at a seq of its own.
      const { a, second, headWorks, before } = yield* replacedLog(["b1"])
      yield* a.store.create({ content: "a3" })

      // Resync cannot run (no head): the push's answer names the other epoch, so nothing of it is recorded.
      yield* Ref.set(headWorks, false)
      assert.strictEqual((yield* Effect.flip(a.engine.syncNow))._tag, "TransientError")
      assert.strictEqual((yield* second.head(SPACE)).head, 2, "the new log did take a3")
      assert.deepStrictEqual(yield* bookkeeping(a), before, "no seq of the new log filed under the old epoch")
      assert.strictEqual((yield* a.engine.ledger.counts).pending, 1, "a3 is still queued")

      // With the head back, resync adopts the new log; a3 is held there once, and both sides converge.
      yield* Ref.set(headWorks, true)
      const summary = yield* a.engine.syncNow
      assert.deepStrictEqual(
        { pushed: summary.pushed, pulled: summary.pulled, resynced: summary.resynced },
        { pushed: 2, pulled: 1, resynced: true },
        "the summary counts what resync moved: a1 and a2 pushed to the new log, b1 pulled from it"
      )
      assert.strictEqual((yield* bookkeeping(a)).epoch, second.epoch)
      assert.strictEqual((yield* second.head(SPACE)).head, 4, "b1, a3, then a1 and a2")
      assert.deepStrictEqual((yield* a.store.list({})).map((m) => m.content).sort(), ["a1", "a2", "a3", "b1"])
      assert.strictEqual((yield* a.engine.ledger.counts).pending, 0)
    })
  )

  it.scoped("the background pull records nothing either while the head cannot be read", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const b = yield* makeReplica(server, { clientId: "b", engine: { background: false } })
      yield* b.store.create({ content: "from b" })
      yield* b.engine.syncNow
      const headWorks = yield* Ref.make(false)
      const a = yield* makeReplica(server, {
        clientId: "a",
        engine: { pullIntervalMs: 1_000 },
        wrap: headLostUnless(headWorks)
      })
      // Many pull cycles (the interval and the backoff retries) with every pull possible but the head.
      for (let i = 0; i < 30; i++) yield* TestClock.adjust(1_000)
      assert.deepStrictEqual(yield* bookkeeping(a), { seqs: {}, cursor: undefined, epoch: undefined })
      assert.deepStrictEqual(yield* a.store.list({}), [], "nothing was pulled")

      yield* Ref.set(headWorks, true)
      yield* waitUntil(Effect.map(a.store.list({}), (l) => l.length === 1))
      assert.strictEqual((yield* bookkeeping(a)).epoch, server.epoch)
    })
  )

  it.scoped(
    "firstContact adopts on a clean ledger, keeps an epoch already stored, resets bookkeeping without one",
    () =>
      Effect.gen(function* () {
        const server = yield* makeServer()
        const a = yield* makeReplica(server, { engine: { background: false } })
        yield* a.store.create({ content: "pending" })
        assert.strictEqual(yield* a.engine.ledger.firstContact("e1"), "adopted")
        assert.strictEqual(yield* a.engine.ledger.generation, 0, "nothing was reset")
        assert.strictEqual(yield* a.engine.ledger.firstContact("e2"), "kept")
        assert.strictEqual((yield* bookkeeping(a)).epoch, "e1", "resync, not first contact, judges a changed epoch")

        // A cursor alone (no seq) without an epoch is bookkeeping too: reset, with the generation bumped.
        const b = yield* makeReplica(server, { engine: { background: false } })
        yield* b.store.create({ content: "held" })
        yield* b.engine.ledger.set("cursor", "3")
        assert.strictEqual(yield* b.engine.ledger.firstContact("e3"), "reset")
        assert.deepStrictEqual(yield* bookkeeping(b), { seqs: {}, cursor: "0", epoch: "e3" })
        assert.strictEqual(yield* b.engine.ledger.generation, 1, "a push answered before it is not recorded")
        assert.strictEqual((yield* b.engine.ledger.counts).pending, 1)
      })
  )
})
