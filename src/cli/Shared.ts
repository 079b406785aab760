/**
 * What every command shares: `--db` and `--json`, opening the store, and printing results.
 */
import { Options } from "@effect/cli"
import { Config, Console, Effect, Layer } from "effect"
import * as MemoryStore from "../store/MemoryStore.js"

/** `--db FILE` (default `./memsync.db`, or `MEMSYNC_DB`). */
export const db = Options.text("db").pipe(
  Options.withDescription("the memsync database file (default ./memsync.db, or $MEMSYNC_DB)"),
  Options.withFallbackConfig(Config.string("MEMSYNC_DB")),
  Options.withDefault("./memsync.db")
)

/** `--json`: machine-readable output on stdout. */
export const json = Options.boolean("json").pipe(Options.withDescription("print JSON instead of text"))

/**
 * Run `effect` with the store over `file`. Read-only commands pass `create: false`, so a typo in `--db` reports a
 * missing database instead of creating an empty one.
 */
export const withStore = <A, E, R>(
  file: string,
  options: { readonly create: boolean },
  effect: Effect.Effect<A, E, R>
) => Effect.provide(effect, MemoryStore.layer({ filename: file, create: options.create }))

/** The full stack layer for `file` (for commands that need more than the store). */
export const storeLayer = (file: string, options: { readonly create: boolean }) =>
  MemoryStore.layer({ filename: file, create: options.create })

/** Print `value` as JSON (one document) on stdout. */
export const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

/** Print either JSON or text. */
export const output = (asJson: boolean, value: unknown, text: () => string) =>
  asJson ? printJson(value) : Console.log(text())

export type { Layer }

/**
 * A line on stderr while a command runs. Not `Console.error`: bin.ts silences that around the CLI run to drop
 * @effect/cli's own copy of parse errors.
 */
export const note = (line: string) => Effect.sync(() => void process.stderr.write(`memsync: ${line}\n`))
