/**
 * Diff of two logs (replica or server space, in any pairing): the events only one holds, the events both hold with
 * different bodies or a different dead-letter status, the memories whose folded state differs (field by field), and
 * the first event, in `(hlc, id)` order, after which the two views diverge.
 *
 * Why that event is a plain minimum: before it, every event either is held alike by both sides or does not reach the
 * view (unknown kind, dead letter), so the folds of every `(hlc, id)` prefix agree. The event itself reaches the view
 * of a side that holds it and carries the greatest key of that prefix, so it wins every register it writes there and
 * the prefixes differ. So the first divergence is the smallest order key among the differing events that reach a view.
 *
 * Memory: events are merge-joined by id a page at a time; each log is folded into a TEMP table on its own
 * (read-only) connection and the two tables are merge-joined by id. Lists are capped at `limit`; counts are not.
 */
import { Effect } from "effect"
import { classify, orderKey } from "../domain/Events.js"
import { canonicalJson } from "../domain/Json.js"
import { REGISTERS, type MemoryState } from "../domain/Fold.js"
import { rowToState } from "../store/Materializer.js"
import { viewTableDdl } from "../store/Migrations.js"
import type { Progress } from "../store/Replay.js"
import type { EventRef } from "./Blame.js"
import type { EventSource, Kind } from "./EventSource.js"
import * as InspectFold from "./Fold.js"
import { toEnvelope, type LogRow } from "./Rows.js"

/** Options of a diff. */
export interface Options {
  /** At most this many items per list (default 100). */
  readonly limit?: number
  readonly pageSize?: number
  readonly onProgress?: (p: Progress) => Effect.Effect<void>
}

/** One side of a diff. */
export interface Side {
  readonly filename: string
  readonly kind: Kind
  readonly space: string | undefined
  readonly events: number
}

/** A capped list with its full count. */
export interface Listed<A> {
  readonly count: number
  readonly items: ReadonlyArray<A>
}

/** An event both sides hold under one id, differently. */
export interface EventMismatch {
  readonly id: string
  readonly a: EventRef & { readonly deadLettered: boolean }
  readonly b: EventRef & { readonly deadLettered: boolean }
}

/** One register (or flag) on which two states differ; `aBy`/`bBy` are the order keys `hlc id` of the writers. */
export interface FieldDiff {
  readonly field: string
  readonly a: unknown
  readonly b: unknown
  readonly aBy?: string
  readonly bBy?: string
}

/** The first event after which the views differ. */
export interface Divergence {
  readonly event: EventRef
  /** Who holds it in its event set: one side, or both with different bodies. */
  readonly heldBy: "a" | "b" | "both"
  readonly why: string
}

/** What `diff` found. */
export interface DiffReport {
  readonly a: Side
  readonly b: Side
  readonly onlyInA: Listed<EventRef>
  readonly onlyInB: Listed<EventRef>
  /** Same id, different body (a server would refuse the second with `id-conflict`). */
  readonly conflicting: Listed<EventMismatch>
  /** Same id and body, dead-lettered on one side only (so in one event set only). */
  readonly deadLetterMismatch: Listed<EventMismatch>
  readonly memoriesOnlyInA: Listed<string>
  readonly memoriesOnlyInB: Listed<string>
  readonly memoriesDiffering: Listed<{ readonly id: string; readonly fields: ReadonlyArray<FieldDiff> }>
  readonly firstDivergence: Divergence | null
  /** Same events, same bodies, same folded states. */
  readonly identical: boolean
}

/** Compare two logs. */
export const diff = Effect.fn("Inspect.diff")(function* (a: EventSource, b: EventSource, options: Options = {}) {
  const limit = options.limit ?? 100
  const pageSize = options.pageSize ?? InspectFold.PAGE_SIZE
  const [na, nb] = [yield* a.count(), yield* b.count()]
  // One step per event read: every event of both logs in the merge-join, then those in each event set in the folds.
  const folded =
    options.onProgress === undefined ? 0 : (yield* a.count({ inSet: true })) + (yield* b.count({ inSet: true }))
  const total = na + nb + folded
  let done = 0
  const progress = (n: number) => {
    done += n
    return options.onProgress ? options.onProgress({ done, total }) : Effect.void
  }
  const events = yield* compareEvents(a, b, limit, pageSize, progress)
  const memories = yield* compareViews(a, b, limit, pageSize, progress)
  const report: DiffReport = {
    a: sideOf(a, na),
    b: sideOf(b, nb),
    ...events,
    ...memories,
    identical:
      events.onlyInA.count +
        events.onlyInB.count +
        events.conflicting.count +
        events.deadLetterMismatch.count +
        memories.memoriesOnlyInA.count +
        memories.memoriesOnlyInB.count +
        memories.memoriesDiffering.count ===
      0
  }
  return report
})

