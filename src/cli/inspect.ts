/**
 * Debug commands over any event log (a replica, or one space of a server database with `--space S`):
 * log, replay, blame, explain, diff, export, import. Thin: parse options, call `src/inspect`, print.
 *
 * Output: text by default, `--json` for one document, `--ndjson` (streams) for one document per line. Streams are
 * written a page at a time with backpressure (see Stdout.ts), so memory stays bounded on 1M-event logs, and they stop
 * quietly with exit 0 when the reader of stdout goes away. Progress goes to stderr, and only when stderr is a TTY
 * (every command takes `--quiet` to silence it): stdout carries results only.
 *
 * Only `import` writes, and a failed import leaves no database it created behind.
 */
import { Args, Command, Options } from "@effect/cli"
import { Cause, Console, Effect, Layer, Option, Schema } from "effect"
import { closeSync, existsSync, fstatSync, openSync, rmSync } from "node:fs"
import { REGISTERS } from "../domain/Fold.js"
import * as Blame from "../inspect/Blame.js"
import * as Format from "../inspect/Format.js"
import * as Diff from "../inspect/Diff.js"
import { ImportRefused, ImportTruncated, InvalidLines } from "../inspect/Errors.js"
import * as EventSource from "../inspect/EventSource.js"
import * as Log from "../inspect/Log.js"
import * as Snapshot from "../inspect/Snapshot.js"
import * as Transfer from "../inspect/Transfer.js"
import * as Auth from "../server/Auth.js"
import * as ServerLog from "../server/ServerLog.js"
import * as ServerMigrations from "../server/ServerMigrations.js"
import * as Database from "../store/Database.js"
import { StorageError } from "../store/Errors.js"
import * as MemoryStore from "../store/MemoryStore.js"
import { UsageError, VerificationFailed } from "./Exit.js"
import { progressOption } from "./Progress.js"
import { corruptionAsBadInput, db, inspectErrorsAsUsage as asUsage, json, printJson, quiet, space } from "./Shared.js"
import * as Stdout from "./Stdout.js"

const ndjson = Options.boolean("ndjson").pipe(Options.withDescription("print one JSON document per line"))
const optionalInt = (name: string, description: string) =>
  Options.integer(name).pipe(Options.withDescription(description), Options.optional)

const log = Command.make(
  "log",
  {
    since: optionalInt("since", "from this seq (inclusive)"),
    until: optionalInt("until", "up to this seq (inclusive)"),
    type: Options.text("type").pipe(Options.withDescription("only events of this type"), Options.optional),
    memory: Options.text("memory").pipe(Options.withDescription("only events touching this memory"), Options.optional),
    client: Options.text("client").pipe(
      Options.withDescription("only events written by this client"),
      Options.optional
    ),
    limit: optionalInt("limit", "at most N events"),
    space,
    db,
    json,
    ndjson,
    quiet
  },
  (a) =>
    Effect.gen(function* () {
      const mode = yield* outputMode(a)
      if (Option.isSome(a.limit) && a.limit.value < 0) return yield* new UsageError({ message: "--limit must be >= 0" })
      const out = yield* Stdout.sink
      let first = true
      if (mode === "json") yield* out.write("[")
      const filter = {
        since: Option.getOrUndefined(a.since),
        until: Option.getOrUndefined(a.until),
        type: Option.getOrUndefined(a.type),
        memoryId: Option.getOrUndefined(a.memory),
        clientId: Option.getOrUndefined(a.client)
      }
      yield* Log.list(
        filter,
        (entries) => {
          const lines = entries.map((e) => {
            if (mode === "text") return `${Format.formatEntry(e)}\n`
            const doc = JSON.stringify(Log.toJson(e))
            if (mode === "ndjson") return `${doc}\n`
            const sep = first ? "\n" : ",\n"
            first = false
            return `${sep}${doc}`
          })
          return out.write(lines.join(""))
        },
        { limit: Option.getOrUndefined(a.limit), ...progressOption("log", a.quiet, { streaming: true }) }
      )
      if (mode === "json") yield* out.write(first ? "]\n" : "\n]\n")
      yield* out.flush
    }).pipe(Effect.scoped, Stdout.untilClosed, withSource(a.db, a.space))
).pipe(Command.withDescription("events in log order, with their sync state (pending, confirmed@N, dead-lettered)"))

