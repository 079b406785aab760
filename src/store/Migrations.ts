/**
 * The replica's schema, applied through the Effect SQL migrator. A shipped migration never changes; add a new one.
 *
 * Tables:
 * - `events`: the append-only log (triggers refuse UPDATE and DELETE). `seq` is the local arrival order.
 * - `outbox`: local events not yet acknowledged by a server (filled by every local commit).
 * - `dead_letters`: events a server rejected; they leave the event set the view is folded from.
 * - `memories`: the materialized view. Each register has a value column and a `_key` column holding the order key
 *   `(hlc, id)` of the event that wrote it, so applying an event is a conditional upsert (see Materializer).
 * - `memories_fts`: FTS5 over content, tags, keywords and category, kept in step by triggers on `memories`.
 * - `memsync_meta`: key/value facts about this database (client id, kind).
 */
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Effect } from "effect"

/** Statements that keep `memories_fts` in step with `memories` (dropped and recreated around a bulk rebuild). */
export const FTS_TRIGGERS: ReadonlyArray<readonly [name: string, ddl: string]> = [
  [
    "memories_fts_insert",
    `CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
       INSERT INTO memories_fts(rowid, content, tags, keywords, category)
       VALUES (new.rownum, new.content, new.tags, new.keywords, new.category);
     END`
  ],
  [
    "memories_fts_update",
    // Only re-index when an indexed column changed: most updates touch importance or timestamps.
    `CREATE TRIGGER memories_fts_update AFTER UPDATE ON memories
     WHEN old.content IS NOT new.content OR old.tags IS NOT new.tags
       OR old.keywords IS NOT new.keywords OR old.category IS NOT new.category
     BEGIN
       INSERT INTO memories_fts(memories_fts, rowid, content, tags, keywords, category)
       VALUES ('delete', old.rownum, old.content, old.tags, old.keywords, old.category);
       INSERT INTO memories_fts(rowid, content, tags, keywords, category)
       VALUES (new.rownum, new.content, new.tags, new.keywords, new.category);
     END`
  ],
  [
    "memories_fts_delete",
    `CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
       INSERT INTO memories_fts(memories_fts, rowid, content, tags, keywords, category)
       VALUES ('delete', old.rownum, old.content, old.tags, old.keywords, old.category);
     END`
  ]
]

/** The columns of a view table (`memories`, or a scratch copy used by verify and replay). */
export const viewTableDdl = (table: string): string => `CREATE TABLE ${table} (
  rownum INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  created INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0,
  content TEXT, content_key TEXT,
  category TEXT, category_key TEXT,
  tags TEXT, tags_key TEXT,
  keywords TEXT, keywords_key TEXT,
  importance REAL, importance_key TEXT,
  sensitive INTEGER, sensitive_key TEXT,
  created_at INTEGER, created_at_key TEXT,
  updated_at INTEGER, updated_at_key TEXT,
  deleted_at INTEGER, deleted_at_key TEXT
)`

const init = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE memsync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`
  yield* sql`CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    memory_id TEXT,
    hlc TEXT NOT NULL,
    client_id TEXT NOT NULL,
    payload TEXT NOT NULL
  )`
  yield* sql`CREATE INDEX events_by_memory ON events(memory_id)`
  yield* sql`CREATE INDEX events_by_hlc ON events(hlc)`
  yield* sql`CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'memsync: events are append-only (UPDATE refused)'); END`
  yield* sql`CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'memsync: events are append-only (DELETE refused)'); END`
  yield* sql`CREATE TABLE outbox (seq INTEGER PRIMARY KEY REFERENCES events(seq))`
  yield* sql`CREATE TABLE dead_letters (
    event_id TEXT PRIMARY KEY REFERENCES events(id),
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    at INTEGER NOT NULL
  )`
  yield* sql.unsafe(viewTableDdl("memories"))
  yield* sql`CREATE INDEX memories_by_created ON memories(created_at)`
  yield* sql`CREATE INDEX memories_by_category ON memories(category)`
  yield* sql`CREATE VIRTUAL TABLE memories_fts USING fts5(
    content, tags, keywords, category,
    content = 'memories', content_rowid = 'rownum', tokenize = 'unicode61 remove_diacritics 2'
  )`
  for (const [, ddl] of FTS_TRIGGERS) yield* sql.unsafe(ddl)
})

/**
 * Sync bookkeeping (the sync engine owns it): the server seq each pushed or pulled event got, and key/value state
 * (pull cursor, server epoch, server URL, confirmed digest). Never stored in event rows.
 */
const sync = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE server_seqs (event_id TEXT PRIMARY KEY REFERENCES events(id), seq INTEGER NOT NULL)`
  yield* sql`CREATE INDEX server_seqs_by_seq ON server_seqs(seq)`
  yield* sql`CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)`
  // A requeued dead letter stays excluded from the fold; this names the fresh event that carries its payload now.
  yield* sql`ALTER TABLE dead_letters ADD COLUMN requeued_as TEXT`
})

/** Bring the schema up to date (idempotent). */
export const migrate = Migrator.make({})({
  loader: Migrator.fromRecord({ "0001_init": init, "0002_sync": sync }),
  table: "memsync_migrations"
})
