/**
 * An event larger than the server's request body limit by itself: the push halves its batch down to that one event,
 * and when the server still answers 413 the event is dead-lettered as `too-large` (the server will never read it).
 * Before, the 413 became a ProtocolError retried on the slow schedule for ever, and every write queued after the
 * event stayed behind it. Real server, real HTTP: the 413 comes from the server's body limit, before any event is read.
 */
import { HttpServer } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Server from "../../src/server/Server.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as HttpTransport from "../../src/sync/HttpTransport.js"
import * as SyncEngine from "../../src/sync/SyncEngine.js"

const TOKEN = "too-large-token"
const SPACE = "too-large-space"
const BODY_LIMIT = 8 * 1024

describe("push of an event over the server's body limit", () => {
  it.scopedLive("dead-letters that event as too-large and pushes the writes around it", () =>
    Effect.gen(function* () {
      const ctx = yield* Layer.build(
        Server.layer({
          filename: ":memory:",
          host: "127.0.0.1",
          port: 0,
          tokens: [{ token: TOKEN, space: SPACE }],
          rateLimit: { perSecond: 0, burst: 0 },
          limits: { maxBodyBytes: BODY_LIMIT }
        })
      ).pipe(Effect.orDie)
      const url = Server.url(Context.get(ctx, HttpServer.HttpServer))
      const log = Context.get(ctx, ServerLog.ServerLog)
      const replica = yield* Layer.build(
        SyncEngine.layer({ token: TOKEN, background: false }).pipe(
          Layer.provideMerge(
            Layer.merge(
              MemoryStore.layer({ filename: ":memory:", clientId: "r" }),
              HttpTransport.layer({ baseUrl: url })
            )
          )
        )
      ).pipe(Effect.orDie)
      const store = Context.get(replica, MemoryStore.MemoryStore)
      const engine = Context.get(replica, SyncEngine.SyncEngine)

      const before = yield* store.create({ content: "a normal write made before it" })
      const huge = yield* store.create({ content: "x".repeat(2 * BODY_LIMIT) })
      const after = yield* store.create({ content: "a normal write made after it" })

      const summary = yield* engine.syncNow
      assert.strictEqual(summary.rejected, 1)
      const served = (yield* log.pull(SPACE, 0, 100)).events.map((e) => e.id)
      assert.strictEqual(served.length, 2)
      const counts = yield* engine.ledger.counts
      assert.strictEqual(counts.pending, 0)
      assert.strictEqual(counts.deadLetters, 1)
      const [dead] = yield* engine.ledger.deadLetters
      assert.strictEqual(dead!.reason, "too-large")
      assert.strictEqual(dead!.memoryId, huge.id)
      assert.match(dead!.message, /413|too large|limit/i)
      // The others are in the view and on the server; the refused one left the view with its event.
      assert.strictEqual((yield* store.get(before.id)).content, before.content)
      assert.strictEqual((yield* store.get(after.id)).content, after.content)
      assert.isTrue((yield* Effect.either(store.get(huge.id)))._tag === "Left")
      // A second sync has nothing left to do.
      const again = yield* engine.syncNow
      assert.strictEqual(again.pushed + again.rejected, 0)
    })
  )
})
