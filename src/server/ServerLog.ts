/**
 * The server's event log: per-space, gapless sequence numbers over events that pass admission (see Admission.ts).
 * Everything the sync protocol promises about storage lives here, not in the HTTP handlers, so the in-process
 * transport and the simulation run the same logic without HTTP.
 *
 * Invariants:
 * - Seqs in a space start at 1 and have no gaps: one writer assigns them, inside the insert transaction, from the
 *   space's `head` read in that same transaction (BEGIN IMMEDIATE, so a second process on the file waits).
 * - Idempotent by `(space, id)`: a re-push answers `duplicate` with the first seq; the same id with another body hash
 *   is `rejected` with `id-conflict`. Within one batch the later copy sees the earlier one the same way.
 * - `server_spaces.digest` is the XOR digest (Digest.ts) of the ids of events 1..head, updated in the same
 *   transaction as the inserts, so `head` is one row read.
 * - Results come back in request order, one per pushed value; a refused value never blocks the others.
 * - Time comes from Effect's `Clock` (drift check, `received_at`), so a TestClock drives it.
 *
 * `ServerLog` is an interface: this file holds the SQLite implementation behind `layer`; another store (Postgres)
 * provides the same tag and reuses `Admission`.
 */
import { SqlClient } from "@effect/sql"
import type Sqlite from "better-sqlite3"
import { Clock, Context, Effect, Either, Layer, Option, Predicate, Schema } from "effect"
import * as Digest from "../domain/Digest.js"
import * as IdGenerator from "../domain/IdGenerator.js"
import * as Database from "../store/Database.js"
import {
  type HeadResponse,
  PayloadTooLarge,
  type PulledEvent,
  type PullResponse,
  type PushResponse,
  type PushResult,
  ServerError
} from "../sync/Protocol.js"
import * as Admission from "./Admission.js"
import * as ServerMigrations from "./ServerMigrations.js"

/** Limits of the log (every field has a default). */
export interface Limits extends Admission.Limits {
  /** Most events in one push (default 1000). */
  readonly maxBatch: number
  /** Largest pull page (default 10000; the protocol caps `limit` at the same value). */
  readonly maxPullLimit: number
}

/** Default limits. */
export const DEFAULT_LIMITS: Limits = { ...Admission.DEFAULT_LIMITS, maxBatch: 1000, maxPullLimit: 10_000 }

/** The log's operations, each confined to one space. */
export interface Service {
  /** The id of this log, made with the database and unchanged across restarts. */
  readonly epoch: string
  /** The limits this log enforces. */
  readonly limits: Limits
  /** Append what passes admission; one result per value, in order. Fails only for a batch over `maxBatch`. */
  readonly push: (
    space: string,
    events: ReadonlyArray<unknown>
  ) => Effect.Effect<PushResponse, PayloadTooLarge | ServerError>
  /** Events with `seq > after`, ordered by seq, at most `limit` (clamped to 1..maxPullLimit). */
  readonly pull: (space: string, after: number, limit: number) => Effect.Effect<PullResponse, ServerError>
  /**
   * The same page as `pull`, as the UTF-8 JSON of its `PullResponse` (the body the HTTP handler sends). An
   * implementation without a faster way can answer `Effect.map(pull(...), encodePage)`.
   */
  readonly pullBody: (space: string, after: number, limit: number) => Effect.Effect<Uint8Array, ServerError>
  /** The space's head, the digest of ids 1..head, and the epoch. */
  readonly head: (space: string) => Effect.Effect<HeadResponse, ServerError>
}

/** The server log service. */
export class ServerLog extends Context.Tag("memsync/ServerLog")<ServerLog, Service>() {}

