/**
 * When does a replica decide it disagrees with the server? Over real HTTP against the real server (in-process, on a
 * loopback port), with one-shot engines (`syncNow`), so each step is explicit.
 *
 * - Another replica pushing between this replica's pull and its head check is not a disagreement: the server simply
 *   moved on. A full resync there (re-pull from 0, rebuild the view) costs O(log) for nothing, and with several busy
 *   replicas it would happen on most checks.
 * - A server restored from a backup of its own file (same epoch, shorter log) has lost events this replica holds:
 *   the replica must re-push them at once, not wait until the server's head grows past its cursor again.
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Context, Effect, Exit, Layer, Logger, LogLevel, Ref, Schedule, Scope } from "effect"
import { join } from "node:path"
import * as Server from "../../src/server/Server.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as HttpTransport from "../../src/sync/HttpTransport.js"
import * as SyncEngine from "../../src/sync/SyncEngine.js"
import { Transport } from "../../src/sync/Transport.js"
import { tempDir } from "./helpers.js"

const TOKEN = "resync-e2e-token"
const SPACE = "resync-e2e"

const startServer = (filename: string, port = 0) =>
  Effect.gen(function* () {
    const ctx = yield* Layer.build(
      Server.layer({
        filename,
        host: "127.0.0.1",
        port,
        tokens: [{ token: TOKEN, space: SPACE }],
        rateLimit: { perSecond: 0, burst: 0 }
      })
    ).pipe(Effect.orDie)
    const url = Server.url(Context.get(ctx, HttpServer.HttpServer))
    return { url, port: Number(new URL(url).port), log: Context.get(ctx, ServerLog.ServerLog) }
  })

/** A one-shot replica over HTTP; `beforeHead` runs before each of its head checks (to interleave another writer). */
const replica = (url: string, clientId: string, beforeHead: Effect.Effect<void> = Effect.void) =>
  Effect.gen(function* () {
    const transport = Layer.effect(
      Transport,
      Effect.map(HttpTransport.make({ baseUrl: url }), (http) =>
        Transport.of({ ...http, head: (token) => Effect.zipRight(beforeHead, http.head(token)) })
      )
    ).pipe(Layer.provide(NodeHttpClient.layerUndici))
    const ctx = yield* Layer.build(
      SyncEngine.layer({ token: TOKEN, background: false }).pipe(
        Layer.provideMerge(Layer.merge(MemoryStore.layer({ filename: ":memory:", clientId }), transport))
      )
    ).pipe(Effect.orDie)
    return { store: Context.get(ctx, MemoryStore.MemoryStore), engine: Context.get(ctx, SyncEngine.SyncEngine) }
  })

const contents = (store: MemoryStore.MemoryStore) =>
  Effect.map(store.list(), (ms) => ms.map((m) => m.content).sort()).pipe(Effect.orDie)

describe("resync decisions over HTTP", () => {
  it.scopedLive("a push landing between pull and head check is not a disagreement (no full resync)", () =>
    Effect.gen(function* () {
      const server = yield* startServer(":memory:")
      const b = yield* replica(server.url, "replica-b")
      const armed = yield* Ref.make(false)
      // While armed, B writes and pushes right before A asks for the head: the server moves on under A.
      const interleave = Effect.gen(function* () {
        if (!(yield* Ref.getAndSet(armed, false))) return
        yield* b.store.create({ content: "b, pushed between A's pull and A's head check" })
        yield* b.engine.syncNow
      }).pipe(Effect.orDie)
      const a = yield* replica(server.url, "replica-a", interleave)
      yield* a.store.create({ content: "a1" })
      yield* a.engine.syncNow
      yield* b.engine.syncNow

      yield* Ref.set(armed, true)
      const summary = yield* a.engine.syncNow
      assert.isFalse(summary.resynced, "A re-pulled the whole log and rebuilt its view for a benign race")
      // Nothing was lost either way: the next sync brings B's write.
      yield* a.engine.syncNow
      assert.deepStrictEqual(yield* contents(a.store), yield* contents(b.store))
      assert.strictEqual((yield* server.log.head(SPACE).pipe(Effect.orDie)).head, 2)
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
  )

  it.scopedLive("a server restored from a backup (same epoch, fewer events) gets the lost events re-pushed", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const live = join(dir, "server.db")
      const backup = join(dir, "server-backup.db")
      const first = yield* Scope.make()
      const server = yield* startServer(live).pipe(Scope.extend(first))
      const a = yield* replica(server.url, "replica-a")
      yield* a.store.createMany([{ content: "e1" }, { content: "e2" }])
      yield* a.engine.syncNow
      yield* Effect.sync(() => {
        const db = new Sqlite(live)
        db.exec(`VACUUM INTO '${backup}'`)
        db.close()
      })
      yield* a.store.create({ content: "e3, lost by the restore" })
      yield* a.engine.syncNow
      yield* Scope.close(first, Exit.void)

      // The operator restores the backup: same file identity (epoch), one event fewer.
      const restored = yield* startServer(backup, server.port)
      assert.strictEqual(restored.log.epoch, server.log.epoch)
      assert.strictEqual((yield* restored.log.head(SPACE).pipe(Effect.orDie)).head, 2)

      // A's HTTP client may still hold a keep-alive connection to the old server: the first request on it fails as
      // transient (the background engine retries it on its backoff; here we retry by hand).
      const summary = yield* a.engine.syncNow.pipe(
        Effect.retry({ times: 3, schedule: Schedule.spaced("100 millis"), while: (e) => e._tag === "TransientError" })
      )
      assert.isTrue(summary.resynced)
      assert.strictEqual((yield* restored.log.head(SPACE).pipe(Effect.orDie)).head, 3, "e3 is back on the server")
      const b = yield* replica(restored.url, "replica-b")
      yield* b.engine.syncNow
      assert.deepStrictEqual(yield* contents(b.store), ["e1", "e2", "e3, lost by the restore"])
      // And A keeps following the server: a write from B reaches it.
      yield* b.store.create({ content: "e4 from B" })
      yield* b.engine.syncNow
      yield* a.engine.syncNow
      assert.deepStrictEqual(yield* contents(a.store), yield* contents(b.store))
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
  )
})
