/**
 * Events: the envelope every replica and the server store, and the typed payloads this build understands.
 *
 * Rules (DESIGN §2):
 * - A shipped payload schema never changes. A new version gets a new schema plus an upcaster to the latest shape,
 *   registered in `KNOWN` below, so old logs still replay.
 * - An event whose (type, version) this build does not know is kept, forwarded and skipped by the fold.
 * - The envelope's `hlc` must carry the envelope's `clientId`: a stamp names the replica that wrote it.
 */
import { Either, Option, ParseResult, Schema } from "effect"
import { ClientId, decode as decodeHlc, Stamp } from "./Hlc.js"
import { fitsBytes, isWellFormed, MAX_CONTENT_BYTES, Memory, MemoryId, Patch, Timestamp } from "./Memory.js"
import { depthProblem, MAX_DEPTH } from "./Json.js"

/** An event id: a UUID (new ones are UUIDv7, so they sort by creation time). */
export const EventId = Schema.String.pipe(
  Schema.pattern(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, {
    message: () => "event id must be a lowercase UUID"
  })
)

/** The event types of version 1. */
export const EVENT_TYPES = ["memory.created", "memory.updated", "memory.deleted"] as const
export type EventType = (typeof EVENT_TYPES)[number]

const jsonArbitrary = { arbitrary: () => (fc: typeof import("effect").FastCheck) => fc.jsonValue() }

/** The fields of the envelope (the wire formats extend them, e.g. with a server `seq`). */
export const envelopeFields = {
  id: EventId,
  // Stored as a TEXT column (UTF-8): an unpaired surrogate would come back as U+FFFD, another type than the one sent.
  type: Schema.String.pipe(
    Schema.minLength(1),
    Schema.maxLength(64),
    Schema.filter((s) => isWellFormed(s) || "type must not contain unpaired surrogates")
  ),
  version: Schema.Number.pipe(Schema.int(), Schema.greaterThanOrEqualTo(1)),
  payload: Schema.Unknown.annotations(jsonArbitrary),
  hlc: Stamp,
  clientId: ClientId
}

/** The envelope rule across fields: a stamp names the replica that wrote it. */
export const stampNamesWriter = (e: { readonly hlc: string; readonly clientId: string }) =>
  decodeHlc(e.hlc)?.clientId === e.clientId || "hlc must carry the event's clientId"

/** The envelope: everything a store or the server needs without understanding the payload. */
export const Envelope = Schema.Struct(envelopeFields).pipe(Schema.filter(stampNamesWriter))
export type Envelope = typeof Envelope.Type

/** `memory.created` v1: every field of the memory. */
export const CreatedPayload = Memory
/** `memory.updated` v1: a non-empty patch and the writer's wall time. */
export const UpdatedPayload = Schema.Struct({ id: MemoryId, patch: Patch, updatedAt: Timestamp })
/** `memory.deleted` v1: the id and the writer's wall time. */
export const DeletedPayload = Schema.Struct({ id: MemoryId, deletedAt: Timestamp })

const base = { id: EventId, hlc: Stamp, clientId: ClientId }

/** A decoded `memory.created`. */
export const MemoryCreated = Schema.Struct({
  ...base,
  type: Schema.Literal("memory.created"),
  version: Schema.Literal(1),
  payload: CreatedPayload
})
/** A decoded `memory.updated`. */
export const MemoryUpdated = Schema.Struct({
  ...base,
  type: Schema.Literal("memory.updated"),
  version: Schema.Literal(1),
  payload: UpdatedPayload
})
/** A decoded `memory.deleted`. */
export const MemoryDeleted = Schema.Struct({
  ...base,
  type: Schema.Literal("memory.deleted"),
  version: Schema.Literal(1),
  payload: DeletedPayload
})

/** Any event this build understands, upcast to its latest version. */
export const MemoryEvent = Schema.Union(MemoryCreated, MemoryUpdated, MemoryDeleted)
export type MemoryEvent = typeof MemoryEvent.Type
export type MemoryCreated = typeof MemoryCreated.Type
export type MemoryUpdated = typeof MemoryUpdated.Type
export type MemoryDeleted = typeof MemoryDeleted.Type