/** The SQLite implementation over an open server database (see ServerMigrations for the tables). */
export const make = (limits: Partial<Limits> = {}): Effect.Effect<Service, ServerError, Database.Database> =>
  Effect.gen(function* () {
    const database = yield* Database.Database
    const config: Limits = { ...DEFAULT_LIMITS, ...limits }
    const epoch = yield* ensureEpoch(database)
    const stmts = yield* toServerError(database.raw(prepare))

    const readHead = (space: string) => {
      const row = stmts.getSpace.get(space)
      return row === undefined ? { head: 0, digest: Digest.EMPTY } : decodeSpaceRow(row)
    }

    const write = (space: string, admitted: ReadonlyArray<readonly [number, Admission.Candidate]>, now: number) =>
      database.raw(() => {
        let { head, digest } = readHead(space)
        const start = head
        const results: Array<readonly [number, PushResult]> = []
        const added: Array<string> = []
        for (const [index, c] of admitted) {
          const next = head + 1
          const { changes } = stmts.insert.run(
            space,
            next,
            c.id,
            c.type,
            c.version,
            c.memoryId,
            c.hlc,
            c.clientId,
            c.payload,
            c.bodyHash,
            now
          )
          if (changes === 1) {
            head = next
            added.push(c.id)
            results.push([index, { status: "accepted", id: c.id, seq: next }])
            continue
          }
          // The id is already in the space (an earlier push, or earlier in this batch): same body or conflict.
          const row = decodeExistingRow(stmts.findId.get(space, c.id))
          results.push([
            index,
            row.body_hash === c.bodyHash
              ? { status: "duplicate", id: c.id, seq: row.seq }
              : {
                  status: "rejected",
                  id: c.id,
                  reason: "id-conflict",
                  message: `event ${c.id} is already stored at seq ${row.seq} with a different body`
                }
          ])
        }
        // XOR is associative: folding the batch's ids in at once equals `Digest.add` one by one.
        if (added.length > 0) digest = xorHex(digest, Digest.of(added))
        if (head !== start) stmts.putSpace.run(space, head, digest)
        return { head, results }
      })

    const push: Service["push"] = Effect.fn("ServerLog.push")(function* (space, events) {
      if (events.length > config.maxBatch) {
        return yield* new PayloadTooLarge({
          message: `${events.length} events in one push; the limit is ${config.maxBatch}`
        })
      }
      const now = yield* Clock.currentTimeMillis
      const results: Array<PushResult | undefined> = new Array(events.length)
      const admitted: Array<readonly [number, Admission.Candidate]> = []
      events.forEach((raw, index) => {
        const a = Admission.admit(raw, now, config)
        if (Either.isRight(a)) admitted.push([index, a.right])
        else results[index] = { status: "rejected", ...a.left }
      })
      const written = yield* toServerError(
        admitted.length === 0
          ? database.raw(() => ({ head: readHead(space).head, results: [] }))
          : database.sql.withTransaction(write(space, admitted, now))
      )
      for (const [index, result] of written.results) results[index] = result
      return { results: results.filter((r) => r !== undefined), head: written.head, epoch }
    })

    /** A pull's arguments clamped: `from` >= 0, `take` in 1..maxPullLimit (both forms of pull read them so). */
    const bounds = (after: number, limit: number) => ({
      take: Math.max(1, Math.min(config.maxPullLimit, Math.floor(limit))),
      from: Math.max(0, Math.floor(after))
    })

    const readPage = (space: string, after: number, limit: number) => {
      const { take, from } = bounds(after, limit)
      // Events first, then head: with another process appending in between, head only grows past the page.
      const rows = decodeEventRows(stmts.page.all(space, from, take + 1))
      const head = readHead(space).head
      const hasMore = rows.length > take
      return { rows: hasMore ? rows.slice(0, take) : rows, head, hasMore }
    }

    const pull: Service["pull"] = Effect.fn("ServerLog.pull")(function* (space, after, limit) {
      return yield* toServerError(
        database.raw(() => {
          const page = readPage(space, after, limit)
          return { events: page.rows.map(toPulled), head: page.head, hasMore: page.hasMore, epoch }
        })
      )
    })

    const pullBody: Service["pullBody"] = Effect.fn("ServerLog.pullBody")(function* (space, after, limit) {
      return yield* toServerError(
        database.raw(() => {
          const { take, from } = bounds(after, limit)
          const page = decodePageJson(stmts.pageJson.get(space, from, take))
          if (page.rows !== page.wellFormed) throw new Error(`a stored event after seq ${from} is corrupt`)
          // Events first, then head (as in `readPage`): with another process appending in between, head only grows
          // past the page, so `hasMore` always comes with a head beyond the page's last seq.
          const hasMore = typeof page.last === "number" && stmts.hasAfter.get(space, page.last) !== undefined
          const head = readHead(space).head
          return Buffer.concat([
            PAGE_OPEN,
            page.events ?? EMPTY_BYTES,
            Buffer.from(`],"head":${head},"hasMore":${hasMore},"epoch":${JSON.stringify(epoch)}}`)
          ])
        })
      )
    })

    const head: Service["head"] = Effect.fn("ServerLog.head")(function* (space) {
      const h = yield* toServerError(database.raw(() => readHead(space)))
      return { head: h.head, digest: h.digest, epoch }
    })

    return { epoch, limits: config, push, pull, pullBody, head }
  })

