/**
 * The engine under the memory transport's remaining fault classes (refused, timeout, malformed), the every-N-cycles
 * resync trigger, and the HLC rule for pulled events. Time is the TestClock's; requests are counted.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, SubscriptionRef, TestClock } from "effect"
import * as Hlc from "../../src/domain/Hlc.js"
import { makeReplica, makeServer, settle, SPACE, waitUntil } from "./harness.js"

const SLOW_MS = 5 * 60_000

describe("SyncEngine faults and triggers", () => {
  it.scoped("refused, timeout and malformed each surface as their one typed error; nothing pending is lost", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
      // First contact (the replica learns the server's epoch) out of the way: the push is then the first request.
      yield* a.engine.syncNow
      yield* a.controls.clearCalls
      yield* a.store.create({ content: "kept through every fault" })
      yield* a.controls.failNext(1, "refused")
      const refused = yield* Effect.flip(a.engine.syncNow)
      assert.isTrue(refused._tag === "TransientError" && refused.kind === "unreachable", JSON.stringify(refused))
      yield* a.controls.failNext(1, "timeout")
      const timeout = yield* Effect.flip(a.engine.syncNow)
      assert.isTrue(timeout._tag === "TransientError" && timeout.kind === "timeout", JSON.stringify(timeout))
      yield* a.controls.failNext(1, "malformed")
      const malformed = yield* Effect.flip(a.engine.syncNow)
      assert.strictEqual(malformed._tag, "ProtocolError")
      assert.deepStrictEqual(
        (yield* a.controls.calls).map((c) => `${c.op}:${c.outcome}`),
        ["push:fault:refused", "push:fault:timeout", "push:fault:malformed"]
      )
      assert.strictEqual((yield* a.engine.ledger.counts).pending, 1)
      assert.strictEqual((yield* a.engine.syncNow).pushed, 1)
    })
  )

  it.scoped("a malformed body is retried on the slow schedule: one request per 5 minutes, never a hot loop", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      // The interval trigger out of the way: the only requests are the push and its retries.
      const a = yield* makeReplica(server, { clientId: "a", engine: { pullIntervalMs: 3_600_000 } })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone && s.state === "idle"))
      yield* a.controls.clearCalls
      yield* a.controls.failNext(2, "malformed")
      yield* a.store.create({ content: "after two bad answers" })
      yield* waitUntil(Effect.map(a.controls.calls, (calls) => calls.length === 1))
      const first = yield* TestClock.currentTimeMillis
      const waiting = yield* SubscriptionRef.get(a.engine.status)
      assert.strictEqual(waiting.state, "syncing", "a protocol error does not change the state")
      assert.strictEqual(waiting.nextRetryAt, first + SLOW_MS)
      assert.isDefined(waiting.lastError)

      const pushes = Effect.map(a.controls.calls, (calls) => calls.filter((c) => c.op === "push").length)
      yield* TestClock.adjust(SLOW_MS - 1_000)
      yield* settle
      assert.strictEqual(yield* pushes, 1, "no retry before the slow delay")
      yield* TestClock.adjust(1_000)
      yield* settle
      assert.strictEqual(yield* pushes, 2)
      yield* TestClock.adjust(SLOW_MS - 1_000)
      yield* settle
      assert.strictEqual(yield* pushes, 2)
      assert.strictEqual((yield* server.head(SPACE)).head, 0)
      yield* TestClock.adjust(1_000)
      yield* waitUntil(Effect.map(server.head(SPACE), (h) => h.head === 1))
      assert.deepStrictEqual(
        (yield* a.controls.calls).filter((c) => c.op === "push").map((c) => c.outcome),
        ["fault:malformed", "fault:malformed", "ok"]
      )
    })
  )

  it.scoped("resyncEvery: agreement is checked on start and then every N pull cycles", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const heads = (resyncEvery: number) =>
        Effect.gen(function* () {
          const r = yield* makeReplica(server, { engine: { resyncEvery, pullIntervalMs: 1_000 } })
          yield* waitUntil(Effect.map(SubscriptionRef.get(r.engine.status), (s) => s.firstPullDone))
          yield* settle
          // Per interval: one pull cycle (the loop's own); head requests come only from resync.
          const seen: Array<number> = []
          for (let i = 0; i < 9; i++) {
            yield* TestClock.adjust(1_000)
            yield* settle
            seen.push((yield* r.controls.calls).filter((c) => c.op === "head").length)
          }
          return seen
        })
      const every3 = yield* heads(3)
      // One check every third cycle: the cycles where the count of head requests grew are 3 apart.
      const steps = every3.map((n, i) => n - (i === 0 ? n : every3[i - 1]!))
      const grew = steps.flatMap((d, i) => (d > 0 ? [i] : []))
      assert.strictEqual(every3[8]! - every3[0]!, 3, JSON.stringify(every3))
      assert.deepStrictEqual(
        grew.map((i) => i - grew[0]!),
        [0, 3, 6],
        JSON.stringify(every3)
      )
      const rarely = yield* heads(1_000)
      assert.strictEqual(rarely[8]! - rarely[0]!, 0, `no check between cycles: ${JSON.stringify(rarely)}`)
    })
  )

  it.scoped("a pulled event stamped ahead advances the local clock: a later local write sorts after it", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const b = yield* makeReplica(server, { clientId: "b", engine: { background: false } })
      const m = yield* b.store.create({ content: "first" })
      yield* b.engine.syncNow
      // Another replica whose clock runs 4 minutes ahead (within the server's drift bound) edits the memory.
      const now = yield* TestClock.currentTimeMillis
      const ahead = Hlc.encode({ wall: now + 4 * 60_000, counter: 0, clientId: "z" })
      const remote = {
        id: "01900000-0000-7000-8000-0000000000aa",
        type: "memory.updated",
        version: 1,
        payload: { id: m.id, patch: { content: "from the fast clock" }, updatedAt: now + 4 * 60_000 },
        hlc: ahead,
        clientId: "z"
      }
      assert.strictEqual((yield* server.push(SPACE, [remote])).results[0]!.status, "accepted")
      assert.strictEqual((yield* b.engine.syncNow).pulled, 1)
      assert.strictEqual((yield* b.store.get(m.id)).content, "from the fast clock")

      // b's wall clock is still 4 minutes behind that stamp; its next write must still win (and sort after it).
      yield* TestClock.adjust(1_000)
      yield* b.store.update(m.id, { content: "written on b afterwards" })
      const history = yield* b.store.history(m.id)
      const last = history[history.length - 1]!
      assert.strictEqual(last.clientId, "b")
      assert.isTrue(last.hlc > ahead, `${last.hlc} must sort after ${ahead}`)
      assert.strictEqual((yield* b.store.get(m.id)).content, "written on b afterwards")
    })
  )
})
