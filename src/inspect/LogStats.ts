/**
 * Counts over a log for `memsync stats`, on a replica or one space of a server database: events per day (UTC, by HLC
 * wall clock), per client, per type, the size of the log on disk, and the counts of the view and of the sync
 * bookkeeping where the source has them. One grouped scan each; nothing is held per event.
 *
 * The source is only read (see EventSource). A replica's view and bookkeeping are counted as they stand; a server keeps
 * no view, so a space's memories are folded from its log into a TEMP table, and it has no outbox and no dead letters.
 */
import { Effect, Schema } from "effect"
import { existsSync, statSync } from "node:fs"
import { isKnown } from "../domain/Events.js"
import { viewTableDdl } from "../store/Migrations.js"
import { EventSource, layer, type Kind } from "./EventSource.js"
import * as InspectFold from "./Fold.js"

/** What `compute` found. */
export interface LogStats {
  /** `YYYY-MM-DD` (UTC, from each event's HLC wall clock) to count, oldest first. */
  readonly eventsPerDay: Readonly<Record<string, number>>
  readonly eventsPerClient: Readonly<Record<string, number>>
  /** `type` (with `@vN` when a version other than 1 is present) to count. */
  readonly eventsPerType: Readonly<Record<string, number>>
  /** Bytes of the log's table and indexes (shared by every space of a server database); null if unknown. */
  readonly logBytes: number | null
  /** Bytes of the database file and its WAL. */
  readonly fileBytes: number
}

/** Everything `memsync stats` reports. */
export interface Report extends LogStats {
  readonly kind: Kind
  /** The space read, on a server database. */
  readonly space: string | null
  /** Memories readers see (a server's: folded from the space's log). */
  readonly memories: number
  readonly deleted: number
  readonly events: number
  /** `type` to count, every version together. */
  readonly eventsByType: Readonly<Record<string, number>>
  /** Events of a type or version this build does not read (kept, not folded). */
  readonly unknownEvents: number
  /** Local events not yet acknowledged by a server; null on a server database (it has no outbox). */
  readonly pendingOutbox: number | null
  /** Events a server rejected; null on a server database (what it holds, it accepted). */
  readonly deadLetters: number | null
}

/** Count the source's events by day, client and type, and measure the log on disk. */
export const compute = Effect.suspend(() => Effect.flatMap(typeCounts, statsOf))

/** The stats of the log in `filename` (opened read-only on its own). */
export const ofFile = (filename: string, space?: string) => Effect.provide(compute, layer({ filename, space }))

/** The whole `memsync stats` report of the source; `onProgress` follows the fold of a server space. */
export const report = Effect.fn("LogStats.report")(function* (options: InspectFold.Options = {}) {
  const source = yield* EventSource
  const types = yield* typeCounts
  const log = yield* statsOf(types)
  const eventsByType: Record<string, number> = {}
  let unknownEvents = 0
  let events = 0
  for (const t of types) {
    eventsByType[t.type] = (eventsByType[t.type] ?? 0) + t.n
    if (!isKnown(t.type, t.version)) unknownEvents += t.n
    events += t.n
  }
  const view = source.kind === "replica" ? yield* replicaCounts : yield* foldedCounts(options)
  const result: Report = {
    kind: source.kind,
    space: source.space ?? null,
    ...view,
    events,
    eventsByType,
    unknownEvents,
    ...log
  }
  return result
})

/** Text lines for `memsync stats`. */
export const formatReport = (r: Report): Array<string> => [
  ...(r.space === null ? [] : [`space           ${r.space} (server database; memories folded from its log)`]),
  `memories        ${r.memories}`,
  `deleted         ${r.deleted}`,
  `events          ${r.events}`,
  ...Object.entries(r.eventsByType).map(([t, n]) => `  ${t.padEnd(16)}${n}`),
  `unknown events  ${r.unknownEvents}`,
  ...(r.pendingOutbox === null ? [] : [`pending outbox  ${r.pendingOutbox}`]),
  ...(r.deadLetters === null ? [] : [`dead letters    ${r.deadLetters}`]),
  ...formatLines(r)
]

/** Text lines of the log's own counts (per type is left out: `formatReport` prints it; `--json` has both). */
export const formatLines = (s: LogStats): Array<string> => {
  const section = (title: string, counts: Readonly<Record<string, number>>) => [
    title,
    ...Object.entries(counts).map(([k, n]) => `  ${k.padEnd(24)}${n}`)
  ]
  return [
    `log size        ${s.logBytes === null ? "unknown" : mb(s.logBytes)} (file ${mb(s.fileBytes)})`,
    ...section("events per day (UTC)", s.eventsPerDay),
    ...section("events per client", s.eventsPerClient)
  ]
}

// ---------------------------------------------------------------------------------------------------------------

