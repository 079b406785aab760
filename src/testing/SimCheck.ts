/**
 * The properties of the convergence simulation (TESTING.md P1–P12), as checks over what a test can observe: the
 * server's log, and each replica's SQLite file read through its own connection.
 *
 * Step invariants run after every step; end properties after the heal phase. Each failure names its property, so a
 * shrunk scenario says which promise broke.
 */
import SqliteDatabase from "better-sqlite3"
import type Sqlite from "better-sqlite3"
import { Data, Effect } from "effect"
import * as Digest from "../domain/Digest.js"
import * as Fold from "../domain/Fold.js"
import type { ServerLog } from "../server/ServerLog.js"
import { Database } from "../store/Database.js"
import { knownEvents, Materializer } from "../store/Materializer.js"
import * as Replay from "../store/Replay.js"

/** A property that did not hold. */
export class SimFailure extends Data.TaggedError("SimFailure")<{
  readonly property: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.property}: ${this.detail}`
  }
}

/** Fail with a property violation. */
export const violated = (property: string, detail: string) => Effect.fail(new SimFailure({ property, detail }))

/** Fail unless `ok`. */
export const expect = (ok: boolean, property: string, message: () => string) =>
  ok ? Effect.void : violated(property, message())

/** What the checker knows of the current server's log (rebuilt when the epoch changes). */
export interface ServerTrack {
  epoch: string
  head: number
  /** Event ids by seq - 1. */
  ids: Array<string>
  idSet: Set<string>
}

/** Start tracking a server. */
export const trackServer = (epoch: string): ServerTrack => ({ epoch, head: 0, ids: [], idSet: new Set() })

/**
 * P6 + P2 on the server: the head never goes backwards within an epoch, seqs are gapless from 1, and no event id
 * is stored twice. Reads only what was appended since the last call.
 */
export const observeServer = (track: ServerTrack, server: ServerLog["Type"], space: string) =>
  Effect.gen(function* () {
    if (server.epoch !== track.epoch) Object.assign(track, trackServer(server.epoch))
    const head = yield* server.head(space)
    yield* expect(head.head >= track.head, "P6", () => `server head went back from ${track.head} to ${head.head}`)
    while (track.head < head.head) {
      const page = yield* server.pull(space, track.head, 10_000)
      if (page.events.length === 0) break
      for (const e of page.events) {
        yield* expect(e.seq === track.ids.length + 1, "P6", () => `server seq ${e.seq} follows ${track.ids.length}`)
        yield* expect(!track.idSet.has(e.id), "P2", () => `event ${e.id} is on the server twice (seq ${e.seq})`)
        track.ids.push(e.id)
        track.idSet.add(e.id)
      }
      track.head = track.ids.length
    }
    yield* expect(track.head === head.head, "P6", () => `server head ${head.head} but ${track.head} events served`)
    return head
  })

/** What one replica's file says about its sync state. */
export interface ReplicaSnapshot {
  readonly cursor: number
  readonly epoch: string | undefined
  readonly events: number
  readonly maxHlc: string | undefined
  readonly ids: ReadonlySet<string>
  readonly outbox: number
  readonly outboxDangling: number
  readonly outboxDead: number
  readonly dead: ReadonlyMap<string, string>
  readonly seqs: ReadonlyArray<readonly [string, number]>
}

/** Read a replica's sync state (one pass over its tables, with statements prepared once per connection). */
export const snapshot = (database: Database) => database.raw(snapshotOf)

/** Read the sync state a stopped replica left in its file (after a crash: what it will boot from). */
export const snapshotFile = (filename: string): ReplicaSnapshot => {
  const db = new SqliteDatabase(filename, { readonly: true })
  try {
    return snapshotOf(db)
  } finally {
    db.close()
  }
}

const snapshotOf = (db: Sqlite.Database): ReplicaSnapshot => {
  const q = statementsFor(db)
  const key = (k: string) => {
    const v = q.key.get(k)
    return typeof v === "string" ? v : undefined
  }
  const ids = new Set(q.ids.all().map(String))
  const dead = new Map<string, string>()
  for (const row of q.dead.all()) {
    const [id, reason] = row as [unknown, unknown]
    dead.set(String(id), String(reason ?? ""))
  }
  const seqs = q.seqs.all().map((row) => {
    const [id, seq] = row as [unknown, unknown]
    return [String(id), Number(seq)] as const
  })
  const maxHlc = q.maxHlc.get()
  const outbox = q.outbox.get() as [unknown, unknown, unknown]
  return {
    cursor: Number(key("cursor") ?? 0),
    epoch: key("epoch"),
    events: ids.size,
    maxHlc: typeof maxHlc === "string" ? maxHlc : undefined,
    ids,
    outbox: Number(outbox[0]),
    outboxDangling: Number(outbox[1]),
    outboxDead: Number(outbox[2]),
    dead,
    seqs
  }
}

const statements = new WeakMap<Sqlite.Database, ReturnType<typeof prepare>>()
const statementsFor = (db: Sqlite.Database) => {
  let q = statements.get(db)
  if (q === undefined) {
    q = prepare(db)
    statements.set(db, q)
  }
  return q
}
// Rows come back as arrays (`raw()`) to skip building objects; the snapshot decodes them by position.
const prepare = (db: Sqlite.Database) => ({
  key: db.prepare(`SELECT value FROM sync_state WHERE key = ?`).pluck(),
  ids: db.prepare(`SELECT id FROM events`).pluck(),
  dead: db.prepare(`SELECT event_id, reason FROM dead_letters`).raw(),
  seqs: db.prepare(`SELECT event_id, seq FROM server_seqs`).raw(),
  maxHlc: db.prepare(`SELECT max(hlc) FROM events`).pluck(),
  outbox: db
    .prepare(
      `SELECT count(*),
         coalesce(sum(o.seq NOT IN (SELECT seq FROM events)), 0),
         coalesce(sum(o.seq IN (SELECT e.seq FROM events e JOIN dead_letters d ON d.event_id = e.id)), 0)
       FROM outbox o`
    )
    .raw()
})

/** The previous observation of a replica, for the monotonicity checks. */
export interface Previous {
  readonly cursor: number
  readonly epoch: string | undefined
}

/**
 * Step invariants of one replica (P6, P11 bookkeeping):
 * - its log has no holes: the server seqs it recorded and its outbox point at events it holds (and the outbox not at
 *   dead letters); every dead letter has a reason;
 * - its cursor never goes back, except while it has not yet adopted the server's current epoch (a resync);
 * - it records no server seq and no cursor before it has an epoch (seqs index one server log);
 * - while it agrees on the epoch: every server seq it recorded names the event the server holds at that seq, and it
 *   holds every event the server has up to its cursor.
 */
export const checkReplica = (name: string, s: ReplicaSnapshot, previous: Previous | undefined, track: ServerTrack) =>
  Effect.gen(function* () {
    // Local seqs may skip (an ignored duplicate insert consumes an AUTOINCREMENT value), so "no holes" is about
    // ids: everything the bookkeeping points at is in the log.
    for (const [id, seq] of s.seqs) {
      yield* expect(s.ids.has(id), "P6", () => `${name}: records server seq ${seq} for ${id}, which its log lacks`)
    }
    yield* expect(s.outboxDangling === 0, "P6", () => `${name}: ${s.outboxDangling} outbox entries without an event`)
    yield* expect(s.outboxDead === 0, "P11", () => `${name}: ${s.outboxDead} dead-lettered events still pending`)
    for (const [id, reason] of s.dead) {
      yield* expect(reason.length > 0, "P11", () => `${name}: dead letter ${id} has no reason`)
    }
    if (previous !== undefined) {
      const resyncing = previous.epoch !== track.epoch || s.epoch !== track.epoch
      yield* expect(
        s.cursor >= previous.cursor || resyncing,
        "P6",
        () => `${name}: cursor went back from ${previous.cursor} to ${s.cursor} without an epoch change`
      )
    }
    // Seqs mean something only within one server log: none is recorded before the replica knows which (its epoch).
    yield* expect(
      s.epoch !== undefined || (s.seqs.length === 0 && s.cursor === 0),
      "P6",
      () => `${name}: records ${s.seqs.length} server seq(s) and cursor ${s.cursor} without a server epoch`
    )
    if (s.epoch !== track.epoch) return
    for (const [id, seq] of s.seqs) {
      yield* expect(
        track.ids[seq - 1] === id,
        "P6",
        () => `${name}: records ${id} at server seq ${seq}, the server holds ${track.ids[seq - 1] ?? "nothing"} there`
      )
    }
    yield* expect(
      s.cursor <= track.head,
      "P6",
      () => `${name}: cursor ${s.cursor} is past the server head ${track.head}`
    )
    for (let seq = 1; seq <= s.cursor; seq++) {
      const id = track.ids[seq - 1]!
      yield* expect(
        s.ids.has(id),
        "P6",
        () => `${name}: cursor ${s.cursor} passed server seq ${seq} (${id}) it does not hold`
      )
    }
  })

/** A canonical JSON text (sorted keys), so two equal states compare equal as strings. */
export const canonical = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v
  )

/** A view as sorted canonical lines, one per memory. */
export const viewLines = (states: ReadonlyMap<string, Fold.MemoryState>): Array<string> =>
  Array.from(states.values(), (s) => canonical(s)).sort()

/** The server's whole log. */
export const serverEvents = (server: ServerLog["Type"], space: string) =>
  Effect.gen(function* () {
    const out = []
    let after = 0
    while (true) {
      const page = yield* server.pull(space, after, 10_000)
      out.push(...page.events)
      if (!page.hasMore || page.events.length === 0) return out
      after = page.events[page.events.length - 1]!.seq
    }
  })

/** The reference view: the pure fold of the server's events. */
export const referenceView = (events: Parameters<typeof knownEvents>[0]) => viewLines(Fold.fold(knownEvents(events)))

/**
 * Quiescence (P1's bookkeeping half): the replica adopted the server's epoch, pulled to its head, has nothing pending,
 * recorded every server seq, and holds exactly the server's events plus its own dead letters.
 */
export const settledOn = (s: ReplicaSnapshot, track: ServerTrack): string | undefined => {
  if (s.epoch !== track.epoch) return `epoch ${s.epoch ?? "none"}, server ${track.epoch}`
  if (s.cursor !== track.head) return `cursor ${s.cursor}, server head ${track.head}`
  if (s.outbox !== 0) return `${s.outbox} events pending`
  if (s.seqs.length !== track.head) return `${s.seqs.length} server seqs recorded, head ${track.head}`
  for (const id of track.ids) if (!s.ids.has(id)) return `missing server event ${id}`
  for (const id of s.ids) {
    if (!track.idSet.has(id) && !s.dead.has(id)) return `holds ${id}, which is neither on the server nor dead-lettered`
    if (track.idSet.has(id) && s.dead.has(id)) return `dead-lettered ${id}, which the server holds`
  }
  return undefined
}

/** P1 + P4 for one settled replica: its view is the fold of the server's events, and a rebuild gives the same. */
export const checkView = (name: string, database: Database, materializer: Materializer, reference: Array<string>) =>
  Effect.gen(function* () {
    const view = viewLines(yield* materializer.readStates())
    if (view.join("\n") !== reference.join("\n")) {
      const extra = view.filter((l) => !reference.includes(l)).slice(0, 3)
      const missing = reference.filter((l) => !view.includes(l)).slice(0, 3)
      return yield* violated(
        "P1",
        `${name}: view differs from fold(server events); only in view: ${extra.join(" | ")}; only in fold: ${missing.join(" | ")}`
      )
    }
    yield* checkRebuild(name, database, materializer)
  })

/** P4: the live view equals a fold of the replica's own log (Replay.verify; nothing is written). */
export const checkRebuild = (name: string, database: Database, materializer: Materializer) =>
  Effect.gen(function* () {
    const report = yield* Replay.verify().pipe(
      Effect.provideService(Database, database),
      Effect.provideService(Materializer, materializer)
    )
    yield* expect(report.ok, "P4", () => `${name}: view differs from a rebuild of its log: ${canonical(report)}`)
  })

/** The digest a settled replica should agree on (used in traces). */
export const digestOf = (ids: Iterable<string>) => Digest.of(ids)
