/**
 * The typed failures of the inspection tools. Each says what to do next in its message; the CLI maps all of them to
 * "bad input" (exit 2), since each comes from a path, an id or a flag the user typed.
 */
import { Schema } from "effect"

/** A server database holds many spaces: the tools need to know which one to read. */
export class SpaceRequired extends Schema.TaggedError<SpaceRequired>()("SpaceRequired", {
  path: Schema.String,
  spaces: Schema.Array(Schema.String)
}) {
  override get message(): string {
    const known = this.spaces.length === 0 ? "it holds no space yet" : `its spaces: ${this.spaces.join(", ")}`
    return `${this.path} is a server database: pass --space S (${known})`
  }
}

/** `--space` names a space the server database does not hold, or was given for a replica. */
export class UnknownSpace extends Schema.TaggedError<UnknownSpace>()("UnknownSpace", {
  path: Schema.String,
  space: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.path}: no space ${JSON.stringify(this.space)} (${this.reason})`
  }
}

/** No event with this id in the log. */
export class EventNotFound extends Schema.TaggedError<EventNotFound>()("EventNotFound", {
  eventId: Schema.String
}) {
  override get message(): string {
    return `no event with id ${this.eventId} in this log`
  }
}

/** No event in the log touches this memory. */
export class MemoryUnknown extends Schema.TaggedError<MemoryUnknown>()("MemoryUnknown", {
  memoryId: Schema.String
}) {
  override get message(): string {
    return `no event touches memory ${this.memoryId}`
  }
}

/** An output file that already exists: the tools never overwrite one. */
export class OutputExists extends Schema.TaggedError<OutputExists>()("OutputExists", {
  path: Schema.String
}) {
  override get message(): string {
    return `${this.path} already exists; choose a new file (nothing was overwritten)`
  }
}

/** An import file that cannot be imported at all (unreadable, an unknown export version, a redacted export). */
export class ImportRefused extends Schema.TaggedError<ImportRefused>()("ImportRefused", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot import ${this.path}: ${this.reason}`
  }
}

/** An import finished, but some lines were invalid and skipped (they were reported with their line numbers). */
export class InvalidLines extends Schema.TaggedError<InvalidLines>()("InvalidLines", {
  path: Schema.String,
  count: Schema.Number
}) {
  override get message(): string {
    return `${this.path}: ${this.count} invalid line(s) skipped; every other line was imported`
  }
}

/** An import finished, but the file held fewer events than its export header announced (cut short in transit?). */
export class ImportTruncated extends Schema.TaggedError<ImportTruncated>()("ImportTruncated", {
  path: Schema.String,
  announced: Schema.Number,
  held: Schema.Number
}) {
  override get message(): string {
    return (
      `${this.path}: the export header announces ${this.announced} events but the file holds ${this.held} ` +
      `(truncated?); every event it holds was imported`
    )
  }
}

/**
 * The reader of the output went away (a closed pipe: `memsync export | head -1`). Not a usage error: the CLI stops the
 * work and exits 0, as Unix tools in a pipeline do.
 */
export class OutputClosed extends Schema.TaggedError<OutputClosed>()("OutputClosed", {}) {
  override get message(): string {
    return "the reader of the output closed it"
  }
}

/** The failures of this folder that come from what the user typed, by tag (the CLI turns them into usage errors). */
export const TAGS = [
  "SpaceRequired",
  "UnknownSpace",
  "EventNotFound",
  "MemoryUnknown",
  "OutputExists",
  "ImportRefused",
  "InvalidLines",
  "ImportTruncated"
] as const
