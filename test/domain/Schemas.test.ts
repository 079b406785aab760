import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc, Option, Schema } from "effect"
import * as Events from "../../src/domain/Events.js"
import * as Hlc from "../../src/domain/Hlc.js"
import * as Json from "../../src/domain/Json.js"
import * as Memory from "../../src/domain/Memory.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"

const accepts =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (u: unknown): boolean =>
    Either.isRight(Schema.decodeUnknownEither(schema)(u))
const errorOf = <A, I>(schema: Schema.Schema<A, I>, u: unknown): string => {
  const r = Schema.decodeUnknownEither(schema)(u)
  assert.isTrue(Either.isLeft(r), `expected ${JSON.stringify(u)?.slice(0, 80)} to be rejected`)
  return Either.isLeft(r) ? Events.formatError(r.left) : ""
}

const memory = {
  id: "mem-1",
  content: "hello",
  category: "general",
  tags: ["a"],
  keywords: [],
  importance: 0.5,
  sensitive: false,
  createdAt: 1,
  updatedAt: 2
}
const envelope = (over: Partial<Events.Envelope> = {}): Events.Envelope => ({
  id: "01890a5d-ac96-774b-bcce-b302099a8057",
  type: "memory.created",
  version: 1,
  payload: memory,
  hlc: Hlc.encode({ wall: 1000, counter: 0, clientId: "client-1" }),
  clientId: "client-1",
  ...over
})

describe("Memory.Content", () => {
  const ok = accepts(Memory.Content)

  it("rejects empty and whitespace-only content", () => {
    for (const s of ["", " ", "   ", "\t\n", "\u00a0", "\u2003\n"]) assert.isFalse(ok(s), JSON.stringify(s))
    assert.include(errorOf(Memory.Content, "  "), "content must not be empty")
    assert.isTrue(ok(" x "))
  })

  it("bounds content in UTF-8 bytes, not in characters", () => {
    const max = Memory.MAX_CONTENT_BYTES
    assert.strictEqual(max, 65_536)
    assert.isTrue(ok("a".repeat(max)))
    assert.isFalse(ok("a".repeat(max + 1)))
    assert.include(errorOf(Memory.Content, "a".repeat(max + 1)), `at most ${max} bytes`)
    // 2-byte characters: 32,768 of them are exactly 64 KiB although .length is only half of that.
    assert.isTrue(ok("é".repeat(max / 2)))
    assert.isFalse(ok("é".repeat(max / 2) + "a"))
    // 3-byte characters: 21,845 × 3 = 65,535 bytes; one more ASCII byte fits, a 2-byte character does not.
    const euros = "€".repeat(21_845)
    assert.isTrue(ok(euros + "a"))
    assert.isFalse(ok(euros + "é"))
    // 4-byte characters (surrogate pairs): 16,384 fit exactly.
    assert.isTrue(ok("😀".repeat(max / 4)))
    assert.isFalse(ok("😀".repeat(max / 4) + "a"))
  })

  it.prop(
    "utf8Bytes agrees with Buffer.byteLength and fitsBytes with the exact size",
    [fc.string({ unit: "binary", maxLength: 40 }), fc.integer({ min: 0, max: 200 })],
    ([s, max]) => {
      assert.strictEqual(Memory.utf8Bytes(s), Buffer.byteLength(s, "utf8"))
      assert.strictEqual(Memory.fitsBytes(s, max), Buffer.byteLength(s, "utf8") <= max)
    },
    { fastCheck: { numRuns: 300 } }
  )
})

