/**
 * One reader over either kind of memsync log: a replica's `events`, or one space of a server's `server_events`.
 * Every inspection tool reads through it, so "replica or `--space S` of a server" is decided once, here.
 *
 * Invariants:
 * - The file is opened read-only (no migration, no write): inspecting never changes the source. TEMP tables, which
 *   live outside the file, are the only scratch space the tools use on it.
 * - Reads are keyset pages (`seq > after ORDER BY seq LIMIT n`, or by id), so memory stays bounded on any log size.
 * - `seq` is the log's own order: local arrival order in a replica, the server seq in a server space.
 * - `excluded` marks events that left the event set (dead-lettered here): folds skip them, listings show them.
 *   A server's log has no dead letters: everything it holds was accepted.
 */
import Sqlite from "better-sqlite3"
import { Context, Effect, Layer, Predicate, type Scope } from "effect"
import type { Envelope } from "../domain/Events.js"
import * as ServerMigrations from "../server/ServerMigrations.js"
import * as Database from "../store/Database.js"
import type { StorageError } from "../store/Errors.js"
import type { StoredEvent } from "../store/EventLog.js"
import { SpaceRequired, UnknownSpace } from "./Errors.js"
import { readRow, toEnvelope, type LogRow } from "./Rows.js"

/** Which kind of database a source reads. */
export type Kind = "replica" | "server"

/** Where an event stands with respect to sync. */
export type SyncState =
  /** In the outbox: written here, not yet acknowledged by a server. */
  | { readonly state: "pending" }
  /** The server holds it at this seq (on a server database: its own seq). */
  | { readonly state: "confirmed"; readonly serverSeq: number }
  /** A server rejected it; it left the event set (and `requeuedAs` names the fresh copy, when it was requeued). */
  | {
      readonly state: "dead-lettered"
      readonly reason: string
      readonly message: string
      readonly at: number
      readonly requeuedAs: string | null
    }
  /** Held here, not queued for push and with no server seq known (imported, or pulled before seqs were kept). */
  | { readonly state: "unconfirmed" }

/** An event and its sync state. */
export interface Entry {
  readonly event: StoredEvent
  readonly sync: SyncState
}

/** Which events to read. Bounds are inclusive; every field is optional. */
export interface Filter {
  readonly since?: number | undefined
  readonly until?: number | undefined
  readonly type?: string | undefined
  readonly memoryId?: string | undefined
  readonly clientId?: string | undefined
  /** Only stamps that sort below this (see `hlcBound`). */
  readonly hlcBelow?: string | undefined
  /** Only events in the event set (skip dead letters). */
  readonly inSet?: boolean | undefined
}

/** The table, scope clause and parameters that select this source's events, for ad-hoc SQL over `FROM ${table} e`. */
export interface Scoped {
  readonly table: string
  readonly where: string
  readonly params: ReadonlyArray<string>
}

/** An open event source. */
export interface EventSource {
  readonly kind: Kind
  readonly filename: string
  readonly space: string | undefined
  /** The read-only database (TEMP tables are writable). */
  readonly database: Database.Database
  readonly scoped: Scoped
  /** How many events pass the filter. */
  readonly count: (filter?: Filter) => Effect.Effect<number, StorageError>
  /** Raw rows with `seq > after`, in log order. */
  readonly rows: (after: number, limit: number, filter?: Filter) => Effect.Effect<ReadonlyArray<LogRow>, StorageError>
  /**
   * Hand each row with `seq > after` (at most `limit`, in log order) to `f` as it is read, without holding the page;
   * returns how many there were. `f` runs while the source's connection is held: it must not use this source.
   */
  readonly eachRow: (
    after: number,
    limit: number,
    filter: Filter,
    f: (row: LogRow) => void
  ) => Effect.Effect<number, StorageError>
  /** Raw rows with `id > afterId`, in id order (for merge-joins of two logs). */
  readonly rowsById: (afterId: string, limit: number) => Effect.Effect<ReadonlyArray<LogRow>, StorageError>
  /** Decoded events with their sync state, `seq > after`, in log order. */
  readonly entries: (after: number, limit: number, filter?: Filter) => Effect.Effect<ReadonlyArray<Entry>, StorageError>
  /** One event by id. */
  readonly entry: (eventId: string) => Effect.Effect<Entry | undefined, StorageError>
  /** Every event touching one memory, in `(hlc, id)` order. */
  readonly byMemory: (memoryId: string) => Effect.Effect<ReadonlyArray<Entry>, StorageError>
  /** SQL reading this source from ANOTHER connection that attached its file as `schema` (see `AttachedSql`). */
  readonly attached: (schema: string, filter: Filter) => AttachedSql
}

