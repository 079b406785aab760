/**
 * Replay: the state as of a point equals the reference fold of the events up to it, in a new file that `verify`
 * accepts, or streamed back; `--at` selects by HLC time whatever the arrival order; dead letters stay out of the fold;
 * a server space replays like a replica; an existing output file is never touched.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { dirname } from "node:path"
import * as Fold from "../../src/domain/Fold.js"
import * as EventSource from "../../src/inspect/EventSource.js"
import * as Log from "../../src/inspect/Log.js"
import * as Snapshot from "../../src/inspect/Snapshot.js"
import { knownEvents } from "../../src/store/Materializer.js"
import * as Replay from "../../src/store/Replay.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"
import {
  created,
  deadLetter,
  deleted,
  ingest,
  replica,
  serve,
  sortStates,
  tempDir,
  tempFile,
  updated,
  viewOf,
  withSource
} from "./fixtures.js"

const verifyFile = (filename: string) => Replay.verify().pipe(Effect.provide(replica(filename)))

const visibleOf = (states: Map<string, Fold.MemoryState>) =>
  [...states.values()]
    .filter(Fold.isVisible)
    .flatMap((s) => Fold.toMemory(s) ?? [])
    .sort((a, b) => (a.id < b.id ? -1 : 1))

describe("Snapshot", () => {
  it.effect.prop(
    "replay --until N equals Fold of the first N events, in a file verify accepts",
    [Arbitraries.mixedEventSet({ maxLength: 40 }), fc.nat()],
    ([events, pick]) =>
      Effect.gen(function* () {
        const dir = tempDir()
        const source = `${dir}/source.db`
        yield* ingest(source, events.all, 7)
        const n = pick % (events.all.length + 1)
        const out = `${dir}/replay.db`
        const summary = yield* Snapshot.toFile(out, { _tag: "Seq", seq: n }).pipe(withSource(source))
        assert.strictEqual(summary.events, n)
        const expected = Fold.fold(knownEvents(events.all.slice(0, n)))
        assert.deepStrictEqual(yield* viewOf(out), sortStates(expected))
        const report = yield* verifyFile(out)
        assert.isTrue(report.ok, JSON.stringify(report))
        assert.strictEqual(report.events, n)

        // The printed form holds the same memories.
        const printed: Array<unknown> = []
        yield* Snapshot.scan({ _tag: "Seq", seq: n }, (page) =>
          Effect.sync(() => page.forEach(({ deleted: _d, ...m }) => printed.push(m)))
        ).pipe(withSource(source))
        assert.deepStrictEqual(printed, visibleOf(expected))
      }),
    { fastCheck: { numRuns: 8 } }
  )

  it.effect("--at selects by HLC time, whatever the order of arrival", () =>
    Effect.gen(function* () {
      const source = tempFile("source.db")
      const early = created("m1", "a", 10, { content: "first words" })
      const late = updated("m1", "b", 100, { content: "later words" })
      const middle = updated("m1", "c", 50, { importance: 0.9 })
      // Arrival order is not stamp order: the late update comes first.
      yield* ingest(source, [late, early, middle])
      const at = (offset: number) =>
        Effect.gen(function* () {
          const shown: Array<{ content: string; importance: number }> = []
          yield* Snapshot.scan({ _tag: "Time", millis: Date.UTC(2025, 0, 1) + offset }, (page) =>
            Effect.sync(() => page.forEach((m) => shown.push({ content: m.content, importance: m.importance })))
          ).pipe(withSource(source))
          return shown
        })
      assert.deepStrictEqual(yield* at(9), [])
      assert.deepStrictEqual(yield* at(10), [{ content: "first words", importance: 0.5 }])
      assert.deepStrictEqual(yield* at(99), [{ content: "first words", importance: 0.9 }])
      assert.deepStrictEqual(yield* at(100), [{ content: "later words", importance: 0.9 }])
      // By seq, the first event alone is the update without its create: nothing is readable yet.
      const bySeq: Array<string> = []
      yield* Snapshot.scan({ _tag: "Seq", seq: 1 }, (page) =>
        Effect.sync(() => page.forEach((m) => bySeq.push(m.id)))
      ).pipe(withSource(source))
      assert.deepStrictEqual(bySeq, [])
    })
  )

  it.effect("dead letters stay out of the fold and are carried into the new file", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const source = `${dir}/source.db`
      const create = created("m1", "a", 1, { content: "kept" })
      const rejected = updated("m1", "a", 2, { content: "rejected by the server" })
      yield* ingest(source, [create, rejected])
      yield* deadLetter(source, [rejected.id])
      const out = `${dir}/out.db`
      const summary = yield* Snapshot.toFile(out, { _tag: "Seq", seq: 2 }).pipe(withSource(source))
      assert.strictEqual(summary.events, 2)
      assert.strictEqual(summary.excluded, 1)
      const state = (yield* viewOf(out))[0]?.[1]
      assert.strictEqual(state?.content?.value, "kept")
      assert.isTrue((yield* verifyFile(out)).ok)
      // The new file still knows why the event is out.
      const states: Array<string> = []
      yield* Log.list({}, (entries) => Effect.sync(() => entries.forEach((e) => states.push(e.sync.state)))).pipe(
        withSource(out)
      )
      assert.deepStrictEqual(states, ["unconfirmed", "dead-lettered"])
    })
  )

  it.effect("a server space replays like a replica, other spaces left out", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const server = `${dir}/server.db`
      const mine = [
        created("m1", "a", 1),
        updated("m1", "b", 5, { tags: ["x"] }),
        created("m2", "a", 6),
        deleted("m2", "b", 7)
      ]
      yield* serve(server, "space-1", mine)
      yield* serve(server, "space-2", [created("m3", "c", 2)])
      const out = `${dir}/out.db`
      const summary = yield* Snapshot.toFile(out, { _tag: "Seq", seq: 3 }).pipe(withSource(server, "space-1"))
      assert.deepStrictEqual(
        { events: summary.events, memories: summary.memories, deleted: summary.deleted },
        { events: 3, memories: 2, deleted: 0 }
      )
      assert.deepStrictEqual(yield* viewOf(out), sortStates(Fold.fold(knownEvents(mine.slice(0, 3)))))
      assert.isTrue((yield* verifyFile(out)).ok)
      // A server database needs --space, and only names spaces it holds.
      const noSpace = yield* Effect.flip(Effect.scoped(EventSource.open({ filename: server })))
      assert.strictEqual(noSpace._tag, "SpaceRequired")
      assert.include(noSpace.message, "space-1, space-2")
      const typo = yield* Effect.flip(Effect.scoped(EventSource.open({ filename: server, space: "space-9" })))
      assert.strictEqual(typo._tag, "UnknownSpace")
    })
  )

  it.effect("an existing output file is refused and left as it was; the source is never written", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const source = `${dir}/source.db`
      yield* ingest(source, [created("m1", "a", 1)])
      const before = readFileSync(source)
      const out = `${dir}/taken.db`
      writeFileSync(out, "not yours")
      const error = yield* Effect.flip(Snapshot.toFile(out, { _tag: "Seq", seq: 1 }).pipe(withSource(source)))
      assert.strictEqual(error._tag, "OutputExists")
      assert.strictEqual(readFileSync(out, "utf8"), "not yours")
      // No partial file left behind. (Opening a WAL database, even read-only, may create its empty -wal/-shm.)
      const files = readdirSync(dirname(out)).filter((f) => !f.endsWith("-wal") && !f.endsWith("-shm"))
      assert.deepStrictEqual(files.sort(), ["source.db", "taken.db"])
      assert.isTrue(readFileSync(source).equals(before))
      if (existsSync(`${source}-wal`)) assert.strictEqual(statSync(`${source}-wal`).size, 0)
    })
  )
})
