/**
 * The sync engine's bookkeeping in the replica database: outbox, server seqs, dead letters, pull cursor, epoch.
 *
 * Invariants:
 * - Recording a push result and leaving the outbox happen in ONE transaction, so a crash never loses a pending
 *   event nor forgets that the server has it.
 * - A pulled page, its server seqs and the cursor advance are ONE transaction; the cursor only moves forward
 *   (`resetForEpoch` is the one exception, used when the server's log was replaced). A pulled event leaves the outbox.
 * - `resetForEpoch` forgets the old server and queues every event again in ONE transaction, so no crash point of a
 *   resync can leave an event that the new server lacks unqueued.
 * - Server seqs and the cursor index ONE server log, named by the stored epoch: the engine records none before an
 *   epoch is stored (`firstContact`), and a resync that finds another epoch forgets them all (`resetForEpoch`).
 * - Dead letters leave the event set: the memories they touched are re-folded in the same transaction.
 * - A requeue's fresh event and the dead letter's `requeued_as` are ONE transaction: a dead letter is never listed
 *   after its payload was re-emitted.
 * - An id conflict (the server serves, under an id held here, another body) is never silent: in the page's
 *   transaction the local version is dead-lettered (`id-conflict`, as the server answers its push) and the conflict is
 *   recorded once; it is counted in `counts` and logged as a warning. The server's version cannot be held here (the
 *   log is keyed by id and append-only), so this replica's view differs from the server's for that event until the
 *   replica is re-created from the server (docs/sync.md, "ID conflicts").
 * Event rows are never touched: all of this lives in other tables.
 */
import { Clock, Context, Effect, Layer, Schema } from "effect"
import * as Digest from "../domain/Digest.js"
import type { Envelope } from "../domain/Events.js"
import { memoryIdOf } from "../domain/Events.js"
import { canonicalJson, toJson } from "../domain/Json.js"
import { Database } from "../store/Database.js"
import { StorageError } from "../store/Errors.js"
import { decodeRow, EventLog, EventRow, type StoredEvent } from "../store/EventLog.js"
import { Materializer } from "../store/Materializer.js"
import { MemoryStore } from "../store/MemoryStore.js"
import * as Replay from "../store/Replay.js"
import { ReplicaClock } from "../store/ReplicaClock.js"
import { DeadLetterNotFound } from "./Errors.js"
import type { PulledEvent, PushResult } from "./Protocol.js"

/** A dead letter as listed. */
export interface DeadLetter {
  readonly eventId: string
  readonly type: string
  readonly memoryId: string | undefined
  readonly reason: string
  readonly message: string
  readonly at: number
}

/** What recording a push did. */
export interface PushOutcome {
  readonly acked: number
  readonly rejected: ReadonlyArray<{ readonly id: string; readonly reason: string; readonly message: string }>
}

/** What `counts` reports. */
export interface Counts {
  readonly pending: number
  readonly deadLetters: number
  /** Ids under which the server holds another body than this replica: the views differ there. */
  readonly idConflicts: number
}

/** The ledger service. */
export interface Ledger {
  /** The oldest pending events, in local order. */
  readonly outboxBatch: (limit: number) => Effect.Effect<ReadonlyArray<StoredEvent>, StorageError>
  /**
   * Record per-event push results (acked → server seq, rejected → dead letter + re-fold), leaving the outbox — unless
   * `resetForEpoch` ran since `generation` was read (the answer may come from a log that was replaced): then nothing
   * is recorded, the events stay queued, and the result is undefined.
   */
  readonly recordPush: (
    results: ReadonlyArray<PushResult>,
    now: number,
    generation: number
  ) => Effect.Effect<PushOutcome | undefined, StorageError>
  /** How many times the bookkeeping was reset (`resetForEpoch`); read it before sending a push. */
  readonly generation: Effect.Effect<number, StorageError>
  /** The highest server seq recorded here (0: none). */
  readonly recordedUpTo: Effect.Effect<number, StorageError>
  /** Apply a pulled page and advance the cursor; returns how many events were new here. */
  readonly applyPull: (events: ReadonlyArray<PulledEvent>, cursor: number) => Effect.Effect<number, StorageError>
  readonly cursor: Effect.Effect<number, StorageError>
  readonly get: (key: string) => Effect.Effect<string | undefined, StorageError>
  readonly set: (key: string, value: string) => Effect.Effect<void, StorageError>
  /** The digest of the ids this replica knows the server holds at seqs 1..head, and how many there are. */
  readonly confirmed: (head: number) => Effect.Effect<{ readonly count: number; readonly digest: string }, StorageError>
  /**
   * Start over with the server whose log has `epoch`, in ONE transaction: forget the server seqs and the cursor, adopt
   * the epoch, and queue every event held here (but dead letters) for pushing, so a crash anywhere in the resync that
   * follows still re-pushes what the server lacks. Returns how many events were queued again.
   */
  readonly resetForEpoch: (epoch: string) => Effect.Effect<number, StorageError>
  /**
   * First contact with a server whose log has `epoch`, in ONE transaction: adopt it when no epoch is stored and no
   * bookkeeping exists (`"adopted"`); keep the stored epoch when there is one (`"kept"`: resync compares it); and
   * when bookkeeping exists without an epoch (made by an older memsync), start over as `resetForEpoch` does
   * (`"reset"`): server seqs recorded without knowing which log they index cannot be checked (the digest is blind
   * to order), so they are never filed under an epoch.
   */
  readonly firstContact: (epoch: string) => Effect.Effect<"adopted" | "kept" | "reset", StorageError>
  /** Pending events, listed dead letters, and id conflicts with the current server (see the header). */
  readonly counts: Effect.Effect<Counts, StorageError>
  readonly deadLetters: Effect.Effect<ReadonlyArray<DeadLetter>, StorageError>
  /** Re-emit a dead letter's payload as a fresh local event (new id and stamp); returns the new id. */
  readonly requeue: (eventId: string) => Effect.Effect<string, StorageError | DeadLetterNotFound>
}

