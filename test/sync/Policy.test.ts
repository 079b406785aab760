import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Random, Schedule, TestClock } from "effect"
import { AuthError, ProtocolError, TransientError, type SyncError } from "../../src/sync/Errors.js"
import * as Policy from "../../src/sync/Policy.js"

const b = Policy.DEFAULT_BACKOFF
const transient = new TransientError({ kind: "server", status: 503, message: "down" })

describe("Policy", () => {
  it("the ceiling grows by the factor from the base and stops at the cap", () => {
    assert.strictEqual(Policy.ceilingMs(b, 0), 250)
    assert.strictEqual(Policy.ceilingMs(b, 1), 500)
    assert.strictEqual(Policy.ceilingMs(b, 4), 4000)
    assert.strictEqual(Policy.ceilingMs(b, 8), 60_000)
    assert.strictEqual(Policy.ceilingMs(b, 50), 60_000)
  })

  it("a full-jitter delay stays within [0, ceiling] and honours Retry-After as a floor", () => {
    for (let n = 0; n < 20; n++) {
      for (const u of [0, 0.25, 0.999]) {
        const d = Policy.transientDelayMs(b, n, u)
        assert.isAtLeast(d, 0)
        assert.isAtMost(d, Policy.ceilingMs(b, n))
      }
    }
    assert.strictEqual(Policy.transientDelayMs(b, 0, 0.5, 30_000), 30_000)
    assert.strictEqual(Policy.transientDelayMs(b, 10, 0.5, 1_000), 30_000)
    // A Retry-After beyond the slow spacing (a day, a bogus header) waits the slow spacing, not the day.
    assert.strictEqual(Policy.transientDelayMs(b, 0, 0.5, 86_400_000), b.slowMs)
    assert.strictEqual(Policy.transientDelayMs(b, 0, 0.5, Number.MAX_SAFE_INTEGER), b.slowMs)
  })

  it("auth errors are not retried; protocol errors wait the slow interval", () => {
    assert.isUndefined(Policy.delayFor(b, new AuthError({ status: 401, message: "no" }), 0, 0.5))
    assert.strictEqual(Policy.delayFor(b, new ProtocolError({ message: "bad body" }), 0, 0.5), b.slowMs)
  })

  it.effect("the schedule's delays stay within bounds, grow, cap, and restart at the base for a new retry", () =>
    Effect.gen(function* () {
      const delays: Array<number> = []
      const schedule = Policy.retry<SyncError>(b, (_e, ms) => Effect.sync(() => void delays.push(ms)))
      // 12 transient failures in a row, then a success.
      let calls = 0
      const flaky = Effect.suspend(() => (++calls <= 12 ? Effect.fail<SyncError>(transient) : Effect.succeed("ok")))
      const fiber = yield* Effect.fork(Effect.retry(flaky, schedule).pipe(Effect.withRandom(Random.make(42))))
      yield* TestClock.adjust("1 hour")
      assert.strictEqual(yield* Fiber.join(fiber), "ok")
      assert.strictEqual(delays.length, 12)
      delays.forEach((d, n) => assert.isAtMost(d, Policy.ceilingMs(b, n), `retry ${n}`))
      assert.isAtMost(Math.max(...delays), b.capMs)
      // Growth: the mean of later delays exceeds the mean of early ones (full jitter is random per draw).
      const mean = (xs: Array<number>) => xs.reduce((a, x) => a + x, 0) / xs.length
      assert.isAbove(mean(delays.slice(6)), mean(delays.slice(0, 3)))
      // Reset after success: a fresh retry starts again below the base ceiling.
      delays.length = 0
      calls = 11
      const again = yield* Effect.fork(Effect.retry(flaky, schedule).pipe(Effect.withRandom(Random.make(7))))
      yield* TestClock.adjust("1 hour")
      yield* Fiber.join(again)
      assert.strictEqual(delays.length, 1)
      assert.isAtMost(delays[0]!, b.baseMs)
    })
  )

  it.effect("Retry-After from a 429 is the minimum delay", () =>
    Effect.gen(function* () {
      const limited = new TransientError({ kind: "rate-limited", status: 429, retryAfterMs: 9_000, message: "slow" })
      const delays: Array<number> = []
      const schedule = Policy.retry<SyncError>(b, (_e, ms) => Effect.sync(() => void delays.push(ms)))
      const out = yield* Schedule.run(schedule, 0, [limited, limited, transient]).pipe(
        Effect.withRandom(Random.make(1))
      )
      assert.strictEqual(Chunk.size(out), 3)
      assert.deepStrictEqual(delays.slice(0, 2), [9_000, 9_000])
      assert.isBelow(delays[2]!, 9_000)
    })
  )

  it.effect("an auth error stops the schedule at once", () =>
    Effect.gen(function* () {
      let calls = 0
      const refused = Effect.suspend(() => {
        calls++
        return Effect.fail<SyncError>(new AuthError({ status: 401, message: "no" }))
      })
      const result = yield* Effect.either(Effect.retry(refused, Policy.retry<SyncError>(b)))
      assert.strictEqual(result._tag, "Left")
      assert.strictEqual(calls, 1)
    })
  )
})