/**
 * Statements over a source file attached to another connection, for bulk copies that never bring a row into JS (a
 * row read into JS and inserted again costs several times what SQLite's own `INSERT ... SELECT` does).
 */
export interface AttachedSql {
  /**
   * Columns `seq, id, type, version, memory_id, hlc, client_id, payload` of the events that pass the filter with
   * `seq > ?`, in log order, `LIMIT ?` last: bind `params(after, limit)`.
   */
  readonly events: string
  readonly params: (after: number, limit: number) => ReadonlyArray<string | number>
  /** Columns `event_id, reason, message, at, requeued_as` of every dead letter; undefined when there are none. */
  readonly deadLetters: string | undefined
}

/** The event source tag. */
export const EventSource = Context.GenericTag<EventSource>("memsync/inspect/EventSource")

/** How to open a source. */
export interface Options {
  readonly filename: string
  /** The space to read, for a server database (required there, refused for a replica). */
  readonly space?: string | undefined
}

/** Errors of opening a source. */
export type OpenError = Database.OpenError | SpaceRequired | UnknownSpace

/** Open a source read-only for the lifetime of the scope. */
export const open = (options: Options): Effect.Effect<EventSource, OpenError, Scope.Scope> =>
  Effect.gen(function* () {
    const kind = peekKind(options.filename)
    const database = yield* Database.make({
      filename: options.filename,
      readonly: true,
      create: false,
      schema: kind === "server" ? ServerMigrations.schema : Database.replicaSchema
    })
    const space = yield* checkSpace(database, kind, options)
    const shape = yield* database.raw((db) => (kind === "server" ? serverShape(space ?? "") : replicaShape(db)))
    return yield* database.raw((db) => build(db, database, kind, space, options.filename, shape))
  })

/** The source over `options.filename`, as a layer. */
export const layer = (options: Options): Layer.Layer<EventSource, OpenError> => Layer.scoped(EventSource, open(options))

/** The exclusive upper bound on stamps for "at or before `millis`": every stamp of a later millisecond sorts above. */
export const hlcBound = (millis: number): string => String(Math.floor(millis) + 1).padStart(15, "0")