/** The registers and flags on which two states of one memory differ. */
export const stateDiff = (a: MemoryState, b: MemoryState): Array<FieldDiff> => {
  const out: Array<FieldDiff> = []
  if (a.created !== b.created) out.push({ field: "created", a: a.created, b: b.created })
  if (a.deleted !== b.deleted) out.push({ field: "deleted", a: a.deleted, b: b.deleted })
  for (const name of REGISTERS) {
    const x = a[name]
    const y = b[name]
    if (x?.key === y?.key && JSON.stringify(x?.value) === JSON.stringify(y?.value)) continue
    out.push({
      field: name,
      a: x?.value,
      b: y?.value,
      ...(x === undefined ? {} : { aBy: x.key }),
      ...(y === undefined ? {} : { bBy: y.key })
    })
  }
  return out
}

/** Order of SQLite's BINARY collation (UTF-8 bytes), which is UTF-16 order until a surrogate shows up. */
export const compareBinary = (x: string, y: string): number => {
  if (/[\uD800-\uFFFF]/.test(x) || /[\uD800-\uFFFF]/.test(y)) return Buffer.compare(Buffer.from(x), Buffer.from(y))
  return x < y ? -1 : x > y ? 1 : 0
}

// ---------------------------------------------------------------------------------------------------------------

const sideOf = (s: EventSource, events: number): Side => ({
  filename: s.filename,
  kind: s.kind,
  space: s.space,
  events
})

const refOf = (r: LogRow): EventRef => ({ id: r.id, seq: r.seq, type: r.type, hlc: r.hlc, clientId: r.clientId })

const capped = <A>() => {
  const items: Array<A> = []
  let count = 0
  return {
    add: (item: A, limit: number) => {
      count++
      if (items.length < limit) items.push(item)
    },
    done: (): Listed<A> => ({ count, items })
  }
}

/** Does this row reach its side's view: in the event set, and of a kind this build folds? */
const reaches = (r: LogRow): boolean => !r.excluded && classify(toEnvelope(r))._tag === "Known"

/**
 * The divergence at an id both sides hold with different bodies; `folded` is the copy with the smaller order key among
 * those that reach a view. Both copies can carry the same stamp, so the side is told by the copy, not by its key.
 */
const conflictOf = (x: LogRow, y: LogRow, folded: LogRow): Divergence => {
  const why = "both hold this id with different bodies"
  if (reaches(x) && reaches(y)) return { event: refOf(folded), heldBy: "both", why }
  const [side, other, left] = folded === x ? (["a", "B", y] as const) : (["b", "A", x] as const)
  const reason = left.excluded
    ? `${other} dead-lettered its copy (the server rejected it)`
    : `${other}'s copy is of a kind this build does not fold`
  return {
    event: refOf(folded),
    heldBy: side,
    why: `${why}; ${reason}, so only ${side.toUpperCase()}'s copy is folded`
  }
}

const sameBody = (x: LogRow, y: LogRow): boolean => {
  if (x.type !== y.type || x.version !== y.version || x.hlc !== y.hlc || x.clientId !== y.clientId) return false
  if (x.payload === y.payload) return true
  try {
    return canonicalJson(JSON.parse(x.payload)) === canonicalJson(JSON.parse(y.payload))
  } catch {
    return false
  }
}

/** A keyset cursor over a source's rows in id order. */
const byId = (source: EventSource, pageSize: number) => {
  let page: ReadonlyArray<LogRow> = []
  let i = 0
  let more = true
  let after = ""
  return {
    /** The current row, refilling the page when it runs out (undefined at the end). */
    peek: Effect.suspend(() => {
      if (i < page.length || !more) return Effect.succeed(page[i])
      return Effect.map(source.rowsById(after, pageSize), (rows) => {
        page = rows
        i = 0
        more = rows.length === pageSize
        if (rows.length > 0) after = rows[rows.length - 1]!.id
        return page[0]
      })
    }),
    advance: () => void i++
  }
}

