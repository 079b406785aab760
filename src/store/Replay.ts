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
import { Effect } from "effect"
import { memoryIdOf } from "../domain/Events.js"
import { merge, REGISTERS, type MemoryState } from "../domain/Fold.js"
import { Database } from "./Database.js"
import { decodeRow } from "./EventLog.js"
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
    yield* database.raw((db) => {
      for (const [name] of FTS_TRIGGERS) db.exec(`DROP TRIGGER IF EXISTS ${name}`)
      db.exec(`DELETE FROM memories`)
    })
    const events = yield* foldLogInto("memories", options)
    return yield* database.raw((db) => {
      db.exec(`INSERT INTO memories_fts(memories_fts) VALUES ('rebuild')`)
      for (const [, ddl] of FTS_TRIGGERS) db.exec(ddl)
      const memories = Number(
        db.prepare(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 0`).pluck().get()
      )
      return { events, memories }
    })
  })
  return yield* database.transaction(body)
})

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
      return events.all(id).map(decodeRow)
    })
  })
  yield* view.applyStates(foldEnvelopes(rows).values())
})

/**
 * Fold every event of the log (dead letters excluded) into an EMPTY view table. Returns how many events that is.
 *
 * Events are read in memory-id order (the `events_by_memory` index, keyset-paged on `(memory_id, seq)`), so all of a
 * memory's events arrive together: each memory is folded completely in memory and written once, instead of being
 * upserted again for every page it appears in. Memory stays bounded by one page plus one memory's states.
 * Events without a memory id are of kinds this build cannot fold anyway, and are skipped.
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
      first: db.prepare(`SELECT * FROM events WHERE ${live} ORDER BY memory_id, seq LIMIT ?`),
      next: db.prepare(
        `SELECT * FROM events WHERE (memory_id, seq) > (?, ?) AND ${live} ORDER BY memory_id, seq LIMIT ?`
      )
    }))
    let cursor: { memoryId: string; seq: number } | undefined
    let done = 0
    let open = new Map<string, MemoryState>()
    while (true) {
      const at = cursor
      const rows = yield* database.raw(() =>
        (at === undefined ? first.all(pageSize) : next.all(at.memoryId, at.seq, pageSize)).map(decodeRow)
      )
      if (rows.length === 0) break
      const last = rows[rows.length - 1]!
      const lastMemory = memoryIdOf(last) ?? ""
      cursor = { memoryId: lastMemory, seq: last.seq }
      for (const [id, state] of foldEnvelopes(rows)) {
        const prev = open.get(id)
        open.set(id, prev === undefined ? state : merge(prev, state))
      }
      // Every memory but the page's last is complete (its events sort before the cursor): write those now.
      const carry = open.get(lastMemory)
      open.delete(lastMemory)
      yield* view.applyStates(open.values(), table)
      open = carry === undefined ? new Map() : new Map([[lastMemory, carry]])
      done += rows.length
      if (options.onProgress) yield* options.onProgress({ done, total })
    }
    yield* view.applyStates(open.values(), table)
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
