/**
 * The inspection commands as a user runs them. A few real processes (`node bin/memsync.js ...`, ~2 s each) check
 * exit codes and that stdout carries results only; in-process runs with stderr posing as a TTY check that progress
 * is drawn on stderr, never on stdout, and that `--quiet` silences it.
 */
import { Command } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { vi } from "vitest"
import { inspectCommands } from "../../src/cli/inspect.js"
import { created, ingest, serve, tempDir, updated } from "./fixtures.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const BIN = join(ROOT, "bin", "memsync.js")

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Run the CLI in a child process (stderr is a pipe, not a TTY). */
const memsync = (args: ReadonlyArray<string>) =>
  Effect.async<Run>((resume) => {
    const env = { ...process.env }
    delete env.MEMSYNC_DB
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", (error) => resume(Effect.die(error)))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill())
  })

const cli = Command.run(Command.make("memsync").pipe(Command.withSubcommands([...inspectCommands])), {
  name: "memsync",
  version: "test"
})

/** Run the commands in this process with stderr posing as a TTY; collect what reaches stdout and stderr. */
const inProcess = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const out: Array<string> = []
    const err: Array<string> = []
    const text = (chunk: unknown) => (typeof chunk === "string" ? chunk : Buffer.from(String(chunk)).toString())
    const tty = Object.getOwnPropertyDescriptor(process.stderr, "isTTY")
    const spies = [
      vi.spyOn(process.stdout, "write").mockImplementation((chunk: unknown) => (out.push(text(chunk)), true)),
      vi.spyOn(process.stderr, "write").mockImplementation((chunk: unknown) => (err.push(text(chunk)), true)),
      vi.spyOn(console, "log").mockImplementation((...xs: Array<unknown>) => void out.push(`${xs.join(" ")}\n`)),
      vi.spyOn(console, "error").mockImplementation((...xs: Array<unknown>) => void err.push(`${xs.join(" ")}\n`))
    ]
    Object.defineProperty(process.stderr, "isTTY", { value: true, configurable: true })
    const exit = yield* cli(["node", "memsync", ...args]).pipe(
      Effect.provide(NodeContext.layer),
      Effect.exit,
      Effect.ensuring(
        Effect.sync(() => {
          spies.forEach((s) => s.mockRestore())
          if (tty === undefined) Reflect.deleteProperty(process.stderr, "isTTY")
          else Object.defineProperty(process.stderr, "isTTY", tty)
        })
      )
    )
    return { exit, stdout: out.join(""), stderr: err.join("") }
  })

const setUp = Effect.gen(function* () {
  const dir = tempDir()
  const db = join(dir, "replica.db")
  const events = Array.from({ length: 40 }, (_, i) =>
    i % 4 === 3 ? updated(`m${i - 1}`, "b", i, { content: `changed ${i}` }) : created(`m${i}`, "a", i)
  )
  yield* ingest(db, events)
  return { dir, db }
})

describe("inspect CLI", () => {
  it.effect("replay writes a new file, prints JSON only on stdout, and refuses to overwrite (exit 2)", () =>
    Effect.gen(function* () {
      const { dir, db } = yield* setUp
      const out = join(dir, "replay.db")
      const first = yield* memsync(["replay", "--until", "20", "--out", out, "--db", db, "--json"])
      assert.strictEqual(first.stderr, "")
      assert.strictEqual(first.code, 0)
      assert.deepInclude(JSON.parse(first.stdout), { events: 20, out })
      const before = readFileSync(out)
      const again = yield* memsync(["replay", "--until", "20", "--out", out, "--db", db])
      assert.strictEqual(again.code, 2)
      assert.strictEqual(again.stdout, "")
      assert.match(again.stderr, /^memsync: .*replay\.db already exists/)
      assert.isTrue(readFileSync(out).equals(before))
    })
  )

  it.effect("import reports a bad line by number on stderr, imports the rest, and exits 2", () =>
    Effect.gen(function* () {
      const { dir } = yield* setUp
      const file = join(dir, "events.ndjson")
      const line = (n: number) => JSON.stringify(created(`x${n}`, "c", 100 + n))
      writeFileSync(file, [line(1), "{oops", line(2)].join("\n") + "\n")
      const target = join(dir, "fresh.db")
      const run = yield* memsync(["import", file, "--db", target])
      assert.strictEqual(run.code, 2)
      assert.include(run.stderr, `${file}:2: not JSON`)
      assert.include(run.stdout, "imported 2 of 2 events")
      assert.isTrue(existsSync(target))
    })
  )

  it.effect("progress is drawn on stderr when it is a TTY, never on stdout; --quiet silences it", () =>
    Effect.gen(function* () {
      const { db } = yield* setUp
      const replay = yield* inProcess(["replay", "--until", "40", "--db", db, "--json"])
      assert.strictEqual(replay.exit._tag, "Success")
      assert.include(replay.stderr, "replay: 40/40 events (100%)")
      assert.notInclude(replay.stdout, "replay:")
      assert.strictEqual(JSON.parse(replay.stdout).summary.events, 40)

      const exported = yield* inProcess(["export", "--db", db, "--include-sensitive"])
      assert.include(exported.stderr, "export:")
      const docs = exported.stdout
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l))
      assert.strictEqual(docs.length, 41)

      const quiet = yield* inProcess(["replay", "--until", "40", "--db", db, "--quiet"])
      assert.strictEqual(quiet.stderr, "")
      assert.include(quiet.stdout, "as of seq 40")
    })
  )

  it.effect("log pages with filters; a server database needs --space; tool errors are usage errors", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const server = join(dir, "server.db")
      yield* serve(server, "team", [created("m1", "a", 1)])
      const noSpace = yield* inProcess(["log", "--db", server])
      assert.strictEqual(noSpace.exit._tag, "Failure")
      assert.include(JSON.stringify(noSpace.exit), "pass --space S (its spaces: team)")
      assert.include(JSON.stringify(noSpace.exit), "UsageError")
      const ok = yield* inProcess(["log", "--db", server, "--space", "team"])
      assert.include(ok.stdout, "confirmed@1")
      const { db } = yield* setUp
      const log = yield* inProcess(["log", "--db", db, "--ndjson", "--limit", "3", "--since", "2"])
      assert.deepStrictEqual(
        log.stdout
          .trimEnd()
          .split("\n")
          .map((l) => JSON.parse(l).seq),
        [2, 3, 4]
      )
    })
  )
})
