/**
 * The pull drain asks for page N+1 while it applies page N (Steps.pullUnlocked). These tests hit that prefetched
 * request with a fault, fail the apply under it, and interrupt the drain while it waits on it: the error stays the
 * typed one it was, nothing is applied twice, the cursor is the last applied page's, no request is left running, and
 * a later sync completes. The live clock: the drain lets the prefetch start with a real zero-delay sleep (under the
 * TestClock that sleep returns at once, and the prefetch would only start once the apply is over).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import type { Controls } from "../../src/testing/MemoryTransport.js"
import type { Transport } from "../../src/sync/Transport.js"
import { MIN_PULL_PAGE, PAGE_GROWTH_AFTER } from "../../src/sync/Steps.js"
import { makeReplica, makeServer, SPACE } from "./harness.js"

const EVENTS = 25
const PAGE = 5

/** Pull requests as the engine makes them: `after` of each, how many are running, which were interrupted. */
const makeProbe = (before: (after: number, controls: Controls) => Effect.Effect<void>) => {
  const state = {
    asked: [] as Array<number>,
    limits: [] as Array<number>,
    running: 0,
    interrupted: [] as Array<number>
  }
  const wrap = (inner: Transport, controls: Controls): Transport => ({
    ...inner,
    pull: (token, after, limit) =>
      Effect.suspend(() => {
        state.asked.push(after)
        state.limits.push(limit)
        state.running++
        return Effect.zipRight(before(after, controls), inner.pull(token, after, limit)).pipe(
          Effect.onInterrupt(() => Effect.sync(() => state.interrupted.push(after))),
          Effect.ensuring(Effect.sync(() => state.running--))
        )
      })
  })
  return { state, wrap }
}

/** A server holding `count` events (pushed by another replica), and the ids in server order. */
const seededServerOf = (count: number) =>
  Effect.gen(function* () {
    const server = yield* makeServer()
    const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
    yield* a.store.createMany(Array.from({ length: count }, (_, i) => ({ content: `memory ${i}` })))
    yield* a.engine.syncNow
    const ids = (yield* server.pull(SPACE, 0, 10_000)).events.map((e) => e.id)
    assert.strictEqual(ids.length, count)
    return { server, ids }
  })

const seededServer = seededServerOf(EVENTS)

/** Wait (real time) until `cond` holds. */
const until = <E>(cond: Effect.Effect<boolean, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 2_000; i++) {
      if (yield* cond) return
      yield* Effect.sleep(1)
    }
    assert.fail("condition never held")
  })

type Replica = Effect.Effect.Success<ReturnType<typeof makeReplica>>

/** Events held, distinct ids among them, and the pull cursor. */
const holding = (r: Replica) =>
  Effect.gen(function* () {
    const { n, ids } = yield* r.database.raw(
      (db) => db.prepare("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events").get() as never
    )
    return { n, distinct: ids, cursor: yield* r.engine.ledger.cursor }
  })

