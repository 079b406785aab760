/**
 * Data commands: add, update, rm, get, list, search, history, verify, rebuild, stats.
 * Thin: parse options, call MemoryStore / Replay, print. Write commands validate their input before the database is
 * opened, so a rejected command never creates or touches a file.
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Option, Schema } from "effect"
import { formatError } from "../domain/Events.js"
import { CreateInput, PatchInput, type Memory } from "../domain/Memory.js"
import { ValidationError } from "../store/Errors.js"
import { MemoryStore, type ListedMemory } from "../store/MemoryStore.js"
import * as EventSource from "../inspect/EventSource.js"
import * as LogStats from "../inspect/LogStats.js"
import * as Replay from "../store/Replay.js"
import { UsageError, VerificationFailed } from "./Exit.js"
import { corruptionAsBadInput, db, inspectErrorsAsUsage, json, output, quiet, space, withStore } from "./Shared.js"
import { progressOption, progressReporter } from "./Progress.js"

const id = Args.text({ name: "id" }).pipe(Args.withDescription("the memory id"))
// `add` and `update` share these; the defaults a new memory gets are named only in `add`'s help.
const categoryOf = (description: string) =>
  Options.text("category").pipe(Options.withDescription(description), Options.optional)
const tags = Options.text("tag").pipe(
  Options.withDescription("a tag (repeatable, up to 100; default: none)"),
  Options.repeated
)
const keywordsOf = (description: string) =>
  Options.text("keywords").pipe(Options.withDescription(description), Options.optional)
const importanceOf = (description: string) =>
  Options.float("importance").pipe(Options.withDescription(description), Options.optional)
const limit = (fallback: number) =>
  Options.integer("limit").pipe(
    Options.withDescription(`at most N results (default ${fallback})`),
    Options.withDefault(fallback)
  )

const add = Command.make(
  "add",
  {
    content: Args.text({ name: "content" }).pipe(Args.withDescription("the memory's text")),
    category: categoryOf("a category (default: general)"),
    tags,
    keywords: keywordsOf("comma-separated keywords (up to 100; default: none)"),
    importance: importanceOf("importance in [0, 1] (default: 0.5)"),
    sensitive: Options.boolean("sensitive").pipe(Options.withDescription("mark the memory as sensitive")),
    db,
    json
  },
  (a) =>
    Effect.gen(function* () {
      yield* refuseDroppedEmptyTag
      const input = yield* decode(CreateInput, {
        content: a.content,
        ...someOf("category", a.category),
        ...(a.tags.length > 0 ? { tags: a.tags } : {}),
        ...someOf("keywords", Option.map(a.keywords, splitList)),
        ...someOf("importance", a.importance),
        sensitive: a.sensitive
      })
      const memory = yield* withStore(
        a.db,
        { create: true },
        Effect.flatMap(MemoryStore, (s) => s.create(input))
      )
      yield* output(a.json, memory, () => memory.id)
    })
).pipe(Command.withDescription("add a memory; prints its id"))

const update = Command.make(
  "update",
  {
    id,
    content: Options.text("content").pipe(Options.withDescription("new text"), Options.optional),
    category: categoryOf("a new category"),
    tags: Options.text("tag").pipe(
      Options.withDescription("replace the tags (repeatable, up to 100)"),
      Options.repeated
    ),
    clearTags: Options.boolean("clear-tags").pipe(Options.withDescription("remove every tag")),
    keywords: keywordsOf('replace the keywords (comma-separated, up to 100; "" removes them all)'),
    importance: importanceOf("a new importance in [0, 1]"),
    sensitive: Options.choice("sensitive", ["true", "false"]).pipe(
      Options.withDescription("set or clear the sensitive flag"),
      Options.optional
    ),
    db,
    json
  },
  (a) =>
    Effect.gen(function* () {
      yield* refuseDroppedEmptyTag
      if (a.clearTags && a.tags.length > 0) {
        return yield* new UsageError({ message: "--clear-tags and --tag do not go together (--tag replaces the tags)" })
      }
      const patch = yield* decode(PatchInput, {
        ...someOf("content", a.content),
        ...someOf("category", a.category),
        ...(a.clearTags ? { tags: [] } : a.tags.length > 0 ? { tags: a.tags } : {}),
        ...someOf("keywords", Option.map(a.keywords, splitList)),
        ...someOf("importance", a.importance),
        ...someOf(
          "sensitive",
          Option.map(a.sensitive, (s) => s === "true")
        )
      })
      const memory = yield* withStore(
        a.db,
        { create: false },
        Effect.flatMap(MemoryStore, (s) => s.update(a.id, patch))
      )
      yield* output(a.json, memory, () => formatMemory(memory))
    })
).pipe(Command.withDescription("change fields of a memory (only the ones given)"))

const rm = Command.make("rm", { id, db, json }, (a) =>
  Effect.gen(function* () {
    yield* withStore(
      a.db,
      { create: false },
      Effect.flatMap(MemoryStore, (s) => s.remove(a.id))
    )
    yield* output(a.json, { id: a.id, deleted: true }, () => `deleted ${a.id}`)
  })
).pipe(Command.withDescription("delete a memory (for good: a deleted id never comes back)"))

const get = Command.make("get", { id, db, json }, (a) =>
  Effect.gen(function* () {
    const memory = yield* withStore(
      a.db,
      { create: false },
      Effect.flatMap(MemoryStore, (s) => s.get(a.id))
    )
    yield* output(a.json, memory, () => formatMemory(memory))
  })
).pipe(Command.withDescription("show one memory"))

const list = Command.make(
  "list",
  {
    category: Options.text("category").pipe(Options.withDescription("only this category"), Options.optional),
    tag: Options.text("tag").pipe(Options.withDescription("only memories with this tag"), Options.optional),
    includeDeleted: Options.boolean("include-deleted").pipe(Options.withDescription("show deleted memories too")),
    limit: limit(100),
    offset: Options.integer("offset").pipe(Options.withDescription("skip the first N"), Options.withDefault(0)),
    db,
    json
  },
  (a) =>
    Effect.gen(function* () {
      if (a.limit < 0 || a.offset < 0) return yield* new UsageError({ message: "--limit and --offset must be >= 0" })
      const memories = yield* withStore(
        a.db,
        { create: false },
        Effect.flatMap(MemoryStore, (s) =>
          s.list({
            category: Option.getOrUndefined(a.category),
            tag: Option.getOrUndefined(a.tag),
            includeDeleted: a.includeDeleted,
            limit: a.limit,
            offset: a.offset
          })
        )
      )
      yield* output(a.json, memories, () => memories.map(formatListed).join("\n"))
    })
).pipe(Command.withDescription("list memories, newest first"))

const search = Command.make(
  "search",
  { query: Args.text({ name: "query" }).pipe(Args.withDescription("words to find")), limit: limit(20), db, json },
  (a) =>
    Effect.gen(function* () {
      if (a.limit < 0) return yield* new UsageError({ message: "--limit must be >= 0" })
      const hits = yield* withStore(
        a.db,
        { create: false },
        Effect.flatMap(MemoryStore, (s) => s.search(a.query, { limit: a.limit }))
      )
      yield* output(a.json, hits, () => hits.map((h) => formatListed({ ...h.memory, deleted: false })).join("\n"))
    })
).pipe(Command.withDescription("full-text search over content, tags, keywords and category (ranked)"))

const history = Command.make("history", { id, db, json }, (a) =>
  Effect.gen(function* () {
    const events = yield* withStore(
      a.db,
      { create: false },
      Effect.flatMap(MemoryStore, (s) => s.history(a.id))
    )
    if (events.length === 0) return yield* new UsageError({ message: `no events touch memory ${a.id}` })
    yield* output(a.json, events, () =>
      events.map((e) => `${e.hlc}  ${e.type.padEnd(15)} ${e.id}  ${JSON.stringify(e.payload)}`).join("\n")
    )
  })
).pipe(Command.withDescription("the events touching a memory, oldest first"))

const verify = Command.make("verify", { db, json }, (a) =>
  Effect.gen(function* () {
    const report = yield* withStore(a.db, { create: false }, Replay.verify({ onProgress: progressReporter("verify") }))
    yield* output(a.json, report, () => formatReport(report))
    if (!report.ok) {
      const message = viewMatches(report)
        ? "the full-text index is out of step with the view"
        : "the view differs from a rebuild of the log"
      return yield* new VerificationFailed({ message })
    }
  })
).pipe(Command.withDescription("check that the view equals a rebuild from the log (exit 1 with a diff if not)"))

const rebuild = Command.make("rebuild", { db, json }, (a) =>
  Effect.gen(function* () {
    const result = yield* withStore(
      a.db,
      { create: false },
      Replay.rebuild({ onProgress: progressReporter("rebuild") })
    )
    yield* output(a.json, result, () => `rebuilt ${result.memories} memories from ${result.events} events`)
  })
).pipe(Command.withDescription("drop the view and fold it again from the event log"))

const stats = Command.make("stats", { space, db, json, quiet }, (a) =>
  Effect.gen(function* () {
    // Read through the inspection source, opened read-only: stats never migrates or writes the file it counts.
    const report = yield* LogStats.report(progressOption("stats", a.quiet)).pipe(
      Effect.provide(EventSource.layer({ filename: a.db, space: Option.getOrUndefined(a.space) })),
      (counting) => corruptionAsBadInput(a.db, counting)
    )
    yield* output(a.json, report, () => LogStats.formatReport(report).join("\n"))
  }).pipe(inspectErrorsAsUsage)
).pipe(
  Command.withDescription(
    "counts: memories, deleted, events by type/day/client, log size on disk, pending outbox, unknown events " +
      "(of a replica, or of one space of a server database with --space S)"
  )
)

/** The data commands, in help order. */
export const dataCommands = [add, update, rm, get, list, search, history, verify, rebuild, stats] as const