describe("unpaired surrogates", () => {
  // SQLite stores TEXT as UTF-8 and replaces an unpaired surrogate with U+FFFD: text with one would not read back
  // as written, and ids "x\uD800" and "x\uDC00" would become the same row. The schemas refuse them instead.
  it("are refused in content, category and memory ids; pairs (astral characters) are fine", () => {
    for (const lone of ["\uD800", "a\uDC00b", "\uDFFF", "😀".slice(0, 1), "x" + "😀".slice(1)]) {
      assert.isFalse(Memory.isWellFormed(lone), JSON.stringify(lone))
      assert.include(errorOf(Memory.Content, `ok ${lone}`), "unpaired surrogates")
      assert.include(errorOf(Memory.Category, lone), "unpaired surrogates")
      assert.include(errorOf(Memory.MemoryId, lone), "unpaired surrogates")
    }
    for (const fine of ["😀", "a😀b", "中文", "\uFFFD", "\u0000"]) {
      assert.isTrue(Memory.isWellFormed(fine))
      assert.isTrue(accepts(Memory.Content)(fine))
      assert.isTrue(accepts(Memory.MemoryId)(fine))
    }
  })

  it.prop(
    "isWellFormed agrees with a UTF-8 round trip",
    [fc.string16bits({ maxLength: 8 })],
    ([s]) => {
      assert.strictEqual(Memory.isWellFormed(s), Buffer.from(s, "utf8").toString("utf8") === s)
    },
    { fastCheck: { numRuns: 500 } }
  )
})

describe("Memory.Importance", () => {
  const ok = accepts(Memory.Importance)

  it("accepts [0, 1] and rejects everything else", () => {
    for (const n of [0, 1, 0.5, Number.MIN_VALUE, 1 - Number.EPSILON]) assert.isTrue(ok(n), String(n))
    for (const n of [-Number.MIN_VALUE, -0.001, 1.0000001, 2, -1, NaN, Infinity, -Infinity])
      assert.isFalse(ok(n), String(n))
    for (const u of ["0.5", null, undefined, true]) assert.isFalse(ok(u), String(u))
    assert.include(errorOf(Memory.Importance, NaN), "importance must be a number between 0 and 1")
  })
})

describe("Memory.Patch and CreateInput", () => {
  it("rejects an empty patch and accepts any single field", () => {
    assert.include(errorOf(Memory.Patch, {}), "an update must change at least one field")
    assert.isTrue(accepts(Memory.Patch)({ sensitive: false }))
    assert.isTrue(accepts(Memory.Patch)({ category: "" }))
    assert.isFalse(accepts(Memory.Patch)({ content: "" }))
    assert.isFalse(accepts(Memory.Patch)({ importance: 2 }))
    assert.isFalse(accepts(Memory.Patch)({ tags: [""] }))
  })

  it.prop(
    "the arbitraries make valid patches, and inputs that writers may give unless a label is blank",
    [Arbitraries.patch, Arbitraries.createInput],
    ([p, c]) => {
      assert.isTrue(accepts(Memory.Patch)(p))
      // Stored events may hold a blank label (written before InputLabels); a writer may not give one.
      const blank = [...(c.tags ?? []), ...(c.keywords ?? [])].some((l) => l.trim().length === 0)
      assert.strictEqual(accepts(Memory.CreateInput)(c), !blank)
    }
  )

  it("CreateInput requires content and fills defaults", () => {
    assert.isFalse(accepts(Memory.CreateInput)({}))
    assert.isFalse(accepts(Memory.CreateInput)({ content: "x", category: "c".repeat(257) }))
    assert.deepStrictEqual(Memory.withDefaults(Schema.decodeSync(Memory.CreateInput)({ content: "x" })), {
      content: "x",
      category: "general",
      tags: [],
      keywords: [],
      importance: 0.5,
      sensitive: false
    })
  })

  it("CreateInput and PatchInput drop duplicate labels (first kept) and refuse empty or blank ones", () => {
    const create = Schema.decodeSync(Memory.CreateInput)
    const patch = Schema.decodeSync(Memory.PatchInput)
    assert.deepStrictEqual(create({ content: "x", tags: ["b", "a", "b"], keywords: ["k", "k"] }), {
      content: "x",
      tags: ["b", "a"],
      keywords: ["k"]
    })
    assert.deepStrictEqual(patch({ tags: ["b", "b"], keywords: ["k", "j", "k"] }), {
      tags: ["b"],
      keywords: ["k", "j"]
    })
    for (const bad of ["", " ", "\t\n", "\u3000"]) {
      for (const field of ["tags", "keywords"] as const) {
        const message = `${field}.1: tags and keywords must not be empty or blank`
        assert.strictEqual(errorOf(Memory.CreateInput, { content: "x", [field]: ["ok", bad] }), message)
        assert.strictEqual(errorOf(Memory.PatchInput, { [field]: ["ok", bad] }), message)
      }
    }
    assert.include(errorOf(Memory.PatchInput, { tags: ["t".repeat(257)] }), "at most 256 characters")
    const labels = (n: number) => Array.from({ length: n }, (_, i) => `label-${i}`)
    for (const field of ["tags", "keywords"] as const) {
      assert.isTrue(accepts(Memory.CreateInput)({ content: "x", [field]: labels(Memory.MAX_LABELS) }))
      assert.include(
        errorOf(Memory.CreateInput, { content: "x", [field]: labels(Memory.MAX_LABELS + 1) }),
        `at most ${Memory.MAX_LABELS} tags`
      )
      assert.include(errorOf(Memory.PatchInput, { [field]: labels(Memory.MAX_LABELS + 1) }), "at most")
    }
    assert.include(errorOf(Memory.PatchInput, {}), "an update must change at least one field")
    // The stored v1 shapes keep accepting what they always did.
    assert.isTrue(accepts(Memory.Patch)({ tags: [" ", " "] }))
    assert.isTrue(accepts(Memory.Memory)({ ...memory, tags: [" "], keywords: ["k", "k"] }))
  })

  it("MemoryId is 1-128 characters; Label is non-empty", () => {
    assert.isFalse(accepts(Memory.MemoryId)(""))
    assert.isTrue(accepts(Memory.MemoryId)("m".repeat(128)))
    assert.isFalse(accepts(Memory.MemoryId)("m".repeat(129)))
    assert.isFalse(accepts(Memory.Label)(""))
    assert.isFalse(accepts(Memory.Label)("t".repeat(257)))
  })

  it("Timestamp is a non-negative integer", () => {
    const ok = accepts(Memory.Timestamp)
    assert.isTrue(ok(0))
    assert.isFalse(ok(-1))
    assert.isFalse(ok(1.5))
    assert.isFalse(ok(NaN))
  })
})