const decodeCount = Schema.decodeUnknownSync(
  Schema.Struct({ k: Schema.Union(Schema.String, Schema.Number, Schema.Null), n: Schema.Number })
)
const decodeTypeCount = Schema.decodeUnknownSync(
  Schema.Struct({ type: Schema.String, version: Schema.Number, n: Schema.Number })
)
const decodeNumber = Schema.decodeUnknownSync(Schema.Number)

type TypeCount = ReturnType<typeof decodeTypeCount>

const statsOf = (types: ReadonlyArray<TypeCount>) =>
  Effect.gen(function* () {
    const source = yield* EventSource
    const stats: LogStats = {
      ...(yield* dayAndClient),
      eventsPerType: Object.fromEntries(
        types.map((t) => [t.version === 1 ? t.type : `${t.type}@v${t.version}`, t.n] as const)
      ),
      logBytes: yield* logBytes,
      fileBytes: fileBytes(source.filename)
    }
    return stats
  })

/** Events by (type, version), in type order. */
const typeCounts = Effect.flatMap(EventSource, (source) => {
  const { table, where, params } = source.scoped
  return source.database.raw((db) =>
    db
      .prepare(
        `SELECT e.type AS type, e.version AS version, count(*) AS n FROM ${table} e WHERE ${where}
         GROUP BY e.type, e.version ORDER BY e.type, e.version`
      )
      .all(...params)
      .map((row) => decodeTypeCount(row))
  )
})

const dayAndClient = Effect.gen(function* () {
  const source = yield* EventSource
  const { table, where, params } = source.scoped
  const grouped = (key: string) =>
    source.database.raw((db) =>
      db
        .prepare(`SELECT ${key} AS k, count(*) AS n FROM ${table} e WHERE ${where} GROUP BY k ORDER BY k`)
        .all(...params)
        .map((row) => decodeCount(row))
    )
  const days = yield* grouped(`CAST(substr(e.hlc, 1, 15) AS INTEGER) / 86400000`)
  const clients = yield* grouped(`e.client_id`)
  return {
    eventsPerDay: Object.fromEntries(
      days.map((d) => [new Date(Number(d.k) * 86_400_000).toISOString().slice(0, 10), d.n] as const)
    ),
    eventsPerClient: Object.fromEntries(clients.map((c) => [String(c.k), c.n] as const))
  }
})

const logBytes = Effect.flatMap(EventSource, (source) =>
  source.database.raw((db) => {
    try {
      const indexes = db
        .prepare(`SELECT name FROM sqlite_schema WHERE tbl_name = ? AND type IN ('table', 'index')`)
        .pluck()
        .all(source.scoped.table)
      const marks = indexes.map(() => "?").join(", ")
      const bytes = db
        .prepare(`SELECT sum(pgsize) FROM dbstat WHERE name IN (${marks})`)
        .pluck()
        .get(...indexes)
      return typeof bytes === "number" ? bytes : null
    } catch {
      // dbstat is a compile-time option of SQLite; without it the size is unknown.
      return null
    }
  })
)

/** A replica's view and bookkeeping, as they stand. */
const replicaCounts = Effect.flatMap(EventSource, (source) =>
  source.database.raw((db) => {
    const count = (q: string): number => decodeNumber(db.prepare(q).pluck().get() ?? 0)
    return {
      memories: count(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 0`),
      // Like `list --include-deleted`: a tombstone for an id never created is not a deleted memory.
      deleted: count(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 1`),
      pendingOutbox: count(`SELECT count(*) FROM outbox`),
      // Like `memsync status`: a dead letter that was requeued is no longer listed.
      deadLetters: count(`SELECT count(*) FROM dead_letters WHERE requeued_as IS NULL`)
    }
  })
)

/** A server space's memories, folded from its log into a TEMP table (the file is not touched). */
const foldedCounts = (options: InspectFold.Options) =>
  Effect.gen(function* () {
    const source = yield* EventSource
    const { database } = source
    const table = "inspect_stats"
    const drop = Effect.ignore(database.raw((db) => db.exec(`DROP TABLE IF EXISTS temp.${table}`)))
    yield* drop
    yield* database.raw((db) => db.exec(viewTableDdl(`temp.${table}`)))
    return yield* Effect.gen(function* () {
      yield* InspectFold.into(source, database, table, { inSet: true }, options)
      return yield* database.raw((db) => {
        const count = (q: string): number => decodeNumber(db.prepare(q).pluck().get() ?? 0)
        return {
          memories: count(`SELECT count(*) FROM temp.${table} WHERE created = 1 AND deleted = 0`),
          deleted: count(`SELECT count(*) FROM temp.${table} WHERE created = 1 AND deleted = 1`),
          pendingOutbox: null,
          deadLetters: null
        }
      })
    }).pipe(Effect.ensuring(drop))
  })

const fileBytes = (filename: string): number => {
  let bytes = 0
  for (const f of [filename, `${filename}-wal`]) if (existsSync(f)) bytes += statSync(f).size
  return bytes
}

const mb = (bytes: number): string =>
  bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`
