/**
 * Canonical JSON, plain JSON and the nesting depth limit: byte-for-byte the texts the recursive definitions wrote (the
 * server's stored body hashes depend on them), at any depth, and the decoders' answers on deeply nested values.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import * as Events from "../../src/domain/Events.js"
import * as Hlc from "../../src/domain/Hlc.js"
import * as Json from "../../src/domain/Json.js"
import * as Memory from "../../src/domain/Memory.js"

/** The original definition, kept as the reference: recursive, so only for shallow values. */
const sortKeys = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {}
    // An object with no declared keys: the cast only lets the reference index it, as the original did.
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k])
    return out
  }
  return v
}
const reference = (v: unknown): string => JSON.stringify(sortKeys(v))

/** `n` arrays nested in one another, built without recursion. */
const deepArray = (n: number): unknown => {
  let v: unknown = []
  for (let i = 1; i < n; i++) v = [v]
  return v
}
const deepObject = (n: number, leaf: unknown = 1): unknown => {
  let v: unknown = leaf
  for (let i = 0; i < n; i++) v = { a: v, "1": true }
  return v
}

// Keys where the engine's own ordering rules show: integer-like keys, `__proto__`, the empty key, non-ASCII.
const trickyKey = fc.constantFrom("0", "1", "2", "10", "01", "-1", "1.5", "4294967294", "4294967295", "__proto__", "")
const key = fc.oneof(fc.string(), trickyKey, fc.constantFrom("é", "😀", "Z", "a", "b"))
const tricky = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -0, 1e21, 1.5, -7, Number.NaN, Number.POSITIVE_INFINITY, undefined),
    fc.string(),
    fc.array(tie("value")),
    fc.dictionary(key, tie("value")),
    // JSON.parse makes `__proto__` an own key; a literal would set the prototype instead.
    tie("value").map((v) => JSON.parse(`{"__proto__": ${JSON.stringify(v) ?? "null"}, "k": 1}`) as unknown)
  )
})).value

describe("Json.canonicalJson", () => {
  it.prop("writes exactly what the recursive definition wrote, on JSON values", [fc.jsonValue()], ([v]) => {
    assert.strictEqual(Json.canonicalJson(v), reference(v))
  })

  it.prop(
    "and on values with integer-like, __proto__ and odd keys, undefined and non-finite numbers",
    [tricky],
    ([v]) => {
      assert.strictEqual(Json.canonicalJson(v), reference(v) ?? "null")
    }
  )

  it("keeps the engine's key order: integer-like keys first in numeric order, then the rest sorted", () => {
    const v = JSON.parse('{"b":1,"10":2,"a":3,"2":4,"01":5,"__proto__":6,"4294967295":7}') as unknown
    assert.strictEqual(Json.canonicalJson(v), '{"2":4,"10":2,"01":5,"4294967295":7,"a":3,"b":1}')
    assert.strictEqual(Json.canonicalJson(v), reference(v))
  })

  it("agrees with the definition on objects that are not plain and on values at the depth limit", () => {
    class Point {
      constructor(
        readonly y: number,
        readonly x: number
      ) {}
    }
    const bare = Object.assign(Object.create(null) as object, { b: 1, a: [2] })
    for (const v of [
      { when: new Date(0), n: new Number(1), s: new String("ab"), p: new Point(1, 2), bare, f: () => 1 },
      [new Date(0), new Point(3, 4), bare, undefined, () => 1],
      deepArray(Json.MAX_DEPTH),
      deepArray(Json.MAX_DEPTH + 1),
      deepObject(Json.MAX_DEPTH - 1),
      deepObject(Json.MAX_DEPTH)
    ]) {
      assert.strictEqual(Json.canonicalJson(v), reference(v))
    }
    assert.throws(() => Json.canonicalJson({ a: 1n }))
    // An own toJSON function is a function value like any other: left out, never called (as the stack writer did).
    assert.strictEqual(Json.canonicalJson({ b: 1, toJSON: () => "X", a: [() => 1] }), '{"a":[null],"b":1}')
  })

  it("writes values nested far beyond what recursion survives", () => {
    const n = 200_000
    assert.strictEqual(Json.canonicalJson(deepArray(n)), "[".repeat(n) + "]".repeat(n))
    const text = Json.canonicalJson(deepObject(n))
    assert.strictEqual(text.length, '{"1":true,"a":'.length * n + 1 + n)
    assert.isTrue(text.startsWith('{"1":true,"a":{"1":true,"a":'))
    assert.isTrue(text.endsWith('"a":1}' + "}".repeat(n - 1)))
    assert.throws(() => reference(deepArray(n)), RangeError)
  })
})

