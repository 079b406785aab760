/**
 * Where event and memory ids come from. A service, so a simulation can make ids from a seeded generator.
 */
import { Clock, Context, Effect, Layer, Random } from "effect"
import { randomFillSync } from "node:crypto"
import { v7 } from "./Uuid.js"

/** Makes fresh UUIDv7 ids. */
export class IdGenerator extends Context.Tag("memsync/IdGenerator")<
  IdGenerator,
  { readonly next: Effect.Effect<string> }
>() {}

/** Production ids: time from Effect's `Clock`, randomness from the OS. */
export const layer: Layer.Layer<IdGenerator> = Layer.sync(IdGenerator, () => {
  // The OS randomness is drawn 4 KiB at a time (as `crypto.randomUUID` does): one call per id cost ~2-3 µs.
  const pool = new Uint8Array(4096)
  let at = pool.length
  const random10 = (): Uint8Array => {
    if (at + 10 > pool.length) {
      randomFillSync(pool)
      at = 0
    }
    // v7 copies the bytes out before the pool is refilled.
    return pool.subarray(at, (at += 10))
  }
  return { next: Effect.flatMap(Clock.currentTimeMillis, (ms) => Effect.sync(() => v7(ms, random10()))) }
})

/** Reproducible ids: time from `Clock`, randomness from Effect's `Random` (seed it for a deterministic run). */
export const layerRandom: Layer.Layer<IdGenerator> = Layer.succeed(IdGenerator, {
  next: Effect.gen(function* () {
    const ms = yield* Clock.currentTimeMillis
    const bytes = new Uint8Array(10)
    for (let i = 0; i < bytes.length; i++) bytes[i] = yield* Random.nextIntBetween(0, 256)
    return v7(ms, bytes)
  })
})
