/**
 * The typed failures of the local store. Each is a `Schema.TaggedError`, so it can cross HTTP and the CLI prints
 * its message as the one line a user reads.
 */
import { Schema } from "effect"

/** Input that fails its schema (content too large, importance out of range, an empty patch...). */
export class ValidationError extends Schema.TaggedError<ValidationError>()("ValidationError", {
  message: Schema.String
}) {}

/** No readable memory with this id (never created here, or deleted). */
export class MemoryNotFound extends Schema.TaggedError<MemoryNotFound>()("MemoryNotFound", {
  id: Schema.String,
  deleted: Schema.Boolean
}) {
  override get message(): string {
    return this.deleted ? `memory ${this.id} was deleted` : `no memory with id ${this.id}`
  }
}

/** The file does not exist and the caller asked not to create it. */
export class DatabaseNotFound extends Schema.TaggedError<DatabaseNotFound>()("DatabaseNotFound", {
  path: Schema.String
}) {
  override get message(): string {
    return `no memsync database at ${this.path} (create one with \`memsync add\`, or pass --db)`
  }
}

/** The file exists but is not a memsync database (not SQLite, or SQLite holding other tables). */
export class NotAMemsyncDatabase extends Schema.TaggedError<NotAMemsyncDatabase>()("NotAMemsyncDatabase", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.path} is not a memsync database: ${this.reason}`
  }
}

/**
 * The file is a memsync database of the other kind: a server log given where a replica is expected, or the reverse.
 * The message says what to do instead.
 */
export class WrongDatabaseKind extends Schema.TaggedError<WrongDatabaseKind>()("WrongDatabaseKind", {
  path: Schema.String,
  kind: Schema.String,
  expected: Schema.String
}) {
  override get message(): string {
    const what = `${this.path} is a memsync ${this.kind} database, not a ${this.expected} database`
    if (this.kind === "server" && this.expected === "replica") {
      return `${what}: read one of its spaces with memsync log, export, stats, replay, blame or explain --space S`
    }
    if (this.kind === "replica" && this.expected === "server") return `${what}: give memsync serve a file of its own`
    return what
  }
}

/** The path cannot hold a database file at all (a directory, or in a directory that does not exist). */
export class InvalidDatabasePath extends Schema.TaggedError<InvalidDatabasePath>()("InvalidDatabasePath", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot use ${this.path} as a database: ${this.reason}`
  }
}

/** The file is a memsync database whose pages are damaged: SQLite reports corruption when it reads them. */
export class DatabaseCorrupt extends Schema.TaggedError<DatabaseCorrupt>()("DatabaseCorrupt", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.path} is damaged (${this.reason}); restore it from a backup, or sync a new replica from the server`
  }
}

/**
 * True when a storage failure is SQLite reporting a damaged file. Matched on SQLite's fixed message texts because a
 * StorageError keeps only the message (it crosses HTTP and is made in many places from an SqlError).
 */
export const isCorruption = (message: string): boolean => CORRUPTION.test(message)

/** SQLite failed underneath (I/O, corruption, a constraint that should never fire). */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  message: Schema.String
}) {}

const CORRUPTION = /database disk image is malformed|malformed database schema|file is not a database/
