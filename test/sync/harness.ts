/**
 * Test harness: replicas (real MemoryStore + SyncEngine over their own SQLite) talking to one in-process server
 * (the real ServerLog) through the fault-injecting memory transport.
 */
import { Context, Effect, Layer, Ref, TestClock } from "effect"
import * as IdGenerator from "../../src/domain/IdGenerator.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import { Database } from "../../src/store/Database.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as SyncEngine from "../../src/sync/SyncEngine.js"
import { Transport } from "../../src/sync/Transport.js"
import * as MemoryTransport from "../../src/testing/MemoryTransport.js"

export const TOKEN = "token-a"
export const SPACE = "space-a"

/** A server log living as long as the surrounding scope. */
export const makeServer = (limits: Partial<ServerLog.Limits> = {}) =>
  Effect.map(Layer.build(ServerLog.layerMemory(limits)), (ctx) => Context.get(ctx, ServerLog.ServerLog))

/** Options of a replica. */
export interface ReplicaOptions {
  readonly filename?: string
  readonly clientId?: string
  readonly engine?: SyncEngine.Config
  readonly tokens?: Record<string, string>
  /** Wrap the memory transport (under the call counting), e.g. to hold or fault particular requests. */
  readonly wrap?: (inner: Transport, controls: MemoryTransport.Controls) => Transport
}

/**
 * A replica in the current scope: its store, its database, its engine, the controls of its transport, and `attempts`,
 * the number of transport calls STARTED. The memory transport records a call only once it has finished (after its
 * delay), so a call stuck in a long delay shows only in `attempts`.
 */
export const makeReplica = (server: ServerLog.Service, options: ReplicaOptions = {}) =>
  Effect.gen(function* () {
    const store = MemoryStore.layerWithIds({
      filename: options.filename ?? ":memory:",
      ...(options.clientId === undefined ? {} : { clientId: options.clientId })
    }).pipe(Layer.provide(IdGenerator.layerRandom))
    const started = yield* Ref.make(0)
    const transport = Layer.effectContext(
      Effect.map(MemoryTransport.make(server, options.tokens ?? { [TOKEN]: SPACE }), ({ controls, transport }) =>
        Context.make(Transport, counting(options.wrap?.(transport, controls) ?? transport, started)).pipe(
          Context.add(MemoryTransport.MemoryTransportControls, controls)
        )
      )
    )
    const engine = SyncEngine.layer({ token: TOKEN, ...options.engine }).pipe(
      Layer.provideMerge(Layer.merge(store, transport))
    )
    const ctx = yield* Layer.build(engine)
    return {
      store: Context.get(ctx, MemoryStore.MemoryStore),
      database: Context.get(ctx, Database),
      engine: Context.get(ctx, SyncEngine.SyncEngine),
      controls: Context.get(ctx, MemoryTransport.MemoryTransportControls),
      attempts: Ref.get(started)
    }
  })

/** The transport, counting each call as it starts. */
const counting = (inner: Transport, started: Ref.Ref<number>): Transport => {
  const count = <A, E>(call: Effect.Effect<A, E>) =>
    Effect.zipRight(
      Ref.update(started, (n) => n + 1),
      call
    )
  return Transport.of({
    push: (token, events) => count(inner.push(token, events)),
    pull: (token, after, limit) => count(inner.pull(token, after, limit)),
    head: (token) => count(inner.head(token)),
    authCheck: (token) => count(inner.authCheck(token))
  })
}

/** Advance the TestClock in steps until `cond` holds (fails after `maxSteps`). Never sleeps for real. */
export const waitUntil = (
  cond: Effect.Effect<boolean, unknown>,
  options: { stepMs?: number; maxSteps?: number } = {}
) =>
  Effect.gen(function* () {
    const step = options.stepMs ?? 50
    for (let i = 0; i < (options.maxSteps ?? 2_000); i++) {
      if (yield* Effect.orElseSucceed(cond, () => false)) return
      yield* TestClock.adjust(step)
    }
    return yield* Effect.dieMessage("waitUntil: condition never held")
  })

/** Let forked fibers run without moving time. */
export const settle = Effect.repeatN(Effect.yieldNow(), 200)
