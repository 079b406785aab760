/**
 * How the CLI ends: one line on stderr naming what went wrong, and an exit code a script can branch on.
 *
 * 0 ok · 1 verification drift or failure · 2 bad input (usage, validation, unknown id, a --db that is not a usable
 * memsync database: not one, damaged, a directory, in a missing directory)
 * 3 auth failed · 4 server unreachable / transient failure · 5 events dead-lettered
 */
import { Schema } from "effect"

/** `memsync verify` found drift; the report was already printed. */
export class VerificationFailed extends Schema.TaggedError<VerificationFailed>()("VerificationFailed", {
  message: Schema.String
}) {}

/** A command-line value that parsed but makes no sense (e.g. `--sensitive maybe`). */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

/** Exit codes by error tag; anything unlisted is a failure (1). */
export const EXIT_CODES: Readonly<Record<string, number>> = {
  ValidationError: 2,
  UsageError: 2,
  MemoryNotFound: 2,
  DatabaseNotFound: 2,
  NotAMemsyncDatabase: 2,
  WrongDatabaseKind: 2,
  InvalidDatabasePath: 2,
  DatabaseCorrupt: 2,
  VerificationFailed: 1,
  StorageError: 1,
  AuthError: 3,
  TransientError: 4,
  ProtocolError: 4,
  DeadLettered: 5,
  DeadLetterNotFound: 2,
  AckTimeout: 4
}

/** The exit code for a failure value. */
export const exitCodeOf = (error: unknown): number => {
  const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : undefined
  return tag === undefined ? 1 : (EXIT_CODES[tag] ?? 1)
}

/**
 * What to do next, appended to the message of a sync failure: the user's first question is whether the writes made
 * here are safe (they are: they stay in the outbox until a push is acknowledged).
 */
export const HINTS: Readonly<Record<string, string>> = {
  AuthError: "check --token or MEMSYNC_TOKEN; local writes stay pending",
  TransientError: "local writes stay pending; run memsync sync again once the server is reachable",
  ProtocolError: "is that URL a memsync server? local writes stay pending"
}

/** The one line printed for a failure value. */
export const messageOf = (error: unknown): string => {
  const message =
    typeof error === "object" && error !== null && "message" in error && typeof error.message === "string"
      ? error.message
      : String(error)
  const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : ""
  const hint = HINTS[tag]
  return hint === undefined ? message : `${message} (${hint})`
}