/**
 * The (type, version) pairs this build knows, each with the schema that decodes it to the latest shape.
 * A v2 is added here as `Schema.transform(V2Wire, Latest, ...)` — the wire schemas themselves never change.
 */
type Decoder = (u: Envelope) => Either.Either<MemoryEvent, string>
const KNOWN: Record<string, Record<number, Decoder>> = {
  "memory.created": { 1: withFastPath(fastCreated, Schema.decodeUnknownEither(MemoryCreated)) },
  "memory.updated": { 1: withFastPath(fastUpdated, Schema.decodeUnknownEither(MemoryUpdated)) },
  "memory.deleted": { 1: withFastPath(fastDeleted, Schema.decodeUnknownEither(MemoryDeleted)) }
}

/** True when this build knows how to read (type, version). */
export const isKnown = (type: string, version: number): boolean => KNOWN[type]?.[version] !== undefined

/** What a reader makes of an envelope. */
export type Classified =
  | { readonly _tag: "Known"; readonly event: MemoryEvent }
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "Invalid"; readonly message: string }

/** Decode an envelope's payload when its (type, version) is known; unknown kinds pass through untouched. */
export const classify = (envelope: Envelope): Classified => {
  const decode = KNOWN[envelope.type]?.[envelope.version]
  if (decode === undefined) return { _tag: "Unknown" }
  const result = decode(envelope)
  return Either.isRight(result) ? { _tag: "Known", event: result.right } : { _tag: "Invalid", message: result.left }
}

/** Decode an unknown value as an envelope, with a readable message on failure. */
export const decodeEnvelope = (u: unknown): Either.Either<Envelope, string> => {
  const fast = fastEnvelope(u)
  return fast === undefined ? Either.mapLeft(decodeEnvelopeSchema(u), formatError) : Either.right(fast)
}

/** The memory an envelope touches, when its payload names one. */
export const memoryIdOf = (envelope: Pick<Envelope, "payload">): string | undefined => {
  const p = envelope.payload
  if (typeof p === "object" && p !== null && "id" in p && typeof p.id === "string") return p.id
  return undefined
}

/** Decode a known event, or None when unknown. Invalid known events fail. */
export const decodeKnown = (envelope: Envelope): Either.Either<Option.Option<MemoryEvent>, string> => {
  const c = classify(envelope)
  switch (c._tag) {
    case "Known":
      return Either.right(Option.some(c.event))
    case "Unknown":
      return Either.right(Option.none())
    case "Invalid":
      return Either.left(c.message)
  }
}

/** The total order key `(hlc, id)` as one string: a space sorts below every hlc character, so text order = tuple order. */
export const orderKey = (e: { readonly hlc: string; readonly id: string }): string => `${e.hlc} ${e.id}`

/** One-line message for a parse error. */
export const formatError = (e: ParseResult.ParseError): string => {
  try {
    return (
      ParseResult.ArrayFormatter.formatErrorSync(e)
        // An optional field's union also reports "Expected undefined": noise next to the real complaint.
        .filter((i) => !i.message.startsWith("Expected undefined"))
        .map((i) => (i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : i.message))
        .join("; ")
    )
  } catch {
    // Effect's formatter prints the offending value recursively and overflows the call stack on a value nested a few
    // thousand levels deep (decoding such a value is fine; describing it is not). Callers that meet untrusted input
    // check `withinDepth` first where a precise message matters; this is the backstop for every other decode.
    return `the value does not match its schema, and nests too deeply to describe (the nesting depth limit is ${MAX_DEPTH})`
  }
}

const decodeEnvelopeSchema = Schema.decodeUnknownEither(Envelope)

