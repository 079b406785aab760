/**
 * The background checkpointer: it stays out of the way until a checkpoint is due, then copies the WAL into the
 * database file from its own thread while the writer goes on, and it never costs a write when it cannot run.
 * Real threads and real time (`it.live`): polls are bounded, so a broken checkpointer fails instead of hanging.
 */
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Effect } from "effect"
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Checkpointer from "../../src/store/Checkpointer.js"
import * as Database from "../../src/store/Database.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "memsync-checkpointer-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A WAL database with a small auto-checkpoint (20 pages), so a checkpoint is due after a few writes. */
const walDatabase = (file: string) => {
  const db = new Sqlite(file)
  db.pragma("journal_mode = WAL")
  db.pragma("wal_autocheckpoint = 20")
  db.exec("CREATE TABLE t (x TEXT)")
  return db
}

/** Insert `pages` pages' worth of rows in one transaction (~4 rows of 1 KB per 4 KiB page). */
const writePages = (db: Sqlite.Database, pages: number) => {
  const insert = db.prepare("INSERT INTO t (x) VALUES (?)")
  db.transaction(() => {
    for (let i = 0; i < pages * 4; i++) insert.run("x".repeat(1000))
  })()
}

/** Wait (real time, at most 10 s) until `done` holds. */
const eventually = (what: string, done: () => boolean) =>
  Effect.gen(function* () {
    for (let waited = 0; waited < 10_000; waited += 20) {
      if (done()) return
      yield* Effect.sleep(20)
    }
    assert.fail(`timed out waiting until ${what}`)
  })

const autocheckpoint = (db: Sqlite.Database) => Number(db.pragma("wal_autocheckpoint", { simple: true }))

