/**
 * Bad input, as a user meets it: every class exits 2, prints exactly one `memsync: ...` line on stderr and nothing on
 * stdout, and leaves the directory holding the database byte for byte as it was (no file created, none changed, no
 * -wal/-shm left behind). Each test owns a temp directory; its commands run concurrently (a process start costs ~1-3 s).
 */
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import { MAX_CONTENT_BYTES } from "../../src/domain/Memory.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const BIN = join(ROOT, "bin", "memsync.js")
/** Generous: a process start costs 2-3 s of CPU on an idle machine, and a shared one can be ten times slower. */
const TIMEOUT = 300_000

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Run the CLI to completion (the child is killed if the test is interrupted). MEMSYNC_DB is never inherited. */
const memsync = (args: ReadonlyArray<string>) =>
  Effect.async<Run>((resume) => {
    const env = { ...process.env }
    delete env.MEMSYNC_DB
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", (error) => resume(Effect.die(error)))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill())
  })

const dirs: Array<string> = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "memsync-cli-errors-"))
  dirs.push(dir)
  return dir
}
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

/** Every file of a directory with its bytes. */
const snapshot = (dir: string): Map<string, Buffer> =>
  new Map(readdirSync(dir).map((name) => [name, readFileSync(join(dir, name))]))

/**
 * What SQLite itself may leave beside a WAL-mode database when several processes close it at the same moment: each
 * still sees the others and none may remove the WAL-index (`-shm`) and the WAL. A WAL without a frame holds no write.
 */
const closeLeftover = (name: string, bytes: Buffer): boolean =>
  name.endsWith("-shm") || (name.endsWith("-wal") && bytes.length === 0)

const assertUnchanged = (dir: string, before: Map<string, Buffer>, label: string) => {
  const after = snapshot(dir)
  for (const [name, bytes] of after) if (!before.has(name) && closeLeftover(name, bytes)) after.delete(name)
  assert.deepStrictEqual([...after.keys()].sort(), [...before.keys()].sort(), `${label}: files in ${dir}`)
  for (const [name, bytes] of before) {
    assert.isTrue(after.get(name)?.equals(bytes), `${label}: ${name} changed`)
  }
}

/** A run that is bad input: exit 2, stdout empty, one line on stderr matching `message`. */
const assertBadInput = (label: string, run: Run, message: RegExp) => {
  assert.strictEqual(run.code, 2, `${label}: exit code (stderr: ${run.stderr})`)
  assert.strictEqual(run.stdout, "", `${label}: stdout`)
  assert.match(run.stderr, /^memsync: [^\n]+\n$/, `${label}: one line on stderr`)
  assert.match(run.stderr, message, `${label}: message`)
}

/** Run labelled bad-input cases concurrently and check each one. */
const expectAll = (dir: string, cases: ReadonlyArray<readonly [args: ReadonlyArray<string>, message: RegExp]>) =>
  Effect.gen(function* () {
    const before = snapshot(dir)
    const runs = yield* Effect.forEach(cases, ([args]) => memsync(args), { concurrency: "unbounded" })
    cases.forEach(([args, message], i) => assertBadInput(args.slice(0, 3).join(" "), runs[i]!, message))
    assertUnchanged(dir, before, "after the failed commands")
  })

/** A database with one live memory and one deleted one, written through the library. */
const seeded = () =>
  Effect.gen(function* () {
    const dir = tempDir()
    const db = join(dir, "m.db")
    const ids = yield* Effect.gen(function* () {
      const store = yield* MemoryStore.MemoryStore
      const live = yield* store.create({ content: "a live memory" })
      const gone = yield* store.create({ content: "a deleted memory" })
      yield* store.remove(gone.id)
      return { live: live.id, gone: gone.id }
    }).pipe(Effect.provide(MemoryStore.layer({ filename: db })), Effect.orDie)
    return { dir, db, ...ids }
  })

