import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc, Schema } from "effect"
import * as Hlc from "../../src/domain/Hlc.js"

const clientIdArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/)
const hlcArb = fc.record({
  wall: fc.integer({ min: 0, max: 10 ** 15 - 1 }),
  counter: fc.integer({ min: 0, max: 999_999 }),
  clientId: clientIdArb
})
// Walls and counters from a tiny space, so equal walls/counters (the interesting cases) are common.
const nearHlcArb = fc.record({
  wall: fc.integer({ min: 0, max: 3 }),
  counter: fc.integer({ min: 0, max: 3 }),
  clientId: fc.constantFrom("a", "a-b", "a_b", "B", "b", "0")
})

const compareTuple = (x: Hlc.Hlc, y: Hlc.Hlc): number =>
  x.wall !== y.wall
    ? Math.sign(x.wall - y.wall)
    : x.counter !== y.counter
      ? Math.sign(x.counter - y.counter)
      : x.clientId < y.clientId
        ? -1
        : x.clientId > y.clientId
          ? 1
          : 0
const compareText = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0)
/** (wall, counter) order of two states, ignoring the client id. */
const after = (x: Hlc.HlcState, y: Hlc.HlcState): boolean =>
  x.wall > y.wall || (x.wall === y.wall && x.counter > y.counter)
const stateOf = (stamp: string): Hlc.HlcState => {
  const h = Hlc.decode(stamp)
  assert.isDefined(h)
  return Hlc.fromStamp(h!)
}

describe("Hlc encoding", () => {
  it("encodes with fixed widths", () => {
    assert.strictEqual(Hlc.encode({ wall: 42, counter: 7, clientId: "c1" }), "000000000000042:000007:c1")
  })

  it.prop("decode(encode(h)) round trips; the client id starts at CLIENT_OFFSET", [hlcArb], ([h]) => {
    assert.deepStrictEqual(Hlc.decode(Hlc.encode(h)), h)
    assert.strictEqual(Hlc.encode(h).slice(Hlc.CLIENT_OFFSET), h.clientId)
  })

  it.prop(
    "lexical order of stamps equals (wall, counter, clientId) order",
    [fc.oneof(hlcArb, nearHlcArb), fc.oneof(hlcArb, nearHlcArb)],
    ([x, y]) => {
      assert.strictEqual(compareText(Hlc.encode(x), Hlc.encode(y)), compareTuple(x, y))
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it("orders a client id that is a prefix of another before it", () => {
    const a = Hlc.encode({ wall: 1, counter: 1, clientId: "a" })
    const ab = Hlc.encode({ wall: 1, counter: 1, clientId: "a-b" })
    assert.isTrue(a < ab)
  })

  it("decode refuses malformed stamps", () => {
    for (const s of [
      "",
      "42:7:c1",
      "000000000000042:000007:",
      "000000000000042:000007:bad client",
      "000000000000042:0000007:c1",
      "0000000000000042:000007:c1",
      "00000000000004x:000007:c1",
      `000000000000042:000007:${"c".repeat(65)}`
    ]) {
      assert.isUndefined(Hlc.decode(s), s)
      assert.isTrue(Schema.decodeUnknownEither(Hlc.Stamp)(s)._tag === "Left", s)
    }
    assert.isDefined(Hlc.decode(`000000000000042:000007:${"c".repeat(64)}`))
  })

  it("ClientId accepts 1-64 characters of [A-Za-z0-9_-] only", () => {
    const ok = (s: string) => Schema.decodeUnknownEither(Hlc.ClientId)(s)._tag === "Right"
    assert.isTrue(ok("abc-DEF_123"))
    assert.isTrue(ok("x".repeat(64)))
    assert.isFalse(ok(""))
    assert.isFalse(ok("x".repeat(65)))
    assert.isFalse(ok("a b"))
    assert.isFalse(ok("a:b"))
    assert.isFalse(ok("é"))
  })
})

describe("Hlc.send", () => {
  it("takes the wall clock when it is ahead, and counts within one millisecond", () => {
    const [s1, st1] = Hlc.send(Hlc.initial, 1000, "c")
    assert.strictEqual(s1, Hlc.encode({ wall: 1000, counter: 0, clientId: "c" }))
    const [s2, st2] = Hlc.send(st1, 1000, "c")
    assert.strictEqual(s2, Hlc.encode({ wall: 1000, counter: 1, clientId: "c" }))
    const [s3] = Hlc.send(st2, 1001, "c")
    assert.strictEqual(s3, Hlc.encode({ wall: 1001, counter: 0, clientId: "c" }))
  })

  it("stays strictly increasing when the wall clock goes backwards", () => {
    const [s1, st1] = Hlc.send(Hlc.initial, 5000, "c")
    const [s2, st2] = Hlc.send(st1, 10, "c")
    const [s3] = Hlc.send(st2, 4999, "c")
    assert.isTrue(s1 < s2 && s2 < s3)
    assert.deepStrictEqual(Hlc.decode(s3), { wall: 5000, counter: 2, clientId: "c" })
  })

  it.prop(
    "every stamp is greater than every stamp issued or received before, whatever the wall clock does",
    [
      fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant("send" as const), now: fc.integer({ min: 0, max: 50 }) }),
          fc.record({ kind: fc.constant("receive" as const), now: fc.integer({ min: 0, max: 50 }), remote: nearHlcArb })
        ),
        { maxLength: 60 }
      )
    ],
    ([steps]) => {
      let state = Hlc.initial
      let highest: Hlc.HlcState | undefined
      let last = ""
      for (const step of steps) {
        if (step.kind === "send") {
          const [s, next] = Hlc.send(state, step.now, "me")
          const issued = stateOf(s)
          if (highest !== undefined) assert.isTrue(after(issued, highest), `${s} not after ${JSON.stringify(highest)}`)
          assert.isTrue(s > last)
          assert.isTrue(issued.wall >= step.now)
          last = s
          highest = issued
          state = next
        } else {
          const remote = { ...step.remote, wall: step.remote.wall * 10 }
          state = Hlc.receive(state, remote, step.now)
          assert.isTrue(after(state, remote))
          if (highest === undefined || after(remote, highest)) highest = Hlc.fromStamp(remote)
        }
      }
    },
    { fastCheck: { numRuns: 300 } }
  )
})