describe("Events.Envelope", () => {
  it("accepts a well-formed envelope", () => {
    assert.isTrue(Either.isRight(Events.decodeEnvelope(envelope())))
  })

  it("rejects an hlc whose client id differs from clientId", () => {
    const e = envelope({ hlc: Hlc.encode({ wall: 1000, counter: 0, clientId: "client-2" }) })
    const r = Events.decodeEnvelope(e)
    assert.isTrue(Either.isLeft(r))
    assert.include(Either.isLeft(r) ? r.left : "", "hlc must carry the event's clientId")
  })

  it("rejects malformed envelope fields", () => {
    for (const bad of [
      envelope({ id: "not-a-uuid" }),
      envelope({ id: "01890A5D-AC96-774B-BCCE-B302099A8057" }),
      envelope({ version: 0 }),
      envelope({ version: 1.5 }),
      envelope({ type: "" }),
      envelope({ hlc: "1000:0:client-1" }),
      envelope({ clientId: "bad id", hlc: "000000000001000:000000:bad id" })
    ]) {
      assert.isTrue(Either.isLeft(Events.decodeEnvelope(bad)), JSON.stringify(bad))
    }
    // `Schema.Unknown` lets an envelope without a payload through; classification is what refuses it.
    const { payload: _payload, ...noPayload } = envelope()
    assert.isTrue(Either.isRight(Events.decodeEnvelope(noPayload)))
    assert.strictEqual(Events.classify({ ...noPayload, payload: undefined })._tag, "Invalid")
  })
})