const replay = Command.make(
  "replay",
  {
    until: optionalInt("until", "the state after the events up to this seq (log order)"),
    at: Options.text("at").pipe(
      Options.withDescription(
        "the state from the events stamped at or before this time (HLC order): ISO 8601 with a zone, " +
          "e.g. 2024-05-01T12:00:00Z or 2024-05-01T14:00:00+02:00 (a time without a zone is refused)"
      ),
      Options.optional
    ),
    out: Options.text("out").pipe(
      Options.withDescription("write a new database file (never overwritten)"),
      Options.optional
    ),
    includeDeleted: Options.boolean("include-deleted").pipe(Options.withDescription("print deleted memories too")),
    space,
    db,
    json,
    ndjson,
    quiet
  },
  (a) =>
    Effect.gen(function* () {
      const mode = yield* outputMode(a)
      const point = yield* pointOf(a.until, a.at)
      if (Option.isSome(a.out)) {
        const summary = yield* Snapshot.toFile(a.out.value, point, progressOption("replay", a.quiet))
        return yield* mode === "text"
          ? Console.log(`${Format.formatSummary(summary)}; written to ${a.out.value}`)
          : printJson({ ...summary, out: a.out.value })
      }
      const out = yield* Stdout.sink
      let first = true
      if (mode === "json") yield* out.write(`{"memories":[`)
      const summary = yield* Snapshot.scan(
        point,
        (memories) =>
          out.write(
            memories
              .map((m) => {
                if (mode === "text") return `${Format.formatMemoryLine(m)}\n`
                if (mode === "ndjson") return `${JSON.stringify(m)}\n`
                const sep = first ? "\n" : ",\n"
                first = false
                return `${sep}${JSON.stringify(m)}`
              })
              .join("")
          ),
        { ...progressOption("replay", a.quiet, { streaming: true }), includeDeleted: a.includeDeleted }
      )
      if (mode === "json") yield* out.write(`\n],"summary":${JSON.stringify(summary)}}\n`)
      if (mode === "text") yield* out.write(`-- ${Format.formatSummary(summary)}\n`)
      yield* out.flush
    }).pipe(Effect.scoped, Stdout.untilClosed, withSource(a.db, a.space))
).pipe(Command.withDescription("the state as of --until SEQ or --at ISO-TIME: printed, or written to --out FILE"))

const blame = Command.make(
  "blame",
  {
    memoryId: Args.text({ name: "memory-id" }).pipe(Args.withDescription("the memory")),
    field: Options.choice("field", REGISTERS).pipe(Options.withDescription("only this field"), Options.optional),
    space,
    db,
    json,
    quiet
  },
  (a) =>
    Effect.gen(function* () {
      const report = yield* Blame.blame(a.memoryId, Option.getOrUndefined(a.field))
      yield* a.json ? printJson(report) : Console.log(Format.formatBlame(report))
    }).pipe(withSource(a.db, a.space))
).pipe(Command.withDescription("which event set each field of a memory, and which writes lost (LWW)"))

const explain = Command.make(
  "explain",
  { eventId: Args.text({ name: "event-id" }).pipe(Args.withDescription("the event")), space, db, json, quiet },
  (a) =>
    Effect.gen(function* () {
      const e = yield* Blame.explain(a.eventId)
      yield* a.json ? printJson(e) : Console.log(Format.formatExplanation(e))
    }).pipe(withSource(a.db, a.space))
).pipe(Command.withDescription("one event: whether it was applied, what it won and lost, its sync state"))

const diff = Command.make(
  "diff",
  {
    a: Args.text({ name: "a.db" }).pipe(Args.withDescription("the first database")),
    b: Args.text({ name: "b.db" }).pipe(Args.withDescription("the second database")),
    space: Options.text("space").pipe(
      Options.withDescription("the space to read in whichever side is a server database"),
      Options.optional
    ),
    limit: Options.integer("limit").pipe(
      Options.withDescription("at most N items per list (default 20)"),
      Options.withDefault(20)
    ),
    json,
    quiet
  },
  (a) =>
    Effect.gen(function* () {
      if (a.limit < 0) return yield* new UsageError({ message: "--limit must be >= 0" })
      const spaceFor = (file: string) =>
        EventSource.peekKind(file) === "server" ? { space: Option.getOrUndefined(a.space) } : {}
      const left = yield* EventSource.open({ filename: a.a, ...spaceFor(a.a) })
      const right = yield* EventSource.open({ filename: a.b, ...spaceFor(a.b) })
      const report = yield* Diff.diff(left, right, { limit: a.limit, ...progressOption("diff", a.quiet) })
      yield* a.json ? printJson(report) : Console.log(Format.formatDiff(report))
      if (!report.identical) return yield* new VerificationFailed({ message: "the two logs differ" })
    }).pipe(Effect.scoped, asUsage, (e) => corruptionAsBadInput(`${a.a} or ${a.b}`, e))
).pipe(Command.withDescription("events only in A or B, memories that differ, and the first diverging event"))