/** Options of the SQLite layer. */
export interface Options extends Partial<Limits> {
  /** The server database file (`:memory:` for tests). */
  readonly filename: string
  /** See `Database.Config.synchronous`. */
  readonly synchronous?: "NORMAL" | "FULL"
}

/** The SQLite server log over `options.filename` (created and migrated when missing). */
export const layer = (options: Options): Layer.Layer<ServerLog, Database.OpenError | ServerError> => {
  const { filename, synchronous, ...limits } = options
  const db = Database.layer({
    filename,
    schema: ServerMigrations.schema,
    ...(synchronous === undefined ? {} : { synchronous })
  })
  return Layer.effect(ServerLog, make(limits)).pipe(Layer.provide(db))
}

/** An in-memory server log (tests, in-process transport). */
export const layerMemory = (limits: Partial<Limits> = {}): Layer.Layer<ServerLog, Database.OpenError | ServerError> =>
  layer({ filename: ":memory:", ...limits })

// ---------------------------------------------------------------------------------------------------------------

const SpaceRow = Schema.Struct({ head: Schema.Number, digest: Schema.String })
const decodeSpaceRow = Schema.decodeUnknownSync(SpaceRow)
const decodeExistingRow = Schema.decodeUnknownSync(Schema.Struct({ seq: Schema.Number, body_hash: Schema.String }))
const EventRow = Schema.Struct({
  seq: Schema.Number,
  id: Schema.String,
  type: Schema.String,
  version: Schema.Number,
  hlc: Schema.String,
  client_id: Schema.String,
  payload: Schema.String
})
const decodeEventRow = Schema.decodeUnknownSync(EventRow)

/**
 * Decode the rows of a page. A page of 1,000 rows through the Schema cost more than the rest of a pull on the server;
 * the common case (every column of its type) is checked by hand, and any other row goes through the Schema, which
 * throws with its message.
 */
const decodeEventRows = (rows: ReadonlyArray<unknown>): Array<typeof EventRow.Type> =>
  rows.map((u) => (isEventRow(u) ? u : decodeEventRow(u)))

const isEventRow = (u: unknown): u is typeof EventRow.Type => {
  if (!Predicate.isRecord(u)) return false
  const { seq, id, type, version, hlc, client_id, payload } = u
  return (
    typeof seq === "number" &&
    typeof id === "string" &&
    typeof type === "string" &&
    typeof version === "number" &&
    typeof hlc === "string" &&
    typeof client_id === "string" &&
    typeof payload === "string"
  )
}

// Rows were validated when they were admitted; decoding them again on every pull would only cost time.
const toPulled = (row: typeof EventRow.Type): PulledEvent => ({
  seq: row.seq,
  id: row.id,
  type: row.type,
  version: row.version,
  payload: JSON.parse(row.payload),
  hlc: row.hlc,
  clientId: row.client_id
})

/** Serialize a page as the UTF-8 JSON of a `PullResponse` (the generic `pullBody`). */
export const encodePage = (page: PullResponse): Uint8Array => Buffer.from(JSON.stringify(page), "utf8")

/**
 * A page's events as JSON, written by SQLite itself (`pageJson` below): one row holding the events, comma-separated,
 * as UTF-8 bytes, with counts that tell a corrupt row apart.
 */
const PageJsonRow = Schema.Struct({
  rows: Schema.Number,
  wellFormed: Schema.Number,
  // Read only once every row is known to be well formed (a damaged seq may be anything).
  last: Schema.Unknown,
  events: Schema.NullOr(Schema.Uint8ArrayFromSelf)
})
const decodePageJson = Schema.decodeUnknownSync(PageJsonRow)

const PAGE_OPEN = Buffer.from(`{"events":[`)
const EMPTY_BYTES = new Uint8Array(0)

