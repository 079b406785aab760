/**
 * The `memsync` command line. Each command group lives in its own module; this file only assembles them and
 * turns failures into one stderr line and an exit code (see Exit.ts).
 */
import { Command, ValidationError as CliValidation } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Exit as EffectExit } from "effect"
import { dataCommands } from "./data.js"
import { exitCodeOf, messageOf } from "./Exit.js"

const root = Command.make("memsync").pipe(
  Command.withDescription("memsync: a local-first, event-sourced memory store with background sync"),
  Command.withSubcommands([...dataCommands])
)

const cli = Command.run(root, { name: "memsync", version: "0.1.0" })

const main = Effect.suspend(() => cli(process.argv)).pipe(
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
    // @effect/cli has already printed usage help for its own validation errors: those are bad input (2).
    if (CliValidation.isValidationError(error)) return Effect.sync(() => (process.exitCode = 2))
    return Effect.zipRight(
      Console.error(`memsync: ${messageOf(error)}`),
      Effect.sync(() => (process.exitCode = exitCodeOf(error)))
    )
  })
)

NodeRuntime.runMain(main, { disableErrorReporting: true, disablePrettyLogger: true })
