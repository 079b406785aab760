import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Clock, Effect, TestClock } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as ServerMigrations from "../../src/server/ServerMigrations.js"
import * as Database from "../../src/store/Database.js"
import * as EventLog from "../../src/store/EventLog.js"
import * as Materializer from "../../src/store/Materializer.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"

/** A temp directory for the test, removed when its scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "memsync-store-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Open the full store on `filename` and fail with whatever opening fails with. */
const open = (config: MemoryStore.Config) => Effect.provide(MemoryStore.MemoryStore, MemoryStore.layer(config))

const eventRows = Effect.flatMap(Database.Database, (db) =>
  db.raw((h) => h.prepare(`SELECT * FROM events ORDER BY seq`).all())
)

describe("events are append-only", () => {
  it.effect("UPDATE and DELETE fail with the trigger's message through the raw handle and sql; rows stay", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      yield* store.create({ content: "immutable" })
      yield* store.create({ content: "me too" })
      const db = yield* Database.Database
      const sql = yield* SqlClient.SqlClient
      const before = yield* eventRows
      assert.strictEqual(before.length, 2)

      const statements: Array<[string, string]> = [
        [`UPDATE events SET payload = '{}' WHERE seq = 1`, "UPDATE refused"],
        [`UPDATE events SET seq = seq + 100`, "UPDATE refused"],
        [`DELETE FROM events WHERE seq = 1`, "DELETE refused"],
        // No WHERE: SQLite's truncate shortcut must not skip the trigger.
        [`DELETE FROM events`, "DELETE refused"]
      ]
      for (const [statement, refusal] of statements) {
        const viaRaw = yield* Effect.flip(db.raw((h) => h.prepare(statement).run()))
        assert.strictEqual(viaRaw._tag, "StorageError")
        assert.include(viaRaw.message, `memsync: events are append-only (${refusal})`)

        const viaSql = yield* Effect.flip(sql.unsafe(statement))
        assert.strictEqual(viaSql._tag, "SqlError")
        assert.include(viaSql.message, `memsync: events are append-only (${refusal})`)

        // Inside a transaction too, and the transaction's other writes roll back with it.
        const inTx = yield* Effect.flip(
          sql.withTransaction(
            Effect.zipRight(sql`INSERT INTO memsync_meta (key, value) VALUES ('probe', 'x')`, sql.unsafe(statement))
          )
        )
        assert.include(inTx.message, "append-only")
        assert.deepStrictEqual(yield* sql`SELECT * FROM memsync_meta WHERE key = 'probe'`, [])

        assert.deepStrictEqual(yield* eventRows, before)
      }
      assert.strictEqual((yield* store.stats).events, 2)
    }).pipe(Effect.provide(MemoryStore.layer({ filename: ":memory:" })))
  )

  it.effect("INSERT OR REPLACE cannot overwrite an event either (REPLACE is a delete)", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      // An ingested event has no outbox row, so no foreign key stands in the way: only the trigger can refuse.
      yield* store.ingest([
        {
          id: "01890a5d-ac96-774b-bcce-000000000001",
          type: "memory.created",
          version: 1,
          payload: {
            id: "r1",
            content: "original",
            category: "general",
            tags: [],
            keywords: [],
            importance: 0.5,
            sensitive: false,
            createdAt: 1,
            updatedAt: 1
          },
          hlc: "000000000005000:000000:peer",
          clientId: "peer"
        }
      ])
      const before = yield* eventRows
      const db = yield* Database.Database
      const sql = yield* SqlClient.SqlClient
      const replace = `INSERT OR REPLACE INTO events (id, type, version, memory_id, hlc, client_id, payload)
        SELECT id, type, version, memory_id, hlc, client_id, replace(payload, 'original', 'forged') FROM events`
      const viaRaw = yield* Effect.flip(db.raw((h) => h.prepare(replace).run()))
      assert.include(viaRaw.message, "memsync: events are append-only (DELETE refused)")
      const viaSql = yield* Effect.flip(sql.unsafe(replace))
      assert.include(viaSql.message, "memsync: events are append-only (DELETE refused)")
      const viaUpsert = yield* Effect.flip(
        sql.unsafe(`${replace} WHERE true ON CONFLICT(id) DO UPDATE SET payload = excluded.payload`)
      )
      assert.include(viaUpsert.message, "memsync: events are append-only (UPDATE refused)")
      assert.deepStrictEqual(yield* eventRows, before)
    }).pipe(Effect.provide(MemoryStore.layer({ filename: ":memory:" })))
  )
})

