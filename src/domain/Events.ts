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
import { Memory, MemoryId, Patch, Timestamp } from "./Memory.js"

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
  type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64)),
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
type Decoder = (u: unknown) => Either.Either<MemoryEvent, ParseResult.ParseError>
const KNOWN: Record<string, Record<number, Decoder>> = {
  "memory.created": { 1: Schema.decodeUnknownEither(MemoryCreated) },
  "memory.updated": { 1: Schema.decodeUnknownEither(MemoryUpdated) },
  "memory.deleted": { 1: Schema.decodeUnknownEither(MemoryDeleted) }
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
  return Either.isRight(result)
    ? { _tag: "Known", event: result.right }
    : { _tag: "Invalid", message: formatError(result.left) }
}

/** Decode an unknown value as an envelope, with a readable message on failure. */
export const decodeEnvelope = (u: unknown): Either.Either<Envelope, string> =>
  Either.mapLeft(Schema.decodeUnknownEither(Envelope)(u), formatError)

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

/** Canonical JSON (sorted object keys): two bodies are "the same event" iff their canonical forms are equal. */
export const canonicalJson = (value: unknown): string => JSON.stringify(sortKeys(value))

/** One-line message for a parse error. */
export const formatError = (e: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(e)
    // An optional field's union also reports "Expected undefined": noise next to the real complaint.
    .filter((i) => !i.message.startsWith("Expected undefined"))
    .map((i) => (i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : i.message))
    .join("; ")

const sortKeys = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k])
    return out
  }
  return v
}
