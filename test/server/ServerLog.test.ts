/**
 * ServerLog called directly (as the in-process transport does): admission, idempotency, gapless seqs, digest, epoch,
 * the append-only table, and a restart over the same file.
 */
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Context, Effect, Either, Layer, TestClock } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Digest from "../../src/domain/Digest.js"
import * as Admission from "../../src/server/Admission.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import * as Database from "../../src/store/Database.js"
import { makeEvent, makeEvents, T0 } from "./fixtures.js"

const NOW = T0 + 60 * 60 * 1000

const build = (layer: Layer.Layer<ServerLog.ServerLog, unknown>) =>
  Effect.map(Layer.build(layer), (ctx) => Context.get(ctx, ServerLog.ServerLog))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "memsync-serverlog-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("ServerLog", () => {
  it.scoped("a copy of an event later in the same batch is a duplicate of the first", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const log = yield* build(ServerLog.layerMemory())
      const e = makeEvent(1)
      const r = yield* log.push("s", [e, makeEvent(2), e, makeEvent(1, { content: "other" })])
      assert.deepStrictEqual(
        r.results.map((x) => `${x.status}:${x.status === "rejected" ? x.reason : x.seq}`),
        ["accepted:1", "accepted:2", "duplicate:1", "rejected:id-conflict"]
      )
      assert.strictEqual(r.head, 2)
      assert.strictEqual(r.epoch, log.epoch)
    })
  )

  it.scoped("a deeply nested payload is rejected on its own; its batch is stored", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const log = yield* build(ServerLog.layerMemory())
      let deep: unknown = []
      for (let i = 1; i < 100_000; i++) deep = [deep]
      const [a, b, c, d] = makeEvents(4)
      const r = yield* log.push("s", [a, { ...b!, payload: deep }, c, { ...d!, type: "memory.pinned", payload: deep }])
      assert.deepStrictEqual(
        r.results.map((x) => `${x.status}:${x.status === "rejected" ? x.reason : x.seq}`),
        ["accepted:1", "rejected:invalid", "accepted:2", "rejected:invalid"]
      )
      for (const x of r.results) if (x.status === "rejected") assert.match(x.message, /nesting depth limit is 64/)
      // A payload at the limit is stored (for a type whose payload has no schema here).
      let atLimit: unknown = {}
      for (let i = 1; i < 64; i++) atLimit = { x: atLimit }
      const ok = yield* log.push("s", [{ ...makeEvent(9), type: "memory.pinned", payload: atLimit }])
      assert.strictEqual(ok.results[0]?.status, "accepted")
      assert.deepStrictEqual((yield* log.pull("s", 2, 1)).events[0]?.payload, atLimit)
    })
  )

  it.scoped("a type with an unpaired surrogate is rejected as invalid; every stored event is served as pushed", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const log = yield* build(ServerLog.layerMemory())
      // What a client sends as JSON "future.kind\ud800": SQLite's UTF-8 TEXT would serve it back as U+FFFD.
      const lone = JSON.parse('"future.kind\\ud800"') as string
      const paired = "future.kind\u{1F600}"
      const [a, b] = makeEvents(2)
      const pushed = [
        { ...a!, type: lone, payload: { a: 1 } },
        { ...b!, type: paired, payload: { s: JSON.parse('"\\udc00 in a payload"') as string } }
      ]
      const r = yield* log.push("s", pushed)
      assert.deepStrictEqual(
        r.results.map((x) => `${x.status}:${x.status === "rejected" ? x.reason : x.seq}`),
        ["rejected:invalid", "accepted:1"]
      )
      const [rejected] = r.results
      assert.match(rejected!.status === "rejected" ? rejected!.message : "", /unpaired surrogates/)
      // A payload's strings are stored as JSON text (escaped), so they come back exactly.
      const { seq: _seq, ...served } = (yield* log.pull("s", 0, 10)).events[0]!
      assert.deepStrictEqual(served, pushed[1])
      assert.strictEqual(Admission.bodyHashOf(served), Admission.bodyHashOf(pushed[1]!))
    })
  )

  it.scoped("the digest is kept incrementally and equals Digest.of over the ids 1..head", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const log = yield* build(ServerLog.layerMemory())
      const events = makeEvents(30)
      let expected = Digest.EMPTY
      for (let i = 0; i < 30; i += 7) {
        yield* log.push("s", events.slice(i, i + 7))
        for (const e of events.slice(i, i + 7)) expected = Digest.add(expected, e.id)
        assert.strictEqual((yield* log.head("s")).digest, expected)
      }
      assert.strictEqual(expected, Digest.of(events.map((e) => e.id)))
      assert.deepStrictEqual(yield* log.head("other"), { head: 0, digest: Digest.EMPTY, epoch: log.epoch })
    })
  )

  it.scoped("clock drift is judged by Effect's Clock: the same event passes once time catches up", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const log = yield* build(ServerLog.layerMemory({ maxDriftMs: 1000 }))
      const ahead = makeEvent(1, { wall: T0 + 5000 })
      const first = yield* log.push("s", [ahead])
      assert.strictEqual(first.results[0]?.status === "rejected" ? first.results[0].reason : "", "clock-drift")
      yield* TestClock.adjust("4 seconds")
      const second = yield* log.push("s", [ahead])
      assert.deepStrictEqual(second.results, [{ status: "accepted", id: ahead.id, seq: 1 }])
    })
  )

  it.scoped("pullBody is exactly the JSON of the page pull returns", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const log = yield* build(ServerLog.layerMemory())
      const odd = { ...makeEvent(99), type: "x.odd", payload: { 'quote"d': ["é", 1.5, null, { z: 1, a: "\n" }] } }
      // Every character JSON escapes, in the one free-text envelope field (the type), and some it does not.
      const escapes = Array.from({ length: 0x20 }, (_, c) => String.fromCharCode(c)).join("") + '"\\\u007f\u2028é😀'
      const oddType = { ...makeEvent(98), type: escapes.slice(0, 32) }
      const oddType2 = { ...makeEvent(97), type: escapes.slice(32) }
      yield* log.push("s", [...makeEvents(5), odd, oddType, oddType2])
      for (const [after, limit] of [
        [0, 100],
        [0, 2],
        [4, 10],
        [6, 2],
        [8, 10],
        [9, 10]
      ] as const) {
        const body = yield* log.pullBody("s", after, limit)
        const page = yield* log.pull("s", after, limit)
        assert.strictEqual(Buffer.from(body).toString("utf8"), JSON.stringify(page))
        assert.deepStrictEqual(body, ServerLog.encodePage(page))
        assert.strictEqual(page.epoch, log.epoch)
      }
    })
  )

  it.scoped("a stored event damaged on disk fails the pull instead of being served wrong or left out of the page", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const dir = yield* tempDir
      // [the damage, whether `pull` (the in-process form) notices it too]
      const damages = [
        ["version = 'one'", true],
        ["payload = 'not json'", true],
        ["version = 9007199254740993", false],
        ["seq = 'two'", true]
      ] as const
      for (const [index, [damage, pullNotices]] of damages.entries()) {
        const file = join(dir, `server-${index}.db`)
        yield* Effect.scoped(
          Effect.flatMap(build(ServerLog.layer({ filename: file })), (log) => log.push("s", makeEvents(3)))
        )
        const db = new Sqlite(file)
        db.exec(`DROP TRIGGER server_events_no_update; UPDATE server_events SET ${damage} WHERE seq = 2`)
        db.close()
        yield* Effect.scoped(
          Effect.gen(function* () {
            const log = yield* build(ServerLog.layer({ filename: file }))
            // Either, not flip: a body served by mistake is shown as text (vitest chokes on a Buffer as the error).
            const body = yield* Effect.either(log.pullBody("s", 0, 10))
            if (Either.isRight(body))
              assert.fail(`${damage}: served ${Buffer.from(body.right).toString().slice(0, 300)}`)
            assert.strictEqual(body.left._tag, "ServerError", damage)
            assert.include(body.left.message, "corrupt", damage)
            if (pullNotices) assert.isTrue(Either.isLeft(yield* Effect.either(log.pull("s", 0, 10))), damage)
            // The events before the damaged one are still served.
            const first: unknown = JSON.parse(Buffer.from(yield* log.pullBody("s", 0, 1)).toString())
            assert.strictEqual((first as { events: ReadonlyArray<{ seq: number }> }).events[0]?.seq, 1, damage)
          })
        )
      }
    })
  )

  it.scoped("pull clamps its arguments and batches over maxBatch fail as a whole", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const log = yield* build(ServerLog.layerMemory({ maxBatch: 10, maxPullLimit: 4 }))
      yield* log.push("s", makeEvents(10))
      const page = yield* log.pull("s", -5, 1000)
      assert.deepStrictEqual(
        page.events.map((e) => e.seq),
        [1, 2, 3, 4]
      )
      assert.isTrue(page.hasMore)
      const error = yield* Effect.flip(log.push("s", makeEvents(11, { from: 100 })))
      assert.strictEqual(error._tag, "PayloadTooLarge")
      assert.strictEqual((yield* log.head("s")).head, 10)
    })
  )

  it.scoped("events, head, digest and epoch survive a restart; seqs continue after head", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const dir = yield* tempDir
      const filename = join(dir, "server.db")
      const events = makeEvents(12)
      const before = yield* Effect.scoped(
        Effect.gen(function* () {
          const log = yield* build(ServerLog.layer({ filename }))
          yield* log.push("s", events.slice(0, 8))
          return { head: yield* log.head("s"), page: yield* log.pull("s", 0, 100) }
        })
      )
      const log = yield* build(ServerLog.layer({ filename }))
      assert.deepStrictEqual(yield* log.head("s"), before.head)
      assert.deepStrictEqual(yield* log.pull("s", 0, 100), before.page)
      const again = yield* log.push("s", events)
      assert.deepStrictEqual(
        again.results.map((r) => (r.status === "rejected" ? r.reason : `${r.status}:${r.seq}`)),
        events.map((_, i) => (i < 8 ? `duplicate:${i + 1}` : `accepted:${i + 1}`))
      )
      assert.strictEqual((yield* log.head("s")).digest, Digest.of(events.map((e) => e.id)))
    })
  )

  it.scoped("server_events is append-only, and the file is refused as a replica database", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const dir = yield* tempDir
      const filename = join(dir, "server.db")
      yield* Effect.scoped(Effect.flatMap(build(ServerLog.layer({ filename })), (log) => log.push("s", makeEvents(2))))
      const db = new Sqlite(filename)
      try {
        assert.throws(() => db.prepare("UPDATE server_events SET type = 'x'").run(), /append-only/)
        assert.throws(() => db.prepare("DELETE FROM server_events").run(), /append-only/)
        assert.strictEqual(db.prepare("SELECT value FROM memsync_meta WHERE key = 'kind'").pluck().get(), "server")
      } finally {
        db.close()
      }
      const opened = yield* Effect.exit(Effect.scoped(Database.make({ filename })))
      assert.isTrue(opened._tag === "Failure" && String(opened.cause).includes("WrongDatabaseKind"))
    })
  )
})