describe("Database.write", () => {
  const probes = Effect.flatMap(Database.Database, (db) =>
    db.raw((h) => h.prepare(`SELECT key FROM memsync_meta WHERE key LIKE 'probe%' ORDER BY key`).pluck().all())
  )
  const insert = (h: Sqlite.Database, key: string) =>
    h.prepare(`INSERT INTO memsync_meta (key, value) VALUES (?, 'x')`).run(key)

  it.effect("commits what f wrote; a throw rolls all of it back and becomes a StorageError", () =>
    Effect.gen(function* () {
      const db = yield* Database.Database
      assert.strictEqual(yield* db.write((h) => insert(h, "probe1").changes), 1)
      const failed = yield* Effect.flip(
        db.write((h) => {
          insert(h, "probe2")
          insert(h, "probe1")
        })
      )
      assert.strictEqual(failed._tag, "StorageError")
      assert.include(failed.message, "UNIQUE")
      assert.deepStrictEqual(yield* probes, ["probe1"])
      // The connection is usable and outside any transaction afterwards.
      assert.isFalse(yield* db.raw((h) => h.inTransaction))
    }).pipe(Effect.provide(Database.layerMemory))
  )

  it.effect("inside an open transaction it is a savepoint: its throw undoes only its own writes", () =>
    Effect.gen(function* () {
      const db = yield* Database.Database
      const nested = yield* db.transaction(
        Effect.gen(function* () {
          yield* db.raw((h) => insert(h, "probe1"))
          const inner = yield* Effect.flip(
            db.write((h) => {
              insert(h, "probe2")
              throw new Error("boom")
            })
          )
          yield* db.write((h) => insert(h, "probe3"))
          return inner.message
        })
      )
      assert.strictEqual(nested, "boom")
      assert.deepStrictEqual(yield* probes, ["probe1", "probe3"])
    }).pipe(Effect.provide(Database.layerMemory))
  )
})

