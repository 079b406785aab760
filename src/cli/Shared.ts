/**
 * What every command shares: `--db` and `--json`, opening the store, and printing results.
 */
import { Options } from "@effect/cli"
import { Config, Console, Effect, Layer, Logger } from "effect"
import { TAGS as INSPECT_ERRORS } from "../inspect/Errors.js"
import { DatabaseCorrupt, isCorruption, StorageError } from "../store/Errors.js"
import * as MemoryStore from "../store/MemoryStore.js"
import { UsageError } from "./Exit.js"

/** `--db FILE` (default `./memsync.db`, or `MEMSYNC_DB`). */
export const db = Options.text("db").pipe(
  Options.withDescription("the memsync database file (default ./memsync.db, or $MEMSYNC_DB)"),
  Options.withFallbackConfig(Config.string("MEMSYNC_DB")),
  Options.withDefault("./memsync.db")
)

/** `--json`: machine-readable output on stdout. */
export const json = Options.boolean("json").pipe(Options.withDescription("print JSON instead of text"))

/** `--space S`: which space of a server database a read-only command reads. */
export const space = Options.text("space").pipe(
  Options.withDescription("read this space of a server database (required for one, refused for a replica)"),
  Options.optional
)

/** `--quiet`: no progress line on stderr (every inspection command takes it, long or not). */
export const quiet = Options.boolean("quiet").pipe(Options.withDescription("no progress bar on stderr"))

/**
 * Run `effect` with the store over `file`. Read-only commands pass `create: false`, so a typo in `--db` reports a
 * missing database instead of creating an empty one.
 */
export const withStore = <A, E, R>(
  file: string,
  options: { readonly create: boolean },
  effect: Effect.Effect<A, E, R>
) => corruptionAsBadInput(file, Effect.provide(effect, MemoryStore.layer({ filename: file, create: options.create })))

/**
 * SQLite finds a damaged page only when a command reads it, and reports it as a StorageError (exit 1, "failure").
 * It is the file the user named that is bad: report it as DatabaseCorrupt (exit 2) naming the file. A write that
 * meets it has rolled back, so nothing was written.
 */
export const corruptionAsBadInput = <A, E, R>(file: string, self: Effect.Effect<A, E, R>) =>
  Effect.mapError(self, (e) =>
    e instanceof StorageError && isCorruption(e.message) ? new DatabaseCorrupt({ path: file, reason: e.message }) : e
  )

/** The full stack layer for `file` (for commands that need more than the store). */
export const storeLayer = (file: string, options: { readonly create: boolean }) =>
  MemoryStore.layer({ filename: file, create: options.create })

/** Print `value` as JSON (one document) on stdout. */
export const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

/** Print either JSON or text. Empty text (no results) prints nothing, not an empty line. */
export const output = (asJson: boolean, value: unknown, text: () => string) => {
  if (asJson) return printJson(value)
  const lines = text()
  return lines === "" ? Effect.void : Console.log(lines)
}

export type { Layer }

/**
 * A line on stderr while a command runs. Not `Console.error`: bin.ts silences that around the CLI run to drop
 * @effect/cli's own copy of parse errors.
 */
export const note = (line: string) => Effect.sync(() => void process.stderr.write(`memsync: ${line}\n`))

/** The inspection tools' typed failures all come from what the user typed: exit 2 with their message. */
export const inspectErrorsAsUsage = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.mapError(self, (e) => {
    const tag = typeof e === "object" && e !== null && "_tag" in e ? String(e._tag) : ""
    const known: ReadonlyArray<string> = INSPECT_ERRORS
    return known.includes(tag) && e instanceof Error ? new UsageError({ message: e.message }) : e
  })

/**
 * Effect's logfmt lines, written straight to stderr (`Console.error` is silenced around the CLI run, see bin.ts).
 * bin.ts makes it every command's logger, so logs never mix with the results on stdout.
 */
export const stderrLogger = Logger.make((options) => void process.stderr.write(`${Logger.logfmtLogger.log(options)}\n`))
