/**
 * Reading log rows fast. The inspection tools read whole logs (1M events and more); the Schema decoders cost about
 * 20 µs an event per stage, which would cap a replay near 20k events/s. So the common case is checked by hand here,
 * and everything else falls back to the schemas.
 *
 * Invariant (tested against the schemas on generated and mutated events): when a hand check ACCEPTS, the schema
 * accepts too and yields the same event for the fold. When a hand check is unsure it does not reject: it hands the
 * value to the schema, which gives the real verdict and its message. So the result is always the schemas' result.
 */
import { Either, Predicate } from "effect"
import {
  classify,
  decodeEnvelope,
  isKnown,
  type Classified,
  type Envelope,
  type MemoryCreated,
  type MemoryDeleted,
  type MemoryEvent,
  type MemoryUpdated
} from "../domain/Events.js"
import * as Hlc from "../domain/Hlc.js"
import { fitsBytes, isWellFormed, MAX_CONTENT_BYTES, type Patch } from "../domain/Memory.js"

/** The columns of one log row, from either kind of log (`excluded`: dead-lettered here, out of the event set). */
export interface LogRow {
  readonly seq: number
  readonly id: string
  readonly type: string
  readonly version: number
  readonly memoryId: string | null
  readonly hlc: string
  readonly clientId: string
  /** The payload as stored: JSON text. */
  readonly payload: string
  readonly excluded: boolean
}

/** Read one SQL row (columns `seq, id, type, version, memory_id, hlc, client_id, payload, excluded`); throws on a
 * row of another shape, so call it inside `Database.raw`, which turns the throw into a StorageError. */
export const readRow = (u: unknown): LogRow => {
  if (!Predicate.isRecord(u)) throw new Error("memsync: a log row is not a row")
  const { seq, id, type, version, memory_id, hlc, client_id, payload, excluded } = u
  if (
    typeof seq !== "number" ||
    typeof id !== "string" ||
    typeof type !== "string" ||
    typeof version !== "number" ||
    (memory_id !== null && typeof memory_id !== "string") ||
    typeof hlc !== "string" ||
    typeof client_id !== "string" ||
    typeof payload !== "string"
  ) {
    throw new Error(`memsync: corrupt event row ${String(seq)}: a column has the wrong type`)
  }
  return { seq, id, type, version, memoryId: memory_id, hlc, clientId: client_id, payload, excluded: excluded === 1 }
}

/** The envelope a row holds; throws (naming the row) when it is not one. */
export const toEnvelope = (row: LogRow): Envelope => {
  let payload: unknown
  try {
    payload = JSON.parse(row.payload)
  } catch {
    throw new Error(`memsync: corrupt event row ${row.seq}: the payload is not JSON`)
  }
  const candidate = {
    id: row.id,
    type: row.type,
    version: row.version,
    payload,
    hlc: row.hlc,
    clientId: row.clientId
  }
  if (isEnvelope(candidate)) return candidate
  const decoded = decodeEnvelope(candidate)
  if (Either.isLeft(decoded)) throw new Error(`memsync: corrupt event row ${row.seq}: ${decoded.left}`)
  return decoded.right
}

/** `Events.decodeEnvelope`, with the hand check first (for untrusted input such as an import file). */
export const parseEnvelope = (u: unknown): Either.Either<Envelope, string> =>
  // A copy of the six fields: like the schema, leave any other key of the input behind.
  isEnvelope(u)
    ? Either.right({ id: u.id, type: u.type, version: u.version, payload: u.payload, hlc: u.hlc, clientId: u.clientId })
    : decodeEnvelope(u)

/** `Events.classify`, with the hand checks first. */
export const classifyFast = (e: Envelope): Classified => {
  if (!isKnown(e.type, e.version)) return { _tag: "Unknown" }
  const event = knownEvent(e)
  return event === undefined ? classify(e) : { _tag: "Known", event }
}

