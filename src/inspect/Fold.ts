/**
 * Folding a source's log, a page at a time, into a view table: the engine under replay and diff.
 *
 * The fold is `Fold.foldInto` over the events of a page (dead letters skipped, unknown kinds skipped), merged into the
 * table with the materializer's upsert, so the table ends equal to `Fold.fold` of every event read: the join does not
 * care about page boundaries or order. Memory stays bounded by the page size.
 */
import { Effect } from "effect"
import { classify } from "../domain/Events.js"
import { foldInto, type MemoryState } from "../domain/Fold.js"
import { Database } from "../store/Database.js"
import { StorageError } from "../store/Errors.js"
import * as Materializer from "../store/Materializer.js"
import type { Progress } from "../store/Replay.js"
import type { EventSource, Filter } from "./EventSource.js"
import { toEnvelope, type LogRow } from "./Rows.js"

/** Options of a long read. */
export interface Options {
  /** Events read per page (bounds memory). Default 5,000. */
  readonly pageSize?: number
  /** Called after each page. */
  readonly onProgress?: (p: Progress) => Effect.Effect<void>
}

/** What a fold read. */
export interface Folded {
  /** Events read (in the set or not). */
  readonly events: number
  /** Dead letters read and left out. */
  readonly excluded: number
}

/** The default page size. */
export const PAGE_SIZE = 5_000

/** Fold the rows of one page into states (dead letters and unknown kinds skipped). Throws on a corrupt row. */
export const foldRows = (rows: ReadonlyArray<LogRow>): Map<string, MemoryState> => {
  const states = new Map<string, MemoryState>()
  for (const row of rows) {
    if (row.excluded) continue
    const c = classify(toEnvelope(row))
    if (c._tag === "Known") foldInto(states, c.event)
  }
  return states
}

/**
 * Read the source's events that pass `filter`, page by page, folding each page; `onPage` gets the rows and their
 * states (to write them somewhere). Returns what was read.
 */
export const pages = <E, R>(
  source: EventSource,
  filter: Filter,
  onPage: (rows: ReadonlyArray<LogRow>, states: Map<string, MemoryState>) => Effect.Effect<void, E, R>,
  options: Options = {}
): Effect.Effect<Folded, E | StorageError, R> =>
  Effect.gen(function* () {
    const pageSize = options.pageSize ?? PAGE_SIZE
    const total = options.onProgress === undefined ? 0 : yield* source.count(filter)
    let after = 0
    let events = 0
    let excluded = 0
    while (true) {
      const rows = yield* source.rows(after, pageSize, filter)
      if (rows.length === 0) break
      const states = yield* Effect.try({
        try: () => foldRows(rows),
        catch: (e) => new StorageError({ message: e instanceof Error ? e.message : String(e) })
      })
      yield* onPage(rows, states)
      after = rows[rows.length - 1]!.seq
      events += rows.length
      for (const r of rows) if (r.excluded) excluded++
      if (options.onProgress) yield* options.onProgress({ done: events, total })
    }
    return { events, excluded }
  })

/** The materializer over `database` (any view table of it). */
export const materializer = (database: Database) => Materializer.make.pipe(Effect.provideService(Database, database))

/** Fold the source's events that pass `filter` into `table` of `database` (which must exist), a transaction a page. */
export const into = (source: EventSource, database: Database, table: string, filter: Filter, options: Options = {}) =>
  Effect.flatMap(materializer(database), (view) =>
    pages(source, filter, (_rows, states) => database.transaction(view.applyStates(states.values(), table)), options)
  )
