/**
 * Rebuilding and checking the view from the log.
 *
 * `rebuild` drops the view and re-folds every event (dead letters excluded), one page at a time, inside ONE
 * transaction: a crash half-way leaves the old view, never a partial one. FTS triggers are dropped for the duration
 * and the index is rebuilt once at the end, which is much cheaper than re-indexing a row per upsert.
 *
 * `verify` folds the log into a TEMP table with the same upsert, compares it with the live view column by column,
 * and runs FTS5's integrity check. It never writes to the database file.
 */
import type Sqlite from "better-sqlite3"
import { Effect, Schema } from "effect"
import { classify, type MemoryEvent } from "../domain/Events.js"
import * as Hlc from "../domain/Hlc.js"
import { absorb, fromEvent, REGISTERS, type MemoryState, type MutableState } from "../domain/Fold.js"
import { Database } from "./Database.js"
import * as EventLog from "./EventLog.js"
import { COLUMNS, foldEnvelopes, Materializer, rowToState } from "./Materializer.js"
import { FTS_TRIGGERS, viewTableDdl } from "./Migrations.js"

/** Progress of a long fold: events folded so far out of the total. */
export interface Progress {
  readonly done: number
  readonly total: number
}

/** Options of `rebuild` and `verify`. */
export interface Options {
  /** Events read per page (bounds memory). Default 5,000. */
  readonly pageSize?: number
  /** Called after each page. */
  readonly onProgress?: (p: Progress) => Effect.Effect<void>
}

/** What `rebuild` did. */
export interface RebuildResult {
  readonly events: number
  readonly memories: number
}

/** One register that differs between the live view and a rebuild. */
export interface FieldDiff {
  readonly field: string
  readonly view: unknown
  readonly rebuilt: unknown
}

/** What `verify` found. `ok` is true when the view equals a rebuild and the FTS index matches the view. */
export interface VerifyReport {
  readonly ok: boolean
  readonly events: number
  readonly memories: number
  readonly onlyInView: ReadonlyArray<string>
  readonly missingFromView: ReadonlyArray<string>
  readonly differing: ReadonlyArray<{ readonly id: string; readonly fields: ReadonlyArray<FieldDiff> }>
  /** How many memories differ in all (the lists above are capped at `REPORT_LIMIT`). */
  readonly differingCount: number
  readonly ftsOk: boolean
  readonly ftsMessage?: string
}

/** At most this many ids are listed per kind of difference. */
export const REPORT_LIMIT = 100