describe("Json.toJson", () => {
  it.prop("equals JSON.stringify on JSON values", [fc.jsonValue()], ([v]) => {
    assert.strictEqual(Json.toJson(v), JSON.stringify(v))
  })

  it("equals JSON.stringify past the depth where the native path stops", () => {
    for (const v of [deepArray(Json.MAX_DEPTH + 1), deepObject(Json.MAX_DEPTH + 1, [1, undefined, "x"])]) {
      assert.strictEqual(Json.toJson(v), JSON.stringify(v))
    }
    const n = 200_000
    assert.strictEqual(Json.toJson(deepArray(n)), "[".repeat(n) + "]".repeat(n))
    assert.deepStrictEqual(JSON.parse(Json.toJson(deepObject(3, { z: 1, y: [2] }))), deepObject(3, { z: 1, y: [2] }))
  })
})

describe("Json.withinDepth", () => {
  it("counts nested arrays and objects; scalars have depth 0", () => {
    assert.isTrue(Json.withinDepth("x", 0))
    assert.isTrue(Json.withinDepth([], 1))
    assert.isFalse(Json.withinDepth([], 0))
    assert.isTrue(Json.withinDepth(deepArray(64), 64))
    assert.isFalse(Json.withinDepth(deepArray(65), 64))
    assert.isTrue(Json.withinDepth(deepObject(64), 64))
    assert.isFalse(Json.withinDepth(deepObject(65), 64))
    // The deep branch is not the first one.
    assert.isFalse(Json.withinDepth({ a: 1, b: [[]], c: { d: deepArray(70) } }, 64))
    assert.isFalse(Json.withinDepth(deepArray(1_000_000)))
  })

  it("terminates on a cycle (too deep), however wide", () => {
    const o: Record<string, unknown> = {}
    for (let i = 0; i < 50; i++) o[`k${i}`] = o
    assert.isFalse(Json.withinDepth(o, 64))
  })
})

describe("decoding deeply nested values", () => {
  const stamp = Hlc.encode({ wall: 1000, counter: 0, clientId: "c-1" })
  const envelope = (payload: unknown, type = "memory.created"): Events.Envelope => ({
    id: "01890a5d-ac96-774b-bcce-b302099a8057",
    type,
    version: 1,
    payload,
    hlc: stamp,
    clientId: "c-1"
  })
  const deep = deepArray(100_000)

  it("classify calls a known event with a deep payload Invalid, naming the limit", () => {
    for (const e of [
      envelope(deep),
      envelope({ id: "m", content: "x", tags: deep }),
      envelope({ id: "m", patch: { tags: deep }, updatedAt: 1 }, "memory.updated")
    ]) {
      const c = Events.classify(e)
      assert.strictEqual(c._tag, "Invalid")
      assert.match(c._tag === "Invalid" ? c.message : "", /nesting depth limit is 64/)
    }
    // Unknown kinds are not looked into.
    assert.strictEqual(Events.classify(envelope(deep, "memory.pinned"))._tag, "Unknown")
  })

  it("decodeEnvelope answers Left for a value that is only nesting, or deep where a string belongs", () => {
    for (const u of [deep, { ...envelope(1), id: deep }, { ...envelope(1), hlc: deep }]) {
      const r = Events.decodeEnvelope(u)
      assert.isTrue(Either.isLeft(r))
    }
    // The envelope does not look into the payload.
    assert.isTrue(Either.isRight(Events.decodeEnvelope(envelope(deep, "memory.pinned"))))
  })

  it("formatError describes any failed decode, however deep the offending value", () => {
    const r = Schema.decodeUnknownEither(Memory.CreateInput)({ content: deep })
    assert.isTrue(Either.isLeft(r))
    if (Either.isLeft(r)) assert.match(Events.formatError(r.left), /nesting depth limit is 64/)
    // A shallow failure keeps its precise message.
    const shallow = Schema.decodeUnknownEither(Memory.CreateInput)({ content: [1] })
    if (Either.isLeft(shallow)) assert.match(Events.formatError(shallow.left), /^content: Expected string/)
  })
})
