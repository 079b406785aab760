/**
 * The data commands as a user runs them: `node bin/memsync.js ...` in a real process, one temp directory per test.
 * Text output is checked for what a reader needs; `--json` output is decoded with the domain schemas, so a change in
 * its shape fails here. A process start costs 1-3 s (the bundle, or tsx after a source edit), so independent commands of a test
 * run concurrently.
 */
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Effect, Schema } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import { Memory } from "../../src/domain/Memory.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const BIN = join(ROOT, "bin", "memsync.js")

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Run the CLI to completion (the child is killed if the test is interrupted). MEMSYNC_DB is never inherited. */
const memsync = (
  args: ReadonlyArray<string>,
  options: { readonly env?: NodeJS.ProcessEnv; readonly cwd?: string } = {}
) =>
  Effect.async<Run>((resume) => {
    const env = { ...process.env }
    delete env.MEMSYNC_DB
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", (error) => resume(Effect.die(error)))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill())
  })

/** Assert a successful run with nothing on stderr; returns stdout. */
const ok = (run: Run): string => {
  assert.strictEqual(run.stderr, "", `unexpected stderr: ${run.stderr}`)
  assert.strictEqual(run.code, 0)
  return run.stdout
}

const dirs: Array<string> = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "memsync-cli-"))
  dirs.push(dir)
  return dir
}
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

/** Write memories through the library (fast, in-process) to set up a database. */
const seed = <A>(filename: string, f: (store: MemoryStore.MemoryStore) => Effect.Effect<A, unknown>) =>
  Effect.flatMap(MemoryStore.MemoryStore, f).pipe(Effect.provide(MemoryStore.layer({ filename })), Effect.orDie)

const decodeJson = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknownSync(Schema.parseJson(schema))
const Listed = Schema.Struct({ ...Memory.fields, deleted: Schema.Boolean })
const Hit = Schema.Struct({ memory: Memory, rank: Schema.Number })
const StoredEvent = Schema.Struct({
  seq: Schema.Number,
  id: Schema.String,
  type: Schema.String,
  version: Schema.Number,
  hlc: Schema.String,
  clientId: Schema.String,
  payload: Schema.Unknown
})
const Stats = Schema.Struct({
  memories: Schema.Number,
  deleted: Schema.Number,
  events: Schema.Number,
  eventsByType: Schema.Record({ key: Schema.String, value: Schema.Number }),
  unknownEvents: Schema.Number,
  pendingOutbox: Schema.Number,
  deadLetters: Schema.Number
})
const VerifyReport = Schema.Struct({
  ok: Schema.Boolean,
  events: Schema.Number,
  memories: Schema.Number,
  onlyInView: Schema.Array(Schema.String),
  missingFromView: Schema.Array(Schema.String),
  differing: Schema.Array(
    Schema.Struct({
      id: Schema.String,
      fields: Schema.Array(Schema.Struct({ field: Schema.String, view: Schema.Unknown, rebuilt: Schema.Unknown }))
    })
  ),
  differingCount: Schema.Number,
  ftsOk: Schema.Boolean
})
const RebuildResult = Schema.Struct({ events: Schema.Number, memories: Schema.Number })
/** Generous: a process start costs 2-3 s of CPU on an idle machine, and a shared one can be ten times slower. */
const TIMEOUT = 300_000
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/

