/**
 * The `memsync` command line. Each command group lives in its own module; this file only assembles them and
 * turns failures into one stderr line and an exit code (see Exit.ts).
 */
import { Command, HelpDoc, ValidationError as CliValidation } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Exit as EffectExit, Logger } from "effect"
import { dataCommands } from "./data.js"
import { exitCodeOf, messageOf, UsageError } from "./Exit.js"
import { stderrLogger } from "./Shared.js"
import { inspectCommands } from "./inspect.js"
import { serveCommands } from "./serve.js"
import { syncCommands } from "./sync.js"

const root = Command.make("memsync").pipe(
  Command.withDescription("memsync: a local-first, event-sourced memory store with background sync"),
  Command.withSubcommands([...dataCommands, ...syncCommands, ...serveCommands, ...inspectCommands])
)

const cli = Command.run(root, { name: "memsync", version: "0.1.0" })

// @effect/cli prints its own parse errors (as a help paragraph and a blank line) through `Console.error`; that copy is
// dropped here and the error is printed below as the same one `memsync:` line as every other failure.
const withoutCliErrorOutput = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.console, (console) => Effect.withConsole(self, { ...console, error: () => Effect.void }))

/**
 * Logs (shown with `--log-level`) go to stderr: stdout carries a command's results, and `--json` must stay parseable.
 * `serve` puts its request log back on stdout (see serve.ts).
 */
const logsOnStderr = Logger.replace(Logger.defaultLogger, stderrLogger)

/**
 * `--wizard` (an @effect/cli built-in) asks questions on stdin: without a terminal it would wait for ever. Only an
 * option counts, not a value given after `--` (a search for "--wizard").
 */
const wizardWithoutTerminal = (argv: ReadonlyArray<string>): boolean => {
  const end = argv.indexOf("--")
  return (end === -1 ? argv : argv.slice(0, end)).includes("--wizard") && process.stdin.isTTY !== true
}

/**
 * @effect/cli writes its help in ANSI colours whatever stdout is, so help piped to a file or a pager shows escape codes.
 * When help is what this run prints (no arguments, or `--help` / `-h` before `--`) and stdout is not a terminal, or
 * NO_COLOR is set, the codes are taken out. Only then: a command's own output (a memory's content) is printed as it is.
 */
const plainHelp = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const argv = process.argv.slice(2)
  const end = argv.indexOf("--")
  const options = end === -1 ? argv : argv.slice(0, end)
  const help = argv.length === 0 || options.includes("--help") || options.includes("-h")
  const colour = process.stdout.isTTY === true && (process.env.NO_COLOR ?? "") === ""
  if (!help || colour) return self
  return Effect.flatMap(Effect.console, (console) =>
    Effect.withConsole(self, {
      ...console,
      log: (...args: ReadonlyArray<unknown>) =>
        console.log(...args.map((a) => (typeof a === "string" ? a.replace(ANSI_SGR, "") : a)))
    })
  )
}

/** The colour and style codes (`ESC [ ... m`) @effect/cli's help uses. */
const ANSI_SGR = /\u001b\[[0-9;]*m/g

const main = Effect.suspend(() =>
  wizardWithoutTerminal(process.argv)
    ? Effect.fail(new UsageError({ message: "--wizard asks its questions on a terminal; stdin is not one" }))
    : cli(process.argv)
).pipe(
  plainHelp,
  withoutCliErrorOutput,
  Effect.provide(logsOnStderr),
  Effect.provide(NodeContext.layer),
  Effect.exit,
  Effect.flatMap((exit) => {
    if (EffectExit.isSuccess(exit)) return Effect.void
    const failure = Cause.failureOption(exit.cause)
    if (failure._tag === "None") {
      if (Cause.isInterruptedOnly(exit.cause)) return Effect.void
      return Effect.zipRight(
        Console.error(`memsync: internal error: ${Cause.pretty(exit.cause)}`),
        Effect.sync(() => (process.exitCode = 1))
      )
    }
    const error = failure.value
    // @effect/cli's own validation errors (unknown command, missing argument, unparsable value) are bad input (2).
    if (CliValidation.isValidationError(error)) {
      const text = oneLine(HelpDoc.toAnsiText(error.error))
      // Most often a value that starts with "-" (a search for "-west") read as an option.
      const hint = /unknown argument/i.test(text)
        ? " (a value that starts with - goes after --, as in: memsync search --db F -- -west)"
        : ""
      return Effect.zipRight(
        Console.error(`memsync: ${text}${hint}`),
        Effect.sync(() => (process.exitCode = 2))
      )
    }
    return Effect.zipRight(
      Console.error(`memsync: ${messageOf(error)}`),
      Effect.sync(() => (process.exitCode = exitCodeOf(error)))
    )
  })
)

/** Plain text on one line: help docs carry ANSI styling and paragraph breaks. */
const oneLine = (text: string): string =>
  text
    .replace(/\u001b\[[0-9;]*m/g, "")
    .replace(/\s+/g, " ")
    .trim()

NodeRuntime.runMain(main, { disableErrorReporting: true, disablePrettyLogger: true })
