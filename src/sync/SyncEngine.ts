/**
 * The sync engine: background fibers that push the outbox, pull remote events and resync on drift, inside a scope.
 *
 * Invariants (DESIGN §5):
 * - Nothing is lost: an event leaves the outbox only in a transaction that records that the server holds it (the
 *   answer to its push, or a pulled page that contains it).
 * - Transient failures retry on the backoff schedule (Policy.ts) and report `offline` with `nextRetryAt`.
 * - An auth failure parks every step (state `auth-failed`): no request is sent with the refused token again; one
 *   prober checks `/v1/auth-check` on the slow schedule; new credentials unpark at once. No token at all parks the
 *   same way until one is set.
 * - Closing the scope makes one bounded final push attempt, then interrupts every fiber.
 * - `local` mode runs no fibers; `remote` mode lets writers wait for the server's ack (`confirm`).
 */
import {
  Clock,
  Context,
  Duration,
  Effect,
  Fiber,
  Layer,
  Option,
  PubSub,
  Queue,
  Ref,
  Schedule,
  Schema,
  Stream,
  SubscriptionRef
} from "effect"
import { Database } from "../store/Database.js"
import type { StorageError } from "../store/Errors.js"
import { Materializer } from "../store/Materializer.js"
import { collectCommits, MemoryStore } from "../store/MemoryStore.js"
import { AckTimeout, RejectedEvent, type SyncError } from "./Errors.js"
import * as Ledger from "./Ledger.js"
import * as Policy from "./Policy.js"
import { RejectReason } from "./Protocol.js"
import * as Steps from "./Steps.js"
import * as Status from "./SyncStatus.js"
import { Transport } from "./Transport.js"

/** `local`: no server. `sync`: write locally, sync in the background. `remote`: writers may wait for the ack. */
export type Mode = "local" | "sync" | "remote"

/** Engine configuration (every field has a default but the credentials). */
export interface Config {
  readonly mode?: Mode
  /** The bearer token; change it at run time with `SubscriptionRef.set(engine.credentials, Option.some(t))`. */
  readonly token?: string | undefined
  readonly pullIntervalMs?: number
  readonly batchSize?: number
  readonly pageSize?: number
  readonly commitDebounceMs?: number
  readonly flushTimeoutMs?: number
  /** Check head/digest/epoch every N pull cycles (and on start, and on demand). */
  readonly resyncEvery?: number
  readonly ackTimeoutMs?: number
  readonly backoff?: Policy.Backoff
  /** Run the background fibers (default true). The CLI's one-shot `sync` calls `syncNow` without them. */
  readonly background?: boolean
}

/** The engine service. */
export interface SyncEngine {
  readonly mode: Mode
  readonly status: SubscriptionRef.SubscriptionRef<Status.SyncStatus>
  /** Status values as they change (starting with the current one). */
  readonly statusChanges: Stream.Stream<Status.SyncStatus>
  readonly credentials: SubscriptionRef.SubscriptionRef<Option.Option<string>>
  /** Push, pull and check agreement now (one attempt each, no retry); fails with the typed error that stopped it. */
  readonly syncNow: Effect.Effect<Status.SyncSummary, SyncError | StorageError>
  /** Force a resync (re-pull, re-push, rebuild) now. */
  readonly resync: Effect.Effect<boolean, SyncError | StorageError>
  /** Run a local write, then wait for the server to acknowledge its events (remote mode). */
  readonly confirm: <A, E, R>(
    write: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | AckTimeout | RejectedEvent | StorageError, R>
  readonly ledger: Ledger.Ledger
}

/** The engine tag. */
export const SyncEngine = Context.GenericTag<SyncEngine>("memsync/SyncEngine")

/** Build the engine and start its fibers in the current scope. */
export const make = (config: Config) =>
  Effect.gen(function* () {
    const mode = config.mode ?? "sync"
    const backoff = config.backoff ?? Policy.DEFAULT_BACKOFF
    const database = yield* Database
    const materializer = yield* Materializer
    const store = yield* MemoryStore
    const transport = yield* Transport
    const ledger = yield* Ledger.Ledger
    const policy = yield* Policy.RetryPolicy

    const credentials = yield* SubscriptionRef.make(Option.fromNullable(config.token))
    const refused = yield* SubscriptionRef.make(Option.none<string>())
    const status = yield* SubscriptionRef.make(Status.initial(mode === "local" ? "disabled" : "idle"))
    const progress = yield* PubSub.unbounded<"push" | "pull">()
    const active = yield* Ref.make(0)
    const offline = yield* Ref.make(false)

    const refreshCounts = Effect.flatMap(ledger.counts, (c) =>
      SubscriptionRef.update(status, (s) => ({
        ...s,
        pending: c.pending,
        deadLetters: c.deadLetters,
        idConflicts: c.idConflicts
      }))
    )
    /** Recompute `state` from what is going on. */
    const settle = Effect.gen(function* () {
      if (mode === "local") return
      // No token at all parks too: nothing can be sent until credentials arrive.
      const parked = isParked(yield* SubscriptionRef.get(refused), yield* SubscriptionRef.get(credentials))
      const running = (yield* Ref.get(active)) > 0
      const down = yield* Ref.get(offline)
      const state: Status.SyncState = parked ? "auth-failed" : down ? "offline" : running ? "syncing" : "idle"
      yield* SubscriptionRef.update(status, (s) => ({ ...s, state }))
    })

    const onProgress = (what: "push" | "pull") =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        yield* SubscriptionRef.update(status, (s) =>
          what === "push" ? { ...s, lastPushAt: now } : { ...s, lastPullAt: now }
        )
        yield* Effect.ignore(refreshCounts)
        yield* PubSub.publish(progress, what)
      })

