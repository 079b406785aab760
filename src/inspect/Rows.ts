/**
 * Log rows as the inspection tools read them: the columns of either kind of log (replica `events`, server
 * `server_events`), checked by hand (a Schema decode per row would cost more than the rest of a replay), and the
 * envelope a row holds (through `Events.decodeEnvelope`, whose fast path accepts the common case).
 */
import { Either, Predicate } from "effect"
import { decodeEnvelope, type Envelope } from "../domain/Events.js"

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
  const decoded = decodeEnvelope(candidate)
  if (Either.isLeft(decoded)) throw new Error(`memsync: corrupt event row ${row.seq}: ${decoded.left}`)
  return decoded.right
}
