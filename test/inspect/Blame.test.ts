/**
 * Blame and explain on a planted history: a write that arrived last but is stamped earlier loses; a dead letter and
 * an unknown kind are shown but not folded; a delete is a tombstone that beats a later update.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Blame from "../../src/inspect/Blame.js"
import * as Format from "../../src/inspect/Format.js"
import { created, deadLetter, deleted, ingest, tempFile, unknownKind, updated, withSource } from "./fixtures.js"

const history = () => {
  const create = created("m1", "c1", 10, { content: "v1" })
  const winner = updated("m1", "c2", 30, { content: "v2" })
  const late = updated("m1", "c3", 20, { content: "v3, written offline" })
  const importance = updated("m1", "c1", 40, { importance: 0.9 })
  const unknown = unknownKind("m1", "c2", 45)
  const rejected = updated("m1", "c1", 50, { content: "rejected" })
  return { create, winner, late, importance, unknown, rejected }
}

/** A replica holding the history (the late write arrives after the winner), with `rejected` dead-lettered. */
const setUp = Effect.gen(function* () {
  const file = tempFile("replica.db")
  const h = history()
  yield* ingest(file, [h.create, h.winner, h.importance, h.late, h.unknown, h.rejected])
  yield* deadLetter(file, [h.rejected.id])
  return { file, h }
})

describe("Blame", () => {
  it.effect("names the event that set each field and the writes that lost, latest first", () =>
    Effect.gen(function* () {
      const { file, h } = yield* setUp
      const report = yield* Blame.blame("m1").pipe(withSource(file))
      assert.deepStrictEqual(report.memory, { id: "m1", created: true, deleted: false, visible: true })
      assert.strictEqual(report.events, 6)
      const field = (name: string) => report.fields.find((f) => f.field === name)
      const content = field("content")
      assert.strictEqual(content?.value, "v2")
      assert.strictEqual(content?.setBy.id, h.winner.id)
      assert.strictEqual(content?.setBy.clientId, "c2")
      assert.deepStrictEqual(
        content?.lost.map((l) => [l.id, l.value, l.clientId]),
        [
          [h.late.id, "v3, written offline", "c3"],
          [h.create.id, "v1", "c1"]
        ]
      )
      assert.strictEqual(field("importance")?.setBy.id, h.importance.id)
      assert.strictEqual(field("category")?.setBy.id, h.create.id)
      assert.deepStrictEqual(field("category")?.lost, [])
      assert.isUndefined(field("deletedAt"))
      assert.deepStrictEqual(
        report.skipped.map((s) => [s.id, s.why]),
        [
          [h.unknown.id, "unknown-kind"],
          [h.rejected.id, "dead-lettered"]
        ]
      )
      const one = yield* Blame.blame("m1", "content").pipe(withSource(file))
      assert.deepStrictEqual(
        one.fields.map((f) => f.field),
        ["content"]
      )
    })
  )

  it.effect("explains what an event won and lost, and why a dead letter was not applied", () =>
    Effect.gen(function* () {
      const { file, h } = yield* setUp
      const late = yield* Blame.explain(h.late.id).pipe(withSource(file))
      assert.isTrue(late.applied)
      assert.deepStrictEqual(late.won, [])
      assert.deepStrictEqual(
        late.lost.map((l) => [l.field, l.value, l.to.id]),
        [
          ["content", "v3, written offline", h.winner.id],
          ["updatedAt", Date.UTC(2025, 0, 1) + 20, h.importance.id]
        ]
      )
      assert.strictEqual(late.sync.state, "unconfirmed")

      const winner = yield* Blame.explain(h.winner.id).pipe(withSource(file))
      assert.deepStrictEqual(
        winner.won.map((w) => w.field),
        ["content"]
      )

      const rejected = yield* Blame.explain(h.rejected.id).pipe(withSource(file))
      assert.isFalse(rejected.applied)
      assert.strictEqual(rejected.skipped?.why, "dead-lettered")
      assert.strictEqual(rejected.sync.state, "dead-lettered")
      assert.include(rejected.skipped?.message ?? "", "planted by a test")

      const unknown = yield* Blame.explain(h.unknown.id).pipe(withSource(file))
      assert.isFalse(unknown.applied)
      assert.strictEqual(unknown.skipped?.why, "unknown-kind")

      const missing = yield* Effect.flip(Blame.explain("019a0000-0000-7000-8000-000000000000").pipe(withSource(file)))
      assert.strictEqual(missing._tag, "EventNotFound")
      const noMemory = yield* Effect.flip(Blame.blame("nope").pipe(withSource(file)))
      assert.strictEqual(noMemory._tag, "MemoryUnknown")
    })
  )

  it.effect("a delete is a tombstone: it hides the memory even from a later update", () =>
    Effect.gen(function* () {
      const file = tempFile("replica.db")
      const create = created("m2", "a", 1)
      const remove = deleted("m2", "b", 2)
      const after = updated("m2", "a", 3, { content: "too late" })
      yield* ingest(file, [create, remove, after])
      const del = yield* Blame.explain(remove.id).pipe(withSource(file))
      assert.isTrue(del.tombstone)
      assert.deepStrictEqual(
        del.won.map((w) => w.field),
        ["deletedAt"]
      )
      const upd = yield* Blame.explain(after.id).pipe(withSource(file))
      assert.isTrue(upd.applied)
      assert.deepStrictEqual(upd.memory, { id: "m2", created: true, deleted: true, visible: false })
      assert.deepStrictEqual(
        upd.won.map((w) => w.field),
        ["content", "updatedAt"]
      )
    })
  )

  it.effect("a memory whose create was dead-lettered says so, with the server's reason", () =>
    Effect.gen(function* () {
      const file = tempFile("replica.db")
      const create = created("m3", "a", 1)
      const edit = updated("m3", "b", 2, { content: "kept, waiting" })
      yield* ingest(file, [create, edit])
      yield* deadLetter(file, [create.id])
      const onCreate = yield* Blame.explain(create.id).pipe(withSource(file))
      assert.deepStrictEqual(onCreate.memory?.rejectedCreate?.id, create.id)
      const text = Format.formatExplanation(onCreate)
      assert.include(
        text,
        `memory    m3: hidden (its create ${create.id} was dead-lettered: rejected by the server: invalid: planted by a test)`
      )
      assert.include(text, "applied   no: dead-lettered (rejected by the server: invalid: planted by a test)")
      assert.notInclude(text, "no create held")
      const blamed = Format.formatBlame(yield* Blame.blame("m3").pipe(withSource(file)))
      assert.include(blamed, `m3: hidden (its create ${create.id} was dead-lettered`)

      // Without a create at all, the update waits for it.
      const waiting = tempFile("replica.db")
      yield* ingest(waiting, [edit])
      const alone = Format.formatExplanation(yield* Blame.explain(edit.id).pipe(withSource(waiting)))
      assert.include(alone, "m3: hidden (no create held: updates are kept until it arrives)")
    })
  )
})