/** Drop the view and fold it again from the log. */
export const rebuild = Effect.fn("Replay.rebuild")(function* (options: Options = {}) {
  const database = yield* Database
  const body = Effect.gen(function* () {
    const indexes = yield* database.raw((db) => {
      for (const [name] of FTS_TRIGGERS) db.exec(`DROP TRIGGER IF EXISTS ${name}`)
      const indexes = dropIndexes(db, ["memories"])
      db.exec(`DELETE FROM memories`)
      return indexes
    })
    const events = yield* foldLogInto("memories", options)
    return yield* database.raw((db) => {
      for (const index of indexes) db.exec(index.sql)
      db.exec(`INSERT INTO memories_fts(memories_fts) VALUES ('rebuild')`)
      for (const [, ddl] of FTS_TRIGGERS) db.exec(ddl)
      const memories = Number(
        db.prepare(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 0`).pluck().get()
      )
      return { events, memories }
    })
  })
  return yield* withSmallCache(database, database.transaction(body))
})

/**
 * Run `effect` with 16 MiB of page cache on the connection, then restore its size. The cache is part of the peak RSS
 * (bounded at 400 MB for a rebuild of 1M events), and a fold buys nothing from it: it reads the log in memory-id
 * order, all over a table far larger than any cache. (1M events: peak RSS 303 -> 247 MB, CPU per event unchanged.)
 */
const withSmallCache = <A, E, R>(database: Database, effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    database.raw((db) => {
      const size: unknown = db.pragma("cache_size", { simple: true })
      db.pragma("cache_size = -16384")
      return size
    }),
    () => effect,
    (size) =>
      Effect.ignore(database.raw((db) => (typeof size === "number" ? db.pragma(`cache_size = ${size}`) : undefined)))
  )

/** Compare the live view with a fold of the log; nothing is written to the database file. */
export const verify = Effect.fn("Replay.verify")(function* (options: Options = {}) {
  const database = yield* Database
  const scratch = "memsync_verify"
  yield* database.raw((db) => db.exec(`DROP TABLE IF EXISTS temp.${scratch}; ${viewTableDdl(`temp.${scratch}`)}`))
  return yield* Effect.gen(function* () {
    const events = yield* foldLogInto(scratch, options)
    return yield* database.raw((db) => compare(db, scratch, events))
  }).pipe(Effect.ensuring(Effect.ignore(database.raw((db) => db.exec(`DROP TABLE IF EXISTS temp.${scratch}`)))))
})

/**
 * Fold again the memories touched by events that left the set (a server rejected them): their rows are dropped and
 * re-folded from the log, dead letters excluded. Run inside the transaction that recorded the dead letters.
 */
export const refold = Effect.fn("Replay.refold")(function* (memoryIds: ReadonlyArray<string>) {
  if (memoryIds.length === 0) return
  const database = yield* Database
  const view = yield* Materializer
  const rows = yield* database.raw((db) => {
    const drop = db.prepare(`DELETE FROM memories WHERE id = ?`)
    const events = db.prepare(
      `SELECT * FROM events WHERE memory_id = ? AND id NOT IN (SELECT event_id FROM dead_letters)`
    )
    return memoryIds.flatMap((id) => {
      drop.run(id)
      return events.all(id).map(EventLog.decodeRow)
    })
  })
  yield* view.applyStates(foldEnvelopes(rows).values())
})

/**
 * Fold every event of the log (dead letters excluded) into an EMPTY view table. Returns how many events that is.
 *
 * Events are read in memory-id order (the `events_by_memory` index, keyset-paged on `(memory_id, seq)`), so all of a
 * memory's events arrive together: each memory is folded completely in memory and written once, instead of being
 * upserted again for every page it appears in. Memory stays bounded by one page plus one memory's state.
 * Events without a memory id are of kinds this build cannot fold anyway, and are skipped.
 *
 * Per row this is the work of `EventLog.decodeRow` + `foldEnvelopes` (a corrupt row fails the fold with the same
 * message), without their intermediate objects: rows are read as arrays, and a known event's envelope is checked by
 * `classify` itself (see `foldRow`).
 */
export const foldLogInto = (table: string, options: Options = {}) =>
  Effect.gen(function* () {
    const database = yield* Database
    const view = yield* Materializer
    const pageSize = options.pageSize ?? 5_000
    const notDead = `id NOT IN (SELECT event_id FROM dead_letters)`
    const live = `memory_id IS NOT NULL AND ${notDead}`
    const { total, first, next } = yield* database.raw((db) => ({
      // Counted as folded: events without a memory id are read past (skipped) like unknown kinds in a page.
      total: Number(db.prepare(`SELECT count(*) FROM events WHERE ${notDead}`).pluck().get()),
      first: db.prepare(`SELECT ${EventLog.COLUMNS} FROM events WHERE ${live} ORDER BY memory_id, seq LIMIT ?`).raw(),
      next: db
        .prepare(
          `SELECT ${EventLog.COLUMNS} FROM events WHERE (memory_id, seq) > (?, ?) AND ${live}
           ORDER BY memory_id, seq LIMIT ?`
        )
        .raw()
    }))
    let cursor: readonly [memoryId: unknown, seq: unknown] | undefined
    let done = 0
    // The memory being folded: it may go on in the next page, so it is written only once another one starts.
    let open: MutableState | undefined
    while (true) {
      const at = cursor
      const page = yield* database.raw(() => {
        // Iterated, not `.all()`: a row is garbage as soon as it is folded, so young-generation GCs stay cheap.
        const rows = at === undefined ? first.iterate(pageSize) : next.iterate(at[0], at[1], pageSize)
        const complete: Array<MemoryState> = []
        let read = 0
        let last: unknown
        for (const row of rows) {
          read++
          last = row
          const event = foldRow(row)
          if (event === undefined) continue
          if (open !== undefined && open.id === event.payload.id) absorb(open, event)
          else {
            if (open !== undefined) complete.push(open)
            open = fromEvent(event)
          }
        }
        // `.raw()` rows are arrays of the columns; the cursor is `(memory_id, seq)` of the last one.
        const end: readonly [unknown, unknown] | undefined = Array.isArray(last) ? [last[4], last[0]] : undefined
        return { read, complete, end }
      })
      if (page.end === undefined) break
      cursor = page.end
      yield* view.applyStates(page.complete, table)
      done += page.read
      if (options.onProgress) yield* options.onProgress({ done, total })
    }
    if (open !== undefined) yield* view.applyStates([open], table)
    if (options.onProgress && done < total) yield* options.onProgress({ done: total, total })
    return total
  })

const compare = (db: Sqlite.Database, scratch: string, events: number): VerifyReport => {
  const ids = (q: string) => db.prepare(q).pluck().all(REPORT_LIMIT).map(String)
  const onlyInView = ids(`SELECT id FROM memories WHERE id NOT IN (SELECT id FROM ${scratch}) LIMIT ?`)
  const missingFromView = ids(`SELECT id FROM ${scratch} WHERE id NOT IN (SELECT id FROM memories) LIMIT ?`)
  const cols = ["created", "deleted", ...REGISTERS.flatMap((r) => [COLUMNS[r], `${COLUMNS[r]}_key`])]
  const differs = cols.map((c) => `a.${c} IS NOT b.${c}`).join(" OR ")
  const diffQuery = `FROM memories a JOIN ${scratch} b ON a.id = b.id WHERE ${differs}`
  const differingCount = Number(db.prepare(`SELECT count(*) ${diffQuery}`).pluck().get())
  const differing = db
    .prepare(`SELECT a.id ${diffQuery} LIMIT ?`)
    .pluck()
    .all(REPORT_LIMIT)
    .map((id) => {
      const a = rowToState(db.prepare(`SELECT * FROM memories WHERE id = ?`).get(id))
      const b = rowToState(db.prepare(`SELECT * FROM ${scratch} WHERE id = ?`).get(id))
      return { id: String(id), fields: fieldDiffs(a, b) }
    })
  let ftsOk = true
  let ftsMessage: string | undefined
  try {
    db.exec(`INSERT INTO memories_fts(memories_fts, rank) VALUES ('integrity-check', 1)`)
  } catch (e) {
    ftsOk = false
    ftsMessage = e instanceof Error ? e.message : String(e)
  }
  const memories = Number(db.prepare(`SELECT count(*) FROM ${scratch} WHERE created = 1 AND deleted = 0`).pluck().get())
  const ok = onlyInView.length === 0 && missingFromView.length === 0 && differingCount === 0 && ftsOk
  return {
    ok,
    events,
    memories,
    onlyInView,
    missingFromView,
    differing,
    differingCount,
    ftsOk,
    ...(ftsMessage === undefined ? {} : { ftsMessage })
  }
}

/** The registers (and flags) on which two states of one memory differ. */
export const fieldDiffs = (view: MemoryState, rebuilt: MemoryState): Array<FieldDiff> => {
  const out: Array<FieldDiff> = []
  if (view.created !== rebuilt.created) out.push({ field: "created", view: view.created, rebuilt: rebuilt.created })
  if (view.deleted !== rebuilt.deleted) out.push({ field: "deleted", view: view.deleted, rebuilt: rebuilt.deleted })
  for (const r of REGISTERS) {
    const a = view[r]
    const b = rebuilt[r]
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ field: r, view: a?.value, rebuilt: b?.value })
  }
  return out
}

/** The columns `foldRow` reads, in its order (`memory_id` is the page cursor, with `seq`). */

/**
 * The known event an `events` row holds (read with `.raw()` in `EventLog.COLUMNS` order), or undefined for a kind this
 * build skips (unknown, or known but invalid). Throws on a corrupt row, as `EventLog.decodeRow` does.
 *
 * A known event needs no envelope check of its own: the event schemas (and their fast paths) check every envelope
 * field, so only the envelope's cross-field rule (the stamp names the writer) is left, which here is one comparison.
 * Every other row goes through `decodeRow`, which accepts it or throws.
 */
const foldRow = (row: unknown): MemoryEvent | undefined => {
  const columns: ReadonlyArray<unknown> = Array.isArray(row) ? row : []
  const [seq, id, type, version, memoryId, hlc, clientId, payload] = columns
  if (
    typeof id === "string" &&
    typeof type === "string" &&
    typeof version === "number" &&
    typeof hlc === "string" &&
    typeof clientId === "string" &&
    typeof payload === "string"
  ) {
    const c = classify({ id, type, version, payload: JSON.parse(payload), hlc, clientId })
    // A known event's stamp matched `Hlc.Stamp`, whose client id is everything after its second colon.
    if (c._tag === "Known" && typeof seq === "number" && hlc.slice(Hlc.CLIENT_OFFSET) === clientId) return c.event
  }
  const c = classify(
    EventLog.decodeRow({ seq, id, type, version, memory_id: memoryId, hlc, client_id: clientId, payload })
  )
  return c._tag === "Known" ? c.event : undefined
}

/**
 * Drop the secondary indexes of `tables` (the ones with SQL: not the implicit UNIQUE/PRIMARY KEY ones) and return
 * their definitions. A bulk load then builds each index once, by sorting, instead of inserting into it row by row in
 * random key order. Run inside the transaction that recreates them, so no reader ever sees the tables without them.
 */
export const dropIndexes = (db: Sqlite.Database, tables: ReadonlyArray<string>): Array<IndexDef> => {
  const indexes = db
    .prepare(
      `SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL
       AND tbl_name IN (${tables.map(() => "?").join(", ")})`
    )
    .all(...tables)
    .map((row) => decodeIndex(row))
  for (const index of indexes) db.exec(`DROP INDEX ${index.name}`)
  return indexes
}

/** A secondary index: its name and the statement that creates it. */
export interface IndexDef {
  readonly name: string
  readonly sql: string
}

const decodeIndex = Schema.decodeUnknownSync(Schema.Struct({ name: Schema.String, sql: Schema.String }))
