/**
 * Retry policy of the sync engine (DESIGN §5), as pure delay functions wrapped in `Schedule`s.
 *
 * - TransientError: exponential backoff with FULL jitter — the n-th retry waits a uniform draw from
 *   [0, min(cap, base * factor^n)] (randomness from Effect's `Random`), and never less than the server's
 *   Retry-After, up to the slow spacing: a server or proxy asking for hours (or sending a bogus value) is asked again
 *   after 5 minutes instead of stopping sync for that long. A fresh `Effect.retry` starts at n = 0, so the backoff
 *   resets after every success.
 * - ProtocolError: the slow schedule (a response we cannot read will not fix itself in 250 ms).
 * - AuthError: the schedule stops at once; the engine parks instead (see SyncEngine), so a refused credential costs
 *   one request per episode, not a retry storm.
 */
import { Context, Duration, Effect, Layer, Random, Schedule } from "effect"
import type { SyncError } from "./Errors.js"

/** Backoff parameters. */
export interface Backoff {
  readonly baseMs: number
  readonly factor: number
  readonly capMs: number
  /** Spacing of protocol-error retries and of the auth probe. */
  readonly slowMs: number
}

/** Defaults: base 250 ms, factor 2, cap 60 s, slow 5 min. */
export const DEFAULT_BACKOFF: Backoff = { baseMs: 250, factor: 2, capMs: 60_000, slowMs: 5 * 60_000 }

/** The upper bound of the n-th transient delay (n from 0): min(cap, base * factor^n). */
export const ceilingMs = (b: Backoff, attempt: number): number =>
  Math.min(b.capMs, b.baseMs * Math.pow(b.factor, Math.max(0, attempt)))

/** The n-th transient delay for a uniform draw `u` in [0, 1), floored by Retry-After (itself capped at `slowMs`). */
export const transientDelayMs = (b: Backoff, attempt: number, u: number, retryAfterMs?: number): number =>
  Math.max(Math.min(retryAfterMs ?? 0, b.slowMs), Math.floor(u * ceilingMs(b, attempt)))

/** The delay before retrying after `error` (undefined: do not retry — park on auth, give up on anything else). */
export const delayFor = (b: Backoff, error: StepError, attempt: number, u: number): number | undefined => {
  switch (error._tag) {
    case "ProtocolError":
      return b.slowMs
    case "TransientError":
      return transientDelayMs(b, attempt, u, error.retryAfterMs)
    default:
      return undefined
  }
}

/** What a sync step can fail with: a server error, or a local one (storage) that no retry would fix. */
export type StepError = SyncError | { readonly _tag: "StorageError"; readonly message: string }

const retriable = (e: StepError): boolean => e._tag === "TransientError" || e._tag === "ProtocolError"

/**
 * The retry schedule for one sync step. Recurs on transient and protocol errors only; `onRetry` sees each error and
 * the delay chosen for it (the engine shows it as `nextRetryAt`).
 */
export const retry = <E extends StepError>(
  b: Backoff,
  onRetry: (error: E, delayMs: number) => Effect.Effect<void> = () => Effect.void
): Schedule.Schedule<[E, number], E> =>
  Schedule.identity<E>().pipe(
    Schedule.intersect(Schedule.count),
    Schedule.whileInput((e: E) => retriable(e)),
    Schedule.addDelayEffect(([error, attempt]) =>
      Effect.gen(function* () {
        const u = yield* Random.next
        const ms = delayFor(b, error, attempt, u) ?? 0
        yield* onRetry(error, ms)
        return Duration.millis(ms)
      })
    )
  )

/** The retry policy as a service, so the engine takes it from context (a simulation can substitute a wrong one). */
export interface RetryPolicyService {
  /** The retry schedule for one run of a sync step (see `retry`). */
  readonly retry: <E extends StepError>(
    b: Backoff,
    onRetry?: (error: E, delayMs: number) => Effect.Effect<void>
  ) => Schedule.Schedule<[E, number], E>
}

/** The retry policy tag. */
export class RetryPolicy extends Context.Tag("memsync/RetryPolicy")<RetryPolicy, RetryPolicyService>() {}

/** The policy described above (`retry`). */
export const layer: Layer.Layer<RetryPolicy> = Layer.succeed(RetryPolicy, { retry })