describe("Hlc.receive", () => {
  it("advances past a remote stamp ahead of both clocks", () => {
    const state = Hlc.receive({ wall: 100, counter: 3 }, { wall: 200, counter: 5, clientId: "r" }, 150)
    assert.deepStrictEqual(state, { wall: 200, counter: 6 })
    const [s] = Hlc.send(state, 150, "me")
    assert.isTrue(s > Hlc.encode({ wall: 200, counter: 5, clientId: "zzzz" }))
  })

  it("takes the larger counter plus one when all walls agree", () => {
    assert.deepStrictEqual(Hlc.receive({ wall: 7, counter: 9 }, { wall: 7, counter: 4, clientId: "r" }, 7), {
      wall: 7,
      counter: 10
    })
    assert.deepStrictEqual(Hlc.receive({ wall: 7, counter: 2 }, { wall: 7, counter: 4, clientId: "r" }, 3), {
      wall: 7,
      counter: 5
    })
  })

  it("keeps counting locally when the remote is behind", () => {
    assert.deepStrictEqual(Hlc.receive({ wall: 7, counter: 2 }, { wall: 5, counter: 99, clientId: "r" }, 6), {
      wall: 7,
      counter: 3
    })
  })

  it("resets the counter when the wall clock is ahead of both", () => {
    assert.deepStrictEqual(Hlc.receive({ wall: 7, counter: 2 }, { wall: 5, counter: 99, clientId: "r" }, 9), {
      wall: 9,
      counter: 0
    })
  })
})

describe("Hlc counter overflow", () => {
  it("send moves the wall forward by one millisecond instead of overflowing", () => {
    const [s, next] = Hlc.send({ wall: 500, counter: 999_999 }, 500, "c")
    assert.strictEqual(s, "000000000000501:000000:c")
    assert.deepStrictEqual(next, { wall: 501, counter: 0 })
    assert.isTrue(s > Hlc.encode({ wall: 500, counter: 999_999, clientId: "zzzz" }))
    // The clock then keeps counting in the borrowed millisecond even though the wall clock is still behind it.
    const [s2] = Hlc.send(next, 500, "c")
    assert.strictEqual(s2, "000000000000501:000001:c")
  })

  it("receive of a remote at the last counter also moves the wall", () => {
    assert.deepStrictEqual(Hlc.receive({ wall: 500, counter: 1 }, { wall: 500, counter: 999_999, clientId: "r" }, 0), {
      wall: 501,
      counter: 0
    })
  })
})

describe("Hlc drift", () => {
  const now = 1_000_000_000
  const at = (wall: number): Hlc.Hlc => ({ wall, counter: 0, clientId: "r" })

  it("measures how far a stamp is ahead of the wall clock", () => {
    assert.strictEqual(Hlc.driftAhead(at(now + 1234), now), 1234)
    assert.strictEqual(Hlc.driftAhead(at(now - 1234), now), 0)
  })

  it("refuses only stamps further than maxDrift ahead (default 5 minutes)", () => {
    assert.strictEqual(Hlc.DEFAULT_MAX_DRIFT_MS, 300_000)
    assert.isFalse(Hlc.isTooFarAhead(at(now + 300_000), now))
    assert.isTrue(Hlc.isTooFarAhead(at(now + 300_001), now))
    assert.isFalse(Hlc.isTooFarAhead(at(0), now))
    assert.isFalse(Hlc.isTooFarAhead(at(now + 10), now, 10))
    assert.isTrue(Hlc.isTooFarAhead(at(now + 11), now, 10))
  })
})