// --- Fast path --------------------------------------------------------------------------------------------------
//
// Schema decoding costs ~15-20 µs per event, which dominated the batch ingest and rebuild paths. The checks below
// walk the v1 shapes by hand. Invariant: when a fast check ACCEPTS, the schema accepts too and returns an equal
// value (same keys in the same order, arrays copied, optional patch keys kept even when `undefined`); when it is
// unsure it returns undefined and the schema decides (and writes the error message). So a fast check may be
// stricter than its schema, never laxer. Keep them in step with Memory.ts / Hlc.ts; a shipped v1 shape never
// changes, but a refinement added to a field schema must be added here too (test/domain/EventsFastPath.test.ts
// compares both on generated and mutated inputs).

type Rec = { readonly [k: string]: unknown }

function withFastPath(
  fast: (u: unknown) => MemoryEvent | undefined,
  slow: (u: Envelope) => Either.Either<MemoryEvent, ParseResult.ParseError>
): Decoder {
  return (u) => {
    const event = fast(u)
    if (event !== undefined) return Either.right(event)
    // Every v1 payload is shallow, so a deep one is invalid; refusing it here spares the schema's error formatter.
    const deep = depthProblem(u.payload)
    return deep === undefined ? Either.mapLeft(slow(u), formatError) : Either.left(deep)
  }
}

// Schema.Struct accepts any non-null, non-array object and reads required keys with `input[key]`.
const isRec = (u: unknown): u is Rec => typeof u === "object" && u !== null && !Array.isArray(u)
const has = (o: Rec, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k)

const EVENT_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const STAMP_RE = /^(\d{15}):(\d{6}):([A-Za-z0-9_-]{1,64})$/
const CLIENT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/
const SURROGATE_RE = /[\uD800-\uDFFF]/

const isStr = (u: unknown): u is string => typeof u === "string"
// Stricter than needed on purpose: no surrogate code units at all (the schemas may refuse unpaired ones).
const plain = (s: string): boolean => !SURROGATE_RE.test(s)
const isMemoryId = (u: unknown): u is string => isStr(u) && u.length >= 1 && u.length <= 128 && plain(u)
// A printable ASCII first character settles "not blank" without the copy `trim()` makes.
const notBlank = (s: string): boolean => {
  const c = s.charCodeAt(0)
  return (c > 32 && c < 127) || s.trim().length > 0
}
const isContent = (u: unknown): u is string => isStr(u) && notBlank(u) && fitsBytes(u, MAX_CONTENT_BYTES) && plain(u)
const isCategory = (u: unknown): u is string => isStr(u) && u.length <= 256 && plain(u)
const isLabel = (u: unknown): u is string => isStr(u) && u.length >= 1 && u.length <= 256 && plain(u)
const isImportance = (u: unknown): u is number => typeof u === "number" && Number.isFinite(u) && u >= 0 && u <= 1
const isTimestamp = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0

/** A copy of a label array (Schema.Array returns a new array), or undefined. */
const labels = (u: unknown): Array<string> | undefined => {
  if (!Array.isArray(u)) return undefined
  const out: Array<string> = []
  for (let i = 0; i < u.length; i++) {
    const x: unknown = u[i]
    if (!isLabel(x)) return undefined
    out.push(x)
  }
  return out
}

/** id, hlc and clientId of an event struct (no envelope filter: the event schemas do not have it). */
const fastBase = (u: Rec): { id: string; hlc: string; clientId: string } | undefined => {
  const { id, hlc, clientId } = u
  if (!isStr(id) || !EVENT_ID_RE.test(id) || !isStr(hlc) || !STAMP_RE.test(hlc)) return undefined
  if (!isStr(clientId) || !CLIENT_ID_RE.test(clientId)) return undefined
  return { id, hlc, clientId }
}

