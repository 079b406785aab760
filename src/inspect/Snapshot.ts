/**
 * Replay: the state of a log as of a point — its first events up to a seq, or the events stamped at or before a
 * time — written to a new database file or read back a page at a time.
 *
 * Invariants:
 * - The source is only read. A new file is built under a temporary name next to `out` and linked into place at the
 *   end, so `out` is either absent or complete, and an existing file is never overwritten (link fails if it exists).
 * - The new file is an ordinary replica: the events up to the point (with their seqs), their dead letters, the view
 *   folded from the events in the set, and the full-text index. `memsync verify` accepts it.
 * - "Up to seq N" is the log's own order (local arrival order for a replica, server seq for a server space); "at a
 *   time" selects by HLC wall clock, whatever the order of arrival. Dead letters are never folded, as in the view.
 */
import { Effect, Schema } from "effect"
import { existsSync, linkSync, rmSync } from "node:fs"
import { classify } from "../domain/Events.js"
import { foldInto, isVisible, toMemory, type MemoryState } from "../domain/Fold.js"
import * as Database from "../store/Database.js"
import { StorageError } from "../store/Errors.js"
import { rowToState } from "../store/Materializer.js"
import { FTS_TRIGGERS, viewTableDdl } from "../store/Migrations.js"
import type { ListedMemory } from "../store/MemoryStore.js"
import { OutputExists } from "./Errors.js"
import { EventSource, hlcBound, type Filter } from "./EventSource.js"
import * as InspectFold from "./Fold.js"
import { toEnvelope } from "./Rows.js"

/** A point in a log. */
export type Point = { readonly _tag: "Seq"; readonly seq: number } | { readonly _tag: "Time"; readonly millis: number }

/** What a replay read and made. */
export interface Summary {
  readonly point: Point
  /** Events up to the point (dead letters included). */
  readonly events: number
  /** Dead letters up to the point, left out of the fold. */
  readonly excluded: number
  /** Memories readers see as of the point. */
  readonly memories: number
  /** Memories deleted as of the point. */
  readonly deleted: number
}

/** The events up to a point. */
export const filterOf = (point: Point): Filter =>
  point._tag === "Seq" ? { until: point.seq } : { hlcBelow: hlcBound(point.millis) }

/** Build a new replica database at `out` holding the log and the state as of `point`. */
export const toFile = Effect.fn("Snapshot.toFile")(function* (
  out: string,
  point: Point,
  options: InspectFold.Options = {}
) {
  const source = yield* EventSource
  if (existsSync(out)) return yield* new OutputExists({ path: out })
  const partial = `${out}.partial-${process.pid}`
  const cleanup = Effect.sync(() => {
    for (const f of [partial, `${partial}-wal`, `${partial}-shm`]) rmSync(f, { force: true })
  })
  const built = yield* Effect.scoped(build(source, partial, point, options)).pipe(Effect.onError(() => cleanup))
  yield* Effect.try({
    // link refuses an existing target, so a file made meanwhile is not overwritten either.
    try: () => linkSync(partial, out),
    catch: (e) =>
      e instanceof Error && "code" in e && e.code === "EEXIST"
        ? new OutputExists({ path: out })
        : new StorageError({ message: `cannot create ${out}: ${Database.messageOf(e)}` })
  }).pipe(Effect.ensuring(cleanup))
  return built
})

/** Fold the state as of `point` into a TEMP table of the source, then hand its memories to `onPage`, by id. */
export const scan = Effect.fn("Snapshot.scan")(function* <E, R>(
  point: Point,
  onPage: (memories: ReadonlyArray<ListedMemory>) => Effect.Effect<void, E, R>,
  options: InspectFold.Options & { readonly includeDeleted?: boolean } = {}
) {
  const source = yield* EventSource
  const { database } = source
  const table = "inspect_snapshot"
  yield* database.raw((db) => db.exec(`DROP TABLE IF EXISTS temp.${table}; ${viewTableDdl(`temp.${table}`)}`))
  return yield* Effect.gen(function* () {
    const read = yield* InspectFold.into(source, database, table, filterOf(point), options)
    let after = ""
    let memories = 0
    let deleted = 0
    while (true) {
      const page = yield* database.raw((db) =>
        db
          .prepare(`SELECT * FROM ${table} WHERE id > ? ORDER BY id LIMIT ?`)
          .all(after, InspectFold.PAGE_SIZE)
          .map(rowToState)
      )
      if (page.length === 0) break
      after = page[page.length - 1]!.id
      const shown: Array<ListedMemory> = []
      for (const s of page) {
        const memory = toMemory(s)
        if (memory === undefined) continue
        if (s.deleted) deleted++
        else memories++
        if (isVisible(s) || options.includeDeleted === true) shown.push({ ...memory, deleted: s.deleted })
      }
      if (shown.length > 0) yield* onPage(shown)
    }
    const summary: Summary = { point, events: read.events, excluded: read.excluded, memories, deleted }
    return summary
  }).pipe(Effect.ensuring(Effect.ignore(database.raw((db) => db.exec(`DROP TABLE IF EXISTS temp.${table}`)))))
})

