/**
 * Token rotation with a request in flight: a request sent with the old token that fails (401) AFTER the credentials
 * were changed must not park the engine on the old token. (It once did: the 401 marked the old token refused after the
 * credentials watcher had cleared it, and the parked step waited for a change that never came while the prober
 * re-checked the revoked token every 5 minutes.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, SubscriptionRef, TestClock } from "effect"
import { makeReplica, makeServer, settle, SPACE, waitUntil } from "./harness.js"

describe("credentials changed while a request with the old token is in flight", () => {
  it.scoped("a 401 answered to the old token after new credentials were set does not park the engine forever", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, {
        clientId: "a",
        engine: { token: "old", pullIntervalMs: 3_600_000 },
        tokens: { old: SPACE }
      })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone && s.state === "idle"))
      // The old token is revoked (rotation); the new one is valid.
      yield* a.controls.revokeToken("old")
      yield* a.controls.setToken("new", SPACE)
      yield* a.controls.setDelay(1_000)
      yield* a.store.create({ content: "written around the token rotation" })
      // The debounced push goes out with the old token and is in flight for 1 s.
      yield* TestClock.adjust(300)
      yield* settle
      // The user sets the new token while that request is in flight.
      yield* SubscriptionRef.set(a.engine.credentials, Option.some("new"))
      yield* settle
      yield* a.controls.setDelay(0)
      yield* TestClock.adjust(2_000)
      yield* settle
      // Give it plenty of time (several probe periods); a later write triggers push again too.
      yield* a.store.create({ content: "a second write" })
      for (let i = 0; i < 40; i++) {
        yield* TestClock.adjust("1 minute")
        yield* settle
      }
      const status = yield* SubscriptionRef.get(a.engine.status)
      const head = (yield* server.head(SPACE)).head
      assert.strictEqual(head, 2, `server head ${head}; status ${JSON.stringify(status)}`)
      assert.notStrictEqual(status.state, "auth-failed")
    })
  )
})
