/**
 * A per-token rate limit: one token bucket per principal key, refilled continuously, driven by Effect's `Clock`
 * (so a TestClock decides when a bucket refills).
 *
 * Invariants:
 * - A request costs one unit; a bucket holds at most `burst` units and gains `perSecond` units a second.
 * - A refused request does not consume a unit, and its `retryAfterSeconds` is when the next unit arrives (≥ 1).
 * - `perSecond` 0 disables the limit.
 */
import { Clock, Context, Effect, Layer } from "effect"
import { RateLimited } from "../sync/Protocol.js"

/** The limit per token. */
export interface Config {
  /** Sustained requests per second (0 disables the limit). */
  readonly perSecond: number
  /** Requests allowed at once after a quiet period. */
  readonly burst: number
}

/** Generous: 200 requests a second per token, bursts of 400 (a push carries up to 1000 events). */
export const DEFAULT_CONFIG: Config = { perSecond: 200, burst: 400 }

/** The state of one bucket. */
export interface Bucket {
  readonly units: number
  readonly at: number
}

/** Take one unit at time `now` (ms): the new bucket, and when refused, the wait in ms until a unit is there. */
export const take = (
  bucket: Bucket | undefined,
  now: number,
  config: Config
): { readonly bucket: Bucket; readonly waitMs: number | undefined } => {
  const capacity = Math.max(1, config.burst)
  const elapsed = bucket === undefined ? 0 : Math.max(0, now - bucket.at)
  const units = bucket === undefined ? capacity : Math.min(capacity, bucket.units + (elapsed * config.perSecond) / 1000)
  if (units >= 1) return { bucket: { units: units - 1, at: now }, waitMs: undefined }
  return { bucket: { units, at: now }, waitMs: Math.ceil(((1 - units) * 1000) / config.perSecond) }
}

/** Admits or refuses requests per principal key. */
export interface Service {
  /** Take one unit from `key`'s bucket, or fail with 429 and the seconds to wait. */
  readonly consume: (key: string) => Effect.Effect<void, RateLimited>
}

/** The rate limiter service. */
export class RateLimiter extends Context.Tag("memsync/server/RateLimiter")<RateLimiter, Service>() {}

/** A limiter with in-memory buckets (one per key; keys are the configured tokens, so the map stays small). */
export const make = (config: Config): Service => {
  if (config.perSecond <= 0) return { consume: () => Effect.void }
  const buckets = new Map<string, Bucket>()
  return {
    consume: (key) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const { bucket, waitMs } = take(buckets.get(key), now, config)
        buckets.set(key, bucket)
        if (waitMs === undefined) return Effect.void
        const retryAfterSeconds = Math.max(1, Math.ceil(waitMs / 1000))
        return Effect.fail(
          new RateLimited({
            message: `rate limit exceeded (${config.perSecond} requests/s, bursts of ${config.burst}); retry in ${retryAfterSeconds} s`,
            retryAfterSeconds
          })
        )
      })
  }
}

/** A layer with `config`. */
export const layer = (config: Config = DEFAULT_CONFIG): Layer.Layer<RateLimiter> =>
  Layer.sync(RateLimiter, () => make(config))