const exportCommand = Command.make(
  "export",
  {
    out: Options.text("out").pipe(Options.withDescription("write to a new file instead of stdout"), Options.optional),
    includeSensitive: Options.boolean("include-sensitive").pipe(
      Options.withDescription("keep the content of sensitive memories (redacted by default)")
    ),
    space,
    db,
    json,
    quiet
  },
  (a) =>
    Effect.gen(function* () {
      const options = { includeSensitive: a.includeSensitive }
      if (Option.isNone(a.out)) {
        const out = yield* Stdout.sink
        yield* Transfer.exportTo(out, { ...options, ...progressOption("export", a.quiet, { streaming: true }) })
        return yield* out.flush
      }
      const summary = yield* Transfer.exportToFile(a.out.value, { ...options, ...progressOption("export", a.quiet) })
      const text = () =>
        `exported ${summary.events} events to ${a.out.pipe(Option.getOrElse(() => ""))}` +
        (summary.header.redacted ? ` (${summary.redactedEvents} redacted; --include-sensitive keeps them)` : "") +
        (summary.excluded > 0 ? `; ${summary.excluded} dead letters left out` : "")
      yield* a.json ? printJson(summary) : Console.log(text())
    }).pipe(Effect.scoped, Stdout.untilClosed, withSource(a.db, a.space))
).pipe(Command.withDescription("NDJSON of the event set (sensitive content redacted unless --include-sensitive)"))

const importCommand = Command.make(
  "import",
  {
    file: Args.text({ name: "file" }).pipe(Args.withDescription("an NDJSON export (one event per line)")),
    allowRedacted: Options.boolean("allow-redacted").pipe(
      Options.withDescription("accept an export whose sensitive content was redacted")
    ),
    space: Options.text("space").pipe(
      Options.withDescription("import into this space of a server database"),
      Options.optional
    ),
    db,
    json,
    quiet
  },
  (a) =>
    Effect.gen(function* () {
      yield* readable(a.file)
      if (Option.isSome(a.space) && !isSpace(a.space.value)) {
        return yield* new UsageError({ message: `--space ${JSON.stringify(a.space.value)}: ${SPACE_RULE}` })
      }
      const options = {
        allowRedacted: a.allowRedacted,
        ...progressOption("import", a.quiet),
        onInvalid: (i: Transfer.InvalidLine) => warn(`${a.file}:${i.line}: ${i.message}`)
      }
      const report = yield* Option.match(a.space, {
        onNone: () =>
          Effect.flatMap(Transfer.replicaTarget, (t) => Transfer.importFile(a.file, t, options)).pipe(
            Effect.provide(MemoryStore.layer({ filename: a.db, create: true }))
          ),
        onSome: (s) =>
          Effect.flatMap(ServerLog.ServerLog, (l) =>
            Transfer.importFile(a.file, Transfer.serverTarget(l, s), options)
          ).pipe(
            Effect.provide(
              Layer.effect(ServerLog.ServerLog, ServerLog.make()).pipe(
                Layer.provide(Database.layer({ filename: a.db, schema: ServerMigrations.schema }))
              )
            ),
            Effect.mapError((e) => (e._tag === "ServerError" ? new StorageError({ message: e.message }) : e))
          )
      })
      const { invalid: _listed, ...summary } = report
      yield* a.json
        ? printJson(report)
        : Console.log(
            `imported ${summary.imported} of ${summary.events} events from ${a.file} ` +
              `(${summary.duplicates} already held, ${summary.invalidCount} invalid lines skipped)`
          )
      if (report.invalidCount > 0) return yield* new InvalidLines({ path: a.file, count: report.invalidCount })
      const held = report.events + report.invalidCount
      if (report.header?.events !== undefined && held < report.header.events) {
        return yield* new ImportTruncated({ path: a.file, announced: report.header.events, held })
      }
    }).pipe(removeIfMadeAndFailed(a.db), asUsage, (e) => corruptionAsBadInput(a.db, e))
).pipe(Command.withDescription("import an NDJSON export: idempotent by event id, bad lines reported and skipped"))

