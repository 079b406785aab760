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

/** The one line printed for a failure value. */
export const messageOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    return error.message
  }
  return String(error)
}
