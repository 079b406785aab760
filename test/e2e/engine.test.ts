/**
 * The library end to end: two replicas with background sync engines (`SyncEngine.layer` + `HttpTransport`) against
 * the real server (`Server.layer`: Node HTTP on a loopback port, SQLite log), in real time.
 *
 * What only this level shows: the fibers, triggers and HTTP client work together without a TestClock; and closing
 * the replicas' scope ends every fiber the engine started (tracked with a Supervisor), so nothing keeps running or
 * keeps the process alive.
 */
import { HttpServer } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Logger, LogLevel, Option, Ref, Scope, SubscriptionRef, Supervisor } from "effect"
import { join } from "node:path"
import * as Server from "../../src/server/Server.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as HttpTransport from "../../src/sync/HttpTransport.js"
import * as SyncEngine from "../../src/sync/SyncEngine.js"
import { eventually, tempDir } from "./helpers.js"

const TOKEN = "engine-e2e-token"
const SPACE = "engine-e2e"

/** The real server on a loopback port (0: a free one) for the lifetime of the scope. */
const startServer = (options: { readonly port?: number; readonly filename?: string } = {}) =>
  Effect.gen(function* () {
    const ctx = yield* Layer.build(
      Server.layer({
        filename: options.filename ?? ":memory:",
        host: "127.0.0.1",
        port: options.port ?? 0,
        tokens: [{ token: TOKEN, space: SPACE }],
        rateLimit: { perSecond: 0, burst: 0 }
      })
    ).pipe(Effect.orDie)
    const url = Server.url(Context.get(ctx, HttpServer.HttpServer))
    return { url, port: Number(new URL(url).port), log: Context.get(ctx, ServerLog.ServerLog) }
  })

/** A replica (store in memory) whose engine syncs in the background with the server at `url`. */
const replica = (url: string, clientId: string, engine: SyncEngine.Config = {}) =>
  Effect.gen(function* () {
    const ctx = yield* Layer.build(
      SyncEngine.layer({ token: TOKEN, pullIntervalMs: 100, ...engine }).pipe(
        Layer.provideMerge(
          Layer.merge(MemoryStore.layer({ filename: ":memory:", clientId }), HttpTransport.layer({ baseUrl: url }))
        )
      )
    ).pipe(Effect.orDie)
    return { store: Context.get(ctx, MemoryStore.MemoryStore), engine: Context.get(ctx, SyncEngine.SyncEngine) }
  })

type Replica = Effect.Effect.Success<ReturnType<typeof replica>>

/** Both views, deleted memories included, as comparable values. */
const views = (a: Replica, b: Replica) =>
  Effect.all([a.store.list({ includeDeleted: true }), b.store.list({ includeDeleted: true })]).pipe(Effect.orDie)