/** The ledger tag. */
export const Ledger = Context.GenericTag<Ledger>("memsync/Ledger")

/** Build the ledger over the replica's store. */
export const make = Effect.gen(function* () {
  const database = yield* Database
  const log = yield* EventLog
  const view = yield* Materializer
  const clock = yield* ReplicaClock
  const store = yield* MemoryStore
  const { raw } = database

  const stmts = yield* raw((db) => ({
    outbox: db.prepare(`SELECT e.* FROM outbox o JOIN events e ON e.seq = o.seq ORDER BY o.seq LIMIT ?`),
    leave: db.prepare(`DELETE FROM outbox WHERE seq = (SELECT seq FROM events WHERE id = ?)`),
    seq: db.prepare(
      `INSERT INTO server_seqs (event_id, seq) VALUES (?, ?) ON CONFLICT(event_id) DO UPDATE SET seq = excluded.seq`
    ),
    dead: db.prepare(`INSERT OR IGNORE INTO dead_letters (event_id, reason, message, at) VALUES (?, ?, ?, ?)`),
    memoryOf: db.prepare(`SELECT memory_id FROM events WHERE id = ?`).pluck(),
    getKey: db.prepare(`SELECT value FROM sync_state WHERE key = ?`).pluck(),
    setKey: db.prepare(
      `INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`
    ),
    confirmed: db.prepare(`SELECT event_id FROM server_seqs WHERE seq <= ?`).pluck(),
    recordedUpTo: db.prepare(`SELECT coalesce(max(seq), 0) FROM server_seqs`).pluck(),
    knownAt: db.prepare(`SELECT count(*) FROM server_seqs WHERE event_id = ? AND seq = ?`).pluck(),
    pending: db.prepare(`SELECT count(*) FROM outbox`).pluck(),
    deadCount: db.prepare(`SELECT count(*) FROM dead_letters WHERE requeued_as IS NULL`).pluck(),
    // The common case, our own event served back, matches byte for byte (the server stores the payload text it got).
    identical: db
      .prepare(
        `SELECT count(*) FROM events
         WHERE id = ? AND type = ? AND version = ? AND hlc = ? AND client_id = ? AND payload = ?`
      )
      .pluck(),
    held: db.prepare(`SELECT * FROM events WHERE id = ?`),
    // Conflicts live in sync_state under a key prefix: the sync bookkeeping's key/value table, so no migration.
    conflict: db.prepare(`INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING`),
    conflictCount: db.prepare(`SELECT count(*) FROM sync_state WHERE key GLOB '${CONFLICT_KEY}*'`).pluck()
  }))

  const inTransaction = database.transaction

  const get = (key: string) =>
    raw(() => {
      const v = stmts.getKey.get(key)
      return typeof v === "string" ? v : undefined
    })
  const set = (key: string, value: string) => raw(() => void stmts.setKey.run(key, value))
  const cursor = Effect.map(get("cursor"), (v) => (v === undefined ? 0 : Number(v)))

  const generationNow = () => Number(stmts.getKey.get("generation") ?? 0)

  const recordPush = (results: ReadonlyArray<PushResult>, now: number, generation: number) =>
    inTransaction(
      Effect.gen(function* () {
        if ((yield* raw(generationNow)) !== generation) return undefined
        const rejected: Array<{ id: string; reason: string; message: string }> = []
        const touched = yield* raw(() => {
          const memories = new Set<string>()
          for (const r of results) {
            if (r.status === "rejected") {
              stmts.dead.run(r.id, r.reason, r.message, now)
              const m = stmts.memoryOf.get(r.id)
              if (typeof m === "string") memories.add(m)
              rejected.push({ id: r.id, reason: r.reason, message: r.message })
            } else {
              stmts.seq.run(r.id, r.seq)
            }
            stmts.leave.run(r.id)
          }
          return Array.from(memories)
        })
        yield* Replay.refold(touched).pipe(
          Effect.provideService(Database, database),
          Effect.provideService(Materializer, view)
        )
        return { acked: results.length - rejected.length, rejected }
      })
    )

  /**
   * Among pulled events NOT added (their id is held here), the ones whose body differs: dead-letter the local version
   * (unless it already is) and record the conflict. Returns the conflicts first seen now and the memories to re-fold.
   */
  const detectConflicts = (events: ReadonlyArray<PulledEvent>, added: ReadonlyArray<Envelope>, now: number) =>
    raw(() => {
      const addedIds = new Set(added.map((e) => e.id))
      const fresh: Array<{ readonly id: string; readonly seq: number }> = []
      const touched = new Set<string>()
      for (const e of events) {
        if (addedIds.has(e.id)) continue
        // Already confirmed at this very seq (our own event served back, a page pulled again): nothing to compare.
        if (Number(stmts.knownAt.get(e.id, e.seq)) > 0) continue
        if (Number(stmts.identical.get(e.id, e.type, e.version, e.hlc, e.clientId, toJson(e.payload))) > 0) continue
        const row = stmts.held.get(e.id)
        if (row === undefined || sameBody(decodeHeld(row), e)) continue
        const message = `the server holds another event under this id (seq ${e.seq})`
        if (stmts.dead.run(e.id, "id-conflict", message, now).changes > 0) {
          const m = stmts.memoryOf.get(e.id)
          if (typeof m === "string") touched.add(m)
        }
        if (stmts.conflict.run(CONFLICT_KEY + e.id, String(e.seq)).changes > 0) fresh.push({ id: e.id, seq: e.seq })
      }
      return { fresh, touched: Array.from(touched) }
    })

  const applyPull = (events: ReadonlyArray<PulledEvent>, next: number) =>
    Effect.gen(function* () {
      const envelopes: Array<Envelope> = events.map(({ seq: _seq, ...e }) => e)
      const now = yield* Clock.currentTimeMillis
      const { added: fresh, conflicts } = yield* inTransaction(
        Effect.gen(function* () {
          const added = yield* log.ingest(envelopes)
          yield* view.apply(added)
          const conflicts =
            added.length === events.length ? { fresh: [], touched: [] } : yield* detectConflicts(events, added, now)
          yield* Replay.refold(conflicts.touched).pipe(
            Effect.provideService(Database, database),
            Effect.provideService(Materializer, view)
          )
          yield* raw(() => {
            // An event the server serves is an event it holds: if it is still queued here (re-queued by a resync),
            // it need not be pushed again.
            if (Number(stmts.pending.get()) > 0) for (const e of events) stmts.leave.run(e.id)
            for (const e of events) stmts.seq.run(e.id, e.seq)
            const current = Number(stmts.getKey.get("cursor") ?? 0)
            if (next > current) stmts.setKey.run("cursor", String(next))
          })
          return { added, conflicts: conflicts.fresh }
        })
      )
      if (conflicts.length > 0) yield* Effect.logWarning(conflictWarning(conflicts))
      if (fresh.length > 0) {
        let max = fresh[0]!.hlc
        for (const e of fresh) if (e.hlc > max) max = e.hlc
        yield* clock.observe(max)
        const memoryIds = Array.from(new Set(fresh.flatMap((e) => memoryIdOf(e) ?? [])))
        yield* store.publish({ source: "remote", memoryIds, eventIds: fresh.map((e) => e.id) })
      }
      return fresh.length
    })

  const confirmed = (head: number) =>
    raw(() => {
      const ids = stmts.confirmed.all(head).map(String)
      return { count: ids.length, digest: Digest.of(ids) }
    })

  const reset = (epoch: string) =>
    raw((db) => {
      db.exec(`DELETE FROM server_seqs`)
      // A push answered before this reset must not be recorded after it (see `recordPush`).
      stmts.setKey.run("generation", String(generationNow() + 1))
      // Conflicts were with the old server's log; the re-pull finds those the new one still has.
      db.exec(`DELETE FROM sync_state WHERE key GLOB '${CONFLICT_KEY}*'`)
      stmts.setKey.run("cursor", "0")
      stmts.setKey.run("epoch", epoch)
      return db
        .prepare(
          `INSERT INTO outbox (seq) SELECT e.seq FROM events e
             WHERE e.id NOT IN (SELECT event_id FROM dead_letters)
               AND e.seq NOT IN (SELECT seq FROM outbox)`
        )
        .run().changes
    })

  const resetForEpoch = (epoch: string) => inTransaction(reset(epoch))

  const firstContact = (epoch: string) =>
    inTransaction(
      Effect.gen(function* () {
        const outcome = yield* raw(() =>
          stmts.getKey.get("epoch") !== undefined
            ? ("kept" as const)
            : Number(stmts.recordedUpTo.get()) > 0 || Number(stmts.getKey.get("cursor") ?? 0) > 0
              ? ("reset" as const)
              : ("adopted" as const)
        )
        if (outcome === "reset") yield* reset(epoch)
        if (outcome === "adopted") yield* raw(() => stmts.setKey.run("epoch", epoch))
        return outcome
      })
    )

  const counts = raw((): Counts => ({
    pending: Number(stmts.pending.get()),
    deadLetters: Number(stmts.deadCount.get()),
    idConflicts: Number(stmts.conflictCount.get())
  }))

  const deadLetters = raw((db) =>
    db
      .prepare(
        `SELECT d.*, e.type, e.memory_id FROM dead_letters d JOIN events e ON e.id = d.event_id
         WHERE d.requeued_as IS NULL ORDER BY d.at, e.seq`
      )
      .all()
      .map((row): DeadLetter => {
        const r = DeadLetterRow(row)
        return {
          eventId: r.event_id,
          type: r.type,
          memoryId: r.memory_id ?? undefined,
          reason: r.reason,
          message: r.message,
          at: r.at
        }
      })
  )

  // One transaction: the fresh event and `requeued_as` commit together (emit's own transaction becomes a savepoint),
  // so a crash can never leave the dead letter listed after its payload was re-emitted (a second requeue would then
  // send it twice).
  const requeue = (eventId: string) =>
    inTransaction(
      Effect.gen(function* () {
        const original = yield* raw((db) => {
          const row = db
            .prepare(
              `SELECT * FROM events WHERE id = ? AND id IN (SELECT event_id FROM dead_letters WHERE requeued_as IS NULL)`
            )
            .get(eventId)
          return row === undefined ? undefined : decodeRow(row)
        })
        if (original === undefined) return yield* new DeadLetterNotFound({ eventId })
        const fresh = yield* store.emit(original.type, original.version, original.payload)
        yield* raw((db) => db.prepare(`UPDATE dead_letters SET requeued_as = ? WHERE event_id = ?`).run(fresh, eventId))
        return fresh
      })
    )

  return Ledger.of({
    outboxBatch: (limit) => raw(() => stmts.outbox.all(limit).map(decodeRow)),
    recordPush,
    generation: raw(generationNow),
    recordedUpTo: raw(() => Number(stmts.recordedUpTo.get())),
    applyPull,
    cursor,
    get,
    set,
    confirmed,
    resetForEpoch,
    firstContact,
    counts,
    deadLetters,
    requeue
  })
})

