/**
 * The append-only event log of a replica.
 *
 * Invariants:
 * - An event id is stored at most once (`UNIQUE(id)`); ingesting an id already held is a no-op.
 * - Rows are never updated or deleted (SQLite triggers refuse it); sync bookkeeping lives in other tables.
 * - `seq` is local arrival order: a page read by seq sees every event exactly once.
 * Callers run appends inside the same transaction as the materializer (see MemoryStore).
 */
import { Context, Effect, Layer, Predicate, Schema } from "effect"
import { decodeEnvelope, memoryIdOf, type Envelope } from "../domain/Events.js"
import { toJson } from "../domain/Json.js"
import { Database } from "./Database.js"
import type { StorageError } from "./Errors.js"

/** An event as stored, with its local sequence number. */
export interface StoredEvent extends Envelope {
  readonly seq: number
}

/** The event log service. */
export interface EventLog {
  /** Append events written here: into `events` and `outbox`. Run inside a transaction. */
  readonly appendLocal: (events: ReadonlyArray<Envelope>) => Effect.Effect<void, StorageError>
  /** `appendLocal` as a plain call (throws on failure), for a caller inside `Database.write` (holding the connection). */
  readonly unsafeAppendLocal: (events: ReadonlyArray<Envelope>) => void
  /** Store events from elsewhere, skipping ids already held; returns the ones that were new. */
  readonly ingest: (events: ReadonlyArray<Envelope>) => Effect.Effect<ReadonlyArray<Envelope>, StorageError>
  /** Events with `seq > after`, oldest first, at most `limit`. */
  readonly page: (after: number, limit: number) => Effect.Effect<ReadonlyArray<StoredEvent>, StorageError>
  /** Every event touching one memory, in `(hlc, id)` order. */
  readonly byMemory: (memoryId: string) => Effect.Effect<ReadonlyArray<StoredEvent>, StorageError>
  /** The greatest stamp held, to restart the clock past it. */
  readonly maxHlc: Effect.Effect<string | undefined, StorageError>
}

/** The event log tag. */
export const EventLog = Context.GenericTag<EventLog>("memsync/EventLog")

/** Build the event log over the open database. */
export const make = Effect.gen(function* () {
  const database = yield* Database
  const stmts = yield* database.raw((db) => ({
    insert: db.prepare(
      `INSERT INTO events (id, type, version, memory_id, hlc, client_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?)`
    ),
    insertIgnore: db.prepare(
      `INSERT INTO events (id, type, version, memory_id, hlc, client_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(id) DO NOTHING`
    ),
    outbox: db.prepare(`INSERT INTO outbox (seq) VALUES (?)`),
    page: db.prepare(`SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?`),
    byMemory: db.prepare(`SELECT * FROM events WHERE memory_id = ? ORDER BY hlc, id`),
    maxHlc: db.prepare(`SELECT max(hlc) FROM events`).pluck()
  }))

  const unsafeAppendLocal = (events: ReadonlyArray<Envelope>) => {
    for (const e of events) {
      const { lastInsertRowid } = stmts.insert.run(...params(e))
      stmts.outbox.run(lastInsertRowid)
    }
  }

  const appendLocal = (events: ReadonlyArray<Envelope>) => database.raw(() => unsafeAppendLocal(events))

  const ingest = (events: ReadonlyArray<Envelope>) =>
    database.raw(() => events.filter((e) => stmts.insertIgnore.run(...params(e)).changes > 0))

  const page = (after: number, limit: number) => database.raw(() => stmts.page.all(after, limit).map(decodeRow))

  const byMemory = (memoryId: string) => database.raw(() => stmts.byMemory.all(memoryId).map(decodeRow))

  const maxHlc = database.raw(() => {
    const v = stmts.maxHlc.get()
    return typeof v === "string" ? v : undefined
  })

  return EventLog.of({ appendLocal, unsafeAppendLocal, ingest, page, byMemory, maxHlc })
})

/** The event log over the `Database` in context. */
export const layer: Layer.Layer<EventLog, StorageError, Database> = Layer.effect(EventLog, make)

/** The columns of an `events` row, in table order (for `SELECT`s read with `.raw()`, and for copies). */
export const COLUMNS = "seq, id, type, version, memory_id, hlc, client_id, payload"

/** The raw columns of an `events` row. */
export const EventRow = Schema.Struct({
  seq: Schema.Number,
  id: Schema.String,
  type: Schema.String,
  version: Schema.Number,
  hlc: Schema.String,
  client_id: Schema.String,
  payload: Schema.String
})

/**
 * Decode one `events` row. It throws on a corrupt row (the log only holds envelopes validated on the way in);
 * call it inside `Database.raw`, which turns the throw into a StorageError naming the row.
 */
export const decodeRow = (row: unknown): StoredEvent => {
  // The common case checked by hand (the Schema costs more than the rest of a replay step); anything else goes
  // through the schema, which throws with its message.
  const r = isEventRow(row) ? row : decodeEventRow(row)
  const envelope = decodeEnvelope({
    id: r.id,
    type: r.type,
    version: r.version,
    payload: JSON.parse(r.payload),
    hlc: r.hlc,
    clientId: r.client_id
  })
  if (envelope._tag === "Left") throw new Error(`memsync: corrupt event row ${r.seq}: ${envelope.left}`)
  return { ...envelope.right, seq: r.seq }
}

/** The bound parameters of one event row. */
export const params = (e: Envelope): [string, string, number, string | null, string, string, string] => [
  e.id,
  e.type,
  e.version,
  memoryIdOf(e) ?? null,
  e.hlc,
  e.clientId,
  // Not JSON.stringify: a pulled payload may nest deeper than its recursion can go, and must still be stored.
  toJson(e.payload)
]

const decodeEventRow = Schema.decodeUnknownSync(EventRow)

const isEventRow = (u: unknown): u is typeof EventRow.Type => {
  if (!Predicate.isRecord(u)) return false
  const r = u
  return (
    typeof r.seq === "number" &&
    typeof r.id === "string" &&
    typeof r.type === "string" &&
    typeof r.version === "number" &&
    typeof r.hlc === "string" &&
    typeof r.client_id === "string" &&
    typeof r.payload === "string"
  )
}
