/**
 * The SQLite database of one replica (or of the server): one better-sqlite3 connection behind a 1-permit lock,
 * exposed both as an `@effect/sql` client (interactive path) and as the raw handle (bulk paths).
 *
 * Why not `SqliteClient.layer`: it hides the handle, and the bulk paths (batch ingest, rebuild, replay) need
 * prepared statements run in a tight loop — one Effect statement per row costs ~40 µs of runtime, a prepared
 * `.run()` a few. Both views share one lock, and `raw` joins the caller's open transaction, so mixing them inside
 * `withTransaction` is safe.
 *
 * Opening: a missing file is created only when `create` is set; a file that is not SQLite, or SQLite holding other
 * tables, is refused before anything is written to it. So is a memsync database of the other kind (a server log opened
 * as a replica, or the reverse): `memsync_meta.kind` names it, and a database without that row is a replica.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient, SqlError, Statement } from "@effect/sql"
import type { MigrationError } from "@effect/sql/Migrator"
import type { Connection } from "@effect/sql/SqlConnection"
import Sqlite from "better-sqlite3"
import { Context, Effect, Layer, Option, Scope, Stream } from "effect"
import { existsSync, type Stats, statSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import {
  DatabaseCorrupt,
  DatabaseNotFound,
  InvalidDatabasePath,
  NotAMemsyncDatabase,
  StorageError,
  WrongDatabaseKind
} from "./Errors.js"
import * as Checkpointer from "./Checkpointer.js"
import { migrate } from "./Migrations.js"

/** How to open a database. */
export interface Config {
  /** A file path, or `:memory:`. */
  readonly filename: string
  /** `NORMAL` (default) may lose the last commits on power loss, never corrupts; `FULL` fsyncs every commit. */
  readonly synchronous?: "NORMAL" | "FULL"
  /** Create the file when it does not exist (default true). Read-only commands pass false. */
  readonly create?: boolean
  /** Open without write access; migrations are not run (default false). */
  readonly readonly?: boolean
  /** Which schema the file holds (default: the replica's). The server log passes its own. */
  readonly schema?: SchemaSet
}

/** A kind of memsync database: the name stored in `memsync_meta.kind` and the migrations that build it. */
export interface SchemaSet {
  readonly kind: string
  readonly migrate: Effect.Effect<unknown, MigrationError | SqlError.SqlError, SqlClient.SqlClient>
}

/** The replica schema (the default). */
export const replicaSchema: SchemaSet = { kind: "replica", migrate }

