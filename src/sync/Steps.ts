/**
 * The three sync steps — push, pull, resync — each a single attempt (no retry here: the engine wraps them in the
 * policy of Policy.ts). Every request goes through `request`, which serializes calls and refuses to send anything
 * while the credentials that just failed are still the current ones: that is what bounds an auth episode to one
 * request.
 *
 * Invariants (DESIGN §5):
 * - push drains the outbox oldest first, one batch at a time; a batch's results are recorded before the next is
 *   read, so a replica's events reach the server in the order they were written.
 * - pull applies each page together with its cursor in one transaction (Ledger.applyPull), in order; the request for
 *   the next page may be in flight meanwhile, but is only used once the cursor is where it asked from.
 * - resync: on a changed epoch, a server log shorter than the pull cursor (a restored backup), or a digest mismatch,
 *   re-pull from 0, re-push what the server lacks, rebuild the view and compare again. The comparison is made right
 *   after catching up; a server that moved on since the pull is caught up with again before anything is concluded.
 */
import { Clock, Effect, Fiber, Option, SubscriptionRef } from "effect"
import { Database } from "../store/Database.js"
import type { StorageError } from "../store/Errors.js"
import { Materializer } from "../store/Materializer.js"
import * as Replay from "../store/Replay.js"
import { AuthError, ProtocolError, type SyncError } from "./Errors.js"
import type { Ledger } from "./Ledger.js"
import type { PullResponse, PushResult } from "./Protocol.js"
import type { Transport } from "./Transport.js"

/** What the steps need. */
export interface Deps {
  readonly transport: Transport
  readonly ledger: Ledger
  readonly database: Database
  readonly materializer: Materializer
  readonly credentials: SubscriptionRef.SubscriptionRef<Option.Option<string>>
  /** The token whose last use was refused, while it is still the current one (the engine is parked). */
  readonly refused: SubscriptionRef.SubscriptionRef<Option.Option<string>>
  readonly requestLock: Effect.Semaphore
  readonly pullLock: Effect.Semaphore
  readonly batchSize: number
  readonly pageSize: number
  /** Called after each recorded push batch and pulled page (status refresh, ack waiters). */
  readonly onProgress: (what: "push" | "pull") => Effect.Effect<void>
}

/**
 * Counts of one push drain. `behind` is true when the server answered from another log than the one our bookkeeping
 * is about (another epoch): nothing of that answer was recorded, and resync repairs.
 */
export interface PushCounts {
  readonly pushed: number
  readonly rejected: number
  readonly behind: boolean
}

/** What one resync did: whether it repaired (re-pulled, re-pushed, rebuilt), and the events it pushed and pulled. */
export interface ResyncCounts {
  readonly repaired: boolean
  readonly pushed: number
  readonly pulled: number
  readonly rejected: number
}

/** The running counts of a resync. */
type Moved = { pushed: number; pulled: number; rejected: number }

/**
 * Counts of one pull drain. `behind` is true when the server's log is not the one our cursor indexes: its head is
 * below the cursor (restored from a backup), or a page came from another epoch (the log was replaced). Resync repairs.
 */
export interface PullCounts {
  readonly pulled: number
  readonly behind: boolean
}

/** The smallest page a pull shrinks to after timeouts (see `pullPage`). */
export const MIN_PULL_PAGE = 100

/** The push results of events the server refused to read at all (a 413 for a batch of one): rejected, too-large. */
const tooLarge = (events: ReadonlyArray<{ readonly id: string }>, why: string): ReadonlyArray<PushResult> =>
  events.map((e) => ({
    status: "rejected",
    id: e.id,
    reason: "too-large",
    message: `the server refused a request holding only this event: ${why}`
  }))

/** How many full pages in a row, at a page size reduced after timeouts, before it doubles again. */
export const PAGE_GROWTH_AFTER = 4

/** Make the steps over their dependencies. */
/**
 * Whether an answer came from another server log than the one this replica's bookkeeping is about (its epoch differs
 * from the stored one). Unknown on either side (a server before answers carried it, no contact yet) is not evidence.
 */
const fromAnotherLog = (answered: string | undefined, stored: string | undefined): boolean =>
  answered !== undefined && stored !== undefined && answered !== stored