describe.concurrent("memsync bad input", () => {
  it.live(
    "usage and validation errors exit 2 before any database is opened or created",
    () =>
      Effect.gen(function* () {
        const { dir, db, live } = yield* seeded()
        // Rejected `add`s name a file that does not exist yet: it must not be created.
        const fresh = join(dir, "fresh.db")
        yield* expectAll(dir, [
          [["frobnicate", "--db", db], /Invalid subcommand for memsync/],
          [["add", "--db", fresh], /Missing argument <content>/],
          [["add", "x", "--importance", "2", "--db", fresh], /importance must be a number between 0 and 1/],
          [["add", "x", "--importance", "abc", "--db", fresh], /'abc' is not a float/],
          [["add", "", "--db", fresh], /content must not be empty/],
          [["add", "a".repeat(MAX_CONTENT_BYTES + 1), "--db", fresh], /content must be at most 65536 bytes/],
          [["update", live, "--sensitive", "maybe", "--db", db], /true, false/],
          [["update", live, "--db", db], /an update must change at least one field/],
          [["update", live, "--importance", "2", "--db", db], /importance must be a number between 0 and 1/],
          [["list", "--limit", "-1", "--db", db], /--limit and --offset must be >= 0/],
          [["list", "--offset", "-1", "--db", db], /--limit and --offset must be >= 0/],
          [["search", "live", "--limit", "-1", "--db", db], /--limit must be >= 0/],
          [["search", "-west", "--db", db], /unknown argument.*a value that starts with - goes after --/],
          // An @effect/cli built-in that would wait for answers on a stdin that is not a terminal.
          [["list", "--wizard", "--db", db], /--wizard asks its questions on a terminal/],
          // sync checks what was typed before it opens (or, for a new replica, creates) the database.
          [["sync", "--token", "a-valid-token", "--db", fresh], /no server: pass --server URL or set MEMSYNC_SERVER/],
          [["sync", "--token", "a-valid-token", "--server", "notaurl", "--db", fresh], /"notaurl" is not an http/],
          [["sync", "--token", "a-valid-token", "--server", "ftp://x", "--db", db], /is not an http:\/\/ or https/],
          [
            ["sync", "--token", "a-valid-token", "--server", "http://127.0.0.1:9", "--interval-ms", "0", "--db", fresh],
            /--interval-ms must be a positive number/
          ],
          // serve checks its numbers before it opens anything (a negative batch limit refused every push with 413).
          [["serve", "--port", "70000", "--db", fresh], /--port 70000: must be 0-65535/],
          [["serve", "--port", "-1", "--db", fresh], /--port -1: must be 0-65535/],
          [["serve", "--max-batch", "-5", "--db", fresh], /--max-batch -5: must be at least 1/],
          [["serve", "--max-event-bytes", "0", "--db", fresh], /--max-event-bytes 0: must be at least 1/],
          [["serve", "--rate-limit", "-1", "--db", fresh], /--rate-limit -1: must be at least 0/],
          // A replica is not a server file: refused with what to do, and nothing on stdout (no token count line).
          [
            ["serve", "--port", "0", "--token", "a-valid-token=s", "--db", db],
            /replica database, not a server database/
          ]
        ])
      }),
    TIMEOUT
  )

  it.live(
    "an empty or blank tag is refused on add and update, however it is spelled",
    () =>
      Effect.gen(function* () {
        const { dir, db, live } = yield* seeded()
        const fresh = join(dir, "fresh.db")
        // @effect/cli drops `--tag ""` and trims `--tag " "` to "": both must be refused, not stored as no tag.
        const blank = /tags(\.\d+)?: tags and keywords must not be empty or blank/
        yield* expectAll(dir, [
          [["add", "x", "--tag", "", "--db", fresh], blank],
          [["add", "x", "--tag", "ok", "--tag", "", "--db", fresh], blank],
          [["add", "x", "--tag", " ", "--db", fresh], blank],
          [["add", "x", "--tag", "\t", "--db", fresh], blank],
          [["update", live, "--tag", "", "--db", db], blank],
          [["update", live, "--content", "y", "--tag", "", "--db", db], blank],
          [["update", live, "--tag", "ok", "--tag", " ", "--db", db], blank]
        ])
      }),
    TIMEOUT
  )

  it.live(
    "unknown or deleted ids exit 2 and write nothing",
    () =>
      Effect.gen(function* () {
        const { dir, db, gone } = yield* seeded()
        const unknown = "01900000-0000-7000-8000-000000000000"
        yield* expectAll(dir, [
          [["get", unknown, "--db", db], new RegExp(`no memory with id ${unknown}`)],
          [["update", unknown, "--content", "x", "--db", db], new RegExp(`no memory with id ${unknown}`)],
          [["rm", unknown, "--db", db], new RegExp(`no memory with id ${unknown}`)],
          [["history", unknown, "--db", db], new RegExp(`no events touch memory ${unknown}`)],
          [["rm", gone, "--json", "--db", db], new RegExp(`memory ${gone} was deleted`)]
        ])
      }),
    TIMEOUT
  )

  it.live(
    "a --db that does not exist is reported, and not created, by commands that need an existing database",
    () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const missing = join(dir, "missing.db")
        const notFound = /no memsync database at .*missing\.db/
        yield* expectAll(dir, [
          [["list", "--db", missing], notFound],
          [["verify", "--db", missing], notFound],
          [["update", "some-id", "--content", "x", "--db", missing], notFound]
        ])
        assert.deepStrictEqual(readdirSync(dir), [])
      }),
    TIMEOUT
  )

  it.live(
    "a --db that is not a memsync database (not SQLite, or SQLite with other tables) is refused untouched",
    () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const garbage = join(dir, "garbage.db")
        writeFileSync(garbage, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)))
        const foreign = join(dir, "foreign.db")
        const raw = new Sqlite(foreign)
        raw.exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada')`)
        raw.close()
        yield* expectAll(dir, [
          [["list", "--db", garbage], /garbage\.db is not a memsync database: file is not a database/],
          [["add", "x", "--db", garbage], /garbage\.db is not a memsync database/],
          [["add", "x", "--db", foreign], /foreign\.db is not a memsync database: it holds tables that memsync did not/]
        ])
      }),
    TIMEOUT
  )

  it.live(
    "a 0-byte --db is refused as empty by every command that reads one",
    () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const empty = join(dir, "empty.db")
        writeFileSync(empty, "")
        const isEmpty = /empty\.db is not a memsync database: it is empty/
        const id = "01900000-0000-7000-8000-000000000000"
        yield* expectAll(dir, [
          [["list", "--db", empty], isEmpty],
          [["get", id, "--db", empty], isEmpty],
          [["search", "x", "--db", empty], isEmpty],
          [["history", id, "--db", empty], isEmpty],
          [["update", id, "--content", "x", "--db", empty], isEmpty],
          [["rm", id, "--db", empty], isEmpty],
          [["verify", "--db", empty], isEmpty],
          [["rebuild", "--db", empty], isEmpty],
          [["stats", "--db", empty], isEmpty]
        ])
      }),
    TIMEOUT
  )

  it.live(
    "a damaged memsync database is bad input naming the file, and no command writes to it",
    () =>
      Effect.gen(function* () {
        const { dir, db, live } = yield* seeded()
        // Overwrite the pages of the memories and events tables, leaving the header and schema readable: SQLite
        // finds the damage only when a command reads those pages.
        // Writable on purpose: closing it removes the -wal/-shm files a read-only connection would leave behind.
        const raw = new Sqlite(db)
        const roots = raw
          .prepare(`SELECT rootpage FROM sqlite_schema WHERE name IN ('memories', 'events')`)
          .pluck()
          .all()
        const pageSize = Number(raw.pragma("page_size", { simple: true }))
        raw.close()
        const bytes = readFileSync(db)
        for (const root of roots) {
          const start = (Number(root) - 1) * pageSize
          for (let i = 0; i < pageSize; i++) bytes[start + i] = (i * 7919) % 251
        }
        writeFileSync(db, bytes)
        const damaged = /m\.db is damaged \(database disk image is malformed\); restore it from a backup/
        yield* expectAll(dir, [
          [["list", "--db", db], damaged],
          [["get", live, "--db", db], damaged],
          [["search", "live", "--db", db], damaged],
          [["history", live, "--db", db], damaged],
          [["add", "x", "--db", db], damaged],
          [["update", live, "--content", "x", "--db", db], damaged],
          [["rm", live, "--db", db], damaged],
          [["verify", "--db", db], damaged],
          [["rebuild", "--db", db], damaged]
        ])
        // stats reads through a read-only connection, which leaves -wal/-shm files behind even on a healthy
        // database (a read-only connection cannot remove them): only the database file itself is compared.
        const stats = yield* memsync(["stats", "--db", db])
        assertBadInput("stats", stats, damaged)
        assert.isTrue(readFileSync(db).equals(bytes), "stats changed the database file")
      }),
    TIMEOUT
  )

  it.live(
    "a --db that is a directory, or in a directory that does not exist, says what to do and creates nothing",
    () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const directory = /cannot use .* as a database: it is a directory; name a file instead \(e\.g\. .*memsync\.db\)/
        const nested = join(dir, "no", "such", "m.db")
        const missing = /cannot use .*m\.db as a database: the directory .*such does not exist; create it first/
        yield* expectAll(dir, [
          [["add", "x", "--db", dir], directory],
          [["list", "--db", dir], directory],
          [["update", "some-id", "--content", "x", "--db", dir], directory],
          [["verify", "--db", dir], directory],
          [["stats", "--db", dir], directory],
          [["add", "x", "--db", nested], missing],
          [["list", "--db", nested], missing],
          [["stats", "--db", nested], missing]
        ])
        assert.deepStrictEqual(readdirSync(dir), [])
      }),
    TIMEOUT
  )
})
