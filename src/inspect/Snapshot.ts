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
import { Effect } from "effect"
import { existsSync, linkSync, rmSync } from "node:fs"
import { isVisible, toMemory } from "../domain/Fold.js"
import * as Database from "../store/Database.js"
import { StorageError } from "../store/Errors.js"
import * as EventLog from "../store/EventLog.js"
import { Materializer, rowToState } from "../store/Materializer.js"
import { FTS_TRIGGERS, viewTableDdl } from "../store/Migrations.js"
import type { ListedMemory } from "../store/MemoryStore.js"
import * as Replay from "../store/Replay.js"
import { OutputExists } from "./Errors.js"
import { EventSource, hlcBound, type Filter } from "./EventSource.js"
import * as InspectFold from "./Fold.js"

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

/**
 * The new file is built in three passes, all but the fold inside SQLite:
 * 1. copy: the source file is ATTACHed to the new file's connection and its events (and dead letters) are copied by
 *    `INSERT ... SELECT`, in log order, a chunk at a time (for progress);
 * 2. fold: `Replay.foldLogInto` reads the copied events in memory-id order and writes each memory once;
 * 3. finish: the secondary indexes, the full-text index and its triggers are built once, from the complete tables.
 *
 * The file is not in place until it is complete, and a failure deletes it, so it needs no journal and no fsync:
 * `journal_mode = OFF` and `synchronous = OFF` are safe here, and the WAL journal every replica has is set at the end.
 */
const build = (source: EventSource, file: string, point: Point, options: InspectFold.Options) =>
  Effect.gen(function* () {
    const output = yield* Database.make({ filename: file, create: true })
    const indexes = yield* output.raw((db) => {
      db.pragma("journal_mode = OFF")
      db.pragma("synchronous = OFF")
      // 16 MiB of page cache instead of the 64 every connection gets: the cache is part of the peak RSS (bounded at
      // 400 MB for a 1M-event replay), and it buys nothing here. The fold reads the events in memory-id order, all
      // over a table far larger than any cache, and every other pass streams. (1M events, under tsx: 64 MiB peaked
      // at 411 MB, 16 MiB at 339 MB; CPU per event ~30 us either way.)
      db.pragma("cache_size = -16384")
      for (const [name] of FTS_TRIGGERS) db.exec(`DROP TRIGGER IF EXISTS ${name}`)
      return Replay.dropIndexes(db, ["events", "memories"])
    })
    const filter = filterOf(point)
    const total = options.onProgress === undefined ? 0 : yield* source.count(filter)
    // Progress counts the copy and the fold as one half of the work each.
    const report = (done: number) =>
      options.onProgress === undefined ? Effect.void : options.onProgress({ done: Math.floor(done / 2), total })
    const view = yield* InspectFold.materializer(output)
    // One transaction for the whole file: without a journal, a commit only writes pages out, and one commit writes
    // each page once.
    const body = Effect.gen(function* () {
      const copied = yield* copy(source, output, filter, report)
      // The fold reads the events in memory-id order through this index: build it first, from the full table.
      const [byMemory, later] = partition(indexes, (i) => i.name === "events_by_memory")
      yield* output.raw((db) => byMemory.forEach((index) => db.exec(index.sql)))
      yield* Replay.foldLogInto("memories", {
        ...(options.pageSize === undefined ? {} : { pageSize: options.pageSize }),
        onProgress: (p) => report(copied.events + p.done)
      }).pipe(Effect.provideService(Database.Database, output), Effect.provideService(Materializer, view))
      const counts = yield* output.raw((db) => {
        for (const index of later) db.exec(index.sql)
        db.exec(`INSERT INTO memories_fts(memories_fts) VALUES ('rebuild')`)
        for (const [, ddl] of FTS_TRIGGERS) db.exec(ddl)
        const count = (q: string) => Number(db.prepare(q).pluck().get())
        return {
          memories: count(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 0`),
          deleted: count(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 1`)
        }
      })
      const summary: Summary = { point, events: copied.events, excluded: copied.excluded, ...counts }
      return summary
    })
    const summary = yield* withSourceAttached(source, output, output.transaction(body))
    if (options.onProgress) yield* options.onProgress({ done: total, total })
    // Back to the journal every replica has, so the file opens like any other.
    yield* output.raw((db) => db.pragma("journal_mode = WAL"))
    return summary
  })

/**
 * Run `use` with the source's file attached to the new file's connection as `SOURCE_SCHEMA` (ATTACH and DETACH are
 * refused inside a transaction, so they wrap it). The attachment only ever reads, and it is detached while the
 * source's own read-only connection is still open, so it is never the last connection to the file: the one SQLite
 * would checkpoint on close, which would write to the source.
 */
const withSourceAttached = <A, E, R>(source: EventSource, output: Database.Database, use: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    output.raw((db) => db.prepare(`ATTACH ? AS ${SOURCE_SCHEMA}`).run(source.filename)),
    () => use,
    () => Effect.ignore(output.raw((db) => db.exec(`DETACH ${SOURCE_SCHEMA}`)))
  )

/** Events copied per statement: large enough that a statement's own cost vanishes, small enough for progress. */
const COPY_CHUNK = 50_000

/** Copy the source's events up to the point, and their dead letters, from the attached source (in a transaction). */
const copy = (
  source: EventSource,
  output: Database.Database,
  filter: Filter,
  report: (done: number) => Effect.Effect<void>
) =>
  Effect.gen(function* () {
    const sql = source.attached(SOURCE_SCHEMA, filter)
    const { insert, last } = yield* output.raw((db) => ({
      insert: db.prepare(`INSERT INTO events (${EventLog.COLUMNS}) SELECT ${EventLog.COLUMNS} FROM (${sql.events})`),
      last: db.prepare(`SELECT max(seq) FROM events`).pluck()
    }))
    let after = 0
    let events = 0
    while (true) {
      const from = after
      const n = yield* output.raw(() => insert.run(...sql.params(from, COPY_CHUNK)).changes)
      if (n === 0) break
      events += n
      after = yield* output.raw(() => Number(last.get()))
      yield* report(events)
    }
    const dead = sql.deadLetters
    const excluded =
      dead === undefined
        ? 0
        : yield* output.raw(
            (db) =>
              db
                .prepare(
                  `INSERT INTO dead_letters (event_id, reason, message, at, requeued_as)
                   SELECT * FROM (${dead}) WHERE event_id IN (SELECT id FROM events)`
                )
                .run().changes
          )
    return { events, excluded }
  })

const SOURCE_SCHEMA = "memsync_source"

const partition = <A>(xs: ReadonlyArray<A>, f: (a: A) => boolean): [Array<A>, Array<A>] => [
  xs.filter(f),
  xs.filter((x) => !f(x))
]
