/**
 * The ledger's bookkeeping under failure: what must commit together does, so a crash in the middle leaves either
 * everything or nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeReplica, makeServer, SPACE } from "./harness.js"

/** A replica whose one event was rejected by the server (another body under its id): one dead letter. */
const withDeadLetter = Effect.gen(function* () {
  const server = yield* makeServer()
  const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
  const m = yield* a.store.create({ content: "mine" })
  const [created] = yield* a.store.history(m.id)
  yield* server.push(SPACE, [
    { ...created!, seq: undefined, payload: { ...(created!.payload as object), content: "x" } }
  ])
  assert.strictEqual((yield* a.engine.syncNow).rejected, 1)
  return { a, eventId: created!.id }
})

const count = (a: Effect.Effect.Success<typeof withDeadLetter>["a"], table: string) =>
  a.database.raw((db) => Number(db.prepare(`SELECT count(*) FROM ${table}`).pluck().get()))

describe("Ledger", () => {
  it.scoped("requeue is atomic: a failure after the re-emit leaves no fresh event and the dead letter listed", () =>
    Effect.gen(function* () {
      const { a, eventId } = yield* withDeadLetter
      const events = yield* count(a, "events")
      const outbox = yield* count(a, "outbox")
      // A crash between the two writes of a requeue: the second one (marking the dead letter) fails.
      yield* a.database.raw((db) =>
        db.exec(`CREATE TRIGGER crash BEFORE UPDATE ON dead_letters BEGIN SELECT RAISE(ABORT, 'crash'); END`)
      )
      const failed = yield* Effect.flip(a.engine.ledger.requeue(eventId))
      assert.strictEqual(failed._tag, "StorageError")
      assert.strictEqual(yield* count(a, "events"), events, "the re-emitted event was rolled back")
      assert.strictEqual(yield* count(a, "outbox"), outbox)
      assert.deepStrictEqual(
        (yield* a.engine.ledger.deadLetters).map((d) => d.eventId),
        [eventId]
      )

      // Recovered: the requeue runs once, and only once.
      yield* a.database.raw((db) => db.exec(`DROP TRIGGER crash`))
      const fresh = yield* a.engine.ledger.requeue(eventId)
      assert.strictEqual(yield* count(a, "events"), events + 1)
      assert.strictEqual(yield* count(a, "outbox"), outbox + 1)
      assert.deepStrictEqual(yield* a.engine.ledger.deadLetters, [])
      const again = yield* Effect.flip(a.engine.ledger.requeue(eventId))
      assert.strictEqual(again._tag, "DeadLetterNotFound")
      assert.notStrictEqual(fresh, eventId)
    })
  )
})