describe("SyncEngine over HTTP (library, real time)", () => {
  it.scopedLive(
    "background engines converge two replicas; closing their scope flushes and ends every fiber",
    () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const supervisor = yield* Supervisor.track
        const replicas = yield* Scope.make()
        // A pushes only on the interval (its commit debounce is longer than the test); B on each commit.
        const [a, b] = yield* Effect.all([
          replica(server.url, "replica-a", { commitDebounceMs: 600_000 }),
          replica(server.url, "replica-b", { commitDebounceMs: 10 })
        ]).pipe(Scope.extend(replicas), Effect.supervised(supervisor))
        assert.isAbove((yield* supervisor.value).length, 0, "the engines run fibers")

        const [a1, a2] = yield* a.store.createMany([{ content: "a1" }, { content: "a2" }])
        const b1 = yield* b.store.create({ content: "b1" })
        yield* eventually(
          "both replicas to hold a1, a2 and b1",
          Effect.map(views(a, b), ([va, vb]) => (va.length === 3 && vb.length === 3 ? true : undefined)),
          { timeoutMs: 20_000 }
        )

        yield* a.store.update(b1.id, { content: "b1 edited on A" })
        yield* b.store.remove(a2!.id)
        const a3 = yield* a.store.create({ content: "a3" })
        const { va, vb } = yield* eventually(
          "both replicas to agree on six events",
          Effect.gen(function* () {
            const [va, vb] = yield* views(a, b)
            const head = (yield* server.log.head(SPACE)).head
            return head === 6 && JSON.stringify(va) === JSON.stringify(vb) ? { va, vb } : undefined
          }).pipe(Effect.orDie),
          { timeoutMs: 20_000 }
        )
        assert.deepStrictEqual(va, vb)
        const byId = new Map(va.map((m) => [m.id, m]))
        assert.include(byId.get(a1!.id), { content: "a1", deleted: false })
        assert.include(byId.get(a2!.id), { deleted: true })
        assert.include(byId.get(b1.id), { content: "b1 edited on A", deleted: false })
        assert.include(byId.get(a3.id), { content: "a3", deleted: false })
        yield* eventually(
          "both engines to be idle with nothing pending",
          Effect.gen(function* () {
            const states = yield* Effect.all([a.engine.status.get, b.engine.status.get])
            return states.every((s) => s.state === "idle" && s.pending === 0 && s.firstPullDone) ? true : undefined
          })
        )

        // A write right before close reaches the server (the final push, or the interval if it came first).
        const last = yield* a.store.create({ content: "written just before close" })
        yield* Scope.close(replicas, Exit.void).pipe(
          Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("closing the replicas hung") }),
          Effect.orDie
        )
        const page = yield* server.log.pull(SPACE, 0, 100).pipe(Effect.orDie)
        assert.isTrue(
          page.events.some((e) => e.type === "memory.created" && JSON.stringify(e.payload).includes(last.id)),
          "the last write was pushed before the engine stopped"
        )
        const alive = yield* supervisor.value
        assert.deepStrictEqual(
          alive.map((f) => f.id().id),
          [],
          "every fiber the replicas started has ended"
        )
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)),
    90_000
  )

  it.scopedLive(
    "a server that goes away is a transient failure: offline, backoff, then the writes go through when it is back",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const file = join(dir, "server.db")
        const first = yield* Scope.make()
        const server = yield* startServer({ filename: file }).pipe(Scope.extend(first))
        // A quick backoff, so the test waits for the server, not for the schedule.
        const a = yield* replica(server.url, "replica-a", {
          commitDebounceMs: 10,
          backoff: { baseMs: 50, factor: 2, capMs: 400, slowMs: 300_000 }
        })
        yield* eventually(
          "the first pull",
          Effect.map(a.engine.status.get, (s) => (s.firstPullDone && s.state === "idle" ? true : undefined))
        )
        yield* Scope.close(first, Exit.void)

        const during = yield* a.store.create({ content: "written while the server is down" })
        const offline = yield* eventually(
          "the engine to report offline",
          Effect.map(a.engine.status.get, (s) => (s.state === "offline" ? s : undefined))
        )
        assert.strictEqual(offline.pending, 1)
        assert.isDefined(offline.nextRetryAt)
        assert.isDefined(offline.lastError)

        const again = yield* startServer({ filename: file, port: server.port })
        yield* eventually(
          "the write to reach the restarted server",
          Effect.map(again.log.head(SPACE), (h) => (h.head === 1 ? true : undefined)).pipe(Effect.orDie),
          { timeoutMs: 20_000 }
        )
        const page = yield* again.log.pull(SPACE, 0, 10).pipe(Effect.orDie)
        assert.include(JSON.stringify(page.events[0]?.payload), during.id)
        const idle = yield* eventually(
          "the engine to be idle again",
          Effect.map(a.engine.status.get, (s) => (s.state === "idle" && s.pending === 0 ? s : undefined))
        )
        assert.isUndefined(idle.lastError)
      }).pipe(Logger.withMinimumLogLevel(LogLevel.None)),
    60_000
  )

  it.scopedLive(
    "a refused token parks the engine (auth-failed) until new credentials arrive, then it resumes",
    () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const a = yield* replica(server.url, "replica-a", { token: "revoked-token", commitDebounceMs: 10 })
        yield* a.store.create({ content: "waits for a valid token" })
        const parked = yield* eventually(
          "the engine to park",
          Effect.map(a.engine.status.get, (s) => (s.state === "auth-failed" ? s : undefined))
        )
        assert.strictEqual(parked.pending, 1)
        assert.include(parked.lastError, "token")
        yield* SubscriptionRef.set(a.engine.credentials, Option.some(TOKEN))
        yield* eventually(
          "the engine to resume and push",
          Effect.map(a.engine.status.get, (s) => (s.state === "idle" && s.pending === 0 ? true : undefined))
        )
        assert.strictEqual((yield* server.log.head(SPACE).pipe(Effect.orDie)).head, 1)
      }).pipe(Logger.withMinimumLogLevel(LogLevel.None)),
    60_000
  )

  it.scopedLive(
    "an engine started without a token waits (auth-failed) without spinning, and syncs once credentials are set",
    () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const warnings = yield* Ref.make(0)
        const counting = Logger.make(({ logLevel }) => {
          if (logLevel._tag === "Warning") Effect.runSync(Ref.update(warnings, (n) => n + 1))
        })
        const a = yield* replica(server.url, "replica-a", { token: undefined, commitDebounceMs: 10 }).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, counting))
        )
        // Give the engine's fibers turns without timers (a spinning fiber starves timers, and a timed wait with
        // them): pull and resync each find no token, warn once and park.
        yield* Effect.repeatN(Effect.yieldNow(), 200)
        const warned = yield* Ref.get(warnings)
        assert.isAtLeast(warned, 1)
        assert.isAtMost(warned, 5, "an engine without a token must park, not retry in a loop")

        yield* a.store.create({ content: "written before logging in" })
        const waiting = yield* eventually(
          "the engine to wait for credentials",
          Effect.map(a.engine.status.get, (s) => (s.state === "auth-failed" && s.pending === 1 ? s : undefined))
        )
        assert.include(waiting.lastError, "no sync token")
        yield* SubscriptionRef.set(a.engine.credentials, Option.some(TOKEN))
        yield* eventually(
          "the engine to push once it has a token",
          Effect.map(a.engine.status.get, (s) => (s.state === "idle" && s.pending === 0 ? true : undefined))
        )
        assert.strictEqual((yield* server.log.head(SPACE).pipe(Effect.orDie)).head, 1)
      }),
    60_000
  )
})
