/**
 * The server holds another event under an id this replica holds (the replica's version was, or will be, rejected with
 * `id-conflict`). The replica cannot hold both bodies under one id (the log is keyed by id and append-only), so its
 * view differs from the server's for that event. That must never be silent: the conflict is counted once, logged as
 * a warning, shown in the engine's status, and the replica's own version is dead-lettered whichever of push and pull
 * comes first (it can be requeued under a fresh id).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, SubscriptionRef } from "effect"
import { makeReplica, makeServer, SPACE } from "./harness.js"

/** A logger that keeps the warnings, and the effect it is provided to. */
const capturingWarnings = () => {
  const warnings: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (LogLevel.greaterThanEqual(logLevel, LogLevel.Warning)) warnings.push(String(message))
  })
  return { warnings, provide: Effect.provide(Logger.replace(Logger.defaultLogger, logger)) }
}

/** A replica with one local create, and a server that already holds another body under that event's id. */
const conflicted = Effect.gen(function* () {
  const server = yield* makeServer()
  const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
  const m = yield* a.store.create({ content: "mine" })
  const [created] = yield* a.store.history(m.id)
  const theirs = { ...created!, seq: undefined, payload: { ...(created!.payload as object), content: "theirs" } }
  const [result] = (yield* server.push(SPACE, [theirs])).results
  assert.strictEqual(result!.status, "accepted")
  return { server, a, m, eventId: created!.id }
})

describe("id conflicts", () => {
  it.scoped("push first: rejected, then the server's version is pulled: counted once, warned, in the status", () =>
    Effect.gen(function* () {
      const { a, eventId } = yield* conflicted
      const log = capturingWarnings()
      const summary = yield* a.engine.syncNow.pipe(log.provide)
      assert.strictEqual(summary.rejected, 1)
      assert.strictEqual((yield* a.engine.ledger.counts).idConflicts, 1)
      assert.strictEqual(log.warnings.filter((w) => w.includes(eventId)).length, 1, log.warnings.join("\n"))
      yield* a.engine.syncNow
      assert.strictEqual((yield* SubscriptionRef.get(a.engine.status)).idConflicts, 1)

      // Pulled again (a resync re-pulls from 0): not a new conflict, no new warning.
      yield* a.engine.resync.pipe(log.provide)
      yield* a.engine.syncNow.pipe(log.provide)
      assert.strictEqual((yield* a.engine.ledger.counts).idConflicts, 1)
      assert.strictEqual(log.warnings.filter((w) => w.includes(eventId)).length, 1, log.warnings.join("\n"))
    })
  )

  it.scoped("pull first: the replica's pending version is dead-lettered at once (not silently dropped)", () =>
    Effect.gen(function* () {
      const { server, a, m, eventId } = yield* conflicted
      const log = capturingWarnings()
      const page = yield* server.pull(SPACE, 0, 100)
      const fresh = yield* a.engine.ledger.applyPull(page.events, page.head).pipe(log.provide)
      assert.strictEqual(fresh, 0)
      assert.strictEqual((yield* a.engine.ledger.counts).idConflicts, 1)
      assert.strictEqual(log.warnings.filter((w) => w.includes(eventId)).length, 1, log.warnings.join("\n"))
      const dead = yield* a.engine.ledger.deadLetters
      assert.deepStrictEqual(
        dead.map((d) => [d.eventId, d.reason]),
        [[eventId, "id-conflict"]]
      )
      assert.strictEqual((yield* a.engine.ledger.counts).pending, 0)
      // The replica's version left the event set: its memory is re-folded (no create left here).
      assert.strictEqual((yield* Effect.flip(a.store.get(m.id)))._tag, "MemoryNotFound")

      // Requeue keeps the replica's payload: it reaches the server under a fresh id.
      yield* a.engine.ledger.requeue(eventId)
      const summary = yield* a.engine.syncNow.pipe(log.provide)
      assert.deepStrictEqual([summary.pushed, summary.rejected], [1, 0])
      assert.strictEqual((yield* a.engine.ledger.counts).idConflicts, 1)
    })
  )

  it.scoped("the same body with its keys in another order is the same event, not a conflict", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
      const m = yield* a.store.create({ content: "same", tags: ["t"] })
      const [created] = yield* a.store.history(m.id)
      const reordered = Object.fromEntries(Object.entries(created!.payload as object).reverse())
      const [result] = (yield* server.push(SPACE, [{ ...created!, seq: undefined, payload: reordered }])).results
      assert.strictEqual(result!.status, "accepted")
      const log = capturingWarnings()
      const summary = yield* a.engine.syncNow.pipe(log.provide)
      assert.deepStrictEqual([summary.pushed, summary.rejected], [1, 0])
      assert.strictEqual((yield* a.engine.ledger.counts).idConflicts, 0)
      assert.deepStrictEqual(yield* a.engine.ledger.deadLetters, [])
      assert.deepStrictEqual(log.warnings, [])
    })
  )

  it.scoped("the same body under a held id (our own event pulled back) is not a conflict", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
      const b = yield* makeReplica(server, { clientId: "b", engine: { background: false } })
      yield* a.store.createMany([
        { content: "one", tags: ["x", "y"] },
        { content: "two", importance: 0.25 }
      ])
      const log = capturingWarnings()
      yield* a.engine.syncNow.pipe(log.provide)
      yield* b.engine.syncNow.pipe(log.provide)
      yield* a.engine.resync.pipe(log.provide)
      assert.strictEqual((yield* a.engine.ledger.counts).idConflicts, 0)
      assert.deepStrictEqual(log.warnings, [])
      assert.strictEqual((yield* SubscriptionRef.get(a.engine.status)).idConflicts, 0)
    })
  )
})