/** The known event an envelope holds, or undefined when the hand checks are unsure (ask `classify`). */
export const knownEvent = (e: Envelope): MemoryEvent | undefined => {
  if (e.version !== 1) return undefined
  const p = e.payload
  if (!Predicate.isRecord(p)) return undefined
  const base = { id: e.id, hlc: e.hlc, clientId: e.clientId }
  switch (e.type) {
    case "memory.created": {
      const { id, content, category, tags, keywords, importance, sensitive, createdAt, updatedAt } = p
      if (
        !isMemoryId(id) ||
        !isContent(content) ||
        !isCategory(category) ||
        !isLabels(tags) ||
        !isLabels(keywords) ||
        !isImportance(importance) ||
        typeof sensitive !== "boolean" ||
        !isTimestamp(createdAt) ||
        !isTimestamp(updatedAt)
      ) {
        return undefined
      }
      const payload = { id, content, category, tags, keywords, importance, sensitive, createdAt, updatedAt }
      const event: MemoryCreated = { ...base, type: "memory.created", version: 1, payload }
      return event
    }
    case "memory.updated": {
      const { id, patch, updatedAt } = p
      if (!isMemoryId(id) || !isTimestamp(updatedAt)) return undefined
      const checked = toPatch(patch)
      if (checked === undefined) return undefined
      const event: MemoryUpdated = {
        ...base,
        type: "memory.updated",
        version: 1,
        payload: { id, patch: checked, updatedAt }
      }
      return event
    }
    case "memory.deleted": {
      const { id, deletedAt } = p
      if (!isMemoryId(id) || !isTimestamp(deletedAt)) return undefined
      const event: MemoryDeleted = { ...base, type: "memory.deleted", version: 1, payload: { id, deletedAt } }
      return event
    }
    default:
      return undefined
  }
}

// --- hand checks, one per schema of Memory.ts / Events.ts / Hlc.ts (keep them in step; the tests compare) ---------

const EVENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const CLIENT_ID = /^[A-Za-z0-9_-]{1,64}$/

const isEnvelope = (u: unknown): u is Envelope => {
  if (!Predicate.isRecord(u)) return false
  const { id, type, version, hlc, clientId } = u
  return (
    "payload" in u &&
    typeof id === "string" &&
    EVENT_ID.test(id) &&
    typeof type === "string" &&
    type.length >= 1 &&
    type.length <= 64 &&
    typeof version === "number" &&
    Number.isSafeInteger(version) &&
    version >= 1 &&
    typeof hlc === "string" &&
    typeof clientId === "string" &&
    CLIENT_ID.test(clientId) &&
    Hlc.decode(hlc)?.clientId === clientId
  )
}

const isMemoryId = (u: unknown): u is string =>
  typeof u === "string" && u.length >= 1 && u.length <= 128 && isWellFormed(u)
const isContent = (u: unknown): u is string =>
  typeof u === "string" && u.trim().length > 0 && fitsBytes(u, MAX_CONTENT_BYTES) && isWellFormed(u)
const isCategory = (u: unknown): u is string => typeof u === "string" && u.length <= 256 && isWellFormed(u)
const isLabel = (u: unknown): u is string => typeof u === "string" && u.length >= 1 && u.length <= 256
const isLabels = (u: unknown): u is ReadonlyArray<string> => Array.isArray(u) && u.every(isLabel)
const isImportance = (u: unknown): u is number => typeof u === "number" && Number.isFinite(u) && u >= 0 && u <= 1
const isTimestamp = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0

/** A patch with at least one field, every present field valid; undefined when unsure. */
const toPatch = (u: unknown): Patch | undefined => {
  if (!Predicate.isRecord(u)) return undefined
  const out: { -readonly [K in keyof Patch]: Patch[K] } = {}
  let fields = 0
  const { content, category, tags, keywords, importance, sensitive } = u
  if (content !== undefined) {
    if (!isContent(content)) return undefined
    out.content = content
    fields++
  }
  if (category !== undefined) {
    if (!isCategory(category)) return undefined
    out.category = category
    fields++
  }
  if (tags !== undefined) {
    if (!isLabels(tags)) return undefined
    out.tags = tags
    fields++
  }
  if (keywords !== undefined) {
    if (!isLabels(keywords)) return undefined
    out.keywords = keywords
    fields++
  }
  if (importance !== undefined) {
    if (!isImportance(importance)) return undefined
    out.importance = importance
    fields++
  }
  if (sensitive !== undefined) {
    if (typeof sensitive !== "boolean") return undefined
    out.sensitive = sensitive
    fields++
  }
  return fields === 0 ? undefined : out
}