describe("opening a database", () => {
  it.scoped("a file that is not SQLite is refused with NotAMemsyncDatabase and left byte-for-byte alone", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      for (const [name, bytes] of [
        ["garbage.db", randomBytes(8192)],
        ["notes.txt", Buffer.from("just some text, not a database\n")]
      ] as const) {
        const path = join(dir, name)
        writeFileSync(path, bytes)
        const error = yield* Effect.flip(open({ filename: path }))
        assert.strictEqual(error._tag, "NotAMemsyncDatabase")
        assert.include(error.message, path)
        assert.isTrue(Buffer.from(readFileSync(path)).equals(bytes))
      }
      // No journal or WAL files were created next to them.
      assert.deepStrictEqual(readdirSync(dir).sort(), ["garbage.db", "notes.txt"])
    })
  )

  it.scoped("a memsync database of the other kind is refused with what to do instead, and not modified", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const server = join(dir, "server.db")
      yield* Effect.scoped(Database.make({ filename: server, schema: ServerMigrations.schema }))
      const replica = join(dir, "replica.db")
      yield* Effect.scoped(Database.make({ filename: replica }))
      const before = [readFileSync(server), readFileSync(replica)]

      const asReplica = yield* Effect.flip(open({ filename: server }))
      assert.strictEqual(asReplica._tag, "WrongDatabaseKind")
      assert.strictEqual(
        asReplica.message,
        `${server} is a memsync server database, not a replica database: ` +
          "read one of its spaces with memsync log, export, stats, replay, blame or explain --space S"
      )
      const asServer = yield* Effect.flip(
        Effect.scoped(Database.make({ filename: replica, schema: ServerMigrations.schema }))
      )
      assert.strictEqual(asServer._tag, "WrongDatabaseKind")
      assert.include(asServer.message, "is a memsync replica database, not a server database: give memsync serve")
      assert.isTrue(readFileSync(server).equals(before[0]!) && readFileSync(replica).equals(before[1]!))
    })
  )

  it.scoped("a SQLite file holding other tables is refused and not modified", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const path = join(dir, "someone-else.sqlite")
      const foreign = new Sqlite(path)
      foreign.exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('hi')`)
      foreign.close()
      const bytes = readFileSync(path)

      const error = yield* Effect.flip(open({ filename: path }))
      assert.strictEqual(error._tag, "NotAMemsyncDatabase")
      assert.include(error.message, "tables that memsync did not create")
      assert.isTrue(readFileSync(path).equals(bytes))

      const check = new Sqlite(path, { readonly: true })
      const tables = check.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table'`).pluck().all()
      check.close()
      assert.deepStrictEqual(tables, ["notes"])
    })
  )

  it.scoped("create: false on a missing path fails with DatabaseNotFound and creates nothing", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const path = join(dir, "missing.db")
      const error = yield* Effect.flip(open({ filename: path, create: false }))
      assert.strictEqual(error._tag, "DatabaseNotFound")
      assert.include(error.message, path)
      assert.isFalse(existsSync(path))
      assert.deepStrictEqual(readdirSync(dir), [])

      // The default creates it, and create: false then opens it.
      const made = yield* open({ filename: path })
      const again = yield* open({ filename: path, create: false })
      assert.strictEqual(again.clientId, made.clientId)
    })
  )

  it.scoped("a directory, or a path in a missing directory or under a file, is InvalidDatabasePath saying why", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const file = join(dir, "plain.txt")
      writeFileSync(file, "not a directory\n")
      const cases = [
        [dir, `it is a directory; name a file instead (e.g. ${join(dir, "memsync.db")})`],
        [join(dir, "no", "such", "dir.db"), `the directory ${join(dir, "no", "such")} does not exist`],
        [join(file, "m.db"), `${file} is not a directory`]
      ] as const
      for (const [filename, reason] of cases) {
        for (const create of [true, false]) {
          const error = yield* Effect.flip(open({ filename, create }))
          assert.strictEqual(error._tag, "InvalidDatabasePath", `${filename} (create: ${create})`)
          assert.include(error.message, `cannot use ${filename} as a database: ${reason}`)
        }
      }
      assert.deepStrictEqual(readdirSync(dir), ["plain.txt"])
    })
  )

  it.scoped("a memsync database whose schema page is damaged is DatabaseCorrupt and left untouched", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const path = join(dir, "damaged.db")
      yield* Effect.flatMap(MemoryStore.MemoryStore, (store) => store.create({ content: "x" })).pipe(
        Effect.provide(MemoryStore.layer({ filename: path }))
      )
      const bytes = readFileSync(path)
      const pageSize = bytes.readUInt16BE(16)
      // Page 1 keeps the header and the schema's root; the pages after it hold the schema's table b-trees.
      for (let i = pageSize; i < bytes.length; i++) bytes[i] = (i * 7919) % 251
      writeFileSync(path, bytes)
      const error = yield* Effect.flip(open({ filename: path }))
      assert.strictEqual(error._tag, "DatabaseCorrupt")
      assert.include(error.message, `${path} is damaged (database disk image is malformed)`)
      assert.isTrue(readFileSync(path).equals(bytes))
      assert.deepStrictEqual(readdirSync(dir), ["damaged.db"])
    })
  )
})

