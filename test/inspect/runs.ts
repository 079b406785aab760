/**
 * Running the inspection commands in tests: as real processes (`node bin/memsync.js ...`, ~1-3 s each), with stdout read
 * at full speed, slowly, or closed after the first chunk; and in this process with stderr posing as a TTY, to see the
 * progress line.
 */
import { Command } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { vi } from "vitest"
import { dataCommands } from "../../src/cli/data.js"
import { inspectCommands } from "../../src/cli/inspect.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const BIN = join(ROOT, "bin", "memsync.js")

/** What a real process did. */
export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** How the test reads the child's stdout. */
export type Reader =
  /** As fast as it comes. */
  | "fast"
  /** A little every few milliseconds, so the child keeps waiting for the pipe to drain. */
  | "slow"
  /** The first chunk, then the pipe is closed (as `| head -1` does). */
  | "first-chunk"

/** Run the CLI in a child process (stderr is a pipe, not a TTY). */
export const memsync = (args: ReadonlyArray<string>, reader: Reader = "fast") =>
  Effect.async<Run>((resume) => {
    const env = { ...process.env }
    delete env.MEMSYNC_DB
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let timer: NodeJS.Timeout | undefined
    child.stdout.setEncoding("utf8")
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    // Done once the child has exited and its stdout was read to the end (or closed by the test).
    let code: number | null | undefined
    let drained = false
    let done = false
    const finish = () => {
      if (done || code === undefined || !drained) return
      done = true
      clearInterval(timer)
      resume(Effect.succeed({ code, stdout, stderr }))
    }
    child.stdout.on("close", () => {
      drained = true
      finish()
    })
    if (reader === "slow") {
      timer = setInterval(() => {
        const chunk: unknown = child.stdout.read()
        if (typeof chunk === "string") stdout += chunk
      }, 2)
    } else {
      child.stdout.on("data", (chunk: string) => {
        stdout += chunk
        if (reader === "first-chunk") child.stdout.destroy()
      })
    }
    child.on("error", (error) => resume(Effect.die(error)))
    child.on("close", (exitCode) => {
      code = exitCode
      finish()
    })
    return Effect.sync(() => {
      clearInterval(timer)
      child.kill()
    })
  })

const cli = Command.run(Command.make("memsync").pipe(Command.withSubcommands([...inspectCommands, ...dataCommands])), {
  name: "memsync",
  version: "test"
})

/** Options of an in-process run. */
export interface InProcessOptions {
  /** Called for each write to stdout; its result is what `write` returns. Default: accept everything. */
  readonly onStdout?: (chunk: string, index: number) => boolean
}

/** Run the commands in this process with stderr posing as a TTY; collect what reaches stdout and stderr. */
export const inProcess = (args: ReadonlyArray<string>, options: InProcessOptions = {}) =>
  Effect.gen(function* () {
    const out: Array<string> = []
    const err: Array<string> = []
    const text = (chunk: unknown) => (typeof chunk === "string" ? chunk : Buffer.from(String(chunk)).toString())
    const tty = Object.getOwnPropertyDescriptor(process.stderr, "isTTY")
    const spies = [
      vi.spyOn(process.stdout, "write").mockImplementation((chunk: unknown) => {
        out.push(text(chunk))
        return options.onStdout === undefined ? true : options.onStdout(text(chunk), out.length - 1)
      }),
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
    return { exit, stdout: out.join(""), stderr: err.join(""), writes: out.length }
  })

/** A hash of a database file and of its WAL (when there is one): equal hashes, unchanged database. */
export const fileHash = (file: string): string => {
  const hash = createHash("sha256")
  for (const f of [file, `${file}-wal`]) {
    hash.update(`${f}:`)
    if (existsSync(f)) hash.update(readFileSync(f))
  }
  return hash.digest("hex")
}

/** The lines of an NDJSON output, parsed. */
export const ndjsonLines = (text: string): Array<unknown> =>
  text
    .trimEnd()
    .split("\n")
    .filter((l) => l !== "")
    .map((l): unknown => JSON.parse(l))
