/**
 * `memsync log`: the events of a log in log order, with their sync state, read a page at a time.
 */
import { Effect } from "effect"
import type { Progress } from "../store/Replay.js"
import { memoryIdOf } from "../domain/Events.js"
import { EventSource, type Entry, type Filter, type SyncState } from "./EventSource.js"

/** Options of `list`. */
export interface Options {
  /** At most this many events in all. */
  readonly limit?: number | undefined
  readonly pageSize?: number
  /** Called after each page; its total costs a count over the log, so pass it only when a bar is drawn. */
  readonly onProgress?: ((p: Progress) => Effect.Effect<void>) | undefined
}

/** Hand the entries passing `filter` to `onPage`, in log order; returns how many there were. */
export const list = <E, R>(
  filter: Filter,
  onPage: (entries: ReadonlyArray<Entry>) => Effect.Effect<void, E, R>,
  options: Options = {}
) =>
  Effect.gen(function* () {
    const source = yield* EventSource
    const pageSize = options.pageSize ?? 1_000
    let left = options.limit ?? Number.POSITIVE_INFINITY
    const total = options.onProgress === undefined ? 0 : Math.min(left, yield* source.count(filter))
    let after = 0
    let count = 0
    while (left > 0) {
      const page = yield* source.entries(after, Math.min(pageSize, left), filter)
      if (page.length === 0) break
      yield* onPage(page)
      after = page[page.length - 1]!.event.seq
      count += page.length
      left -= page.length
      if (options.onProgress) yield* options.onProgress({ done: count, total })
    }
    // An empty listing still ends its progress line.
    if (options.onProgress && count === 0) yield* options.onProgress({ done: 0, total })
    return count
  }).pipe(Effect.withSpan("Inspect.log"))

/** An entry as one JSON-ready object. */
export const toJson = (e: Entry) => ({
  seq: e.event.seq,
  id: e.event.id,
  type: e.event.type,
  version: e.event.version,
  hlc: e.event.hlc,
  clientId: e.event.clientId,
  memoryId: memoryIdOf(e.event) ?? null,
  payload: e.event.payload,
  sync: e.sync
})

/** A sync state in a few words. */
export const describeSync = (s: SyncState): string => {
  switch (s.state) {
    case "pending":
      return "pending"
    case "confirmed":
      return `confirmed@${s.serverSeq}`
    case "unconfirmed":
      return "unconfirmed"
    case "dead-lettered":
      return `dead-lettered (${s.reason}: ${s.message})${s.requeuedAs === null ? "" : ` requeued as ${s.requeuedAs}`}`
  }
}