    const steps = Steps.make({
      transport,
      ledger,
      database,
      materializer,
      credentials,
      refused,
      requestLock: yield* Effect.makeSemaphore(1),
      pullLock: yield* Effect.makeSemaphore(1),
      batchSize: config.batchSize ?? 500,
      // 10,000 (the server's cap) over 1,000: each page is one transaction whose commit costs WAL I/O; measured catch-up
      // of 50k events from a local server: ~6.6k ev/s at 1,000, ~9.2k at 5,000, ~11.8k at 10,000 (bench/README §6).
      pageSize: config.pageSize ?? 10_000,
      onProgress
    })

    const firstPullDone = Effect.map(ledger.get("first_pull_done"), (v) => v === "1")

    /** Run a step: mark it active, retry by policy, park on auth, record the outcome in the status. */
    const runStep = <A>(name: string, step: Effect.Effect<A, SyncError | StorageError>): Effect.Effect<void> => {
      const onRetry = (error: SyncError | StorageError, delayMs: number) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          if (error._tag === "TransientError") yield* Ref.set(offline, true)
          yield* SubscriptionRef.update(status, (s) => ({ ...s, lastError: error.message, nextRetryAt: now + delayMs }))
          yield* settle
          yield* Effect.logDebug(`${name}: ${error._tag}: ${error.message}; retrying in ${delayMs} ms`)
        })
      const attempt = step.pipe(Effect.retry(policy.retry(backoff, onRetry)))
      const body: Effect.Effect<void> = Effect.gen(function* () {
        const exit = yield* Effect.either(attempt)
        if (exit._tag === "Right") {
          yield* Ref.set(offline, false)
          const done = yield* Effect.orElseSucceed(firstPullDone, () => false)
          yield* SubscriptionRef.update(status, (s) => {
            const { lastError: _e, nextRetryAt: _n, ...rest } = s
            return { ...rest, firstPullDone: done }
          })
          return
        }
        const error = exit.left
        yield* SubscriptionRef.update(status, (s) => ({ ...s, lastError: error.message }))
        if (error._tag === "AuthError") {
          yield* settle
          yield* Effect.logWarning(`${name}: credentials refused (${error.status}); parked until they change`)
          // Park: wait until the refused token is cleared (new credentials, or the prober saw them accepted) and there
          // is a token to send (without one, `request` fails at once: resuming before one is set would spin).
          yield* Stream.zipLatest(refused.changes, credentials.changes).pipe(
            Stream.filter(([r, c]) => !isParked(r, c)),
            Stream.runHead
          )
          return yield* body
        }
        yield* Effect.logError(`${name}: ${error._tag}: ${error.message}`)
      })
      return Effect.acquireUseRelease(
        Effect.zipRight(
          Ref.update(active, (n) => n + 1),
          settle
        ),
        () => body,
        () =>
          Effect.zipRight(
            Ref.update(active, (n) => n - 1),
            Effect.zipRight(Effect.ignore(refreshCounts), settle)
          )
      )
    }

    const syncNow: Effect.Effect<Status.SyncSummary, SyncError | StorageError> = Effect.gen(function* () {
      const start = yield* Clock.currentTimeMillis
      if (mode === "local") return { pushed: 0, pulled: 0, rejected: 0, resynced: false, durationMs: 0 }
      const pushed = yield* steps.push
      const pulled = yield* steps.pull
      // A resync moves events too: after a server's log was replaced it pushes everything the new log lacks.
      const resync = yield* steps.resync
      yield* Effect.ignore(refreshCounts)
      const end = yield* Clock.currentTimeMillis
      return {
        pushed: pushed.pushed + resync.pushed,
        pulled: pulled.pulled + resync.pulled,
        rejected: pushed.rejected + resync.rejected,
        resynced: resync.repaired,
        durationMs: end - start
      }
    })

    const pushSignal = yield* Queue.dropping<void>(1)
    const pullSignal = yield* Queue.dropping<void>(1)
    const resyncSignal = yield* Queue.dropping<void>(1)

    /**
     * Remote mode waits for the events the write itself committed (`collectCommits`: its fiber and the fibers it forks),
     * so neither the wait nor the dead-letter check can pick up another writer's event, and the database is free while
     * the write runs.
     */
    const confirm = <A, E, R>(write: Effect.Effect<A, E, R>) =>
      Effect.gen(function* () {
        if (mode !== "remote") return yield* write
        // The write's own events, whatever other writers commit meanwhile; the database is not held around the write.
        const { value, eventIds } = yield* collectCommits(write)
        if (eventIds.length === 0) return value
        const ids = JSON.stringify(eventIds)
        const waiting = yield* PubSub.subscribe(progress)
        yield* Queue.offer(pushSignal, void 0)
        const pendingOf = database.raw((db) =>
          Number(
            db
              .prepare(
                `SELECT count(*) FROM outbox o JOIN events e ON e.seq = o.seq
                 WHERE e.id IN (SELECT value FROM json_each(?))`
              )
              .pluck()
              .get(ids)
          )
        )
        const acked = Effect.gen(function* () {
          while ((yield* pendingOf) > 0) yield* Queue.take(waiting)
        })
        const ok = yield* acked.pipe(Effect.timeout(Duration.millis(config.ackTimeoutMs ?? 10_000)), Effect.option)
        if (Option.isNone(ok)) {
          return yield* new AckTimeout({
            message: "the server did not acknowledge the write in time; it stays pending"
          })
        }
        const dead = yield* database.raw((db) => {
          const row = db
            .prepare(
              `SELECT event_id, reason, message FROM dead_letters
               WHERE event_id IN (SELECT value FROM json_each(?)) LIMIT 1`
            )
            .get(ids)
          return row === undefined ? undefined : decodeDeadRow(row)
        })
        if (dead !== undefined) {
          return yield* new RejectedEvent({ id: dead.event_id, reason: dead.reason, message: dead.message })
        }
        return value
      }).pipe(Effect.scoped)

    const engine = SyncEngine.of({
      mode,
      status,
      statusChanges: status.changes,
      credentials,
      syncNow,
      resync: Effect.map(steps.resync, (r) => r.repaired),
      confirm,
      ledger
    })

    yield* Effect.ignore(refreshCounts)
    yield* Effect.ignore(
      Effect.flatMap(firstPullDone, (done) => SubscriptionRef.update(status, (s) => ({ ...s, firstPullDone: done })))
    )
    if (mode === "local" || config.background === false) return engine

    // --- background fibers -------------------------------------------------------------------------------------
    // Subscribed before any fiber runs, so no commit made after the engine is up can be missed.
    const commits = yield* store.subscribe
    const every = config.resyncEvery ?? 10
    const cycles = yield* Ref.make(0)
    const loop = (signal: Queue.Queue<void>, effect: Effect.Effect<void>) =>
      Effect.forever(Effect.zipRight(Queue.take(signal), effect))
    const signalAll = Effect.all([Queue.offer(pushSignal, void 0), Queue.offer(pullSignal, void 0)])
    /** A push or pull that found the server's log is not ours any more asks resync to repair. */
    const resyncWhenBehind = <A extends { readonly behind: boolean }, E, R>(step: Effect.Effect<A, E, R>) =>
      Effect.tap(step, (r) => (r.behind ? Queue.offer(resyncSignal, void 0) : Effect.void))

    const fibers = [
      loop(pushSignal, runStep("push", resyncWhenBehind(steps.push))),
      loop(
        pullSignal,
        Effect.gen(function* () {
          yield* runStep("pull", resyncWhenBehind(steps.pull))
          const n = yield* Ref.updateAndGet(cycles, (c) => c + 1)
          if (n % every === 0) yield* Queue.offer(resyncSignal, void 0)
        })
      ),
      loop(resyncSignal, runStep("resync", steps.resync)),
      // The interval trigger.
      Effect.schedule(signalAll, Schedule.spaced(Duration.millis(config.pullIntervalMs ?? 30_000))),
      // Local commits, batched within commitDebounceMs of the first.
      Stream.fromQueue(commits).pipe(
        Stream.filter((c) => c.source === "local"),
        Stream.tap(() => Effect.ignore(refreshCounts)),
        // Batch commits within a window that starts at the first one: a pure debounce would hold pushes back for as
        // long as a writer keeps committing more often than the window (until the interval trigger).
        Stream.groupedWithin(Number.MAX_SAFE_INTEGER, Duration.millis(config.commitDebounceMs ?? 100)),
        Stream.runForEach(() => Queue.offer(pushSignal, void 0))
      ),
      // New credentials: unpark and sync at once.
      credentials.changes.pipe(
        Stream.drop(1),
        Stream.runForEach(() => Effect.zipRight(SubscriptionRef.set(refused, Option.none()), signalAll))
      ),
      // The auth prober: while parked, check the refused token on the slow schedule.
      prober(refused, backoff, (token) => transport.authCheck(token))
    ]
    const running = yield* Effect.forEach(fibers, (f) =>
      Effect.forkScoped(Effect.annotateLogs(f, { module: "SyncEngine" }))
    )
    yield* signalAll
    yield* Queue.offer(resyncSignal, void 0)

    // Registered after the forks, so it runs first on close: one bounded push, then the fibers are interrupted.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        // Finalizers run uninterruptibly; the push must be interruptible or the timeout could not cut it short.
        yield* steps.push.pipe(
          Effect.interruptible,
          Effect.timeout(Duration.millis(config.flushTimeoutMs ?? 5_000)),
          Effect.ignore
        )
        yield* Fiber.interruptAll(running)
      })
    )
    return engine
  })

