/**
 * Export / import: a full export imported into an empty database gives an identical view (and verify passes); the
 * default export redacts sensitive memories and says so; a corrupted line is reported with its number and the rest
 * is imported; import is idempotent and reports an id held with another body; a server space exports and imports.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { appendFileSync, readFileSync, writeFileSync } from "node:fs"
import * as Transfer from "../../src/inspect/Transfer.js"
import * as LogStats from "../../src/inspect/LogStats.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import * as Replay from "../../src/store/Replay.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"
import { created, deadLetter, ingest, replica, serve, tempDir, updated, viewOf, withSource } from "./fixtures.js"

const importInto = (db: string, file: string, options: Transfer.ImportOptions = {}) =>
  Effect.flatMap(Transfer.replicaTarget, (t) => Transfer.importFile(file, t, options)).pipe(Effect.provide(replica(db)))

const lines = (file: string) => readFileSync(file, "utf8").trimEnd().split("\n")

describe("Transfer", () => {
  it.effect.prop(
    "export then import into an empty database gives an identical view, and verify passes",
    [Arbitraries.mixedEventSet({ maxLength: 30 })],
    ([set]) =>
      Effect.gen(function* () {
        const dir = tempDir()
        yield* ingest(`${dir}/a.db`, set.all, 5)
        const out = `${dir}/export.ndjson`
        const summary = yield* Transfer.exportToFile(out, { includeSensitive: true }).pipe(withSource(`${dir}/a.db`))
        assert.strictEqual(summary.events, set.all.length)
        assert.isFalse(summary.header.redacted)
        const report = yield* importInto(`${dir}/b.db`, out, { batchSize: 7 })
        assert.deepStrictEqual(
          [report.events, report.imported, report.invalidCount],
          [set.all.length, set.all.length, 0]
        )
        assert.deepStrictEqual(yield* viewOf(`${dir}/b.db`), yield* viewOf(`${dir}/a.db`))
        const verified = yield* Replay.verify().pipe(Effect.provide(replica(`${dir}/b.db`)))
        assert.isTrue(verified.ok)
        // Importing again changes nothing.
        const again = yield* importInto(`${dir}/b.db`, out)
        assert.deepStrictEqual([again.imported, again.duplicates], [0, set.all.length])
      }),
    { fastCheck: { numRuns: 10 } }
  )

  it.effect("the default export redacts every sensitive memory and says so in its header", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const events = [
        created("secret", "a", 1, { content: "the door code is 4711", keywords: ["door", "code"], tags: ["home"] }),
        updated("secret", "a", 2, { sensitive: true }),
        updated("secret", "b", 3, { content: "the new code is 0815", keywords: ["newcode"] }),
        created("open", "a", 4, { content: "buy milk", keywords: ["milk"] }),
        created("born-secret", "b", 5, { content: "my pin 9999", sensitive: true })
      ]
      yield* ingest(`${dir}/a.db`, events)
      const out = `${dir}/redacted.ndjson`
      const summary = yield* Transfer.exportToFile(out).pipe(withSource(`${dir}/a.db`))
      assert.strictEqual(summary.redactedEvents, 4)
      const text = readFileSync(out, "utf8")
      for (const secret of ["4711", "0815", "9999", "door", "newcode"]) assert.notInclude(text, secret)
      assert.include(text, "buy milk")
      const [header] = lines(out)
      assert.deepInclude(JSON.parse(header!), { memsync: "export", version: 1, redacted: true, events: 5 })

      // Import refuses it unless told, and then imports valid (redacted) events.
      const refused = yield* Effect.flip(importInto(`${dir}/b.db`, out))
      assert.strictEqual(refused._tag, "ImportRefused")
      const report = yield* importInto(`${dir}/b.db`, out, { allowRedacted: true })
      assert.strictEqual(report.imported, 5)
    })
  )

  it.effect("a corrupted line is reported with its number, skipped, and the rest is imported", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const events = [created("m1", "a", 1), created("m2", "a", 2), created("m3", "a", 3)]
      yield* ingest(`${dir}/a.db`, events)
      const out = `${dir}/export.ndjson`
      yield* Transfer.exportToFile(out, { includeSensitive: true }).pipe(withSource(`${dir}/a.db`))
      const [header, first, second, third] = lines(out)
      const bad = `${dir}/bad.ndjson`
      const broken = second!.replace('"memory.created","version":1', '"memory.created","version":1,"x":') // not JSON
      const invalid = third!.replace('"importance":0.5', '"importance":7') // JSON, but not a valid event
      writeFileSync(bad, [header, first, broken, "", invalid, third].join("\n") + "\n")
      appendFileSync(bad, "[1, 2]\n")
      const seen: Array<number> = []
      const report = yield* importInto(`${dir}/b.db`, bad, {
        onInvalid: (i) => Effect.sync(() => seen.push(i.line))
      })
      assert.deepStrictEqual(
        report.invalid.map((i) => i.line),
        [3, 5, 7]
      )
      assert.deepStrictEqual(seen, [3, 5, 7])
      assert.include(report.invalid[0]!.message, "not JSON")
      assert.include(report.invalid[1]!.message, "importance")
      assert.deepStrictEqual([report.imported, report.events, report.lines], [2, 2, 7])

      // The same id with another body is refused and reported, not silently kept.
      const clash = `${dir}/clash.ndjson`
      writeFileSync(clash, `${first!.replace("memory m1", "a different text")}\n`)
      const clashed = yield* importInto(`${dir}/b.db`, clash)
      assert.deepStrictEqual(clashed.invalid, [
        { line: 1, message: `event ${events[0]!.id} is already held with a different body` }
      ])
    })
  )

  it.effect("dead letters are left out of an export; a server space exports and imports into a server", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const keep = created("m1", "a", 1)
      const drop = updated("m1", "a", 2, { content: "rejected" })
      yield* ingest(`${dir}/a.db`, [keep, drop])
      yield* deadLetter(`${dir}/a.db`, [drop.id])
      const out = `${dir}/export.ndjson`
      const summary = yield* Transfer.exportToFile(out).pipe(withSource(`${dir}/a.db`))
      assert.deepStrictEqual([summary.events, summary.excluded], [1, 1])

      yield* serve(`${dir}/server.db`, "s1", [keep, created("m2", "b", 3)])
      const fromServer = `${dir}/server.ndjson`
      yield* Transfer.exportToFile(fromServer).pipe(withSource(`${dir}/server.db`, "s1"))
      const imported = yield* Effect.flatMap(ServerLog.ServerLog, (log) =>
        Transfer.importFile(fromServer, Transfer.serverTarget(log, "s2"))
      ).pipe(Effect.provide(ServerLog.layer({ filename: `${dir}/server.db` })))
      assert.strictEqual(imported.imported, 2)
      const stats = yield* LogStats.compute.pipe(withSource(`${dir}/server.db`, "s2"))
      assert.deepStrictEqual(stats.eventsPerClient, { a: 1, b: 1 })
    })
  )

  it.effect("stats count events per day, client and type, and measure the log", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const day = 86_400_000
      yield* ingest(`${dir}/a.db`, [
        created("m1", "a", 1),
        updated("m1", "b", 2, { tags: ["t"] }),
        created("m2", "a", day + 1)
      ])
      const s = yield* LogStats.compute.pipe(withSource(`${dir}/a.db`))
      assert.deepStrictEqual(s.eventsPerDay, { "2025-01-01": 2, "2025-01-02": 1 })
      assert.deepStrictEqual(s.eventsPerClient, { a: 2, b: 1 })
      assert.deepStrictEqual(s.eventsPerType, { "memory.created": 2, "memory.updated": 1 })
      assert.isAbove(s.logBytes ?? 0, 0)
      assert.isAtLeast(s.fileBytes, s.logBytes ?? 0)
    })
  )
})
