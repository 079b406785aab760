/**
 * The inspection commands as a user runs them. A few real processes (`node bin/memsync.js ...`, ~1-3 s each) check
 * exit codes and that stdout carries results only; in-process runs with stderr posing as a TTY check that progress
 * is drawn on stderr, never on stdout, and that `--quiet` silences it.
 */
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Effect } from "effect"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { created, deadLetter, ingest, serve, tempDir, updated } from "./fixtures.js"
import { fileHash, inProcess, memsync } from "./runs.js"

const setUp = Effect.gen(function* () {
  const dir = tempDir()
  const db = join(dir, "replica.db")
  const events = Array.from({ length: 40 }, (_, i) =>
    i % 4 === 3 ? updated(`m${i - 1}`, "b", i, { content: `changed ${i}` }) : created(`m${i}`, "a", i)
  )
  yield* ingest(db, events)
  return { dir, db }
})

describe("inspect CLI", () => {
  it.effect("replay writes a new file, prints JSON only on stdout, and refuses to overwrite (exit 2)", () =>
    Effect.gen(function* () {
      const { dir, db } = yield* setUp
      const out = join(dir, "replay.db")
      const first = yield* memsync(["replay", "--until", "20", "--out", out, "--db", db, "--json"])
      assert.strictEqual(first.stderr, "")
      assert.strictEqual(first.code, 0)
      assert.deepInclude(JSON.parse(first.stdout), { events: 20, out })
      const before = readFileSync(out)
      const again = yield* memsync(["replay", "--until", "20", "--out", out, "--db", db])
      assert.strictEqual(again.code, 2)
      assert.strictEqual(again.stdout, "")
      assert.match(again.stderr, /^memsync: .*replay\.db already exists/)
      assert.isTrue(readFileSync(out).equals(before))
    })
  )

  it.effect("import reports a bad line by number on stderr, imports the rest, and exits 2", () =>
    Effect.gen(function* () {
      const { dir } = yield* setUp
      const file = join(dir, "events.ndjson")
      const line = (n: number) => JSON.stringify(created(`x${n}`, "c", 100 + n))
      writeFileSync(file, [line(1), "{oops", line(2)].join("\n") + "\n")
      const target = join(dir, "fresh.db")
      const run = yield* memsync(["import", file, "--db", target])
      assert.strictEqual(run.code, 2)
      assert.include(run.stderr, `${file}:2: not JSON`)
      assert.include(run.stdout, "imported 2 of 2 events")
      assert.isTrue(existsSync(target))
    })
  )

  it.effect("an export cut short is imported as far as it goes, and exits 2 naming what is missing", () =>
    Effect.gen(function* () {
      const { dir } = yield* setUp
      const file = join(dir, "cut.ndjson")
      const header = { memsync: "export", version: 1, redacted: false, events: 5 }
      const lines = [1, 2, 3].map((n) => JSON.stringify(created(`t${n}`, "c", 200 + n)))
      writeFileSync(file, [JSON.stringify(header), ...lines].join("\n") + "\n")
      const target = join(dir, "cut.db")
      const run = yield* memsync(["import", file, "--db", target])
      assert.strictEqual(run.code, 2, run.stderr)
      assert.match(run.stderr, /^memsync: .*cut\.ndjson: the export header announces 5 events but the file holds 3/)
      assert.include(run.stdout, "imported 3 of 3 events")
      const log = yield* memsync(["log", "--db", target, "--json"])
      assert.strictEqual(JSON.parse(log.stdout).length, 3)
    })
  )

  it.effect("a damaged database is bad input (exit 2, naming the file) for the inspection commands", () =>
    Effect.gen(function* () {
      const { dir, db } = yield* setUp
      const damaged = join(dir, "damaged.db")
      // The events table's root page overwritten: the file opens (schema, meta and view are intact) and the damage
      // shows only when a command reads the log.
      const sqlite = new Sqlite(db)
      sqlite.pragma("wal_checkpoint(TRUNCATE)")
      const root = Number(sqlite.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'events'").pluck().get())
      const pageSize = Number(sqlite.pragma("page_size", { simple: true }))
      sqlite.close()
      const bytes = readFileSync(db)
      bytes.fill(0xff, (root - 1) * pageSize, root * pageSize)
      writeFileSync(damaged, bytes)
      const runs = yield* Effect.all(
        [
          memsync(["log", "--db", damaged]),
          memsync(["export", "--db", damaged]),
          memsync(["replay", "--until", "5", "--db", damaged]),
          memsync(["diff", damaged, db])
        ],
        { concurrency: "unbounded" }
      )
      for (const run of runs) {
        assert.strictEqual(run.code, 2, run.stderr)
        assert.match(run.stderr, /^memsync: .*damaged\.db.* is damaged \(database disk image is malformed\)/)
      }
    })
  )

  it.effect("a failed import leaves no database behind, and an existing one as it was", () =>
    Effect.gen(function* () {
      const { dir, db } = yield* setUp
      const redacted = join(dir, "redacted.ndjson")
      const header = { memsync: "export", version: 1, redacted: true }
      writeFileSync(redacted, [JSON.stringify(header), JSON.stringify(created("r1", "c", 1))].join("\n") + "\n")
      const future = join(dir, "future.ndjson")
      writeFileSync(future, JSON.stringify({ ...header, redacted: false, version: 99 }) + "\n")
      const target = (name: string) => join(dir, name)
      const before = fileHash(db)
      const [missing, directory, badSpace, refused, unknown, kept] = yield* Effect.all(
        [
          memsync(["import", join(dir, "nofile.ndjson"), "--db", target("z.db")]),
          memsync(["import", dir, "--db", target("d.db")]),
          memsync(["import", redacted, "--space", "bad space!", "--db", target("s.db")]),
          memsync(["import", redacted, "--db", target("r.db")]),
          memsync(["import", future, "--db", target("f.db")]),
          memsync(["import", redacted, "--db", db])
        ],
        { concurrency: "unbounded" }
      )
      assert.strictEqual(missing.code, 2)
      assert.match(missing.stderr, /^memsync: cannot import .*nofile\.ndjson: ENOENT/)
      assert.strictEqual(directory.code, 2, directory.stderr)
      assert.match(directory.stderr, /^memsync: cannot import .*: it is not a file\n$/)
      assert.strictEqual(badSpace.code, 2, badSpace.stderr)
      assert.match(badSpace.stderr, /^memsync: --space "bad space!": a space is 1-64 characters/)
      assert.strictEqual(refused.code, 2)
      assert.include(refused.stderr, "it is a redacted export")
      assert.strictEqual(unknown.code, 2)
      assert.include(unknown.stderr, "export format version 99 is unknown")
      for (const name of ["z.db", "d.db", "s.db", "r.db", "f.db"]) {
        for (const suffix of ["", "-wal", "-shm"]) {
          assert.isFalse(existsSync(target(name + suffix)), `${name}${suffix} was not left behind`)
        }
      }
      assert.strictEqual(kept.code, 2)
      assert.strictEqual(fileHash(db), before, "the existing database is untouched")
    })
  )

  it.effect("diff's progress ends at 100% with a newline, whether the logs match or not", () =>
    Effect.gen(function* () {
      const { dir, db } = yield* setUp
      const events = Array.from({ length: 40 }, (_, i) => created(`n${i}`, "c", i))
      const [a, b, c] = [join(dir, "a.db"), join(dir, "b.db"), join(dir, "c.db")]
      yield* ingest(a, events)
      yield* ingest(b, [...events].reverse())
      yield* ingest(c, events)
      yield* deadLetter(c, [events[0]!.id, events[1]!.id])
      const same = yield* inProcess(["diff", a, b])
      assert.strictEqual(same.exit._tag, "Success")
      assert.include(same.stdout, "identical")
      // Each log once in the merge of ids, then each event set once in the folds.
      assert.isTrue(same.stderr.endsWith("diff: 160/160 events (100%)\n"), same.stderr)
      assert.strictEqual(same.stderr.match(/100%/g)?.length, 1, "the line ends once")
      const differ = yield* inProcess(["diff", a, c])
      assert.strictEqual(differ.exit._tag, "Failure")
      assert.isTrue(differ.stderr.endsWith("diff: 158/158 events (100%)\n"), differ.stderr)
      const other = yield* inProcess(["diff", db, a, "--quiet"])
      assert.strictEqual(other.stderr, "")
    })
  )

  it.effect("replay --at wants a time with its zone: local time is not assumed", () =>
    Effect.gen(function* () {
      const { db } = yield* setUp
      for (const at of ["2025-01-01T00:00:00.010", "2025-01-01", "yesterday"]) {
        const run = yield* inProcess(["replay", "--at", at, "--db", db, "--quiet"])
        assert.strictEqual(run.exit._tag, "Failure", at)
        assert.include(JSON.stringify(run.exit), `--at ${at}: not an ISO time with a zone`)
        assert.include(JSON.stringify(run.exit), "UsageError")
      }
      // Events are 1 ms apart from 2025-01-01T00:00:00Z: eleven are stamped at or before 10 ms past.
      for (const at of ["2025-01-01T00:00:00.010Z", "2025-01-01T01:00:00.010+01:00", "2024-12-31T23:00:00.010-01:00"]) {
        const run = yield* inProcess(["replay", "--at", at, "--db", db, "--json", "--quiet"])
        assert.strictEqual(run.exit._tag, "Success", at)
        assert.strictEqual(JSON.parse(run.stdout).summary.events, 11, at)
      }
    })
  )

  it.effect("progress is drawn on stderr when it is a TTY, never on stdout; --quiet silences it", () =>
    Effect.gen(function* () {
      const { db } = yield* setUp
      const replay = yield* inProcess(["replay", "--until", "40", "--db", db, "--json"])
      assert.strictEqual(replay.exit._tag, "Success")
      assert.include(replay.stderr, "replay: 40/40 events (100%)")
      assert.notInclude(replay.stdout, "replay:")
      assert.strictEqual(JSON.parse(replay.stdout).summary.events, 40)

      const exported = yield* inProcess(["export", "--db", db, "--include-sensitive"])
      assert.include(exported.stderr, "export:")
      const docs = exported.stdout
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l))
      assert.strictEqual(docs.length, 41)

      const quiet = yield* inProcess(["replay", "--until", "40", "--db", db, "--quiet"])
      assert.strictEqual(quiet.stderr, "")
      assert.include(quiet.stdout, "as of seq 40")
    })
  )

  it.effect("log pages with filters; a server database needs --space; tool errors are usage errors", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const server = join(dir, "server.db")
      yield* serve(server, "team", [created("m1", "a", 1)])
      const noSpace = yield* inProcess(["log", "--db", server])
      assert.strictEqual(noSpace.exit._tag, "Failure")
      assert.include(JSON.stringify(noSpace.exit), "pass --space S (its spaces: team)")
      assert.include(JSON.stringify(noSpace.exit), "UsageError")
      const ok = yield* inProcess(["log", "--db", server, "--space", "team"])
      assert.include(ok.stdout, "confirmed@1")
      const { db } = yield* setUp
      const log = yield* inProcess(["log", "--db", db, "--ndjson", "--limit", "3", "--since", "2"])
      assert.deepStrictEqual(
        log.stdout
          .trimEnd()
          .split("\n")
          .map((l) => JSON.parse(l).seq),
        [2, 3, 4]
      )
    })
  )
})