/** The kind of a memsync database file, by its `memsync_meta`; "replica" when it cannot tell (open reports why). */
export const peekKind = (filename: string): Kind => {
  try {
    // A bare handle just to read one row: Database.make needs the kind before it can check the file.
    const db = new Sqlite(filename, { readonly: true, fileMustExist: true })
    try {
      const kind = db.prepare(`SELECT value FROM memsync_meta WHERE key = 'kind'`).pluck().get()
      return kind === "server" ? "server" : "replica"
    } finally {
      db.close()
    }
  } catch {
    return "replica"
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** How one kind of log spells its queries. */
interface Shape {
  readonly scoped: Scoped
  /** SELECT list + FROM (+ joins) of an entry (event + sync columns). */
  readonly entrySelect: string
  /** SELECT list + FROM of a raw row. */
  readonly rowSelect: string
  /** A condition that holds for events in the event set. */
  readonly inSet: string
  /** SELECT list + FROM of the event columns, in the file attached as `schema` (scope clause included). */
  readonly attachedEvents: (schema: string) => string
  /** SELECT of the dead letters in the file attached as `schema`, when this kind of log has them. */
  readonly attachedDeadLetters: (schema: string) => string | undefined
}

const EVENT_COLUMNS = "e.seq, e.id, e.type, e.version, e.memory_id, e.hlc, e.client_id, e.payload"

const replicaShape = (db: Sqlite.Database): Shape => {
  const tables = new Set(
    db
      .prepare(`SELECT name FROM sqlite_schema WHERE type = 'table'`)
      .pluck()
      .all()
      .map((n) => String(n))
  )
  // Databases made before the sync migration have no server seqs and no `requeued_as`; read NULL for them.
  const seqs = tables.has("server_seqs")
  const requeued = db
    .prepare(`SELECT count(*) FROM pragma_table_info('dead_letters') WHERE name = 'requeued_as'`)
    .pluck()
    .get()
  return {
    scoped: { table: "events", where: "1 = 1", params: [] },
    entrySelect: `SELECT ${EVENT_COLUMNS}, (d.event_id IS NOT NULL) AS excluded, (o.seq IS NOT NULL) AS pending,
        ${seqs ? "s.seq" : "NULL"} AS server_seq, d.reason AS dl_reason, d.message AS dl_message, d.at AS dl_at,
        ${requeued === 1 ? "d.requeued_as" : "NULL"} AS dl_requeued_as
      FROM events e
      LEFT JOIN dead_letters d ON d.event_id = e.id
      LEFT JOIN outbox o ON o.seq = e.seq
      ${seqs ? "LEFT JOIN server_seqs s ON s.event_id = e.id" : ""}
      WHERE 1 = 1`,
    rowSelect: `SELECT ${EVENT_COLUMNS}, (e.id IN (SELECT event_id FROM dead_letters)) AS excluded
      FROM events e WHERE 1 = 1`,
    inSet: `e.id NOT IN (SELECT event_id FROM dead_letters)`,
    attachedEvents: (schema) => `SELECT ${EVENT_COLUMNS} FROM ${schema}.events e WHERE 1 = 1`,
    attachedDeadLetters: (schema) =>
      `SELECT event_id, reason, message, at, ${requeued === 1 ? "requeued_as" : "NULL"} FROM ${schema}.dead_letters`
  }
}

const serverShape = (space: string): Shape => ({
  scoped: { table: "server_events", where: "e.space = ?", params: [space] },
  entrySelect: `SELECT ${EVENT_COLUMNS}, 0 AS excluded, 0 AS pending, e.seq AS server_seq, NULL AS dl_reason,
      NULL AS dl_message, NULL AS dl_at, NULL AS dl_requeued_as
    FROM server_events e WHERE e.space = ?`,
  rowSelect: `SELECT ${EVENT_COLUMNS}, 0 AS excluded FROM server_events e WHERE e.space = ?`,
  inSet: "1 = 1",
  attachedEvents: (schema) => `SELECT ${EVENT_COLUMNS} FROM ${schema}.server_events e WHERE e.space = ?`,
  attachedDeadLetters: () => undefined
})

const checkSpace = (database: Database.Database, kind: Kind, options: Options) =>
  Effect.gen(function* () {
    const path = options.filename
    if (kind === "replica") {
      if (options.space === undefined) return undefined
      return yield* new UnknownSpace({
        path,
        space: options.space,
        reason: "it is a replica database; --space is for server databases"
      })
    }
    const spaces = yield* database.raw((db) =>
      db
        .prepare(`SELECT space FROM server_spaces ORDER BY space`)
        .pluck()
        .all()
        .map((s) => String(s))
    )
    if (options.space === undefined) return yield* new SpaceRequired({ path, spaces })
    if (!spaces.includes(options.space)) {
      const known = spaces.length === 0 ? "it holds no space yet" : `its spaces: ${spaces.join(", ")}`
      return yield* new UnknownSpace({ path, space: options.space, reason: known })
    }
    return options.space
  })

const build = (
  db: Sqlite.Database,
  database: Database.Database,
  kind: Kind,
  space: string | undefined,
  filename: string,
  shape: Shape
): EventSource => {
  const cache = new Map<string, Sqlite.Statement>()
  const prepare = (sql: string): Sqlite.Statement => {
    let stmt = cache.get(sql)
    if (stmt === undefined) {
      stmt = db.prepare(sql)
      cache.set(sql, stmt)
    }
    return stmt
  }
  const base = shape.scoped.params
  const filtered = (filter: Filter) => {
    const where: Array<string> = []
    const params: Array<string | number> = []
    const add = (clause: string, value: string | number | undefined) => {
      if (value === undefined) return
      where.push(clause)
      params.push(value)
    }
    add("e.seq >= ?", filter.since)
    add("e.seq <= ?", filter.until)
    add("e.type = ?", filter.type)
    add("e.memory_id = ?", filter.memoryId)
    add("e.client_id = ?", filter.clientId)
    add("e.hlc < ?", filter.hlcBelow)
    if (filter.inSet === true) where.push(shape.inSet)
    return { sql: where.map((w) => ` AND ${w}`).join(""), params }
  }

  const count = (filter: Filter = {}) =>
    database.raw(() => {
      const f = filtered(filter)
      const sql = `SELECT count(*) FROM ${shape.scoped.table} e WHERE ${shape.scoped.where}${f.sql}`
      return Number(
        prepare(sql)
          .pluck()
          .get(...base, ...f.params)
      )
    })

  const rows = (after: number, limit: number, filter: Filter = {}) =>
    database.raw(() => {
      const f = filtered(filter)
      const sql = `${shape.rowSelect} AND e.seq > ?${f.sql} ORDER BY e.seq LIMIT ?`
      return prepare(sql)
        .all(...base, after, ...f.params, limit)
        .map(readRow)
    })

  const eachRow = (after: number, limit: number, filter: Filter, f: (row: LogRow) => void) =>
    database.raw(() => {
      const q = filtered(filter)
      const sql = `${shape.rowSelect} AND e.seq > ?${q.sql} ORDER BY e.seq LIMIT ?`
      let n = 0
      for (const row of prepare(sql).iterate(...base, after, ...q.params, limit)) {
        f(readRow(row))
        n++
      }
      return n
    })

  const rowsById = (afterId: string, limit: number) =>
    database.raw(() =>
      prepare(`${shape.rowSelect} AND e.id > ? ORDER BY e.id LIMIT ?`)
        .all(...base, afterId, limit)
        .map(readRow)
    )

  const entries = (after: number, limit: number, filter: Filter = {}) =>
    database.raw(() => {
      const f = filtered(filter)
      const sql = `${shape.entrySelect} AND e.seq > ?${f.sql} ORDER BY e.seq LIMIT ?`
      return prepare(sql)
        .all(...base, after, ...f.params, limit)
        .map(toEntry)
    })

  const entry = (eventId: string) =>
    database.raw(() => {
      const row = prepare(`${shape.entrySelect} AND e.id = ?`).get(...base, eventId)
      return row === undefined ? undefined : toEntry(row)
    })

  const byMemory = (memoryId: string) =>
    database.raw(() =>
      prepare(`${shape.entrySelect} AND e.memory_id = ? ORDER BY e.hlc, e.id`)
        .all(...base, memoryId)
        .map(toEntry)
    )

  const attached = (schema: string, filter: Filter): AttachedSql => {
    // `inSet` names the source's own tables: a copy wants every event, and says which are dead letters separately.
    const f = filtered({ ...filter, inSet: undefined })
    return {
      events: `${shape.attachedEvents(schema)} AND e.seq > ?${f.sql} ORDER BY e.seq LIMIT ?`,
      params: (after, limit) => [...base, after, ...f.params, limit],
      deadLetters: shape.attachedDeadLetters(schema)
    }
  }

  return {
    kind,
    filename,
    space,
    database,
    scoped: shape.scoped,
    count,
    rows,
    eachRow,
    rowsById,
    entries,
    entry,
    byMemory,
    attached
  }
}

/** An entry row: the event columns (see `readRow`) plus the sync columns. Throws on a corrupt row. */
const toEntry = (u: unknown): Entry => {
  const row = readRow(u)
  const envelope: Envelope = toEnvelope(row)
  const event: StoredEvent = { ...envelope, seq: row.seq }
  return { event, sync: syncOf(u, row.excluded) }
}

const syncOf = (u: unknown, excluded: boolean): SyncState => {
  if (!Predicate.isRecord(u)) return { state: "unconfirmed" }
  const { pending, server_seq, dl_reason, dl_message, dl_at, dl_requeued_as } = u
  if (excluded) {
    return {
      state: "dead-lettered",
      reason: typeof dl_reason === "string" ? dl_reason : "",
      message: typeof dl_message === "string" ? dl_message : "",
      at: typeof dl_at === "number" ? dl_at : 0,
      requeuedAs: typeof dl_requeued_as === "string" ? dl_requeued_as : null
    }
  }
  if (typeof server_seq === "number") return { state: "confirmed", serverSeq: server_seq }
  if (pending === 1) return { state: "pending" }
  return { state: "unconfirmed" }
}
