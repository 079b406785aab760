/**
 * A virtual clock for simulations: the test decides when time moves, every sleep wakes in order, and each replica can
 * see the same time with its own skew.
 *
 * Why not `TestClock.adjust`: before and after every wake-up it polls the fibers with real `setTimeout(0)` timers
 * (measured here: 6–15 ms of wall time per wake-up), which would cost minutes per simulation suite. This clock
 * implements the same contract (`Clock` service; sleepers wake in time order when the test advances the clock) and
 * lets woken fibers run with `Effect.yieldNow` only, so it is fast and involves no real timer at all.
 *
 * Invariants:
 * - Time never moves unless the test calls `advance`/`advanceTo`; `now` is the same for every reader (a replica's
 *   skew is added on read by its own `Clock` view, `viewWithSkew`).
 * - Sleepers wake in (wake time, registration order): the same program gives the same interleaving every time.
 * - After each group of wake-ups the driver yields until the fibers stop making progress (`settle`), so a request
 *   made right after a sleep is recorded at the time the sleep ended.
 */
import { Clock, Duration, Effect } from "effect"

/** The clock and its controls. */
export interface SimClock {
  /** Virtual epoch milliseconds. */
  readonly now: () => number
  /** The clock without skew (the server's). */
  readonly clock: Clock.Clock
  /** A view of this clock whose reads are shifted by `skewMs()` (read each time: the skew can change). */
  readonly viewWithSkew: (skewMs: () => number) => Clock.Clock
  /** Let ready fibers run without moving time. */
  readonly settle: Effect.Effect<void>
  /** Move time forward by `ms`, waking every sleeper due on the way, in order. */
  readonly advance: (ms: number) => Effect.Effect<void>
  /** Move time to `at` (no-op when it is in the past). */
  readonly advanceTo: (at: number) => Effect.Effect<void>
  /** When the earliest sleeper is due, if any. */
  readonly nextWake: () => number | undefined
  /** Bump the activity counter (the network calls it on every request) so `settle` knows fibers are still busy. */
  readonly touch: () => void
}

/** Options of `make`. */
export interface Options {
  /** Where virtual time starts (epoch ms). */
  readonly start: number
  /** Yields per settle round (default 8). */
  readonly yieldsPerRound?: number
  /** Most settle rounds before moving on (default 40). */
  readonly maxRounds?: number
}

interface Sleeper {
  readonly at: number
  readonly order: number
  readonly wake: () => void
  cancelled: boolean
}

/** Make a virtual clock. */
export const make = (options: Options): SimClock => {
  let now = options.start
  let order = 0
  let activity = 0
  // Kept sorted by (at, order); cancelled sleepers are skipped when popped.
  const sleepers: Array<Sleeper> = []

  const insert = (s: Sleeper) => {
    let lo = 0
    let hi = sleepers.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const m = sleepers[mid]!
      if (m.at < s.at || (m.at === s.at && m.order < s.order)) lo = mid + 1
      else hi = mid
    }
    sleepers.splice(lo, 0, s)
  }

  const sleep = (duration: Duration.DurationInput): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const ms = Duration.toMillis(Duration.decode(duration))
      activity++
      if (!(ms > 0)) {
        resume(Effect.void)
        return
      }
      const s: Sleeper = { at: now + ms, order: order++, wake: () => resume(Effect.void), cancelled: false }
      insert(s)
      return Effect.sync(() => {
        s.cancelled = true
        activity++
      })
    })

  const viewWithSkew = (skewMs: () => number): Clock.Clock => ({
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now + skewMs(),
    currentTimeMillis: Effect.sync(() => now + skewMs()),
    unsafeCurrentTimeNanos: () => BigInt(now + skewMs()) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(now + skewMs()) * 1_000_000n),
    sleep
  })

  const yieldsPerRound = options.yieldsPerRound ?? 8
  const maxRounds = options.maxRounds ?? 40
  const round = Effect.repeatN(Effect.yieldNow(), yieldsPerRound - 1)
  /** Yield in rounds until a round passes with no sleep registered or cancelled and no request made. */
  const settle: Effect.Effect<void> = Effect.gen(function* () {
    let quietRounds = 0
    for (let i = 0; i < maxRounds && quietRounds < 2; i++) {
      const before = activity
      yield* round
      quietRounds = activity === before ? quietRounds + 1 : 0
    }
  })

  const prune = () => {
    while (sleepers.length > 0 && sleepers[0]!.cancelled) sleepers.shift()
  }

  const advanceTo = (at: number): Effect.Effect<void> =>
    Effect.gen(function* () {
      yield* settle
      while (true) {
        prune()
        const first = sleepers[0]
        if (first === undefined || first.at > at) break
        now = Math.max(now, first.at)
        // Wake every sleeper due at this instant, in registration order, then let them run.
        while (sleepers.length > 0 && sleepers[0]!.at <= now) {
          const s = sleepers.shift()!
          if (!s.cancelled) s.wake()
        }
        yield* settle
      }
      if (at > now) now = at
      yield* settle
    })

  return {
    now: () => now,
    clock: viewWithSkew(() => 0),
    viewWithSkew,
    settle,
    advance: (ms) => Effect.suspend(() => advanceTo(now + ms)),
    advanceTo,
    nextWake: () => {
      prune()
      return sleepers[0]?.at
    },
    touch: () => {
      activity++
    }
  }
}
