/**
 * The server database's schema (a separate file from any replica), applied through the Effect SQL migrator. A shipped
 * migration never changes; add a new one. Debug tooling reads these tables, so their names are part of the contract.
 *
 * Tables:
 * - `memsync_meta`: `kind` = `server`, so `Database` refuses to open this file as a replica (and the reverse).
 * - `server_meta`: `epoch`, a random id made with the database and never changed: a client that sees another epoch
 *   knows the log it synced with is gone (reset or restored) and resyncs.
 * - `server_spaces`: per space, the highest seq and the digest of the ids of events 1..head (kept in step by the same
 *   transaction that inserts events, so `/v1/head` is one row read).
 * - `server_events`: the append-only log (triggers refuse UPDATE and DELETE); `(space, seq)` is gapless from 1,
 *   `(space, id)` unique. `body_hash` is the SHA-256 of the canonical envelope, compared on a re-push.
 */
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Effect } from "effect"
import type { SchemaSet } from "../store/Database.js"

const init = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE memsync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`
  yield* sql`INSERT INTO memsync_meta (key, value) VALUES ('kind', 'server')`
  // `epoch` is inserted by ServerLog right after migrating: it comes from the IdGenerator service (replaceable).
  yield* sql`CREATE TABLE server_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`
  yield* sql`CREATE TABLE server_spaces (space TEXT PRIMARY KEY, head INTEGER NOT NULL, digest TEXT NOT NULL)`
  yield* sql`CREATE TABLE server_events (
    space TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    memory_id TEXT,
    hlc TEXT NOT NULL,
    client_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (space, seq),
    UNIQUE (space, id)
  )`
  yield* sql`CREATE TRIGGER server_events_no_update BEFORE UPDATE ON server_events
    BEGIN SELECT RAISE(ABORT, 'memsync: server_events are append-only (UPDATE refused)'); END`
  yield* sql`CREATE TRIGGER server_events_no_delete BEFORE DELETE ON server_events
    BEGIN SELECT RAISE(ABORT, 'memsync: server_events are append-only (DELETE refused)'); END`
})

/** Bring the server schema up to date (idempotent). */
export const migrate = Migrator.make({})({
  loader: Migrator.fromRecord({ "0001_server_init": init }),
  table: "memsync_migrations"
})

/** The server schema, for `Database.make({ schema })`. */
export const schema: SchemaSet = { kind: "server", migrate }