/** The open database. */
export interface Database {
  readonly filename: string
  readonly sql: SqlClient.SqlClient
  /** Run `body` in one transaction (nested calls become savepoints); SQL failures become StorageError. */
  readonly transaction: <A, E, R>(body: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StorageError, R>
  /** Run `f` on the raw handle holding the connection (joins an open transaction). Exceptions become StorageError. */
  readonly raw: <A>(f: (db: Sqlite.Database) => A) => Effect.Effect<A, StorageError>
  /**
   * `raw` in one write transaction: committed when `f` returns, rolled back when it throws (a savepoint when a
   * transaction is already open). For synchronous writes on the interactive path, where `transaction` costs more
   * than the SQLite work (see `rawTransaction`).
   */
  readonly write: <A>(f: (db: Sqlite.Database) => A) => Effect.Effect<A, StorageError>
}

/** The database service. */
export const Database = Context.GenericTag<Database>("memsync/Database")

/** Errors of opening a database. */
export type OpenError =
  DatabaseNotFound | NotAMemsyncDatabase | WrongDatabaseKind | InvalidDatabasePath | DatabaseCorrupt | StorageError

/** Open (and migrate) a database for the lifetime of the scope. */
export const make = (config: Config): Effect.Effect<Database, OpenError, Scope.Scope> =>
  Effect.gen(function* () {
    const db = yield* Effect.acquireRelease(open(config), (db) => Effect.sync(() => db.close()))
    // Released before the connection closes (finalizers run in reverse order).
    const checkpointer = yield* Effect.acquireRelease(
      Effect.sync(() => (isWal(config) ? Checkpointer.make(config.filename, db) : undefined)),
      (c) => (c === undefined ? Effect.void : c.stop)
    )
    const committed = () => checkpointer?.committed()
    const semaphore = yield* Effect.makeSemaphore(1)
    const connection = makeConnection(db)
    const acquirer = semaphore.withPermits(1)(Effect.succeed(connection))
    // A transaction's scope closes after its COMMIT (or ROLLBACK): that is where the checkpointer hears of it.
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.as(
        Effect.zipRight(
          restore(semaphore.take(1)),
          Effect.tap(Effect.scope, (scope) =>
            Scope.addFinalizer(scope, Effect.ensuring(Effect.sync(committed), semaphore.release(1)))
          )
        ),
        connection
      )
    )
    const sql = yield* SqlClient.make({
      acquirer,
      transactionAcquirer,
      compiler: Statement.makeCompilerSqlite(),
      // IMMEDIATE takes the write lock up front: with several processes on one file, a deferred transaction that
      // reads then writes can fail with SQLITE_BUSY instead of waiting.
      beginTransaction: config.readonly === true ? "BEGIN" : "BEGIN IMMEDIATE",
      spanAttributes: [["db.system.name", "sqlite"]]
    }).pipe(Effect.provide(Reactivity.layer))

    // When the lock is free, take it without the asynchronous wait `withPermits` sets up every time (~3 µs of the ~7
    // a `raw` call cost); when it is held, wait as before.
    const locked = <A, E>(self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.flatMap(
        semaphore.withPermitsIfAvailable(1)(self),
        Option.match({ onNone: () => semaphore.withPermits(1)(self), onSome: Effect.succeed })
      )

    const raw = <A>(f: (db: Sqlite.Database) => A): Effect.Effect<A, StorageError> => {
      const run = Effect.try({ try: () => f(db), catch: (cause) => new StorageError({ message: messageOf(cause) }) })
      return Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (inTx) =>
        Option.isSome(inTx) ? run : locked(run)
      )
    }

    const write = rawTransaction(db, config.readonly === true ? "BEGIN" : "BEGIN IMMEDIATE", raw, committed)

    const transaction = <A, E, R>(body: Effect.Effect<A, E, R>): Effect.Effect<A, E | StorageError, R> =>
      sql.withTransaction(body).pipe(
        Effect.catchIf(
          (e): e is SqlError.SqlError => e instanceof SqlError.SqlError,
          (e) => Effect.fail(new StorageError({ message: e.message }))
        )
      )

    const database: Database = { filename: config.filename, sql, raw, write, transaction }
    if (config.readonly !== true) {
      yield* (config.schema ?? replicaSchema).migrate.pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.mapError((e) => new StorageError({ message: `migrating ${config.filename}: ${e.message}` }))
      )
    }
    return database
  })

/** A layer opening the database described by `config`. */
export const layer = (config: Config): Layer.Layer<Database | SqlClient.SqlClient, OpenError> =>
  Layer.scopedContext(
    Effect.map(make(config), (db) => Context.make(Database, db).pipe(Context.add(SqlClient.SqlClient, db.sql)))
  )

/** An in-memory database (tests). */
export const layerMemory: Layer.Layer<Database | SqlClient.SqlClient, OpenError> = layer({ filename: ":memory:" })