describe.concurrent("memsync data commands", () => {
  it.live(
    "add, update, rm, get, list, search, history, stats and verify, as text and as --json",
    () =>
      Effect.gen(function* () {
        const db = join(tempDir(), "m.db")
        // The file exists (empty) before the two adds run side by side; creating it is covered by the MEMSYNC_DB test.
        yield* seed(db, () => Effect.void)
        const [addedText, addedJson] = yield* Effect.all(
          [
            memsync([
              ...["add", "alpha fox jumps", "--category", "work", "--tag", "t1", "--tag", "t2"],
              ...["--keywords", "k1, animal", "--importance", "0.8", "--sensitive", "--db", db]
            ]),
            memsync(["add", "beta dog sleeps", "--tag", "pets", "--keywords", "animal", "--json", "--db", db])
          ],
          { concurrency: "unbounded" }
        )
        const added = ok(addedText)
        assert.match(added, /^\S+\n$/, "text output of add is the id alone")
        const a = added.trim()
        assert.match(a, UUID)
        const b = decodeJson(Memory)(ok(addedJson))
        assert.deepStrictEqual(
          { content: b.content, category: b.category, tags: b.tags, keywords: b.keywords },
          { content: "beta dog sleeps", category: "general", tags: ["pets"], keywords: ["animal"] }
        )
        assert.strictEqual(b.importance, 0.5)
        assert.strictEqual(b.sensitive, false)

        const [updatedOut, removedOut] = yield* Effect.all(
          [
            memsync([
              ...["update", a, "--content", "alpha wolf howls", "--importance", "0.3", "--sensitive", "false"],
              ...["--tag", "t3", "--json", "--db", db]
            ]),
            memsync(["rm", b.id, "--db", db])
          ],
          { concurrency: "unbounded" }
        )
        const updated = decodeJson(Memory)(ok(updatedOut))
        assert.deepStrictEqual(
          {
            id: updated.id,
            content: updated.content,
            category: updated.category,
            tags: updated.tags,
            keywords: updated.keywords,
            importance: updated.importance,
            sensitive: updated.sensitive
          },
          {
            id: a,
            content: "alpha wolf howls",
            category: "work",
            tags: ["t3"],
            keywords: ["k1", "animal"],
            importance: 0.3,
            sensitive: false
          },
          "fields not given to update are kept"
        )
        assert.isAtLeast(updated.updatedAt, updated.createdAt)
        assert.strictEqual(ok(removedOut), `deleted ${b.id}\n`)

        const reads = yield* Effect.all(
          {
            getText: memsync(["get", a, "--db", db]),
            getJson: memsync(["get", a, "--json", "--db", db]),
            listText: memsync(["list", "--db", db]),
            listAll: memsync(["list", "--include-deleted", "--json", "--db", db]),
            listFiltered: memsync(["list", "--category", "work", "--tag", "t3", "--limit", "1", "--json", "--db", db]),
            searchText: memsync(["search", "wolf", "--db", db]),
            // Both memories carry the keyword; only the one not deleted is found.
            searchJson: memsync(["search", "animal", "--limit", "5", "--json", "--db", db]),
            historyText: memsync(["history", a, "--db", db]),
            historyDeleted: memsync(["history", b.id, "--json", "--db", db]),
            statsText: memsync(["stats", "--db", db]),
            statsJson: memsync(["stats", "--json", "--db", db]),
            verify: memsync(["verify", "--db", db])
          },
          { concurrency: "unbounded" }
        )

        const getText = ok(reads.getText)
        assert.include(getText, `id          ${a}`)
        assert.include(getText, "content     alpha wolf howls")
        assert.include(getText, "category    work")
        assert.include(getText, "tags        t3")
        assert.include(getText, "keywords    k1, animal")
        assert.include(getText, "sensitive   false")
        assert.deepStrictEqual(decodeJson(Memory)(ok(reads.getJson)), updated)

        assert.strictEqual(ok(reads.listText), `${a}  [work] alpha wolf howls\n`, "deleted memories are not listed")
        const all = decodeJson(Schema.Array(Listed))(ok(reads.listAll))
        assert.deepStrictEqual(
          all.map((m) => [m.id, m.deleted]).sort(),
          [
            [a, false],
            [b.id, true]
          ].sort()
        )
        assert.deepStrictEqual(
          decodeJson(Schema.Array(Listed))(ok(reads.listFiltered)).map((m) => m.id),
          [a]
        )

        assert.strictEqual(ok(reads.searchText), `${a}  [work] alpha wolf howls\n`)
        const hits = decodeJson(Schema.Array(Hit))(ok(reads.searchJson))
        assert.deepStrictEqual(
          hits.map((h) => h.memory.id),
          [a],
          "deleted memories are not found"
        )

        const historyLines = ok(reads.historyText).trimEnd().split("\n")
        assert.strictEqual(historyLines.length, 2)
        assert.include(historyLines[0], "memory.created")
        assert.include(historyLines[0], "alpha fox jumps")
        // What `add` stored, flags included (its text output is only the id).
        assert.include(historyLines[0], `"category":"work","tags":["t1","t2"],"keywords":["k1","animal"]`)
        assert.include(historyLines[0], `"importance":0.8,"sensitive":true`)
        assert.include(historyLines[1], "memory.updated")
        assert.include(historyLines[1], "alpha wolf howls")
        const deletedHistory = decodeJson(Schema.Array(StoredEvent))(ok(reads.historyDeleted))
        assert.deepStrictEqual(
          deletedHistory.map((e) => e.type),
          ["memory.created", "memory.deleted"],
          "history of a deleted memory, oldest first"
        )
        assert.isTrue(deletedHistory[0]!.hlc < deletedHistory[1]!.hlc, "history is in hlc order")

        assert.strictEqual(ok(reads.verify), "ok: the view equals a rebuild of 4 events (1 memories)\n")

        const statsText = ok(reads.statsText)
        assert.match(statsText, /^memories\s+1$/m)
        assert.match(statsText, /^deleted\s+1$/m)
        assert.match(statsText, /^events\s+4$/m)
        assert.deepStrictEqual(decodeJson(Stats)(ok(reads.statsJson)), {
          memories: 1,
          deleted: 1,
          events: 4,
          eventsByType: { "memory.created": 2, "memory.updated": 1, "memory.deleted": 1 },
          unknownEvents: 0,
          pendingOutbox: 4,
          deadLetters: 0
        })
      }),
    TIMEOUT
  )

  it.live(
    "update --clear-tags removes every tag and --keywords '' every keyword; --clear-tags with --tag is bad input",
    () =>
      Effect.gen(function* () {
        const db = join(tempDir(), "clear.db")
        const m = yield* seed(db, (store) => store.create({ content: "labelled", tags: ["a", "b"], keywords: ["k"] }))
        const both = yield* memsync(["update", m.id, "--clear-tags", "--tag", "z", "--db", db])
        assert.strictEqual(both.code, 2, both.stderr)
        assert.match(both.stderr, /^memsync: --clear-tags and --tag do not go together/)
        const cleared = decodeJson(Memory)(
          ok(yield* memsync(["update", m.id, "--clear-tags", "--keywords", "", "--json", "--db", db]))
        )
        assert.deepStrictEqual([cleared.tags, cleared.keywords, cleared.content], [[], [], "labelled"])
      }),
    TIMEOUT
  )

  it.live(
    "--log-level writes logs to stderr: stdout stays the command's JSON",
    () =>
      Effect.gen(function* () {
        const db = join(tempDir(), "logs.db")
        yield* seed(db, (store) => store.create({ content: "listed with logs on" }))
        const run = yield* memsync(["list", "--log-level", "debug", "--json", "--db", db])
        assert.strictEqual(run.code, 0, run.stderr)
        const listed = decodeJson(Schema.Array(Listed))(run.stdout).map((m) => m.content)
        assert.deepStrictEqual(listed, ["listed with logs on"])
        assert.match(run.stderr, /level=DEBUG/)
      }),
    TIMEOUT
  )

  it.live(
    "the database comes from --db, else MEMSYNC_DB, else ./memsync.db",
    () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const fromEnv = join(dir, "env.db")
        const id = ok(yield* memsync(["add", "kept in the env db"], { env: { MEMSYNC_DB: fromEnv } })).trim()
        assert.isTrue(existsSync(fromEnv), "add created the file named by MEMSYNC_DB")
        const stored = yield* seed(fromEnv, (store) => store.get(id))
        assert.strictEqual(stored.content, "kept in the env db")
        const flag = join(dir, "flag.db")
        yield* seed(flag, (store) => store.create({ content: "kept in the flag db" }))

        const cwd = tempDir()
        const runs = yield* Effect.all(
          {
            flagWins: memsync(["list", "--json", "--db", flag], { env: { MEMSYNC_DB: fromEnv } }),
            fallback: memsync(["list"], { cwd })
          },
          { concurrency: "unbounded" }
        )
        const listed = (run: Run) => decodeJson(Schema.Array(Listed))(ok(run)).map((m) => m.content)
        assert.deepStrictEqual(listed(runs.flagWins), ["kept in the flag db"])
        // No MEMSYNC_DB and no --db: ./memsync.db in the working directory, which a read command does not create.
        assert.strictEqual(runs.fallback.code, 2)
        assert.strictEqual(runs.fallback.stdout, "")
        assert.match(runs.fallback.stderr, /^memsync: no memsync database at \.\/memsync\.db.*\n$/)
        assert.isFalse(existsSync(join(cwd, "memsync.db")))
      }),
    TIMEOUT
  )

  it.live(
    "verify reports drift in the view with exit 1 and a readable diff; rebuild repairs it",
    () =>
      Effect.gen(function* () {
        const db = join(tempDir(), "m.db")
        const { kept, lost } = yield* seed(db, (store) =>
          Effect.gen(function* () {
            const kept = yield* store.create({ content: "the view keeps this", tags: ["a"] })
            const lost = yield* store.create({ content: "the view loses this" })
            const gone = yield* store.create({ content: "deleted before the check" })
            yield* store.update(kept.id, { content: "the view keeps this, updated" })
            yield* store.remove(gone.id)
            return { kept: kept.id, lost: lost.id }
          })
        )

        // Tamper with the view behind the store's back: one field changed, one row gone, one row invented.
        const raw = new Sqlite(db)
        raw.prepare(`UPDATE memories SET content = 'tampered' WHERE id = ?`).run(kept)
        raw.prepare(`DELETE FROM memories WHERE id = ?`).run(lost)
        raw.prepare(`INSERT INTO memories (id, created, content, content_key) VALUES ('ghost', 1, 'boo', 'x')`).run()
        raw.close()

        const drift = yield* Effect.all([memsync(["verify", "--db", db]), memsync(["verify", "--json", "--db", db])], {
          concurrency: "unbounded"
        })
        const [text, json] = drift
        assert.strictEqual(text.code, 1)
        assert.strictEqual(text.stderr, "memsync: the view differs from a rebuild of the log\n")
        assert.match(text.stdout, /^DRIFT: the view differs from a rebuild of 5 events$/m)
        assert.include(text.stdout, `${kept}  content: view="tampered" rebuilt="the view keeps this, updated"`)
        assert.match(text.stdout, new RegExp(`missing from view: +${lost}`))
        assert.match(text.stdout, /only in view: +ghost/)
        assert.strictEqual(json.code, 1)
        const report = decodeJson(VerifyReport)(json.stdout)
        assert.isFalse(report.ok)
        assert.deepStrictEqual(report.onlyInView, ["ghost"])
        assert.deepStrictEqual(report.missingFromView, [lost])
        assert.deepStrictEqual(report.differing, [
          { id: kept, fields: [{ field: "content", view: "tampered", rebuilt: "the view keeps this, updated" }] }
        ])

        const rebuilt = yield* memsync(["rebuild", "--json", "--db", db])
        assert.deepStrictEqual(decodeJson(RebuildResult)(ok(rebuilt)), { events: 5, memories: 2 })
        assert.strictEqual(
          ok(yield* memsync(["verify", "--db", db])),
          "ok: the view equals a rebuild of 5 events (2 memories)\n"
        )
      }),
    TIMEOUT
  )

  it.live(
    "verify tells a damaged full-text index apart from drift in the view, and rebuild repairs it",
    () =>
      Effect.gen(function* () {
        const db = join(tempDir(), "m.db")
        yield* seed(db, (store) => store.create({ content: "searchable" }))
        // An index entry for a row the view does not hold: the view itself still equals a rebuild of the log.
        const raw = new Sqlite(db)
        raw
          .prepare(
            `INSERT INTO memories_fts (rowid, content, tags, keywords, category) VALUES (999, 'phantom', '', '', '')`
          )
          .run()
        raw.close()

        const [text, json] = yield* Effect.all(
          [memsync(["verify", "--db", db]), memsync(["verify", "--json", "--db", db])],
          { concurrency: "unbounded" }
        )
        assert.strictEqual(text.code, 1)
        assert.strictEqual(text.stderr, "memsync: the full-text index is out of step with the view\n")
        assert.match(
          text.stdout,
          /^DRIFT: the full-text index is out of step with the view \(SQLite's integrity check: /
        )
        assert.include(text.stdout, "the view itself equals a rebuild of 1 events (1 memories)")
        assert.include(text.stdout, "memsync rebuild")
        assert.notInclude(text.stdout, "the view differs")
        const report = decodeJson(VerifyReport)(json.stdout)
        assert.deepStrictEqual([report.ok, report.ftsOk, report.differing.length], [false, false, 0])

        ok(yield* memsync(["rebuild", "--db", db]))
        assert.strictEqual(
          ok(yield* memsync(["verify", "--db", db])),
          "ok: the view equals a rebuild of 1 events (1 memories)\n"
        )
      }),
    TIMEOUT
  )

  it.live.skipIf(!existsSync("/usr/bin/script"))(
    "rebuild draws progress on stderr when it is a terminal, and stdout stays clean JSON",
    () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const db = join(dir, "big.db")
        const events = 11_000
        yield* seed(db, (store) =>
          store.createMany(Array.from({ length: events }, (_, i) => ({ content: `memory number ${i}` })))
        )
        // `script` gives the child a pseudo-terminal: stderr is a TTY there, stdout is redirected to a file.
        const out = join(dir, "out.json")
        const command = `'${process.execPath}' '${BIN}' rebuild --json --db '${db}' > '${out}'`
        const terminal = yield* Effect.async<Run>((resume) => {
          const child = spawn("/usr/bin/script", ["-qec", command, "/dev/null"], {
            cwd: ROOT,
            stdio: ["ignore", "pipe", "pipe"]
          })
          let stdout = ""
          child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
          child.on("error", (error) => resume(Effect.die(error)))
          child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr: "" })))
          return Effect.sync(() => child.kill())
        })
        assert.strictEqual(terminal.code, 0)
        assert.include(terminal.stdout, `rebuild: ${events}/${events} events (100%)`)
        assert.deepStrictEqual(decodeJson(RebuildResult)(readFileSync(out, "utf8")), { events, memories: events })
      }),
    TIMEOUT
  )

  it.live(
    "list and search print nothing when nothing matches, page with --offset, and search FTS syntax as text",
    () =>
      Effect.gen(function* () {
        const db = join(tempDir(), "m.db")
        const target = yield* seed(db, (store) =>
          Effect.gen(function* () {
            yield* store.create({ content: "first, with no operators" })
            const target = yield* store.create({ content: "an unbalanced note: near and or" })
            yield* store.create({ content: "third, with no operators" })
            return target
          })
        )
        const runs = yield* Effect.all(
          {
            limit0: memsync(["list", "--limit", "0", "--db", db]),
            limit0Json: memsync(["list", "--limit", "0", "--json", "--db", db]),
            noHits: memsync(["search", "zebra", "--db", db]),
            noHitsJson: memsync(["search", "zebra", "--json", "--db", db]),
            all: memsync(["list", "--json", "--db", db]),
            offset: memsync(["list", "--offset", "1", "--json", "--db", db]),
            page: memsync(["list", "--offset", "1", "--limit", "1", "--db", db]),
            pastEnd: memsync(["list", "--offset", "3", "--db", db]),
            quote: memsync(["search", '"unbalanced', "--json", "--db", db]),
            operators: memsync(["search", "AND OR", "--json", "--db", db]),
            near: memsync(["search", "NEAR(", "--json", "--db", db]),
            star: memsync(["search", "*", "--db", db]),
            starJson: memsync(["search", "*", "--json", "--db", db])
          },
          { concurrency: "unbounded" }
        )
        assert.strictEqual(ok(runs.limit0), "", "list --limit 0 prints nothing, not an empty line")
        assert.strictEqual(ok(runs.limit0Json), "[]\n")
        assert.strictEqual(ok(runs.noHits), "")
        assert.strictEqual(ok(runs.noHitsJson), "[]\n")
        assert.strictEqual(ok(runs.pastEnd), "")

        const listed = (run: Run) => decodeJson(Schema.Array(Listed))(ok(run)).map((m) => m.id)
        const all = listed(runs.all)
        assert.strictEqual(all.length, 3)
        assert.deepStrictEqual(listed(runs.offset), all.slice(1))
        assert.match(ok(runs.page), new RegExp(`^${all[1]}  \\[general\\] [^\\n]+\\n$`))

        // FTS5 syntax in the query is searched as text: no crash, exit 0, the literal words found.
        const found = (run: Run) => decodeJson(Schema.Array(Hit))(ok(run)).map((h) => h.memory.id)
        assert.deepStrictEqual(found(runs.quote), [target.id])
        assert.deepStrictEqual(found(runs.operators), [target.id])
        assert.deepStrictEqual(found(runs.near), [target.id])
        assert.strictEqual(ok(runs.star), "", "a query with no word finds nothing")
        assert.strictEqual(ok(runs.starJson), "[]\n")
      }),
    TIMEOUT
  )

  it.live(
    "update de-duplicates repeated --tag values like add does",
    () =>
      Effect.gen(function* () {
        const db = join(tempDir(), "m.db")
        const added = decodeJson(Memory)(
          ok(yield* memsync(["add", "tagged", "--tag", "a", "--tag", "a", "--json", "--db", db]))
        )
        assert.deepStrictEqual(added.tags, ["a"])
        const updated = decodeJson(Memory)(
          ok(yield* memsync(["update", added.id, "--tag", "b", "--tag", "b", "--tag", "a", "--json", "--db", db]))
        )
        assert.deepStrictEqual(updated.tags, ["b", "a"])
        const events = decodeJson(Schema.Array(StoredEvent))(
          ok(yield* memsync(["history", added.id, "--json", "--db", db]))
        )
        assert.deepStrictEqual(
          events.map((e) => e.payload),
          [
            { ...added, tags: ["a"] },
            { id: added.id, patch: { tags: ["b", "a"] }, updatedAt: updated.updatedAt }
          ],
          "the log holds the de-duplicated tags too"
        )
      }),
    TIMEOUT
  )
})
