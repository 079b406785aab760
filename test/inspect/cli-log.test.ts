/**
 * `memsync log` as a user runs it: each filter, the sync state of every kind of event, and the progress line a long
 * dump draws on a terminal; every inspection command takes `--quiet`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { join } from "node:path"
import { syncedReplica, tempDir } from "./fixtures.js"
import { inProcess, ndjsonLines } from "./runs.js"

const Logged = Schema.Array(
  Schema.Struct({
    seq: Schema.Number,
    id: Schema.String,
    type: Schema.String,
    clientId: Schema.String,
    memoryId: Schema.NullOr(Schema.String),
    sync: Schema.Struct({
      state: Schema.String,
      serverSeq: Schema.optional(Schema.Number),
      reason: Schema.optional(Schema.String),
      message: Schema.optional(Schema.String)
    })
  })
)
const decodeLogged = Schema.decodeUnknownSync(Logged)

const setUp = Effect.gen(function* () {
  const db = join(tempDir(), "replica.db")
  return { db, ...(yield* syncedReplica(db)) }
})

/** `log --ndjson` with extra arguments, decoded. */
const logged = (db: string, args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const run = yield* inProcess(["log", "--db", db, "--ndjson", "--quiet", ...args])
    assert.isTrue(Exit.isSuccess(run.exit), `log ${args.join(" ")} succeeds`)
    return decodeLogged(ndjsonLines(run.stdout))
  })

describe("memsync log", () => {
  it.effect("--type, --memory, --client, --since and --until each narrow the events, in log order", () =>
    Effect.gen(function* () {
      const { db, remote, confirmed, rejected, pending } = yield* setUp
      const all = yield* logged(db, [])
      assert.deepStrictEqual(
        all.map((e) => e.id),
        [...remote.map((e) => e.id), confirmed, rejected, pending]
      )
      assert.deepStrictEqual(
        all.map((e) => e.seq),
        [1, 2, 3, 4, 5, 6, 7, 8]
      )

      const updates = yield* logged(db, ["--type", "memory.updated"])
      assert.deepStrictEqual(
        updates.map((e) => e.id),
        [remote[1]!.id, remote[4]!.id]
      )
      const m1 = yield* logged(db, ["--memory", "m1"])
      assert.deepStrictEqual(
        m1.map((e) => e.id),
        [remote[0]!.id, remote[1]!.id, remote[4]!.id]
      )
      const byB = yield* logged(db, ["--client", "b"])
      assert.deepStrictEqual(
        byB.map((e) => e.id),
        [remote[1]!.id, remote[2]!.id]
      )
      const untilThree = yield* logged(db, ["--until", "3"])
      assert.deepStrictEqual(
        untilThree.map((e) => e.seq),
        [1, 2, 3]
      )
      const window = yield* logged(db, ["--since", "4", "--until", "6", "--client", "a"])
      assert.deepStrictEqual(
        window.map((e) => e.seq),
        [4, 5]
      )
      const none = yield* logged(db, ["--type", "memory.pinned"])
      assert.deepStrictEqual(none, [])
    })
  )

  it.effect("shows each event's sync state: pending, confirmed at server seq N, dead-lettered with its reason", () =>
    Effect.gen(function* () {
      const { db, remote, confirmed, rejected, pending } = yield* setUp
      const byId = new Map((yield* logged(db, [])).map((e) => [e.id, e.sync]))
      assert.deepStrictEqual(byId.get(confirmed), { state: "confirmed", serverSeq: 6 })
      assert.deepInclude(byId.get(rejected), {
        state: "dead-lettered",
        reason: "invalid",
        message: "planted by a test"
      })
      assert.deepStrictEqual(byId.get(pending), { state: "pending" })
      assert.deepStrictEqual(byId.get(remote[0]!.id), { state: "unconfirmed" })

      const text = yield* inProcess(["log", "--db", db, "--since", "6"])
      const lines = text.stdout.trimEnd().split("\n")
      assert.strictEqual(lines.length, 3)
      assert.match(lines[0]!, new RegExp(`^\\s+6  ${confirmed} .* confirmed@6$`))
      assert.match(lines[1]!, new RegExp(`^\\s+7  ${rejected} .* dead-lettered \\(invalid: planted by a test\\)$`))
      assert.match(lines[2]!, new RegExp(`^\\s+8  ${pending} .* pending$`))
    })
  )

  it.effect("draws progress on stderr when it is a TTY, ending at 100%; --quiet silences it", () =>
    Effect.gen(function* () {
      const { db } = yield* setUp
      const drawn = yield* inProcess(["log", "--db", db, "--ndjson"])
      assert.isTrue(Exit.isSuccess(drawn.exit))
      assert.isTrue(drawn.stderr.endsWith("log: 8/8 events (100%)\n"), drawn.stderr)
      assert.notInclude(drawn.stdout, "log:")
      assert.lengthOf(ndjsonLines(drawn.stdout), 8)

      const limited = yield* inProcess(["log", "--db", db, "--limit", "3"])
      assert.isTrue(limited.stderr.endsWith("log: 3/3 events (100%)\n"), limited.stderr)

      const quiet = yield* inProcess(["log", "--db", db, "--quiet"])
      assert.isTrue(Exit.isSuccess(quiet.exit))
      assert.strictEqual(quiet.stderr, "")
    })
  )

  it.effect("every inspection command accepts --quiet", () =>
    Effect.gen(function* () {
      const { db, confirmed } = yield* setUp
      const dir = tempDir()
      const runs = [
        ["log", "--db", db],
        ["replay", "--until", "3", "--db", db],
        ["blame", "m1", "--db", db],
        ["explain", confirmed, "--db", db],
        ["diff", db, db],
        ["export", "--db", db, "--out", join(dir, "out.ndjson")],
        ["import", join(dir, "out.ndjson"), "--db", join(dir, "copy.db")],
        ["stats", "--db", db]
      ]
      for (const args of runs) {
        const run = yield* inProcess([...args, "--quiet"])
        assert.isTrue(Exit.isSuccess(run.exit), `${args[0]} --quiet: ${JSON.stringify(run.exit)}`)
        assert.strictEqual(run.stderr, "", `${args[0]} --quiet draws nothing`)
      }
    })
  )
})