// ---------------------------------------------------------------------------------------------------------------

const build = (source: EventSource, file: string, point: Point, options: InspectFold.Options) =>
  Effect.gen(function* () {
    const output = yield* Database.make({ filename: file, create: true })
    const { db, stmts, indexes } = yield* output.raw((db) => {
      // The file is not in place until it is complete (a crash leaves only the partial file to delete): no journal,
      // no fsync, and the secondary indexes and FTS triggers are rebuilt once at the end instead of row by row.
      db.pragma("journal_mode = OFF")
      db.pragma("synchronous = OFF")
      db.pragma("cache_size = -16384")
      for (const [name] of FTS_TRIGGERS) db.exec(`DROP TRIGGER IF EXISTS ${name}`)
      const indexes = db
        .prepare(
          `SELECT name, sql FROM sqlite_schema
           WHERE type = 'index' AND tbl_name IN ('events', 'memories') AND sql IS NOT NULL`
        )
        .all()
        .map((row) => decodeIndex(row))
      for (const index of indexes) db.exec(`DROP INDEX ${index.name}`)
      const stmts = {
        begin: db.prepare("BEGIN"),
        commit: db.prepare("COMMIT"),
        event: db.prepare(
          `INSERT INTO events (seq, id, type, version, memory_id, hlc, client_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
        ),
        dead: db.prepare(`INSERT INTO dead_letters (event_id, reason, message, at, requeued_as) VALUES (?, ?, ?, ?, ?)`)
      }
      return { db, stmts, indexes }
    })
    const view = yield* InspectFold.materializer(output)
    const filter = filterOf(point)
    // Big pages: a memory touched in two pages costs a second upsert. Rows are not held (only the page's states).
    const pageSize = options.pageSize ?? 5_000
    const total = options.onProgress === undefined ? 0 : yield* source.count(filter)
    let after = 0
    let events = 0
    let excluded = 0
    while (true) {
      const states = new Map<string, MemoryState>()
      const dead: Array<string> = []
      yield* output.raw(() => stmts.begin.run())
      // Rows are copied as the source hands them over, through the output's handle taken above: this fiber is the
      // only user of the new file, and its lock cannot be taken while the source's is held without nesting.
      const n = yield* source.eachRow(after, pageSize, filter, (r) => {
        stmts.event.run(r.seq, r.id, r.type, r.version, r.memoryId, r.hlc, r.clientId, r.payload)
        after = r.seq
        if (r.excluded) {
          dead.push(r.id)
          return
        }
        const c = classify(toEnvelope(r))
        if (c._tag === "Known") foldInto(states, c.event)
      })
      for (const id of dead) {
        const e = yield* source.entry(id)
        if (e?.sync.state === "dead-lettered") {
          const { reason, message, at, requeuedAs } = e.sync
          yield* output.raw(() => stmts.dead.run(id, reason, message, at, requeuedAs))
        }
      }
      yield* view.applyStates(states.values())
      yield* output.raw(() => stmts.commit.run())
      if (n === 0) break
      events += n
      excluded += dead.length
      if (options.onProgress) yield* options.onProgress({ done: events, total })
    }
    const counts = yield* output.raw(() => {
      db.exec("BEGIN")
      for (const index of indexes) db.exec(index.sql)
      db.exec(`INSERT INTO memories_fts(memories_fts) VALUES ('rebuild')`)
      for (const [, ddl] of FTS_TRIGGERS) db.exec(ddl)
      db.exec("COMMIT")
      // Back to the journal every replica has, so the file opens like any other.
      db.pragma("journal_mode = WAL")
      const count = (q: string) => Number(db.prepare(q).pluck().get())
      return {
        memories: count(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 0`),
        deleted: count(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 1`)
      }
    })
    const summary: Summary = { point, events, excluded, ...counts }
    return summary
  })

const decodeIndex = Schema.decodeUnknownSync(Schema.Struct({ name: Schema.String, sql: Schema.String }))