describe("pull prefetch", () => {
  it.scopedLive(
    "a fault on the prefetched request: the same typed error, pages applied once, a later sync completes",
    () =>
      Effect.gen(function* () {
        const { server } = yield* seededServer
        let faulted = false
        const probe = makeProbe((after, controls) => {
          if (after !== 2 * PAGE || faulted) return Effect.void
          faulted = true
          return controls.failNext(1, "timeout")
        })
        const b = yield* makeReplica(server, {
          clientId: "b",
          engine: { background: false, pageSize: PAGE },
          wrap: probe.wrap
        })
        const error = yield* Effect.flip(b.engine.syncNow)
        assert.isTrue(error._tag === "TransientError" && error.kind === "timeout", JSON.stringify(error))
        // Pages 1 and 2 applied; the request for page 3 (sent while page 2 was applied) failed.
        assert.deepStrictEqual(probe.state.asked, [0, PAGE, 2 * PAGE])
        assert.deepStrictEqual(yield* holding(b), { n: 2 * PAGE, distinct: 2 * PAGE, cursor: 2 * PAGE })
        assert.strictEqual(probe.state.running, 0)

        const summary = yield* b.engine.syncNow
        assert.strictEqual(summary.pulled, EVENTS - 2 * PAGE)
        assert.deepStrictEqual(probe.state.asked.slice(3, 6), [2 * PAGE, 3 * PAGE, 4 * PAGE])
        assert.deepStrictEqual(yield* holding(b), { n: EVENTS, distinct: EVENTS, cursor: EVENTS })
        assert.strictEqual(probe.state.running, 0)
        assert.deepStrictEqual(probe.state.interrupted, [])
      })
  )

  it.scopedLive("a failing apply interrupts the prefetched request; nothing of the failed page is kept", () =>
    Effect.gen(function* () {
      const { server, ids } = yield* seededServer
      let hold = true
      // The request for page 3 never answers while `hold` is on: only an interruption ends it.
      const probe = makeProbe((after) => (hold && after === 2 * PAGE ? Effect.never : Effect.void))
      const b = yield* makeReplica(server, {
        clientId: "b",
        engine: { background: false, pageSize: PAGE },
        wrap: probe.wrap
      })
      // Page 2's apply fails on its third event.
      yield* b.database.raw((db) =>
        db.exec(
          `CREATE TRIGGER fail_apply BEFORE INSERT ON events WHEN NEW.id = '${ids[PAGE + 2]}'
           BEGIN SELECT RAISE(ABORT, 'injected'); END`
        )
      )
      const error = yield* Effect.flip(b.engine.syncNow)
      assert.strictEqual(error._tag, "StorageError")
      assert.deepStrictEqual(probe.state.asked, [0, PAGE, 2 * PAGE])
      assert.deepStrictEqual(probe.state.interrupted, [2 * PAGE])
      assert.strictEqual(probe.state.running, 0)
      assert.deepStrictEqual(yield* holding(b), { n: PAGE, distinct: PAGE, cursor: PAGE })

      hold = false
      yield* b.database.raw((db) => db.exec("DROP TRIGGER fail_apply"))
      const summary = yield* b.engine.syncNow
      assert.strictEqual(summary.pulled, EVENTS - PAGE)
      assert.deepStrictEqual(yield* holding(b), { n: EVENTS, distinct: EVENTS, cursor: EVENTS })
      assert.strictEqual(probe.state.running, 0)
    })
  )

  it.scopedLive("interrupting a drain that waits on the prefetched request leaves no request running", () =>
    Effect.gen(function* () {
      const { server } = yield* seededServer
      let hold = true
      const probe = makeProbe((after) => (hold && after === PAGE ? Effect.never : Effect.void))
      const b = yield* makeReplica(server, {
        clientId: "b",
        engine: { background: false, pageSize: PAGE },
        wrap: probe.wrap
      })
      const sync = yield* Effect.fork(b.engine.syncNow)
      // Page 1 applied, and the drain waits on the request for page 2.
      yield* until(Effect.map(holding(b), (h) => h.cursor === PAGE && probe.state.running === 1))
      assert.deepStrictEqual(probe.state.asked, [0, PAGE])
      assert.strictEqual(probe.state.running, 1)
      assert.deepStrictEqual(yield* holding(b), { n: PAGE, distinct: PAGE, cursor: PAGE })

      yield* Fiber.interrupt(sync)
      assert.deepStrictEqual(probe.state.interrupted, [PAGE])
      assert.strictEqual(probe.state.running, 0)

      hold = false
      const summary = yield* b.engine.syncNow
      assert.strictEqual(summary.pulled, EVENTS - PAGE)
      assert.deepStrictEqual(yield* holding(b), { n: EVENTS, distinct: EVENTS, cursor: EVENTS })
    })
  )

  it.scopedLive("a pull that times out halves the page asked for, down to MIN_PULL_PAGE, and the drain completes", () =>
    Effect.gen(function* () {
      const { server } = yield* seededServer
      // Four timeouts in a row, on whatever pulls come first; the policy's backoff retries each.
      let faults = 4
      const probe = makeProbe((_after, controls) => (faults-- > 0 ? controls.failNext(1, "timeout") : Effect.void))
      const b = yield* makeReplica(server, {
        clientId: "b",
        engine: { background: false, pageSize: 4 * MIN_PULL_PAGE },
        wrap: probe.wrap
      })
      for (let i = 0; i < 4; i++) {
        const error = yield* Effect.flip(b.engine.syncNow)
        assert.isTrue(error._tag === "TransientError" && error.kind === "timeout", JSON.stringify(error))
      }
      const summary = yield* b.engine.syncNow
      assert.strictEqual(summary.pulled, EVENTS)
      // 400 -> 200 -> 100, then never below the floor; pulls that did not time out keep the size they had.
      const M = MIN_PULL_PAGE
      assert.deepStrictEqual(probe.state.limits.slice(0, 4), [4 * M, 2 * M, M, M])
      assert.isTrue(probe.state.limits.length > 4)
      assert.deepStrictEqual(new Set(probe.state.limits.slice(4)), new Set([M]))
      assert.deepStrictEqual(yield* holding(b), { n: EVENTS, distinct: EVENTS, cursor: EVENTS })
    })
  )

  it.scopedLive("after timeouts, the page doubles back to the configured size on full pages in a row", () =>
    Effect.gen(function* () {
      const M = MIN_PULL_PAGE
      const G = PAGE_GROWTH_AFTER
      // One timeout takes 4M to 2M, then 2M to M on the retry; G full pages of M, then G of 2M, then pages of 4M.
      const count = G * M + G * 2 * M + 2 * 4 * M + M / 2
      const { server } = yield* seededServerOf(count)
      let faults = 2
      const probe = makeProbe((_after, controls) => (faults-- > 0 ? controls.failNext(1, "timeout") : Effect.void))
      const b = yield* makeReplica(server, {
        clientId: "b",
        engine: { background: false, pageSize: 4 * M },
        wrap: probe.wrap
      })
      for (let i = 0; i < 2; i++) {
        const error = yield* Effect.flip(b.engine.syncNow)
        assert.isTrue(error._tag === "TransientError" && error.kind === "timeout", JSON.stringify(error))
      }
      const summary = yield* b.engine.syncNow
      assert.strictEqual(summary.pulled, count)
      const limits = probe.state.limits
      assert.deepStrictEqual(limits.slice(0, 2), [4 * M, 2 * M])
      // The drain: a page's size is settled when the previous page arrives, before the prefetch is sent.
      const times = (n: number, limit: number) => Array.from({ length: n }, () => limit)
      const drain = limits.slice(2)
      assert.deepStrictEqual(drain.slice(0, 2 * G + 3), [...times(G, M), ...times(G, 2 * M), ...times(3, 4 * M)])
      // Later pulls (the check after the drain) keep the configured size.
      assert.deepStrictEqual(new Set(drain.slice(2 * G)), new Set([4 * M]))
      assert.deepStrictEqual(yield* holding(b), { n: count, distinct: count, cursor: count })
    })
  )
})
