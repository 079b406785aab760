/**
 * Counts over a log for `memsync stats`: events per day (UTC, by HLC wall clock), per client, per type, and the
 * size of the log on disk. One grouped scan each; nothing is held per event.
 */
import { Effect, Schema } from "effect"
import { existsSync, statSync } from "node:fs"
import { EventSource, layer } from "./EventSource.js"

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

/** Count the source's events by day, client and type, and measure the log on disk. */
export const compute = Effect.gen(function* () {
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
  const types = yield* grouped(`e.type || CASE WHEN e.version = 1 THEN '' ELSE '@v' || e.version END`)
  const logBytes = yield* source.database.raw((db) => {
    try {
      const indexes = db
        .prepare(`SELECT name FROM sqlite_schema WHERE tbl_name = ? AND type IN ('table', 'index')`)
        .pluck()
        .all(table)
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
  const stats: LogStats = {
    eventsPerDay: Object.fromEntries(
      days.map((d) => [new Date(Number(d.k) * 86_400_000).toISOString().slice(0, 10), d.n])
    ),
    eventsPerClient: Object.fromEntries(clients.map((c) => [String(c.k), c.n])),
    eventsPerType: Object.fromEntries(types.map((t) => [String(t.k), t.n])),
    logBytes,
    fileBytes: fileBytes(source.filename)
  }
  return stats
})

/** The stats of the log in `filename` (opened read-only on its own). */
export const ofFile = (filename: string, space?: string) => Effect.provide(compute, layer({ filename, space }))

/** Text lines for `memsync stats` (per type is left out: `stats` already prints it; `--json` has both). */
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

const fileBytes = (filename: string): number => {
  let bytes = 0
  for (const f of [filename, `${filename}-wal`]) if (existsSync(f)) bytes += statSync(f).size
  return bytes
}

const mb = (bytes: number): string =>
  bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`