/**
 * Each event's JSON, spliced in SQL: the stored payload text goes out as is, the other fields are integers or go
 * through `json_quote` (which escapes exactly as JSON.stringify does). The text never becomes a JavaScript string:
 * reading ~0.5 KB per event into strings, splicing them and encoding the page back to UTF-8 was ~12 us of the
 * server's ~16 us per pulled event. Field order and content are those of `encodePage` for the same page
 * (test/server/ServerLog.test.ts compares the bytes). A row whose columns do not hold what admission stored (types,
 * integers JavaScript represents exactly, a payload that is JSON) is counted apart (`wellFormed`), so a damaged file
 * fails the request instead of serving a wrong event or a body that is not JSON.
 */
const pageJson = `
  SELECT count(*) AS rows, count(ev) AS wellFormed, max(seq) AS last,
    CAST(group_concat(ev, ',' ORDER BY seq) AS BLOB) AS events
  FROM (
    SELECT seq, CASE WHEN typeof(seq) = 'integer' AND seq BETWEEN 0 AND 9007199254740991
        AND typeof(version) = 'integer' AND version BETWEEN 1 AND 9007199254740991
        AND typeof(id) = 'text' AND typeof(type) = 'text' AND typeof(hlc) = 'text' AND typeof(client_id) = 'text'
        AND typeof(payload) = 'text' AND json_valid(payload)
      THEN '{"seq":' || seq || ',"id":' || json_quote(id) || ',"type":' || json_quote(type)
        || ',"version":' || version || ',"payload":' || payload || ',"hlc":' || json_quote(hlc)
        || ',"clientId":' || json_quote(client_id) || '}'
      END AS ev
    FROM server_events WHERE space = ? AND seq > ? ORDER BY seq LIMIT ?
  )`

const prepare = (db: Sqlite.Database) => ({
  getSpace: db.prepare<[string]>("SELECT head, digest FROM server_spaces WHERE space = ?"),
  putSpace: db.prepare<[string, number, string]>(
    `INSERT INTO server_spaces (space, head, digest) VALUES (?, ?, ?)
     ON CONFLICT (space) DO UPDATE SET head = excluded.head, digest = excluded.digest`
  ),
  findId: db.prepare<[string, string]>("SELECT seq, body_hash FROM server_events WHERE space = ? AND id = ?"),
  insert: db.prepare<[string, number, string, string, number, string | null, string, string, string, string, number]>(
    `INSERT INTO server_events
       (space, seq, id, type, version, memory_id, hlc, client_id, payload, body_hash, received_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (space, id) DO NOTHING`
  ),
  page: db.prepare<[string, number, number]>(
    `SELECT seq, id, type, version, hlc, client_id, payload FROM server_events
     WHERE space = ? AND seq > ? ORDER BY seq LIMIT ?`
  ),
  pageJson: db.prepare<[string, number, number]>(pageJson),
  hasAfter: db.prepare<[string, number]>("SELECT 1 FROM server_events WHERE space = ? AND seq > ? LIMIT 1")
})

/** Read the epoch, making it on the first open (from IdGenerator when provided, so a simulation can seed it). */
const ensureEpoch = (database: Database.Database) =>
  Effect.gen(function* () {
    const provided = yield* Effect.serviceOption(IdGenerator.IdGenerator)
    const next = Effect.flatMap(IdGenerator.IdGenerator, (g) => g.next)
    const fresh = yield* Option.isSome(provided) ? provided.value.next : Effect.provide(next, IdGenerator.layer)
    const sql = database.sql
    yield* sql`INSERT INTO server_meta (key, value) VALUES ('epoch', ${fresh}) ON CONFLICT (key) DO NOTHING`
    const rows = yield* sql`SELECT value FROM server_meta WHERE key = 'epoch'`
    const [row] = yield* Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ value: Schema.String })))(rows)
    return row.value
  }).pipe(
    Effect.mapError((e) => new ServerError({ message: `reading the server epoch: ${e.message}` })),
    Effect.provideService(SqlClient.SqlClient, database.sql)
  )

const xorHex = (a: string, b: string): string => {
  const x = Buffer.from(a, "hex")
  const y = Buffer.from(b, "hex")
  for (let i = 0; i < x.length; i++) x[i]! ^= y[i]!
  return x.toString("hex")
}

const toServerError = <A, E extends { readonly message: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.mapError(effect, (e) => new ServerError({ message: e.message }))