/**
 * The engine over the store, a `Transport`, a `Ledger` and a `RetryPolicy` in context. Simulations use it to run the
 * engine with a substituted ledger or policy; everything else uses `layer`.
 */
export const layerWithoutDefaults = (config: Config) => Layer.scoped(SyncEngine, make(config))

/** The engine over the store (and a `Transport`) in context, with the default ledger and retry policy. */
export const layer = (config: Config) =>
  layerWithoutDefaults(config).pipe(Layer.provide(Layer.merge(Ledger.layer, Policy.layer)))

const decodeDeadRow = Schema.decodeUnknownSync(
  Schema.Struct({ event_id: Schema.String, reason: RejectReason, message: Schema.String })
)

/**
 * Parked: no token to send, or the current one is the token the server refused. A refused token that is no longer
 * the current one parks nothing (`request` does not record it then, but this is the rule either way).
 */
const isParked = (refused: Option.Option<string>, credentials: Option.Option<string>): boolean =>
  Option.isNone(credentials) || (Option.isSome(refused) && refused.value === credentials.value)

/** While parked, probe the refused token every `slowMs`; unpark when the server accepts it. */
const prober = (
  refused: SubscriptionRef.SubscriptionRef<Option.Option<string>>,
  backoff: Policy.Backoff,
  authCheck: (token: string) => Effect.Effect<void, SyncError>
): Effect.Effect<never> =>
  Effect.forever(
    Effect.gen(function* () {
      const token = yield* refused.changes.pipe(
        Stream.filterMap((x) => x),
        Stream.runHead
      )
      if (Option.isNone(token)) return
      yield* Effect.sleep(Duration.millis(backoff.slowMs))
      const still = yield* SubscriptionRef.get(refused)
      if (Option.isNone(still) || still.value !== token.value) return
      const ok = yield* Effect.isSuccess(authCheck(token.value))
      if (ok) yield* SubscriptionRef.set(refused, Option.none())
    })
  )
