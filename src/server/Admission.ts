/**
 * Admission: the pure, per-event half of a push. Given one value from a push body and the server's wall clock, decide
 * whether it may enter the log, and if so compute everything the storage needs (columns and body hash) — before any
 * transaction opens, so the write lock is held only for lookups and inserts.
 *
 * Invariants:
 * - One value never affects another: each is admitted or rejected alone, so one bad event cannot block its batch.
 * - Checks run in a fixed order (envelope, nesting depth, size, payload, clock) so a value has exactly one reason.
 * - Nothing here recurses on the shape of a pushed value: a payload nested deeper than `Json.MAX_DEPTH` is refused
 *   before anything (JSON.stringify, schema error messages) walks it, so one hostile event cannot fail the batch.
 * - A (type, version) this build does not know is admitted when its envelope is valid (forward compatibility).
 * - `bodyHash` is the SHA-256 of the canonical JSON of the envelope fields only: key order and unknown extra fields
 *   do not change it, so "the same event" means the same id, type, version, payload, hlc and clientId.
 */
import { Either } from "effect"
import { sha256 } from "../domain/Digest.js"
import { classify, decodeEnvelope, memoryIdOf } from "../domain/Events.js"
import { canonicalJson, depthProblem } from "../domain/Json.js"
import * as Hlc from "../domain/Hlc.js"
import type { RejectReason } from "../sync/Protocol.js"

/** The per-event limits. */
export interface Limits {
  /** Largest canonical JSON of one event, in bytes. */
  readonly maxEventBytes: number
  /** How far ahead of the server clock an event's HLC may be, in milliseconds. */
  readonly maxDriftMs: number
}

/** Default per-event limits: 256 KiB of canonical JSON, 5 minutes of drift. */
export const DEFAULT_LIMITS: Limits = { maxEventBytes: 256 * 1024, maxDriftMs: Hlc.DEFAULT_MAX_DRIFT_MS }

/** An event that passed admission, in the shape of a `server_events` row (minus space, seq and time). */
export interface Candidate {
  readonly id: string
  readonly type: string
  readonly version: number
  readonly memoryId: string | null
  readonly hlc: string
  readonly clientId: string
  /** The payload as JSON text. */
  readonly payload: string
  readonly bodyHash: string
}

/** Why an event was refused before storage. */
export interface Refusal {
  readonly id: string
  readonly reason: RejectReason
  readonly message: string
}

/** Admit one pushed value at server wall time `now` (milliseconds). */
export const admit = (raw: unknown, now: number, limits: Limits): Either.Either<Candidate, Refusal> => {
  const decoded = decodeEnvelope(raw)
  if (Either.isLeft(decoded)) return Either.left({ id: idOf(raw), reason: "invalid", message: decoded.left })
  const envelope = decoded.right
  // `Schema.Unknown` lets a missing key through; a stored event always has a JSON payload.
  if (envelope.payload === undefined)
    return Either.left({ id: envelope.id, reason: "invalid", message: "payload is missing" })
  // Before anything walks the payload: storing it (JSON.stringify) and serving it recurse on its depth.
  const deep = depthProblem(envelope.payload)
  if (deep !== undefined) return Either.left({ id: envelope.id, reason: "invalid", message: deep })
  const canonical = canonicalJson(envelope)
  const bytes = Buffer.byteLength(canonical, "utf8")
  if (bytes > limits.maxEventBytes) {
    return Either.left({
      id: envelope.id,
      reason: "too-large",
      message: `event is ${bytes} bytes of JSON; the limit is ${limits.maxEventBytes}`
    })
  }
  const classified = classify(envelope)
  if (classified._tag === "Invalid") {
    return Either.left({ id: envelope.id, reason: "invalid", message: classified.message })
  }
  // The envelope schema has checked the stamp's shape, so decode cannot fail here.
  const stamp = Hlc.decode(envelope.hlc)
  if (stamp !== undefined && Hlc.isTooFarAhead(stamp, now, limits.maxDriftMs)) {
    return Either.left({
      id: envelope.id,
      reason: "clock-drift",
      message: `hlc is ${Hlc.driftAhead(stamp, now)} ms ahead of the server clock; the limit is ${limits.maxDriftMs} ms`
    })
  }
  return Either.right({
    id: envelope.id,
    type: envelope.type,
    version: envelope.version,
    memoryId: memoryIdOf(envelope) ?? null,
    hlc: envelope.hlc,
    clientId: envelope.clientId,
    payload: JSON.stringify(envelope.payload),
    bodyHash: sha256(canonical).toString("hex")
  })
}

/** The hash a stored row would have: lets a caller compare a pulled event with what it pushed. */
export const bodyHashOf = (envelope: {
  readonly id: string
  readonly type: string
  readonly version: number
  readonly payload: unknown
  readonly hlc: string
  readonly clientId: string
}): string => {
  const { id, type, version, payload, hlc, clientId } = envelope
  return sha256(canonicalJson({ id, type, version, payload, hlc, clientId })).toString("hex")
}

/** The id a refused value claimed, when it has one (so the client can match the result to its event). */
const idOf = (raw: unknown): string =>
  typeof raw === "object" && raw !== null && "id" in raw && typeof raw.id === "string" ? raw.id : ""