const decode = <A, I>(schema: Schema.Schema<A, I>, input: unknown) =>
  Effect.mapError(Schema.decodeUnknown(schema)(input), (e) => new ValidationError({ message: formatError(e) }))

/**
 * @effect/cli drops an empty value of a repeated option before a command sees it (`--tag ""` reads as no `--tag`;
 * `--tag " "` is trimmed to "" and kept), so an empty tag would vanish silently where a blank one is refused. The raw
 * arguments still show it: refuse it with the message the schema gives a blank one.
 */
const refuseDroppedEmptyTag = Effect.suspend(() =>
  process.argv.some((arg, i) => arg === "--tag" && process.argv[i + 1] === "")
    ? new ValidationError({ message: "tags: tags and keywords must not be empty or blank" })
    : Effect.void
)

const someOf = <K extends string, A>(key: K, value: Option.Option<A>): { [P in K]?: A } =>
  // A one-key object when the option is set, an empty one otherwise (exactOptionalPropertyTypes forbids `undefined`).
  Option.isSome(value) ? ({ [key]: value.value } as { [P in K]?: A }) : {}

const splitList = (s: string): Array<string> =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x.length > 0)

const formatMemory = (m: Memory): string =>
  [
    `id          ${m.id}`,
    `content     ${m.content}`,
    `category    ${m.category}`,
    `tags        ${m.tags.join(", ")}`,
    `keywords    ${m.keywords.join(", ")}`,
    `importance  ${m.importance}`,
    `sensitive   ${m.sensitive}`,
    `created     ${new Date(m.createdAt).toISOString()}`,
    `updated     ${new Date(m.updatedAt).toISOString()}`
  ].join("\n")