const compareEvents = (
  a: EventSource,
  b: EventSource,
  limit: number,
  pageSize: number,
  progress: (n: number) => Effect.Effect<void>
) =>
  Effect.gen(function* () {
    const onlyInA = capped<EventRef>()
    const onlyInB = capped<EventRef>()
    const conflicting = capped<EventMismatch>()
    const deadLetterMismatch = capped<EventMismatch>()
    let first: { key: string; divergence: Divergence } | undefined
    const candidate = (key: string, divergence: () => Divergence) => {
      if (first === undefined || key < first.key) first = { key, divergence: divergence() }
    }
    const ca = byId(a, pageSize)
    const cb = byId(b, pageSize)
    // Events consumed since the last report: a matched pair is two.
    let step = 0
    while (true) {
      const x = yield* ca.peek
      const y = yield* cb.peek
      if (x === undefined && y === undefined) break
      const order = x === undefined ? 1 : y === undefined ? -1 : compareBinary(x.id, y.id)
      if (order < 0 && x !== undefined) {
        onlyInA.add(refOf(x), limit)
        if (reaches(x)) candidate(orderKey(x), () => ({ event: refOf(x), heldBy: "a", why: "only A holds it" }))
        ca.advance()
        step++
      } else if (order > 0 && y !== undefined) {
        onlyInB.add(refOf(y), limit)
        if (reaches(y)) candidate(orderKey(y), () => ({ event: refOf(y), heldBy: "b", why: "only B holds it" }))
        cb.advance()
        step++
      } else if (x !== undefined && y !== undefined) {
        const mismatch = () => ({
          id: x.id,
          a: { ...refOf(x), deadLettered: x.excluded },
          b: { ...refOf(y), deadLettered: y.excluded }
        })
        if (!sameBody(x, y)) {
          conflicting.add(mismatch(), limit)
          const folded = [x, y].filter(reaches).sort((p, q) => (orderKey(p) < orderKey(q) ? -1 : 1))[0]
          if (folded !== undefined) candidate(orderKey(folded), () => conflictOf(x, y, folded))
        } else if (x.excluded !== y.excluded) {
          deadLetterMismatch.add(mismatch(), limit)
          const held = x.excluded ? y : x
          if (reaches(held)) {
            candidate(orderKey(held), () => ({
              event: refOf(held),
              heldBy: x.excluded ? "b" : "a",
              why: `dead-lettered in ${x.excluded ? "A" : "B"} only, so only ${x.excluded ? "B" : "A"} folds it`
            }))
          }
        }
        ca.advance()
        cb.advance()
        step += 2
      }
      if (step >= pageSize) {
        yield* progress(step)
        step = 0
      }
    }
    yield* progress(step)
    return {
      onlyInA: onlyInA.done(),
      onlyInB: onlyInB.done(),
      conflicting: conflicting.done(),
      deadLetterMismatch: deadLetterMismatch.done(),
      firstDivergence: first?.divergence ?? null
    }
  })

const compareViews = (
  a: EventSource,
  b: EventSource,
  limit: number,
  pageSize: number,
  progress: (n: number) => Effect.Effect<void>
) =>
  Effect.gen(function* () {
    const table = "inspect_diff"
    const make = (s: EventSource) =>
      s.database.raw((db) => db.exec(`DROP TABLE IF EXISTS temp.${table}; ${viewTableDdl(`temp.${table}`)}`))
    const drop = (s: EventSource) =>
      Effect.ignore(s.database.raw((db) => db.exec(`DROP TABLE IF EXISTS temp.${table}`)))
    const body = Effect.gen(function* () {
      yield* make(a)
      yield* make(b)
      for (const s of [a, b]) {
        let last = 0
        yield* InspectFold.into(
          s,
          s.database,
          table,
          { inSet: true },
          {
            pageSize,
            onProgress: (p) => {
              const n = p.done - last
              last = p.done
              return progress(n)
            }
          }
        )
      }
      const onlyInA = capped<string>()
      const onlyInB = capped<string>()
      const differing = capped<{ id: string; fields: ReadonlyArray<FieldDiff> }>()
      const ca = statesById(a, table, pageSize)
      const cb = statesById(b, table, pageSize)
      while (true) {
        const x = yield* ca.peek
        const y = yield* cb.peek
        if (x === undefined && y === undefined) break
        const order = x === undefined ? 1 : y === undefined ? -1 : compareBinary(x.id, y.id)
        if (order < 0 && x !== undefined) {
          onlyInA.add(x.id, limit)
          ca.advance()
        } else if (order > 0 && y !== undefined) {
          onlyInB.add(y.id, limit)
          cb.advance()
        } else if (x !== undefined && y !== undefined) {
          const fields = stateDiff(x, y)
          if (fields.length > 0) differing.add({ id: x.id, fields }, limit)
          ca.advance()
          cb.advance()
        }
      }
      return {
        memoriesOnlyInA: onlyInA.done(),
        memoriesOnlyInB: onlyInB.done(),
        memoriesDiffering: differing.done()
      }
    })
    return yield* body.pipe(Effect.ensuring(Effect.zipRight(drop(a), drop(b))))
  })

const statesById = (source: EventSource, table: string, pageSize: number) => {
  let page: ReadonlyArray<MemoryState> = []
  let i = 0
  let more = true
  let after: string | undefined
  return {
    peek: Effect.suspend(() => {
      if (i < page.length || !more) return Effect.succeed(page[i])
      return Effect.map(
        source.database.raw((db) =>
          (after === undefined
            ? db.prepare(`SELECT * FROM ${table} ORDER BY id LIMIT ?`).all(pageSize)
            : db.prepare(`SELECT * FROM ${table} WHERE id > ? ORDER BY id LIMIT ?`).all(after, pageSize)
          ).map(rowToState)
        ),
        (states) => {
          page = states
          i = 0
          more = states.length === pageSize
          if (states.length > 0) after = states[states.length - 1]!.id
          return page[0]
        }
      )
    }),
    advance: () => void i++
  }
}
