import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Scope, SubscriptionRef, Supervisor, TestClock } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { knownEvents } from "../../src/store/Materializer.js"
import * as Fold from "../../src/domain/Fold.js"
import { makeReplica, makeServer, settle, SPACE, TOKEN, waitUntil } from "./harness.js"

const headOf = (server: { head: (s: string) => Effect.Effect<{ head: number }, unknown> }) =>
  Effect.map(server.head(SPACE), (h) => h.head)

describe("SyncEngine", () => {
  it.scoped("two replicas converge through syncNow", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
      const b = yield* makeReplica(server, { clientId: "b", engine: { background: false } })
      const m = yield* a.store.create({ content: "from a" })
      const sa = yield* a.engine.syncNow
      assert.strictEqual(sa.pushed, 1)
      const sb = yield* b.engine.syncNow
      assert.strictEqual(sb.pulled, 1)
      assert.strictEqual((yield* b.store.get(m.id)).content, "from a")
      yield* b.store.update(m.id, { content: "edited on b" })
      yield* b.engine.syncNow
      yield* a.engine.syncNow
      assert.strictEqual((yield* a.store.get(m.id)).content, "edited on b")
    })
  )

  it.scoped("a local commit is pushed in the background after the debounce", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { commitDebounceMs: 200 } })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone && s.state === "idle"))
      yield* a.store.create({ content: "bg" })
      yield* settle
      assert.strictEqual(yield* headOf(server), 0)
      yield* waitUntil(Effect.map(headOf(server), (h) => h === 1))
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.state === "idle" && s.pending === 0))
    })
  )

  it.scoped("a writer committing faster than the debounce is still pushed within the window", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { commitDebounceMs: 200 } })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone && s.state === "idle"))
      // 20 commits 50 ms apart (1 s): a pure debounce would push nothing until they stop.
      for (let i = 0; i < 20; i++) {
        yield* a.store.create({ content: `steady ${i}` })
        yield* TestClock.adjust("50 millis")
        yield* settle
      }
      assert.isAtLeast(yield* headOf(server), 10)
    })
  )

  it.scoped("a steady writer is pushed once per commit window, not once per round trip", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { commitDebounceMs: 100 } })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone && s.state === "idle"))
      // Each push takes 5 ms; a commit every 2 ms for 1 s. Draining after every answer would push ~200 times, a few
      // events each, each push a transaction competing with the writer for the connection.
      yield* a.controls.setDelay(5)
      const before = (yield* a.controls.calls).filter((c) => c.op === "push").length
      for (let i = 0; i < 500; i++) {
        yield* a.store.create({ content: `steady ${i}` })
        yield* TestClock.adjust("2 millis")
        yield* settle
      }
      yield* waitUntil(Effect.map(headOf(server), (h) => h === 500))
      const pushes = (yield* a.controls.calls).filter((c) => c.op === "push").length - before
      // One per 100 ms window (10 in 1 s), give or take the windows at the edges.
      assert.isAtLeast(pushes, 8)
      assert.isAtMost(pushes, 14)
    })
  )

  it.scoped("transient errors retry with backoff, report offline, then recover", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a" })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone))
      yield* a.controls.clearCalls
      yield* a.controls.failNext(4, "5xx")
      yield* a.store.create({ content: "survives outages" })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.state === "offline"))
      const offline = yield* SubscriptionRef.get(a.engine.status)
      assert.isDefined(offline.nextRetryAt)
      assert.strictEqual(offline.pending, 1)
      yield* waitUntil(
        Effect.map(headOf(server), (h) => h === 1),
        { stepMs: 100 }
      )
      const calls = yield* a.controls.calls
      assert.strictEqual(calls.filter((c) => c.outcome === "fault:5xx").length, 4)
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.state === "idle"))
      assert.isUndefined((yield* SubscriptionRef.get(a.engine.status)).lastError)
    })
  )

  it.scoped("429 Retry-After is honoured as the minimum delay", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a" })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone))
      yield* a.controls.failNext(1, "429", 30)
      yield* a.store.create({ content: "later" })
      yield* TestClock.adjust("29 seconds")
      assert.strictEqual(yield* headOf(server), 0)
      yield* TestClock.adjust("2 seconds")
      yield* waitUntil(Effect.map(headOf(server), (h) => h === 1))
    })
  )

  it.scoped("401: one request per auth episode, pending kept, a new token resumes without duplicates", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, {
        clientId: "a",
        engine: { token: "expired" },
        tokens: { [TOKEN]: SPACE }
      })
      yield* a.store.createMany([{ content: "one" }, { content: "two" }, { content: "three" }])
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.state === "auth-failed"))
      yield* TestClock.adjust("4 minutes")
      const episode = yield* a.controls.calls
      assert.strictEqual(episode.length, 1, JSON.stringify(episode))
      assert.strictEqual(episode[0]!.outcome, "unauthorized")
      const parked = yield* SubscriptionRef.get(a.engine.status)
      assert.strictEqual(parked.state, "auth-failed")
      assert.strictEqual(parked.pending, 3)
      // The slow probe: one auth-check after 5 minutes, still refused, still parked.
      yield* TestClock.adjust("1 minute")
      yield* settle
      const probed = yield* a.controls.calls
      assert.strictEqual(probed.length, 2)
      assert.strictEqual(probed[1]!.op, "authCheck")
      // New credentials: resume at once.
      yield* SubscriptionRef.set(a.engine.credentials, Option.some(TOKEN))
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.pending === 0 && s.state === "idle"))
      assert.strictEqual(yield* headOf(server), 3)
    })
  )

  it.scoped("403 parks too, and the probe resumes once the server accepts the token again", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a" })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone))
      yield* a.controls.clearCalls
      yield* a.controls.failNext(1, "403")
      yield* a.store.create({ content: "x" })
      yield* TestClock.adjust("2 minutes")
      assert.strictEqual((yield* a.controls.calls).length, 1)
      assert.strictEqual((yield* SubscriptionRef.get(a.engine.status)).state, "auth-failed")
      yield* TestClock.adjust("3 minutes")
      yield* waitUntil(Effect.map(headOf(server), (h) => h === 1))
    })
  )

  it.scoped("an uncertain push (committed, response lost) is deduplicated; push order is preserved", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { batchSize: 3 } })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone && s.state === "idle"))
      yield* a.controls.loseNext(1, "push")
      for (let i = 0; i < 10; i++) yield* a.store.create({ content: `m${i}` })
      yield* waitUntil(Effect.map(a.store.stats, (s) => s.pendingOutbox === 0))
      assert.isTrue((yield* a.controls.calls).some((c) => c.outcome === "lost"))
      const page = yield* server.pull(SPACE, 0, 100)
      assert.strictEqual(page.events.length, 10)
      const stamps = page.events.map((e) => e.hlc)
      assert.deepStrictEqual(stamps, [...stamps].sort())
    })
  )

  it.scoped("a server epoch reset re-pushes what the new server lacks and re-converges", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
      const b = yield* makeReplica(server, { clientId: "b", engine: { background: false } })
      yield* a.store.create({ content: "a1" })
      yield* b.store.create({ content: "b1" })
      yield* a.engine.syncNow
      yield* b.engine.syncNow
      yield* a.engine.syncNow
      const fresh = yield* makeServer()
      assert.notStrictEqual(fresh.epoch, server.epoch)
      yield* a.controls.replaceServer(fresh)
      yield* b.controls.replaceServer(fresh)
      yield* a.store.create({ content: "a2 after reset" })
      const s = yield* a.engine.syncNow
      assert.isTrue(s.resynced)
      yield* b.engine.syncNow
      yield* a.engine.syncNow
      assert.strictEqual(yield* headOf(fresh), 3)
      const viewA = (yield* a.store.list()).map((m) => m.content).sort()
      const viewB = (yield* b.store.list()).map((m) => m.content).sort()
      assert.deepStrictEqual(viewA, ["a1", "a2 after reset", "b1"])
      assert.deepStrictEqual(viewB, viewA)
    })
  )

  it.scoped("a replica restored from an old copy of its file re-converges", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "memsync-restore-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const server = yield* makeServer()
      const file = join(dir, "a.db")
      const backup = join(dir, "a-backup.db")
      const first = yield* Scope.make()
      const a = yield* makeReplica(server, { clientId: "a", filename: file, engine: { background: false } }).pipe(
        Scope.extend(first)
      )
      yield* a.store.create({ content: "before backup" })
      yield* a.engine.syncNow
      yield* Effect.promise(async () => {
        const Sqlite = (await import("better-sqlite3")).default
        const db = new Sqlite(file)
        db.exec(`VACUUM INTO '${backup}'`)
        db.close()
      })
      yield* a.store.create({ content: "after backup, synced" })
      yield* a.engine.syncNow
      yield* Scope.close(first, Exit.void)
      const restored = yield* makeReplica(server, { clientId: "a", filename: backup, engine: { background: false } })
      yield* restored.store.create({ content: "written on the restored copy" })
      yield* restored.engine.syncNow
      const contents = (yield* restored.store.list()).map((m) => m.content).sort()
      assert.deepStrictEqual(contents, ["after backup, synced", "before backup", "written on the restored copy"])
      const all = yield* server.pull(SPACE, 0, 1000)
      const expected = Array.from(Fold.fold(knownEvents(all.events)).values()).filter(Fold.isVisible).length
      assert.strictEqual(expected, 3)
      assert.strictEqual((yield* restored.store.stats).pendingOutbox, 0)
    })
  )

  it.scoped("closing the scope makes one bounded final push, then stops every fiber", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const scope = yield* Scope.make()
      const a = yield* makeReplica(server, { clientId: "a", engine: { commitDebounceMs: 60_000 } }).pipe(
        Scope.extend(scope)
      )
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone))
      yield* a.store.create({ content: "flushed on close" })
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* headOf(server), 1)

      // A server that never answers: the close still finishes, bounded by the flush timeout.
      const scope2 = yield* Scope.make()
      // Tracks every fiber forked while b is built (the engine's fibers and what they fork).
      const supervisor = yield* Supervisor.track
      const b = yield* makeReplica(server, {
        clientId: "b",
        engine: { commitDebounceMs: 60_000, flushTimeoutMs: 2_000 }
      }).pipe(Scope.extend(scope2), Effect.supervised(supervisor))
      assert.isAbove((yield* supervisor.value).length, 0, "the engine runs fibers")
      yield* waitUntil(Effect.map(SubscriptionRef.get(b.engine.status), (s) => s.firstPullDone))
      yield* b.controls.setDelay(3_600_000)
      yield* b.store.create({ content: "stays pending" })
      const started = yield* TestClock.currentTimeMillis
      const closing = yield* Effect.fork(Scope.close(scope2, Exit.void))
      yield* waitUntil(Effect.map(Fiber.poll(closing), Option.isSome), { stepMs: 100 })
      yield* Fiber.join(closing)
      const took = (yield* TestClock.currentTimeMillis) - started
      assert.isAtMost(took, 2_200)
      // The push was cut short: the server never got the event (it stays in b's outbox file for the next start).
      assert.strictEqual(yield* headOf(server), 1)
      // Every fiber is gone: none is alive, and an hour later nothing has started or finished another request. (The
      // transport records a call only after its delay, 1 h here, so a request started by a surviving fiber shows only
      // in `attempts`; and a surviving fiber that makes no request, such as the interval trigger, only in the
      // supervisor.)
      yield* settle
      assert.deepStrictEqual((yield* supervisor.value).length, 0, "engine fibers alive after the scope closed")
      const attempts = yield* b.attempts
      const calls = (yield* b.controls.calls).length
      yield* TestClock.adjust("1 hour")
      assert.strictEqual(yield* b.attempts, attempts)
      assert.strictEqual((yield* b.controls.calls).length, calls)
    })
  )

  it.scoped("remote mode: a write waits for the ack; no ack in time is AckTimeout and the event stays pending", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { mode: "remote", ackTimeoutMs: 5_000 } })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone))
      const ok = yield* Effect.fork(a.engine.confirm(a.store.create({ content: "acked" })))
      yield* waitUntil(Effect.map(Fiber.poll(ok), Option.isSome))
      const m = yield* Fiber.join(ok)
      assert.strictEqual(m.content, "acked")
      assert.strictEqual(yield* headOf(server), 1)

      yield* a.controls.partition(true)
      const late = yield* Effect.fork(Effect.either(a.engine.confirm(a.store.create({ content: "not acked" }))))
      yield* TestClock.adjust("6 seconds")
      const result = yield* Fiber.join(late)
      assert.isTrue(result._tag === "Left" && result.left._tag === "AckTimeout")
      assert.strictEqual((yield* a.store.stats).pendingOutbox, 1)
      yield* a.controls.partition(false)
      yield* waitUntil(
        Effect.map(headOf(server), (h) => h === 2),
        { stepMs: 500 }
      )
    })
  )

  it.scoped("remote mode: confirm judges only the events its write made, not another writer's in between", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { mode: "remote", ackTimeoutMs: 5_000 } })
      yield* waitUntil(Effect.map(SubscriptionRef.get(a.engine.status), (s) => s.firstPullDone))
      // The confirmed write takes a second; meanwhile another fiber commits an event the server will reject.
      const mine = yield* Effect.fork(
        Effect.either(a.engine.confirm(Effect.zipRight(Effect.sleep("1 second"), a.store.create({ content: "mine" }))))
      )
      yield* settle
      const other = yield* Effect.fork(a.store.emit("memory.created", 1, { not: "a memory" }))
      // The other writer is not held up by the confirmed write: the database is free while it runs.
      yield* Fiber.join(other)
      yield* TestClock.adjust("1 second")
      yield* waitUntil(Effect.map(Fiber.poll(mine), Option.isSome))
      const result = yield* Fiber.join(mine)
      assert.isTrue(result._tag === "Right" && result.right.content === "mine", JSON.stringify(result))
      // The other writer's event was rejected all the same: it is its own business, in dead letters.
      yield* waitUntil(Effect.map(a.engine.ledger.counts, (c) => c.deadLetters === 1))
      assert.strictEqual((yield* a.engine.ledger.deadLetters)[0]!.reason, "invalid")
    })
  )

  it.scoped("a rejected event is dead-lettered, its memory re-folded, and requeue sends its payload again", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
      const m = yield* a.store.create({ content: "conflicted" })
      const [created] = yield* a.store.history(m.id)
      // Someone else already pushed a different body under the same event id.
      yield* server.push(SPACE, [
        { ...created!, seq: undefined, payload: { ...(created!.payload as object), content: "other" } }
      ])
      const summary = yield* a.engine.syncNow
      assert.strictEqual(summary.rejected, 1)
      const dead = yield* a.engine.ledger.deadLetters
      assert.strictEqual(dead.length, 1)
      assert.strictEqual(dead[0]!.reason, "id-conflict")
      const gone = yield* Effect.flip(a.store.get(m.id))
      assert.strictEqual(gone._tag, "MemoryNotFound")
      yield* a.engine.ledger.requeue(created!.id)
      yield* a.engine.syncNow
      assert.strictEqual((yield* a.store.get(m.id)).content, "conflicted")
      assert.strictEqual((yield* a.engine.ledger.deadLetters).length, 0)
    })
  )
})