function fastCreated(u: unknown): MemoryCreated | undefined {
  if (!isRec(u) || u.type !== "memory.created" || u.version !== 1 || !isRec(u.payload)) return undefined
  const base = fastBase(u)
  if (base === undefined) return undefined
  const { id, content, category, importance, sensitive, createdAt, updatedAt } = u.payload
  const tags = labels(u.payload.tags)
  const keywords = labels(u.payload.keywords)
  if (!isMemoryId(id) || !isContent(content) || !isCategory(category) || tags === undefined) return undefined
  if (keywords === undefined || !isImportance(importance) || typeof sensitive !== "boolean") return undefined
  if (!isTimestamp(createdAt) || !isTimestamp(updatedAt)) return undefined
  const payload = { id, content, category, tags, keywords, importance, sensitive, createdAt, updatedAt }
  return { ...base, type: "memory.created", version: 1, payload }
}

function fastUpdated(u: unknown): MemoryUpdated | undefined {
  if (!isRec(u) || u.type !== "memory.updated" || u.version !== 1 || !isRec(u.payload)) return undefined
  const base = fastBase(u)
  if (base === undefined) return undefined
  const { id, patch, updatedAt } = u.payload
  if (!isMemoryId(id) || !isRec(patch) || !isTimestamp(updatedAt)) return undefined
  // Schema.partial: a key absent stays absent, a key present (even as undefined) is kept, in the schema's order.
  const out: { -readonly [K in keyof Patch]: Patch[K] } = {}
  let keys = 0
  if (has(patch, "content")) {
    const v = patch.content
    if (v !== undefined && !isContent(v)) return undefined
    out.content = v
    keys++
  }
  if (has(patch, "category")) {
    const v = patch.category
    if (v !== undefined && !isCategory(v)) return undefined
    out.category = v
    keys++
  }
  if (has(patch, "tags")) {
    const v = patch.tags === undefined ? undefined : labels(patch.tags)
    if (v === undefined && patch.tags !== undefined) return undefined
    out.tags = v
    keys++
  }
  if (has(patch, "keywords")) {
    const v = patch.keywords === undefined ? undefined : labels(patch.keywords)
    if (v === undefined && patch.keywords !== undefined) return undefined
    out.keywords = v
    keys++
  }
  if (has(patch, "importance")) {
    const v = patch.importance
    if (v !== undefined && !isImportance(v)) return undefined
    out.importance = v
    keys++
  }
  if (has(patch, "sensitive")) {
    const v = patch.sensitive
    if (v !== undefined && typeof v !== "boolean") return undefined
    out.sensitive = v
    keys++
  }
  if (keys === 0) return undefined
  return { ...base, type: "memory.updated", version: 1, payload: { id, patch: out, updatedAt } }
}

function fastDeleted(u: unknown): MemoryDeleted | undefined {
  if (!isRec(u) || u.type !== "memory.deleted" || u.version !== 1 || !isRec(u.payload)) return undefined
  const base = fastBase(u)
  if (base === undefined) return undefined
  const { id, deletedAt } = u.payload
  if (!isMemoryId(id) || !isTimestamp(deletedAt)) return undefined
  return { ...base, type: "memory.deleted", version: 1, payload: { id, deletedAt } }
}

/**
 * The envelope `u` holds when the hand checks can tell, else undefined (then only the Envelope schema can say). For a
 * caller with its own fallback: `decodeEnvelope` is this, then the schema.
 */
export function fastEnvelope(u: unknown): Envelope | undefined {
  // `payload` is Schema.Unknown: a missing key would decode as undefined; leave that odd case to the schema.
  if (!isRec(u) || !has(u, "payload")) return undefined
  const { id, type, version, payload, hlc, clientId } = u
  if (
    !isStr(id) ||
    !EVENT_ID_RE.test(id) ||
    !isStr(type) ||
    type.length < 1 ||
    type.length > 64 ||
    !isWellFormed(type)
  ) {
    return undefined
  }
  if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 1) return undefined
  if (!isStr(hlc) || !isStr(clientId) || !CLIENT_ID_RE.test(clientId)) return undefined
  // The envelope filter: the stamp must parse and carry the envelope's client id.
  if (decodeHlc(hlc)?.clientId !== clientId) return undefined
  return { id, type, version, payload, hlc, clientId }
}