describe("Events.classify", () => {
  it("decodes a known (type, version)", () => {
    const c = Events.classify(envelope())
    assert.strictEqual(c._tag, "Known")
    if (c._tag === "Known") assert.deepStrictEqual(c.event.payload, memory)
  })

  it("keeps an unknown type or version as Unknown (not an error)", () => {
    const unknownType = envelope({ type: "memory.archived", payload: { anything: [1, 2] } })
    const futureVersion = envelope({ version: 2, payload: { id: "mem-1", shape: "new" } })
    for (const e of [unknownType, futureVersion]) {
      assert.strictEqual(Events.classify(e)._tag, "Unknown")
      assert.isTrue(Either.isRight(Events.decodeEnvelope(e)))
      assert.deepStrictEqual(Events.decodeKnown(e), Either.right(Option.none()))
    }
    assert.isFalse(Events.isKnown("memory.archived", 1))
    assert.isFalse(Events.isKnown("memory.created", 2))
    assert.isTrue(Events.isKnown("memory.deleted", 1))
  })

  it("classifies a known type with a bad payload as Invalid, with a message naming the field", () => {
    const cases: Array<[Events.Envelope, string]> = [
      [envelope({ payload: { ...memory, content: "" } }), "content"],
      [envelope({ payload: { ...memory, importance: 2 } }), "importance"],
      [envelope({ type: "memory.updated", payload: { id: "mem-1", patch: {}, updatedAt: 1 } }), "patch"],
      [envelope({ type: "memory.deleted", payload: { id: "mem-1" } }), "deletedAt"],
      [envelope({ type: "memory.deleted", payload: "mem-1" }), ""]
    ]
    for (const [e, field] of cases) {
      const c = Events.classify(e)
      assert.strictEqual(c._tag, "Invalid", JSON.stringify(e.payload))
      if (c._tag === "Invalid") {
        assert.include(c.message, field)
        assert.isTrue(c.message.length > 0)
      }
      assert.isTrue(Either.isLeft(Events.decodeKnown(e)))
    }
  })

  it.prop(
    "every generated event classifies as Known with the same payload; unknown ones as Unknown",
    [Arbitraries.memoryEvent(), Arbitraries.unknownEnvelope()],
    ([known, unknown]) => {
      assert.isTrue(Either.isRight(Events.decodeEnvelope(known)))
      const c = Events.classify(known)
      assert.strictEqual(c._tag, "Known")
      if (c._tag === "Known") assert.deepStrictEqual(c.event, known)
      assert.isTrue(Either.isRight(Events.decodeEnvelope(unknown)))
      assert.strictEqual(Events.classify(unknown)._tag, "Unknown")
      // JSON-safe: what the log stores is what comes back.
      assert.deepStrictEqual(JSON.parse(JSON.stringify(known)), known)
      assert.deepStrictEqual(JSON.parse(JSON.stringify(unknown)), unknown)
    },
    { fastCheck: { numRuns: 300 } }
  )
})

describe("Events helpers", () => {
  it("memoryIdOf reads a string id from the payload only", () => {
    assert.strictEqual(Events.memoryIdOf({ payload: { id: "m" } }), "m")
    assert.isUndefined(Events.memoryIdOf({ payload: { id: 5 } }))
    assert.isUndefined(Events.memoryIdOf({ payload: null }))
    assert.isUndefined(Events.memoryIdOf({ payload: "m" }))
  })

  it.prop(
    "orderKey sorts like the tuple (hlc, id)",
    [Arbitraries.envelopeBase(), Arbitraries.envelopeBase()],
    ([a, b]) => {
      const tuple = a.hlc !== b.hlc ? (a.hlc < b.hlc ? -1 : 1) : a.id === b.id ? 0 : a.id < b.id ? -1 : 1
      const ka = Events.orderKey(a)
      const kb = Events.orderKey(b)
      assert.strictEqual(ka === kb ? 0 : ka < kb ? -1 : 1, tuple)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("canonicalJson ignores key order but not values", () => {
    assert.strictEqual(
      Json.canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } }),
      Json.canonicalJson({ a: { c: null, d: [1, { y: 2, z: 1 }] }, b: 1 })
    )
    assert.notStrictEqual(Json.canonicalJson({ a: [1, 2] }), Json.canonicalJson({ a: [2, 1] }))
  })
})
