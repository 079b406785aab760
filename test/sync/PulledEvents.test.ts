import { assert, describe, it } from "@effect/vitest"
import { OpenApi } from "@effect/platform"
import { Either, FastCheck as fc, JSONSchema, ParseResult, Schema } from "effect"
import * as Events from "../../src/domain/Events.js"
import * as Hlc from "../../src/domain/Hlc.js"
import { PulledEvent, PulledEvents, PullResponse, SyncApi } from "../../src/sync/Protocol.js"

// `PulledEvents` checks a pull page by hand before falling back to `Schema.Array(PulledEvent)`. Its results must be
// exactly the array schema's: same verdict, same value (keys and key order included), same message.

const bySchema = Schema.decodeUnknownEither(Schema.Array(PulledEvent))
const byDeclared = Schema.decodeUnknownEither(PulledEvents)
const message = (e: ParseResult.ParseError) => Events.formatError(e)

/** Keys and values, in order: deepStrictEqual ignores key order, this does not. */
const shape = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(shape)
    : typeof v === "object" && v !== null
      ? Object.entries(v).map(([k, x]) => [k, shape(x)])
      : v

const same = (u: unknown) => {
  const a = byDeclared(u)
  const b = bySchema(u)
  assert.strictEqual(a._tag, b._tag, JSON.stringify(u))
  if (Either.isRight(a) && Either.isRight(b)) assert.deepStrictEqual(shape(a.right), shape(b.right), JSON.stringify(u))
  if (Either.isLeft(a) && Either.isLeft(b)) assert.strictEqual(message(a.left), message(b.left))
}

const clientId = "client-1"
const hlc = Hlc.encode({ wall: 1000, counter: 3, clientId })
const good = {
  seq: 7,
  id: "01890a5d-ac96-774b-bcce-b302099a8057",
  type: "memory.deleted",
  version: 1,
  payload: { id: "mem-1", deletedAt: 9 },
  hlc,
  clientId
}

const ODD: ReadonlyArray<unknown> = [
  undefined,
  null,
  "",
  "x",
  "\uD800",
  -1,
  -0,
  1.5,
  NaN,
  Infinity,
  Number.MAX_SAFE_INTEGER + 2,
  "7",
  true,
  [],
  {},
  "client-2",
  Hlc.encode({ wall: 1, counter: 0, clientId: "other" })
]

describe("PulledEvents (the pull page's events)", () => {
  it("agrees with Schema.Array(PulledEvent) on every single-field mutation of an event, at any position", () => {
    for (const key of [...Object.keys(good), "extra"]) {
      const { [key]: _, ...without } = good as Record<string, unknown>
      for (const variant of [without, ...ODD.map((odd) => ({ ...good, [key]: odd }))]) {
        same([variant])
        same([good, variant, good])
      }
    }
    for (const odd of ODD) same(odd)
    same([])
    same([good, [good], good])
    // An inherited `seq` is not the event's own: the Struct reports it missing.
    const { seq: _, ...noSeq } = good
    same([Object.assign(Object.create({ seq: 1 }) as object, noSeq)])
  })

  it("agrees with the schema on generated pages and on random values put in them", () => {
    // Built by hand: the schema's own arbitrary rarely meets the stamp-names-writer filter, and takes ~0.2 s a page.
    const event = fc
      .record({
        seq: fc.nat(),
        id: fc.uuid(),
        type: fc.constantFrom("memory.created", "memory.updated", "memory.deleted", "x.other"),
        version: fc.integer({ min: 1, max: 3 }),
        payload: fc.jsonValue({ maxDepth: 3 }),
        wall: fc.nat({ max: 2 ** 40 }),
        clientId: fc.constantFrom("client-1", "c_2", "C-3")
      })
      .map(({ wall, ...e }) => ({ ...e, hlc: Hlc.encode({ wall, counter: 0, clientId: e.clientId }) }))
    const page = fc.array(event, { maxLength: 8 })
    fc.assert(
      fc.property(page, fc.nat(), fc.string(), fc.anything(), (events, i, key, value) => {
        same(events)
        if (events.length === 0) return
        const at = i % events.length
        const copy = events.map((e) => ({ ...e }))
        ;(copy[at] as Record<string, unknown>)[key] = value
        same(copy)
        const keys = Object.keys(good)
        ;(copy[at] as Record<string, unknown>)[keys[i % keys.length]!] = value
        same(copy)
      }),
      { numRuns: 1_000 }
    )
  })

  it("follows the array schema under every parse option", () => {
    const extra = [{ ...good, extra: 1 }]
    const noPayload = (() => {
      const { payload: _, ...rest } = good
      return [rest]
    })()
    for (const options of [
      { onExcessProperty: "error" },
      { onExcessProperty: "preserve" },
      { propertyOrder: "original" },
      { exact: true },
      { errors: "all" }
    ] as const) {
      for (const u of [extra, noPayload, [good], [{ ...good, seq: -1 }]]) {
        const a = Schema.decodeUnknownEither(PulledEvents)(u, options)
        const b = Schema.decodeUnknownEither(Schema.Array(PulledEvent))(u, options)
        assert.strictEqual(a._tag, b._tag, JSON.stringify(options))
        if (Either.isRight(a) && Either.isRight(b)) assert.deepStrictEqual(shape(a.right), shape(b.right))
        if (Either.isLeft(a) && Either.isLeft(b)) assert.strictEqual(message(a.left), message(b.left))
      }
    }
    assert.strictEqual(Schema.is(PulledEvents)(noPayload), Schema.is(Schema.Array(PulledEvent))(noPayload))
  })

  it("describes the events in the OpenAPI document exactly as the array schema did", () => {
    const spec = OpenApi.fromApi(SyncApi)
    const content = spec.paths["/v1/pull"]?.get?.responses["200"]?.content?.["application/json"]
    const { $schema: _, ...expected } = JSONSchema.make(Schema.Array(PulledEvent))
    assert.deepStrictEqual(
      (content?.schema as unknown as { properties: { events: unknown } }).properties.events,
      expected
    )
  })

  it("is what a PullResponse decodes its events with, and encodes back to the same JSON", () => {
    const body = { events: [good, { ...good, seq: 8, extra: "dropped" }], head: 8, hasMore: false }
    const decoded = Schema.decodeUnknownSync(PullResponse)(body)
    assert.deepStrictEqual(decoded.events[1], { ...good, seq: 8 })
    assert.deepStrictEqual(Schema.encodeSync(PullResponse)(decoded), { ...body, events: [good, { ...good, seq: 8 }] })
    const bad = Schema.decodeUnknownEither(PullResponse)({ ...body, events: [{ ...good, seq: -1 }] })
    assert.isTrue(Either.isLeft(bad) && message(bad.left).startsWith("events.0.seq"), JSON.stringify(bad))
  })
})