/** The `sync_state` key prefix of a recorded id conflict (`id-conflict:<event id>` → server seq). */
const CONFLICT_KEY = "id-conflict:"

const decodeHeld = Schema.decodeUnknownSync(EventRow)

/**
 * The same event as the server would judge it: equal canonical envelopes (Admission's body hash compares those), so
 * a payload whose keys come in another order is the same event.
 */
const sameBody = (held: typeof EventRow.Type, e: Envelope): boolean =>
  held.type === e.type &&
  held.version === e.version &&
  held.hlc === e.hlc &&
  held.client_id === e.clientId &&
  canonicalJson(JSON.parse(held.payload)) === canonicalJson(e.payload)

/** The warning for conflicts first seen in a page. */
const conflictWarning = (conflicts: ReadonlyArray<{ readonly id: string; readonly seq: number }>): string => {
  const shown = conflicts.slice(0, 5).map((c) => `${c.id} (server seq ${c.seq})`)
  const more = conflicts.length > shown.length ? ` and ${conflicts.length - shown.length} more` : ""
  return (
    `id conflict: the server holds another body under ${conflicts.length} event id(s) this replica holds: ` +
    `${shown.join(", ")}${more}. This replica's versions are dead-lettered (requeue them to keep their payloads) and ` +
    `the server's versions cannot be applied here, so this replica's view differs from the server's ` +
    `(docs/sync.md, "ID conflicts")`
  )
}

const DeadLetterRow = Schema.decodeUnknownSync(
  Schema.Struct({
    event_id: Schema.String,
    type: Schema.String,
    memory_id: Schema.NullOr(Schema.String),
    reason: Schema.String,
    message: Schema.String,
    at: Schema.Number
  })
)

/** The ledger over the replica's store in context. */
export const layer = Layer.effect(Ledger, make)