/** The text of a thrown value, for one-line error messages. */
export const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const open = (config: Config): Effect.Effect<Sqlite.Database, OpenError> =>
  Effect.gen(function* () {
    const path = config.filename
    const memory = path === ":memory:" || path === ""
    const unusable = memory ? undefined : pathProblem(path)
    if (unusable !== undefined) return yield* new InvalidDatabasePath({ path, reason: unusable })
    if (!memory && config.create === false && !existsSync(path)) return yield* new DatabaseNotFound({ path })
    const db = yield* Effect.try({
      try: () => new Sqlite(path, { readonly: config.readonly ?? false }),
      catch: (cause) => new StorageError({ message: `cannot open ${path}: ${messageOf(cause)}` })
    })
    const checked = Effect.try({
      try: () => {
        // Any read fails with SQLITE_NOTADB on a file that is not SQLite.
        const tables = db
          .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
          .pluck()
          .all()
        // An empty file is a new database only for a caller allowed to create one; a read must not turn it into one.
        if (tables.length === 0) return config.create === false && !memory ? "it is empty" : true
        if (!tables.includes("memsync_meta")) return "it holds tables that memsync did not create"
        // Replica databases made before `kind` was recorded have no row: they are replicas.
        const stored = db.prepare("SELECT value FROM memsync_meta WHERE key = 'kind'").pluck().get() ?? "replica"
        const expected = (config.schema ?? replicaSchema).kind
        return stored === expected ? true : new WrongDatabaseKind({ path, kind: String(stored), expected })
      },
      catch: (cause) =>
        isCorruptCode(cause)
          ? new DatabaseCorrupt({ path, reason: messageOf(cause) })
          : new NotAMemsyncDatabase({ path, reason: messageOf(cause) })
    })
    const ok = yield* Effect.tapError(checked, () => Effect.sync(() => db.close()))
    if (ok !== true) {
      db.close()
      return yield* typeof ok === "string" ? new NotAMemsyncDatabase({ path, reason: ok }) : ok
    }
    yield* Effect.try({
      try: () => {
        db.pragma("busy_timeout = 5000")
        if (!memory && config.readonly !== true) db.pragma("journal_mode = WAL")
        db.pragma(`synchronous = ${config.synchronous ?? "NORMAL"}`)
        // 64 MiB of page cache (default 2 MiB): bulk ingest and rebuild slow down sharply once the view's indexes
        // outgrow the cache. It is an upper bound, not an allocation.
        db.pragma("cache_size = -65536")
        // `INSERT OR REPLACE` deletes the row it replaces, and SQLite fires DELETE triggers for that only with
        // recursive triggers on: without this, REPLACE would rewrite an event past the append-only triggers.
        db.pragma("recursive_triggers = ON")
      },
      catch: (cause) => {
        db.close()
        return new StorageError({ message: `cannot configure ${path}: ${messageOf(cause)}` })
      }
    })
    return db
  })

/**
 * Why `path` cannot hold a database file, when the file system says so plainly (SQLite only says "unable to open
 * database file"). Anything less clear (permissions, a dangling link) is left to SQLite to report.
 */
const pathProblem = (path: string): string | undefined => {
  const target = statOf(path)
  if (target !== undefined) {
    return target.isDirectory()
      ? `it is a directory; name a file instead (e.g. ${join(path, "memsync.db")})`
      : undefined
  }
  const dir = dirname(resolve(path))
  const parent = statOf(dir)
  if (parent === undefined) return `the directory ${dir} does not exist; create it first, or name a file elsewhere`
  return parent.isDirectory() ? undefined : `${dir} is not a directory`
}

const statOf = (path: string): Stats | undefined => {
  try {
    return statSync(path)
  } catch {
    // Missing, or not reachable (ENOTDIR, EACCES): the caller looks at the parent, or lets SQLite report it.
    return undefined
  }
}

/** A file opened for writing is in WAL mode (`open` sets it), so it gets a checkpointer. */
const isWal = (config: Config): boolean =>
  config.filename !== ":memory:" && config.filename !== "" && config.readonly !== true

/** SQLITE_CORRUPT and its extended codes (better-sqlite3 puts the name in `code`). */
const isCorruptCode = (cause: unknown): boolean =>
  typeof cause === "object" &&
  cause !== null &&
  "code" in cause &&
  typeof cause.code === "string" &&
  cause.code.startsWith("SQLITE_CORRUPT")

