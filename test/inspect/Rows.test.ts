/**
 * The hand checks of Rows.ts must give the schemas' verdict: for every input, `classifyFast` equals `classify` and
 * `parseEnvelope` equals `decodeEnvelope` — on valid events, on unknown kinds, and on events with one field replaced
 * by an arbitrary (often invalid) value.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { classify, decodeEnvelope, type Envelope } from "../../src/domain/Events.js"
import * as Rows from "../../src/inspect/Rows.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"

const PAYLOAD_KEYS = [
  "id",
  "content",
  "category",
  "tags",
  "keywords",
  "importance",
  "sensitive",
  "createdAt",
  "updatedAt",
  "deletedAt",
  "patch",
  "patch.content",
  "patch.category",
  "patch.tags",
  "patch.keywords",
  "patch.importance",
  "patch.sensitive",
  "patch.extra"
] as const

const ENVELOPE_KEYS = ["id", "type", "version", "hlc", "clientId", "payload"] as const

/** Values that sit on the edges of the field schemas, plus arbitrary JSON and "remove the key". */
const oddValue = fc.oneof(
  { weight: 1, arbitrary: Arbitraries.jsonValue },
  {
    weight: 4,
    arbitrary: fc.constantFrom<unknown>(
      undefined,
      "",
      "   ",
      "a".repeat(129),
      "b".repeat(257),
      "x\uD800",
      "\uD83D\uDE00",
      -1,
      1.5,
      0.25,
      Number.MAX_SAFE_INTEGER + 2,
      2.5,
      true,
      null,
      [],
      [""],
      ["ok", "c".repeat(257)],
      {},
      { content: "" },
      "memory.created",
      "019a0000-0000-7000-8000-000000000000",
      "001735689600000:000000:a",
      "001735689600000:000000:z_9"
    )
  }
)

const clone = (e: Envelope): Record<string, unknown> => JSON.parse(JSON.stringify(e))

const set = (target: unknown, key: string, value: unknown) => {
  if (typeof target !== "object" || target === null) return
  if (value === undefined) Reflect.deleteProperty(target, key)
  else Reflect.set(target, key, value)
}

const sameClassification = (e: Envelope) => {
  const fast = Rows.classifyFast(e)
  const slow = classify(e)
  assert.deepStrictEqual(fast, slow)
}

describe("Rows", () => {
  it.prop("classifyFast equals classify on valid and unknown events", [Arbitraries.mixedEventSet()], ([set]) => {
    for (const e of set.all) sameClassification(e)
  })

  it.prop(
    "classifyFast equals classify with one payload field replaced",
    [Arbitraries.memoryEvent(), fc.nat(), oddValue],
    ([event, pick, value]) => {
      const e = clone(event)
      const payload = e.payload
      const patch = typeof payload === "object" && payload !== null ? Reflect.get(payload, "patch") : undefined
      // A field the event has (or one it might have), so most mutations hit a field its schema checks.
      const keys = [
        ...Object.keys(payload ?? {}).map((k) => [payload, k] as const),
        ...Object.keys(patch ?? {}).map((k) => [patch, k] as const),
        ...PAYLOAD_KEYS.map((k) => (k.startsWith("patch.") ? ([patch, k.slice(6)] as const) : ([payload, k] as const)))
      ]
      const [target, key] = keys[pick % keys.length]!
      set(target, key, value)
      const envelope = decodeEnvelope(e)
      if (Either.isRight(envelope)) sameClassification(envelope.right)
    },
    { fastCheck: { numRuns: 1_500 } }
  )

  it.prop(
    "parseEnvelope equals decodeEnvelope with one envelope field replaced",
    [Arbitraries.memoryEvent(), fc.constantFrom(...ENVELOPE_KEYS), oddValue],
    ([event, key, value]) => {
      const e = clone(event)
      set(e, key, value)
      const fast = Rows.parseEnvelope(e)
      const slow = decodeEnvelope(e)
      assert.deepStrictEqual(fast, slow)
    },
    { fastCheck: { numRuns: 1_000 } }
  )

  it("toEnvelope names the row of a corrupt payload", () => {
    const row: Rows.LogRow = {
      seq: 7,
      id: "019a0000-0000-7000-8000-000000000000",
      type: "memory.created",
      version: 1,
      memoryId: null,
      hlc: "001735689600000:000000:a",
      clientId: "a",
      payload: "{not json",
      excluded: false
    }
    assert.throws(() => Rows.toEnvelope(row), /corrupt event row 7/)
  })
})
