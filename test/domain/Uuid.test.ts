import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Random, Schema, TestClock } from "effect"
import { EventId } from "../../src/domain/Events.js"
import * as IdGenerator from "../../src/domain/IdGenerator.js"
import { v7 } from "../../src/domain/Uuid.js"

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const millisArb = fc.integer({ min: 0, max: 2 ** 48 - 1 })
const bytesArb = fc.uint8Array({ minLength: 10, maxLength: 10 })

describe("Uuid.v7", () => {
  it("lays out time, version and variant as RFC 9562 says", () => {
    const id = v7(0x0123_4567_89ab, new Uint8Array(10).fill(0xff))
    assert.strictEqual(id, "01234567-89ab-7fff-bfff-ffffffffffff")
    const zero = v7(0, new Uint8Array(10))
    assert.strictEqual(zero, "00000000-0000-7000-8000-000000000000")
  })

  it.prop(
    "has the version nibble 7, the variant bits 10 and the time in the first 48 bits",
    [millisArb, bytesArb],
    ([ms, bytes]) => {
      const id = v7(ms, bytes)
      assert.match(id, UUID)
      assert.strictEqual(id[14], "7")
      assert.include("89ab", id[19]!)
      assert.strictEqual(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), ms)
      // The random bytes survive outside the version and variant bits.
      const hex = id.replaceAll("-", "")
      assert.strictEqual(parseInt(hex.slice(13, 16), 16), ((bytes[0]! & 0x0f) << 8) | bytes[1]!)
      assert.strictEqual(parseInt(hex.slice(20, 32), 16), parseInt(Buffer.from(bytes.slice(4)).toString("hex"), 16))
      assert.isTrue(Schema.is(EventId)(id))
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "ids made in a later millisecond sort after earlier ones, whatever the random bits",
    [millisArb, millisArb, bytesArb, bytesArb],
    ([a, b, ra, rb]) => {
      fc.pre(a !== b)
      const [early, late] = a < b ? [v7(a, ra), v7(b, rb)] : [v7(b, rb), v7(a, ra)]
      assert.isTrue(early < late, `${early} < ${late}`)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("clamps negative and fractional times", () => {
    assert.strictEqual(v7(-5, new Uint8Array(10)).slice(0, 13), "00000000-0000")
    assert.strictEqual(v7(1.9, new Uint8Array(10)).slice(0, 13), "00000000-0001")
  })
})

describe("IdGenerator", () => {
  it.effect("layerRandom is reproducible under a seeded Random and takes time from the Clock", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(1_700_000_000_123)
      const three = Effect.gen(function* () {
        const ids = yield* IdGenerator.IdGenerator
        return [yield* ids.next, yield* ids.next, yield* ids.next]
      }).pipe(Effect.provide(IdGenerator.layerRandom))
      const a = yield* Effect.withRandom(three, Random.make("seed"))
      const b = yield* Effect.withRandom(three, Random.make("seed"))
      const c = yield* Effect.withRandom(three, Random.make("other"))
      assert.deepStrictEqual(a, b)
      assert.notDeepEqual(a, c)
      assert.strictEqual(new Set(a).size, 3)
      for (const id of a) {
        assert.match(id, UUID)
        assert.strictEqual(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), 1_700_000_000_123)
      }
    })
  )

  it.effect("layer (production) makes distinct v7 ids at the Clock's time", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(1_800_000_000_000)
      const ids = yield* IdGenerator.IdGenerator
      const made = yield* Effect.replicateEffect(ids.next, 50)
      assert.strictEqual(new Set(made).size, 50)
      for (const id of made) {
        assert.strictEqual(id[14], "7")
        assert.strictEqual(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), 1_800_000_000_000)
      }
    }).pipe(Effect.provide(IdGenerator.layer))
  )
})
