/**
 * `memsync stats` as a user runs it (real processes): on a replica, and on one space of a server database with
 * `--space S`, as text and as `--json`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { join } from "node:path"
import { created, deleted, serve, stamp, syncedReplica, tempDir, unknownKind, updated } from "./fixtures.js"
import { memsync } from "./runs.js"

const Counts = Schema.Record({ key: Schema.String, value: Schema.Number })
const Report = Schema.Struct({
  kind: Schema.Literal("replica", "server"),
  space: Schema.NullOr(Schema.String),
  memories: Schema.Number,
  deleted: Schema.Number,
  events: Schema.Number,
  eventsByType: Counts,
  unknownEvents: Schema.Number,
  pendingOutbox: Schema.NullOr(Schema.Number),
  deadLetters: Schema.NullOr(Schema.Number),
  eventsPerDay: Counts,
  eventsPerClient: Counts,
  eventsPerType: Counts,
  logBytes: Schema.NullOr(Schema.Number),
  fileBytes: Schema.Number
})
const decodeReport = (text: string) => Schema.decodeUnknownSync(Schema.parseJson(Report))(text)

const DAY = 86_400_000

describe("memsync stats", () => {
  it.effect("counts a replica: view, bookkeeping, events per day/client/type, log size", () =>
    Effect.gen(function* () {
      const db = join(tempDir(), "replica.db")
      yield* syncedReplica(db)
      const [text, json] = yield* Effect.all(
        [memsync(["stats", "--db", db]), memsync(["stats", "--db", db, "--json"])],
        {
          concurrency: "unbounded"
        }
      )
      assert.strictEqual(text.code, 0, text.stderr)
      assert.strictEqual(text.stderr, "")
      // m1 and two of the local writes (the third was dead-lettered); m2 was deleted.
      assert.match(text.stdout, /^memories\s+3$/m)
      assert.match(text.stdout, /^deleted\s+1$/m)
      assert.match(text.stdout, /^events\s+8$/m)
      assert.match(text.stdout, /^ {2}memory\.created\s+5$/m)
      assert.match(text.stdout, /^pending outbox\s+1$/m)
      assert.match(text.stdout, /^dead letters\s+1$/m)
      assert.match(text.stdout, /^log size\s+\d+(\.\d)? KB \(file \d+(\.\d)? KB\)$/m)
      assert.match(text.stdout, /^events per day \(UTC\)\n {2}2025-01-01\s+8$/m)
      assert.match(text.stdout, /^events per client\n {2}a\s+3\n {2}b\s+2\n {2}replica\s+3$/m)
      assert.notInclude(text.stdout, "space")

      assert.strictEqual(json.code, 0, json.stderr)
      const r = decodeReport(json.stdout)
      assert.deepInclude(r, {
        kind: "replica",
        space: null,
        memories: 3,
        deleted: 1,
        events: 8,
        unknownEvents: 0,
        pendingOutbox: 1,
        deadLetters: 1
      })
      assert.deepStrictEqual(r.eventsByType, { "memory.created": 5, "memory.deleted": 1, "memory.updated": 2 })
      assert.deepStrictEqual(r.eventsPerClient, { a: 3, b: 2, replica: 3 })
      // The local writes are stamped past the events they saw (the test clock stands at 0): the same day.
      assert.deepStrictEqual(r.eventsPerDay, { "2025-01-01": 8 })
      assert.isTrue(r.fileBytes > 0)
    })
  )

  it.effect("counts one space of a server database with --space, folding its memories from the log", () =>
    Effect.gen(function* () {
      const server = join(tempDir(), "server.db")
      const kept = created("k1", "a", 1)
      yield* serve(server, "team", [
        kept,
        created("k2", "b", DAY + 2),
        updated("k1", "b", DAY + 3, { content: "b's" }),
        deleted("k2", "a", DAY + 4),
        unknownKind("k1", "a", DAY + 5),
        { ...created("k3", "c", 6), version: 2, hlc: stamp("c", 6) }
      ])
      yield* serve(server, "other", [created("o1", "z", 1)])
      const [text, json, noSpace] = yield* Effect.all(
        [
          memsync(["stats", "--db", server, "--space", "team"]),
          memsync(["stats", "--db", server, "--space", "team", "--json"]),
          memsync(["stats", "--db", server])
        ],
        { concurrency: "unbounded" }
      )
      assert.strictEqual(text.code, 0, text.stderr)
      assert.strictEqual(text.stderr, "")
      assert.match(text.stdout, /^space\s+team \(server database; memories folded from its log\)$/m)
      assert.match(text.stdout, /^memories\s+1$/m)
      assert.match(text.stdout, /^deleted\s+1$/m)
      assert.match(text.stdout, /^events\s+6$/m)
      assert.match(text.stdout, /^unknown events\s+2$/m)
      assert.notMatch(text.stdout, /pending outbox|dead letters/, "a server has neither")
      assert.match(text.stdout, /^events per day \(UTC\)\n {2}2025-01-01\s+2\n {2}2025-01-02\s+4$/m)

      const r = decodeReport(json.stdout)
      assert.deepInclude(r, {
        kind: "server",
        space: "team",
        memories: 1,
        deleted: 1,
        events: 6,
        unknownEvents: 2,
        pendingOutbox: null,
        deadLetters: null
      })
      assert.deepStrictEqual(r.eventsPerClient, { a: 3, b: 2, c: 1 })
      assert.deepStrictEqual(r.eventsPerType, {
        "memory.created": 2,
        "memory.created@v2": 1,
        "memory.deleted": 1,
        "memory.pinned": 1,
        "memory.updated": 1
      })

      assert.strictEqual(noSpace.code, 2)
      assert.strictEqual(noSpace.stdout, "")
      assert.match(
        noSpace.stderr,
        /^memsync: .*server\.db is a server database: pass --space S \(its spaces: other, team\)\n$/
      )
    })
  )
})