const formatListed = (m: ListedMemory): string => {
  const oneLine = m.content.replace(/\s+/g, " ")
  const text = oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine
  return `${m.id}  ${m.deleted ? "[deleted] " : ""}[${m.category}] ${text}`
}

/** The view's rows equal a rebuild of the log (whatever the state of its full-text index). */
const viewMatches = (r: Replay.VerifyReport): boolean =>
  r.onlyInView.length === 0 && r.missingFromView.length === 0 && r.differingCount === 0

const formatReport = (r: Replay.VerifyReport): string => {
  if (r.ok) return `ok: the view equals a rebuild of ${r.events} events (${r.memories} memories)`
  // Only the index is damaged: saying "the view differs" would send the reader looking for a diff that is not there.
  if (viewMatches(r)) {
    return [
      `DRIFT: the full-text index is out of step with the view (SQLite's integrity check: ${r.ftsMessage ?? "failed"})`,
      `  the view itself equals a rebuild of ${r.events} events (${r.memories} memories); search may miss or invent`,
      `  matches until \`memsync rebuild\` rebuilds the index`
    ].join("\n")
  }
  const lines = [`DRIFT: the view differs from a rebuild of ${r.events} events`]
  for (const id of r.onlyInView) lines.push(`  only in view:      ${id}`)
  for (const id of r.missingFromView) lines.push(`  missing from view: ${id}`)
  for (const d of r.differing) {
    for (const f of d.fields) {
      lines.push(`  ${d.id}  ${f.field}: view=${JSON.stringify(f.view)} rebuilt=${JSON.stringify(f.rebuilt)}`)
    }
  }
  if (r.differingCount > r.differing.length) lines.push(`  ... ${r.differingCount - r.differing.length} more`)
  if (!r.ftsOk) lines.push(`  full-text index out of step with the view: ${r.ftsMessage ?? "integrity check failed"}`)
  return lines.join("\n")
}
