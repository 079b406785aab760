/**
 * Resync's agreement check under concurrency: a push recorded while a resync runs is normal life, not disagreement;
 * and a push answer that arrives before a reset is never recorded after it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Ref } from "effect"
import * as IdGenerator from "../../src/domain/IdGenerator.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as SyncEngine from "../../src/sync/SyncEngine.js"
import { Transport } from "../../src/sync/Transport.js"
import * as MemoryTransport from "../../src/testing/MemoryTransport.js"
import { makeReplica, makeServer, SPACE, TOKEN } from "./harness.js"

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