describe("pragmas", () => {
  const pragmas = Effect.flatMap(Database.Database, (db) =>
    db.raw((h) => ({
      journal: h.pragma("journal_mode", { simple: true }),
      synchronous: h.pragma("synchronous", { simple: true })
    }))
  )
  const SQLITE_NORMAL = 1
  const SQLITE_FULL = 2

  it.scoped("a file is in WAL mode, synchronous NORMAL by default and FULL when configured", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = join(dir, "p.db")
      const byDefault = yield* Effect.scoped(Effect.provide(pragmas, Database.layer({ filename })))
      assert.deepStrictEqual(byDefault, { journal: "wal", synchronous: SQLITE_NORMAL })
      const normal = yield* Effect.scoped(Effect.provide(pragmas, Database.layer({ filename, synchronous: "NORMAL" })))
      assert.deepStrictEqual(normal, { journal: "wal", synchronous: SQLITE_NORMAL })
      const full = yield* Effect.scoped(Effect.provide(pragmas, Database.layer({ filename, synchronous: "FULL" })))
      assert.deepStrictEqual(full, { journal: "wal", synchronous: SQLITE_FULL })
      // WAL is recorded in the file itself: any later connection, even a foreign one, finds it on.
      const raw = new Sqlite(filename, { readonly: true })
      const stored = raw.pragma("journal_mode", { simple: true })
      raw.close()
      assert.strictEqual(stored, "wal")
    })
  )

  it.scoped("in memory, synchronous is still set explicitly", () =>
    Effect.gen(function* () {
      const full = yield* Effect.scoped(
        Effect.provide(pragmas, Database.layer({ filename: ":memory:", synchronous: "FULL" }))
      )
      assert.strictEqual(full.synchronous, SQLITE_FULL)
      const byDefault = yield* Effect.scoped(Effect.provide(pragmas, Database.layerMemory))
      assert.strictEqual(byDefault.synchronous, SQLITE_NORMAL)
    })
  )
})

describe("restart", () => {
  it.scoped(
    "events, view and client id survive a close; new stamps sort after the log even with the clock set back",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const filename = join(dir, "replica.db")
        const layer = () => MemoryStore.layer({ filename })
        const snapshot = Effect.gen(function* () {
          const store = yield* MemoryStore.MemoryStore
          const log = yield* EventLog.EventLog
          const view = yield* Materializer.Materializer
          return {
            clientId: store.clientId,
            events: yield* log.page(0, 1000),
            states: yield* view.readStates(),
            list: yield* store.list({ includeDeleted: true })
          }
        })

        yield* TestClock.setTime(2_000_000_000_000)
        const first = yield* Effect.gen(function* () {
          const store = yield* MemoryStore.MemoryStore
          const a = yield* store.create({ content: "survives", tags: ["x"] })
          const b = yield* store.create({ content: "will be deleted" })
          yield* store.update(a.id, { importance: 0.9 })
          yield* store.remove(b.id)
          // A remote stamp a minute ahead of the local clock: the restarted clock must start past it as well.
          yield* store.ingest([
            {
              id: "01890a5d-ac96-774b-bcce-000000000001",
              type: "memory.updated",
              version: 1,
              payload: { id: a.id, patch: { category: "remote" }, updatedAt: 1 },
              hlc: `002000000060000:000005:peer`,
              clientId: "peer"
            }
          ])
          return yield* snapshot
        }).pipe(Effect.provide(layer()))
        assert.strictEqual(first.events.length, 5)
        assert.match(first.clientId, /^[0-9a-f]{16}$/)

        // Wall clock set back by a long way before reopening.
        yield* TestClock.setTime(1_000_000_000_000)
        assert.strictEqual(yield* Clock.currentTimeMillis, 1_000_000_000_000)

        yield* Effect.gen(function* () {
          const reopened = yield* snapshot
          assert.deepStrictEqual(reopened, first)
          const store = yield* MemoryStore.MemoryStore
          const [a] = first.list.filter((m) => !m.deleted)
          const u = yield* store.update(a!.id, { content: "after restart" })
          assert.strictEqual(u.category, "remote")
          const c = yield* store.create({ content: "new after restart" })
          const log = yield* EventLog.EventLog
          const all = yield* log.page(0, 1000)
          const newer = all.slice(first.events.length)
          assert.strictEqual(newer.length, 2)
          const maxBefore = first.events
            .map((e) => e.hlc)
            .sort()
            .at(-1)!
          for (const e of newer) {
            assert.isTrue(e.hlc > maxBefore, `${e.hlc} > ${maxBefore}`)
            assert.strictEqual(e.clientId, first.clientId)
          }
          assert.isTrue(newer[0]!.hlc < newer[1]!.hlc)
          assert.strictEqual(c.createdAt, 1_000_000_000_000)
        }).pipe(Effect.provide(layer()))

        // And once more, read-only through create: false: everything written is there.
        const third = yield* snapshot.pipe(Effect.provide(MemoryStore.layer({ filename, create: false })))
        assert.strictEqual(third.clientId, first.clientId)
        assert.strictEqual(third.events.length, 7)
      })
  )
})