/**
 * `Database.write`. Why not `sql.withTransaction` around `raw`: that costs ~30 µs per call (a span, a scope for the
 * connection, BEGIN and COMMIT prepared anew each time), as much as the SQLite work of a whole interactive create.
 * Here the statements are prepared once and the transaction is one synchronous call under the connection's lock.
 * A failing COMMIT rolls back and becomes a StorageError (`withTransaction` makes it a defect).
 */
const rawTransaction = (
  db: Sqlite.Database,
  begin: string,
  raw: <A>(f: (db: Sqlite.Database) => A) => Effect.Effect<A, StorageError>,
  committed: () => void
) => {
  const s = {
    begin: db.prepare(begin),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
    savepoint: db.prepare("SAVEPOINT memsync_write"),
    release: db.prepare("RELEASE memsync_write"),
    rollbackTo: db.prepare("ROLLBACK TO memsync_write")
  }
  return <A>(f: (db: Sqlite.Database) => A): Effect.Effect<A, StorageError> =>
    raw(() => {
      // Inside an open transaction (`raw` joined it): a savepoint, so a throw undoes only this write.
      const nested = db.inTransaction
      ;(nested ? s.savepoint : s.begin).run()
      let result: A
      try {
        result = f(db)
        ;(nested ? s.release : s.commit).run()
      } catch (cause) {
        // SQLite may have rolled the transaction back already (e.g. SQLITE_FULL); only undo what is still open.
        if (db.inTransaction) {
          if (nested) {
            s.rollbackTo.run()
            s.release.run()
          } else s.rollback.run()
        }
        throw cause
      }
      // After the try: whatever happens here, the write is committed and must not be reported as failed.
      if (!nested) committed()
      return result
    })
}

const makeConnection = (db: Sqlite.Database): Connection => {
  const cache = new Map<string, Sqlite.Statement>()
  const prepare = (sql: string): Sqlite.Statement => {
    let stmt = cache.get(sql)
    if (stmt === undefined) {
      // Multi-row statements vary in length; a bounded cache keeps the common shapes without growing forever.
      if (cache.size >= 500) cache.clear()
      stmt = db.prepare(sql)
      cache.set(sql, stmt)
    }
    return stmt
  }
  const attempt = <A>(f: () => A) =>
    Effect.try({ try: f, catch: (cause) => new SqlError.SqlError({ cause, message: messageOf(cause) }) })
  const rows = (stmt: Sqlite.Statement, params: ReadonlyArray<unknown>): Array<unknown> => {
    if (stmt.reader) return stmt.all(...params)
    stmt.run(...params)
    return []
  }
  return {
    execute: (sql, params, transformRows) => {
      const effect = attempt(() => rows(prepare(sql), params))
      // The Connection interface types rows as `any`; callers decode them through a Schema.
      return transformRows ? Effect.map(effect, (r) => transformRows(r as Array<object>)) : effect
    },
    executeRaw: (sql, params) =>
      attempt(() => {
        const stmt = prepare(sql)
        return stmt.reader ? stmt.all(...params) : stmt.run(...params)
      }),
    executeValues: (sql, params) =>
      attempt(() => {
        const stmt = prepare(sql)
        if (!stmt.reader) {
          stmt.run(...params)
          return []
        }
        try {
          // In raw mode every row is an array of column values.
          return stmt.raw(true).all(...params) as Array<Array<unknown>>
        } finally {
          stmt.raw(false)
        }
      }),
    executeUnprepared: (sql, params, transformRows) => {
      const effect = attempt(() => rows(db.prepare(sql), params ?? []))
      return transformRows ? Effect.map(effect, (r) => transformRows(r as Array<object>)) : effect
    },
    executeStream: () => Stream.dieMessage("memsync: executeStream is not supported; page with keyset queries")
  }
}
