/**
 * The streaming commands in a pipeline: a slow reader makes them wait for the pipe to drain many times without
 * leaking listeners (Node warns on stderr past ten), and a reader that closes early (`| head -1`) stops the work at
 * once, with exit 0 and nothing on stderr, like a Unix tool.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { join } from "node:path"
import { created, ingest, tempDir } from "./fixtures.js"
import { inProcess, memsync, ndjsonLines } from "./runs.js"

/** Enough events for a few MB of output: dozens of full pipes. */
const EVENTS = 20_000

const bigReplica = Effect.gen(function* () {
  const db = join(tempDir(), "big.db")
  const words = "a memory long enough to make the output of a few thousand events fill a pipe many times over"
  yield* ingest(
    db,
    Array.from({ length: EVENTS }, (_, i) =>
      created(`m${i}`, i % 2 === 0 ? "a" : "b", i, { content: `${i}: ${words}` })
    ),
    5_000
  )
  return db
})

const epipe = () => Object.assign(new Error("write EPIPE"), { code: "EPIPE" })

describe("streams in a pipeline", () => {
  it.effect("a slow reader gets every line and no warning on stderr (export, log --ndjson, replay --ndjson)", () =>
    Effect.gen(function* () {
      const db = yield* bigReplica
      const [exported, logged, replayed] = yield* Effect.all(
        [
          memsync(["export", "--db", db, "--include-sensitive"], "slow"),
          memsync(["log", "--db", db, "--ndjson"], "slow"),
          memsync(["replay", "--until", String(EVENTS), "--db", db, "--ndjson"], "slow")
        ],
        { concurrency: "unbounded" }
      )
      for (const [name, run, lines] of [
        ["export", exported, EVENTS + 1],
        ["log", logged, EVENTS],
        ["replay", replayed, EVENTS]
      ] as const) {
        assert.strictEqual(run.stderr, "", `${name} writes nothing on stderr`)
        assert.strictEqual(run.code, 0, name)
        assert.lengthOf(ndjsonLines(run.stdout), lines, `${name} delivers every line`)
      }
    })
  )

  it.effect("a reader that closes after the first chunk ends the command quietly with exit 0", () =>
    Effect.gen(function* () {
      const db = yield* bigReplica
      const [exported, logged] = yield* Effect.all(
        [memsync(["export", "--db", db], "first-chunk"), memsync(["log", "--db", db], "first-chunk")],
        { concurrency: "unbounded" }
      )
      for (const [name, run] of [
        ["export", exported],
        ["log", logged]
      ] as const) {
        assert.strictEqual(run.stderr, "", `${name}: no error, no stack trace`)
        assert.strictEqual(run.code, 0, name)
        assert.isAbove(run.stdout.length, 0, name)
      }
    })
  )

  it.effect("a closed pipe stops the work at once: nothing more is read or written", () =>
    Effect.gen(function* () {
      const db = yield* bigReplica
      // (replay folds the whole log before it prints a memory, so its progress line ends at 100% whatever happens.)
      for (const args of [
        ["export", "--db", db],
        ["log", "--db", db, "--ndjson"]
      ]) {
        // The first write fails as a pipe whose reader went away does (stderr poses as a TTY: progress is drawn).
        const run = yield* inProcess(args, {
          onStdout: (_chunk, index) => {
            if (index === 0) process.stdout.emit("error", epipe())
            return true
          }
        })
        assert.isTrue(Exit.isSuccess(run.exit), `${args[0]} exits 0: ${JSON.stringify(run.exit)}`)
        assert.strictEqual(run.writes, 1, `${args[0]} writes nothing after the pipe closed`)
        assert.notInclude(run.stderr, "(100%)", `${args[0]} stopped before the end of the log`)
        assert.notInclude(run.stderr, "memsync:", `${args[0]} reports no error`)
      }
    })
  )
})