export const make = (deps: Deps) => {
  const { transport, ledger, credentials, refused } = deps

  /** One request with the current token; an AuthError marks that token refused. */
  const request = <A>(call: (token: string) => Effect.Effect<A, SyncError>): Effect.Effect<A, SyncError> =>
    deps.requestLock.withPermits(1)(
      Effect.gen(function* () {
        const token = yield* SubscriptionRef.get(credentials)
        if (Option.isNone(token)) return yield* new AuthError({ status: 401, message: "no sync token configured" })
        const parked = yield* SubscriptionRef.get(refused)
        if (Option.isSome(parked) && parked.value === token.value) {
          return yield* new AuthError({ status: 401, message: "the server refused these credentials; set a new token" })
        }
        return yield* call(token.value).pipe(
          // Only while it is still the current token: an answer to a request sent with the old one, arriving after
          // new credentials were set, must not park the engine on a token nobody uses any more.
          Effect.tapError((e) =>
            e._tag === "AuthError"
              ? Effect.flatMap(SubscriptionRef.get(credentials), (now) =>
                  Option.isSome(now) && now.value === token.value ? SubscriptionRef.set(refused, token) : Effect.void
                )
              : Effect.void
          )
        )
      })
    )

  /**
   * Learn which server log this replica talks to before recording anything about it. Server seqs only mean something
   * within one log (one epoch), and the digest that resync compares is blind to order: bookkeeping made before the
   * epoch was known (say, pulled from a server that was replaced before the first resync got through, then holding
   * the same ids in another order) could later pass for agreement with another log. So no step records a seq
   * before an epoch is stored: the first one asks for the head and adopts its epoch (Ledger.firstContact).
   */
  const contact: Effect.Effect<"kept" | "adopted" | "reset", SyncError | StorageError> = Effect.gen(function* () {
    if ((yield* ledger.get("epoch")) !== undefined) return "kept"
    const head = yield* request((t) => transport.head(t))
    const outcome = yield* ledger.firstContact(head.epoch)
    if (outcome === "reset") {
      yield* Effect.logWarning("sync bookkeeping without a server epoch (an older memsync?): re-checking every event")
    }
    return outcome
  })

  const push: Effect.Effect<PushCounts, SyncError | StorageError> = Effect.gen(function* () {
    // After a reset every event is queued again: pull first, so what the server holds leaves the queue (as resync
    // does) instead of being sent back to it.
    if ((yield* contact) === "reset") yield* pull
    // The answers of another log are not recorded (see PushCounts), as a pull applies no page of one.
    const epoch = yield* ledger.get("epoch")
    let pushed = 0
    let rejected = 0
    let behind = false
    let size = deps.batchSize
    while (true) {
      // Read before the batch: an answer to this push is recorded only if no resync reset the bookkeeping meanwhile.
      const generation = yield* ledger.generation
      const batch = yield* ledger.outboxBatch(size)
      if (batch.length === 0) break
      const envelopes = batch.map(({ seq: _seq, ...e }) => e)
      // A body over the server's limit: halve the batch and try again. A lone event still refused is one the server
      // will never read (it exceeds the body limit by itself), so it is dead-lettered as too-large, as the server
      // rejects an event over its per-event limit: left queued, it would hold back every later write for ever.
      const answered = yield* request((t) => transport.push(t, envelopes)).pipe(
        Effect.map((response): ReadonlyArray<PushResult> | "other-log" | undefined =>
          fromAnotherLog(response.epoch, epoch) ? "other-log" : response.results
        ),
        Effect.catchIf(
          (e) => e._tag === "ProtocolError" && e.status === 413,
          (e) => Effect.succeed(size > 1 ? undefined : tooLarge(envelopes, e.message))
        )
      )
      if (answered === undefined) {
        size = Math.max(1, Math.floor(size / 2))
        continue
      }
      // The events stay queued: resync adopts the new log, pulls back what it holds of them, and pushes the rest.
      if (answered === "other-log") {
        behind = true
        break
      }
      const known = new Set(envelopes.map((e) => e.id))
      const results = answered.filter((r) => known.has(r.id))
      if (results.length === 0) {
        return yield* new ProtocolError({ message: "the server answered a push without a result for its events" })
      }
      const outcome = yield* ledger.recordPush(results, yield* Clock.currentTimeMillis, generation)
      // Stale: the events stay queued, and the resync that ran meanwhile pushes them to the server as it is now.
      if (outcome === undefined) break
      pushed += outcome.acked
      rejected += outcome.rejected.length
      yield* deps.onProgress("push")
      // A short batch was everything queued when it was read. What was committed since has its own trigger (the
      // commit window): draining it now would turn a steady writer's commits into a push per round trip, each a
      // transaction competing with the writer for the connection (measured: ~140 pushes of ~3 events per second).
      if (batch.length < size) break
    }
    // When a batch was last recorded: a drain that found nothing to send sent no push (the server may be unreachable).
    if (pushed + rejected > 0) yield* ledger.set("last_push_at", String(yield* Clock.currentTimeMillis))
    return { pushed, rejected, behind }
  })

  /**
   * Events asked for per pull. A pull that timed out halves it (not below `MIN_PULL_PAGE`): a full page of 10,000
   * events is ~5 MB, and on a link too slow to carry that within the request timeout every full page would time out
   * and the replica would never catch up. (Push does the same on a 413.) After `PAGE_GROWTH_AFTER` full pages in a
   * row at the reduced size it doubles again, up to the configured size: the slow link of an hour ago (a hotel's
   * wifi) is not the link of a process that lives for days, and a link still too slow costs one more timeout.
   */
  let pageLimit = deps.pageSize
  let fullPagesInARow = 0
  const pullPage = (after: number) => {
    const limit = pageLimit
    return request((t) => transport.pull(t, after, limit)).pipe(
      Effect.tap((page) =>
        Effect.sync(() => {
          // Only a full page at the current size is evidence that the link carries it; a short one (the end of the
          // backlog) says nothing either way.
          if (page.events.length < limit || limit !== pageLimit) return
          if (++fullPagesInARow >= PAGE_GROWTH_AFTER && pageLimit < deps.pageSize) {
            pageLimit = Math.min(deps.pageSize, pageLimit * 2)
            fullPagesInARow = 0
          }
        })
      ),
      Effect.tapError((e) =>
        Effect.sync(() => {
          if (e._tag === "TransientError" && e.kind === "timeout") {
            pageLimit = Math.min(pageLimit, Math.max(Math.min(MIN_PULL_PAGE, deps.pageSize), Math.floor(limit / 2)))
            fullPagesInARow = 0
          }
        })
      )
    )
  }

  /**
   * Drain the pages after the cursor. While page N is applied (synchronous SQLite work that blocks the event loop),
   * the request for page N+1 is already in flight, so the server's work on it overlaps ours. The prefetch lives in
   * the drain's scope: a failed apply, an early end or an interruption interrupts it before the drain returns.
   */
  const pullUnlocked: Effect.Effect<PullCounts, SyncError | StorageError> = Effect.scoped(
    Effect.gen(function* () {
      let pulled = 0
      // Pages of another log are never applied: their seqs would be filed under this epoch, and their events read
      // from a cursor that indexes the old log (skipping the new log's first events). First contact stored it.
      const epoch = yield* ledger.get("epoch")
      let prefetch: { readonly after: number; readonly fiber: Fiber.Fiber<PullResponse, SyncError> } | undefined
      while (true) {
        const after = yield* ledger.cursor
        const ahead = prefetch
        prefetch = undefined
        // The prefetch asked for the page after the cursor the last apply set; anything else (nothing else moves the
        // cursor while the pull lock is held) is dropped and asked for again.
        const page =
          ahead === undefined
            ? yield* pullPage(after)
            : ahead.after === after
              ? yield* Fiber.join(ahead.fiber)
              : yield* Effect.zipRight(Fiber.interrupt(ahead.fiber), pullPage(after))
        if (page.head < after) return { pulled, behind: true }
        if (fromAnotherLog(page.epoch, epoch)) return { pulled, behind: true }
        if (page.events.length === 0) break
        const last = page.events[page.events.length - 1]!.seq
        if (page.hasMore) {
          prefetch = { after: last, fiber: yield* Effect.forkScoped(pullPage(last)) }
          // Let the request reach the socket before the apply below holds the event loop. Measured: a microtask
          // yield or a setImmediate leaves it unsent (no overlap); a zero-delay timer sends it (under the TestClock
          // it returns at once).
          yield* Effect.sleep(0)
        }
        pulled += yield* ledger.applyPull(page.events, last)
        yield* deps.onProgress("pull")
        if (!page.hasMore) break
      }
      yield* ledger.set("first_pull_done", "1")
      yield* ledger.set("last_pull_at", String(yield* Clock.currentTimeMillis))
      return { pulled, behind: false }
    })
  )

  const pull = deps.pullLock.withPermits(1)(Effect.zipRight(contact, pullUnlocked))

  /** Compare (head, digest, epoch) with the server; `agree` when they match what this replica holds. */
  const inAgreement = Effect.gen(function* () {
    // A server seq recorded here beyond the server's head (a push it acknowledged, then lost with a restore, or an
    // answer from a log that was since replaced) means the server lacks an event this replica thinks it holds. Read
    // before asking for the head: a push recorded after the head was read may legitimately carry a seq above it.
    const recordedUpTo = yield* ledger.recordedUpTo
    const head = yield* request((t) => transport.head(t))
    const epoch = yield* ledger.get("epoch")
    const cursor = yield* ledger.cursor
    const mine = yield* ledger.confirmed(head.head)
    const sameEpoch = epoch === head.epoch
    // A cursor past the server's head means the server lost events this replica pulled from it (a server restored
    // from a backup keeps its epoch): the digest of the shorter prefix can still match, but that is no agreement.
    const agree =
      sameEpoch &&
      cursor <= head.head &&
      recordedUpTo <= head.head &&
      mine.count === head.head &&
      mine.digest === head.digest
    // The server got events after our pull (another replica pushed): not evidence of disagreement yet.
    const moved = sameEpoch && cursor < head.head
    return { head, epoch, cursor, agree, moved }
  })

  /**
   * Catch up, then compare. When the server moved on in between, catch up and compare again (a few times) before
   * concluding: a push landing between our pull and our head check is the normal life of a shared space, and
   * treating it as disagreement would re-pull the whole log and rebuild the view for nothing.
   */
  const caughtUpAgreement = (moved: Moved) =>
    Effect.gen(function* () {
      for (let attempt = 1; ; attempt++) {
        moved.pulled += (yield* pullUnlocked).pulled
        const state = yield* inAgreement
        if (state.agree || !state.moved || attempt >= AGREEMENT_ATTEMPTS) return state
      }
    })

  /**
   * Check agreement with the server and repair when it is lost. Returns whether a repair ran, and what the check and
   * the repair moved (a replaced server log gets everything it lacks pushed here, and `syncNow` reports it).
   */
  const resync: Effect.Effect<ResyncCounts, SyncError | StorageError> = deps.pullLock.withPermits(1)(
    Effect.gen(function* () {
      yield* contact
      const moved: Moved = { pushed: 0, pulled: 0, rejected: 0 }
      const first = yield* caughtUpAgreement(moved)
      if (first.agree) return { repaired: false, ...moved }
      if (first.epoch !== first.head.epoch) {
        yield* Effect.logWarning("the server's epoch changed: its log was replaced; resyncing from scratch")
      } else if (first.cursor > first.head.head) {
        yield* Effect.logWarning(
          "the server holds fewer events than this replica pulled from it (restored from a backup?); resyncing"
        )
      } else {
        yield* Effect.logWarning("this replica and the server disagree on the log; resyncing")
      }
      // Everything is queued again in the same transaction that forgets the old bookkeeping; the pull then takes off
      // the queue what the server already holds, and the push sends the rest.
      const requeued = yield* ledger.resetForEpoch(first.head.epoch)
      moved.pulled += (yield* pullUnlocked).pulled
      if (requeued > 0)
        yield* Effect.logInfo(`re-checking ${requeued} events against the server; pushing what it lacks`)
      const pushed = yield* push
      moved.pushed += pushed.pushed
      moved.rejected += pushed.rejected
      moved.pulled += (yield* pullUnlocked).pulled
      yield* Replay.rebuild().pipe(
        Effect.provideService(Database, deps.database),
        Effect.provideService(Materializer, deps.materializer)
      )
      const after = yield* inAgreement
      if (!after.agree) yield* Effect.logWarning("still not in agreement with the server after a resync")
      return { repaired: true, ...moved }
    })
  )

  return { request, push, pull, resync, inAgreement }
}

/** How many times resync catches up with a server that keeps moving before it compares for good. */
const AGREEMENT_ATTEMPTS = 3

/** The steps. */
export type Steps = ReturnType<typeof make>
