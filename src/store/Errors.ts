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

/** SQLite failed underneath (I/O, corruption, a constraint that should never fire). */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  message: Schema.String
}) {}
