import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc, ParseResult, Schema } from "effect"
import * as Events from "../../src/domain/Events.js"
import * as Hlc from "../../src/domain/Hlc.js"

// `classify` and `decodeEnvelope` check the common case by hand before falling back to the schemas. Their results
// must be exactly the schemas' results: same verdict, same value (keys and key order included), same message.

const SCHEMAS: Record<string, (u: unknown) => Either.Either<Events.MemoryEvent, ParseResult.ParseError>> = {
  "memory.created": Schema.decodeUnknownEither(Events.MemoryCreated),
  "memory.updated": Schema.decodeUnknownEither(Events.MemoryUpdated),
  "memory.deleted": Schema.decodeUnknownEither(Events.MemoryDeleted)
}
const bySchema = (e: Events.Envelope): Events.Classified => {
  const decode = Events.isKnown(e.type, e.version) ? SCHEMAS[e.type] : undefined
  if (decode === undefined) return { _tag: "Unknown" }
  const r = decode(e)
  return Either.isRight(r)
    ? { _tag: "Known", event: r.right }
    : { _tag: "Invalid", message: Events.formatError(r.left) }
}
const envelopeBySchema = (u: unknown) =>
  Either.mapLeft(Schema.decodeUnknownEither(Events.Envelope)(u), Events.formatError)

/** Keys (with undefined-valued ones) and values, in order: deepStrictEqual ignores key order, this does not. */
const shape = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(shape)
    : typeof v === "object" && v !== null
      ? Object.entries(v).map(([k, x]) => [k, x === undefined ? "<undefined>" : shape(x)])
      : Number.isNaN(v)
        ? "<NaN>"
        : v

const same = (u: unknown) => {
  // classify's input is an envelope: compare it on whatever the envelope schema accepts (broken payloads included).
  const envelope = envelopeBySchema(u)
  if (Either.isRight(envelope)) {
    const e = u as Events.Envelope // the schema just accepted it; the original object, not the decoded copy
    assert.deepStrictEqual(shape(Events.classify(e)), shape(bySchema(e)), JSON.stringify(u))
  }
  assert.deepStrictEqual(shape(Events.decodeEnvelope(u)), shape(envelopeBySchema(u)), JSON.stringify(u))
}

const clientId = "client-1"
const hlc = Hlc.encode({ wall: 1000, counter: 3, clientId })
const base = { id: "01890a5d-ac96-774b-bcce-b302099a8057", version: 1, hlc, clientId }
const memory = {
  id: "mem-1",
  content: "hello world",
  category: "general",
  tags: ["a", "b"],
  keywords: [],
  importance: 0.5,
  sensitive: false,
  createdAt: 1,
  updatedAt: 2
}
const valid: ReadonlyArray<Record<string, unknown>> = [
  { ...base, type: "memory.created", payload: memory },
  { ...base, type: "memory.updated", payload: { id: "mem-1", patch: { content: "x", tags: ["t"] }, updatedAt: 5 } },
  {
    ...base,
    type: "memory.updated",
    payload: { id: "mem-1", patch: { importance: 1, sensitive: true }, updatedAt: 5 }
  },
  { ...base, type: "memory.updated", payload: { id: "mem-1", patch: { category: undefined }, updatedAt: 5 } },
  { ...base, type: "memory.deleted", payload: { id: "mem-1", deletedAt: 9 } },
  { ...base, type: "memory.renamed", payload: { anything: true } },
  { ...base, type: "memory.created", version: 2, payload: memory }
]

const ODD: ReadonlyArray<unknown> = [
  undefined,
  null,
  "",
  " ",
  "x",
  "a".repeat(129),
  "a".repeat(257),
  "é".repeat(40_000),
  "\uD800",
  "ok \uD83D\uDE00",
  0,
  -0,
  1,
  1.5,
  -1,
  2,
  NaN,
  Infinity,
  Number.MAX_SAFE_INTEGER + 2,
  true,
  [],
  ["a", 1],
  [""],
  {},
  { content: "y" },
  "client-2",
  Hlc.encode({ wall: 1, counter: 0, clientId: "other" }),
  "01890A5D-AC96-774B-BCCE-B302099A8057"
]

/** Every path of an object (nested through plain objects only). */
const paths = (v: unknown, prefix: ReadonlyArray<string> = []): Array<ReadonlyArray<string>> => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return []
  return Object.keys(v).flatMap((k) => [[...prefix, k], ...paths((v as Record<string, unknown>)[k], [...prefix, k])])
}
const setAt = (v: unknown, path: ReadonlyArray<string>, value: unknown, remove = false): unknown => {
  if (path.length === 0) return value
  const [head, ...rest] = path
  const copy: Record<string, unknown> = { ...(v as Record<string, unknown>) }
  if (rest.length === 0 && remove) delete copy[head!]
  else copy[head!] = setAt(copy[head!], rest, value, remove)
  return copy
}

describe("Events fast path", () => {
  it("agrees with the schemas on valid events and on every single-field mutation", () => {
    for (const e of valid) {
      same(e)
      same({ ...e, extra: 1 })
      for (const path of [...paths(e), ["payload", "patch", "content"], ["payload", "extra"]]) {
        same(setAt(e, path, undefined, true))
        for (const odd of ODD) same(setAt(e, path, odd))
      }
    }
    same(null)
    same([])
    same("memory.created")
  })

  it("agrees with the schemas on random values at random paths", () => {
    fc.assert(
      fc.property(fc.constantFrom(...valid), fc.nat(), fc.anything(), (e, i, value) => {
        const all = paths(e)
        same(setAt(e, all[i % all.length]!, value))
      }),
      { numRuns: 2_000 }
    )
  })
})