const isSpace = Schema.is(Auth.Space)
const SPACE_RULE = "a space is 1-64 characters of [A-Za-z0-9_.-] (the names memsync serve gives tokens)"

/** The inspection commands, in help order. */
export const inspectCommands = [log, replay, blame, explain, diff, exportCommand, importCommand] as const

// ---------------------------------------------------------------------------------------------------------------

/**
 * A warning line on stderr. Not `Console.error`: bin.ts silences it around the CLI run (to drop @effect/cli's own
 * copy of parse errors), and these lines must reach the user while the command runs.
 */
const warn = (line: string) => Effect.sync(() => void process.stderr.write(`memsync: ${line}\n`))

/** Run a command body over the source in `--db` (and `--space`), with the tools' errors as usage errors. */
const withSource =
  (file: string, space: Option.Option<string>) =>
  <A, E, R>(self: Effect.Effect<A, E, R>) =>
    self.pipe(
      Effect.provide(EventSource.layer({ filename: file, space: Option.getOrUndefined(space) })),
      asUsage,
      (e) => corruptionAsBadInput(file, e)
    )

const outputMode = (a: { readonly json: boolean; readonly ndjson: boolean }) =>
  a.json && a.ndjson
    ? Effect.fail(new UsageError({ message: "--json and --ndjson cannot be used together" }))
    : Effect.succeed(a.json ? ("json" as const) : a.ndjson ? ("ndjson" as const) : ("text" as const))

/** ISO 8601 date and time with an explicit zone (`Z` or an offset). */
const ZONED_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i

const pointOf = (until: Option.Option<number>, at: Option.Option<string>) => {
  if (Option.isSome(until) && Option.isNone(at)) {
    if (until.value < 0) return Effect.fail(new UsageError({ message: "--until must be >= 0" }))
    return Effect.succeed<Snapshot.Point>({ _tag: "Seq", seq: until.value })
  }
  if (Option.isSome(at) && Option.isNone(until)) {
    // A time without a zone would be read as the machine's local time: on a log written elsewhere that is a guess.
    const millis = ZONED_TIME.test(at.value) ? Date.parse(at.value) : Number.NaN
    if (Number.isNaN(millis)) {
      return Effect.fail(
        new UsageError({
          message:
            `--at ${at.value}: not an ISO time with a zone ` +
            `(e.g. 2024-05-01T12:00:00Z or 2024-05-01T14:00:00+02:00; local time is not assumed)`
        })
      )
    }
    return Effect.succeed<Snapshot.Point>({ _tag: "Time", millis })
  }
  return Effect.fail(new UsageError({ message: "give exactly one of --until SEQ and --at ISO-TIME" }))
}

/** Refuse an import file that cannot be read before the target database is opened (and so perhaps created). */
const readable = (file: string) =>
  Effect.try({
    try: () => {
      const fd = openSync(file, "r")
      try {
        // Opening a directory for reading succeeds; reading it is what fails (EISDIR).
        if (!fstatSync(fd).isFile()) throw new Error("it is not a file")
      } finally {
        closeSync(fd)
      }
    },
    catch: (e) => new ImportRefused({ path: file, reason: e instanceof Error ? e.message : String(e) })
  })

/**
 * A failed import leaves no database it created behind (a refused header, a storage failure, an interruption). Lines
 * skipped as invalid are not such a failure: the rest was imported, as promised, and stays.
 */
const removeIfMadeAndFailed =
  (file: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.suspend(() => {
      if (existsSync(file)) return self
      return Effect.onError(self, (cause) => {
        const failure = Cause.failureOption(cause)
        // What was imported stays: the lines skipped or missing were reported.
        if (
          Option.isSome(failure) &&
          (failure.value instanceof InvalidLines || failure.value instanceof ImportTruncated)
        ) {
          return Effect.void
        }
        return Effect.sync(() => {
          for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) rmSync(f, { force: true })
        })
      })
    })