describe("Admission", () => {
  it("checks in a fixed order and hashes the canonical envelope only", () => {
    const limits = { maxEventBytes: 1000, maxDriftMs: 1000 }
    const reason = (u: unknown, now = T0 + 100) =>
      Either.match(Admission.admit(u, now, limits), { onLeft: (r) => r.reason, onRight: () => "ok" })
    assert.strictEqual(reason(makeEvent(1)), "ok")
    assert.strictEqual(reason(null), "invalid")
    assert.strictEqual(reason({ ...makeEvent(1), payload: undefined }), "invalid")
    assert.strictEqual(reason({ ...makeEvent(1), clientId: "someone-else" }), "invalid")
    // Too large wins over an invalid payload; drift is checked last.
    assert.strictEqual(reason({ ...makeEvent(1), payload: { content: "x".repeat(2000) } }), "too-large")
    assert.strictEqual(reason(makeEvent(1, { wall: T0 + 5000 })), "clock-drift")
    assert.strictEqual(reason({ ...makeEvent(1), type: "future.kind", payload: 1 }), "ok")
    const e = makeEvent(1)
    const a = Either.getOrThrow(Admission.admit(e, T0, limits))
    const b = Either.getOrThrow(Admission.admit({ zzz: 1, ...e }, T0, limits))
    assert.strictEqual(a.bodyHash, b.bodyHash)
    assert.strictEqual(a.bodyHash, Admission.bodyHashOf(e))
    assert.notStrictEqual(
      a.bodyHash,
      Either.getOrThrow(Admission.admit({ ...e, version: 1, type: "x" }, T0, limits)).bodyHash
    )
  })
})