describe("Checkpointer", () => {
  it.live("starts when a checkpoint is due, then copies the WAL into the file from its own thread", () =>
    Effect.gen(function* () {
      const file = join(yield* tempDir, "c.db")
      const db = walDatabase(file)
      const c = Checkpointer.make(file, db, { intervalMs: 10 })

      // Small commits: no checkpoint was due, so no thread was started.
      writePages(db, 2)
      c.committed()
      assert.strictEqual(c.state(), "idle")

      // The WAL passed 20 pages: SQLite checkpointed inline this once, and the worker starts.
      writePages(db, 30)
      c.committed()
      assert.strictEqual(c.state(), "starting")
      yield* eventually("the worker runs", () => c.state() === "running")
      // The writer's own auto-checkpoint is now only a safety net.
      assert.strictEqual(autocheckpoint(db), 20 * Checkpointer.SAFETY_FACTOR)

      // 60 pages: past the old auto-checkpoint, below the raised one, so only the worker can move them into the file.
      // Wait on the file itself: a checkpoint the previous commit asked for may run while these pages are still
      // uncommitted and copy none of them (CI saw exactly that), so a count of checkpoints proves nothing here.
      const before = statSync(file).size
      const runs = c.checkpoints()
      writePages(db, 60)
      c.committed()
      yield* eventually(
        "the worker copied the new pages into the file",
        () => statSync(file).size - before >= 50 * 4096
      )
      assert.isAbove(c.checkpoints(), runs)

      yield* c.stop
      assert.strictEqual(c.state(), "stopped")
      // The writer's connection is the last one: closing it checkpoints and removes the WAL, as without a worker.
      db.close()
      assert.isFalse(existsSync(`${file}-wal`))
    }).pipe(Effect.scoped)
  )

  it.live("a WAL left large by another connection's bulk write does not start a thread for a short write", () =>
    Effect.gen(function* () {
      const file = join(yield* tempDir, "shared.db")
      // A long-lived writer (a `memsync sync --watch`, say) made a bulk write, and its checkpoint copied it all.
      const daemon = walDatabase(file)
      writePages(daemon, 100)
      daemon.pragma("wal_checkpoint(PASSIVE)")
      assert.isAbove(statSync(`${file}-wal`).size, 80 * 4096)

      // A short CLI write on the same file: SQLite restarts the WAL from its beginning (the file keeps its size), so
      // the WAL holds one page's frames and no checkpoint is due.
      const cli = new Sqlite(file)
      cli.pragma("wal_autocheckpoint = 20")
      const c = Checkpointer.make(file, cli)
      writePages(cli, 1)
      c.committed()
      assert.strictEqual(c.state(), "idle", "no thread for one page")

      // A write that does make a checkpoint due still starts the worker.
      writePages(cli, 30)
      c.committed()
      assert.strictEqual(c.state(), "starting")
      yield* c.stop
      cli.close()
      daemon.close()
    }).pipe(Effect.scoped)
  )

  // SQLite locks the `-shm` file with POSIX locks, which belong to the process: closing ANY descriptor of that file
  // drops them all, and another process would then take the WAL-index for unused and reset it under the writer.
  it.live.skipIf(!existsSync("/proc/locks"))("never drops the connection's locks on the WAL-index", () =>
    Effect.gen(function* () {
      const file = join(yield* tempDir, "locks.db")
      const db = walDatabase(file)
      const shm = statSync(`${file}-shm`).ino
      const held = () =>
        readFileSync("/proc/locks", "utf8")
          .split("\n")
          .filter((line) => line.includes(` ${process.pid} `) && line.includes(`:${shm} `)).length
      assert.isAbove(held(), 0, "the connection holds a lock on -shm")
      const c = Checkpointer.make(file, db, { intervalMs: 10 })
      writePages(db, 2)
      c.committed()
      writePages(db, 30)
      c.committed()
      yield* eventually("the worker runs", () => c.state() === "running")
      yield* c.stop
      assert.isAbove(held(), 0, "the connection still holds its lock on -shm")
      db.close()
    }).pipe(Effect.scoped)
  )

  it.live("a worker that cannot start leaves the writer's auto-checkpoint as it was, and writes go on", () =>
    Effect.gen(function* () {
      const file = join(yield* tempDir, "broken.db")
      const db = walDatabase(file)
      const c = Checkpointer.make(file, db, { driver: join(file, "no-such-driver.js") })
      writePages(db, 30)
      c.committed()
      yield* eventually("the worker is seen dead", () => c.state() === "failed")
      assert.strictEqual(autocheckpoint(db), 20)
      writePages(db, 30)
      c.committed()
      assert.strictEqual(c.state(), "failed")
      assert.strictEqual(Number(db.prepare("SELECT count(*) FROM t").pluck().get()), 60 * 4)
      yield* c.stop
      db.close()
    }).pipe(Effect.scoped)
  )

  it.live("a thread that cannot be made is a failed start, never an error after the commit", () =>
    Effect.gen(function* () {
      const file = join(yield* tempDir, "no-thread.db")
      const db = walDatabase(file)
      let tries = 0
      const c = Checkpointer.make(file, db, {
        spawn: () => {
          tries++
          // What Node throws when the process may not start another thread.
          throw Object.assign(new Error("Failed to create worker thread (EAGAIN)"), { code: "ERR_WORKER_INIT_FAILED" })
        }
      })
      writePages(db, 30)
      assert.doesNotThrow(() => c.committed())
      assert.strictEqual(c.state(), "failed")
      assert.strictEqual(autocheckpoint(db), 20)
      // It does not try again at every commit.
      writePages(db, 30)
      c.committed()
      assert.strictEqual(tries, 1)
      yield* c.stop
      db.close()
      assert.isFalse(existsSync(`${file}-wal`))
    }).pipe(Effect.scoped)
  )

  it.live("stop before the worker is up still waits for it, and a stopped checkpointer stays stopped", () =>
    Effect.gen(function* () {
      const file = join(yield* tempDir, "early.db")
      const db = walDatabase(file)
      const c = Checkpointer.make(file, db)
      writePages(db, 30)
      c.committed()
      assert.strictEqual(c.state(), "starting")
      yield* c.stop
      assert.strictEqual(c.state(), "stopped")
      writePages(db, 30)
      c.committed()
      assert.strictEqual(c.state(), "stopped")
      assert.strictEqual(autocheckpoint(db), 20)
      db.close()
      assert.isFalse(existsSync(`${file}-wal`))
    }).pipe(Effect.scoped)
  )

  it.live("a store writing in bulk hands its checkpoints to the worker, and leaves no WAL behind when it closes", () =>
    Effect.gen(function* () {
      const file = join(yield* tempDir, "store.db")
      let total = 0
      yield* Effect.gen(function* () {
        const store = yield* MemoryStore.MemoryStore
        const db = yield* Database.Database
        // ~2 KB per memory: 40 batches of 100 write well past 1,000 WAL pages in all.
        for (let batch = 0; batch < 40; batch++) {
          yield* store.createMany(
            Array.from({ length: 100 }, (_, i) => ({ content: `memory ${batch}-${i} ${"tide ".repeat(400)}` }))
          )
        }
        // The worker takes tens of milliseconds to start; the writer hears it runs at its next commit, and raises its
        // own auto-checkpoint then.
        let extra = 0
        for (let waited = 0; waited < 10_000; waited += 20) {
          if ((yield* db.raw(autocheckpoint)) === 1000 * Checkpointer.SAFETY_FACTOR) break
          yield* Effect.sleep(20)
          yield* store.create({ content: `one more ${extra++}` })
        }
        assert.strictEqual(yield* db.raw(autocheckpoint), 1000 * Checkpointer.SAFETY_FACTOR)
        const count = yield* db.raw((h) => Number(h.prepare("SELECT count(*) FROM memories").pluck().get()))
        assert.strictEqual(count, 4000 + extra)
        total = count
      }).pipe(Effect.provide(MemoryStore.layer({ filename: file })), Effect.scoped)
      assert.isFalse(existsSync(`${file}-wal`))
      // Everything reached the file.
      const db = new Sqlite(file, { readonly: true })
      assert.strictEqual(Number(db.prepare("SELECT count(*) FROM events").pluck().get()), total)
      db.close()
    }).pipe(Effect.scoped)
  )
})
