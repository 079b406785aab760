/**
 * The sync commands' contract as a user meets it, with real `memsync` processes against a real `memsync serve`:
 * exit 5 when the server rejects events, `dead-letters` (list, `--requeue ID`, `--requeue-all`, unknown id exit 2),
 * the server URL remembered in the database (by a one-shot sync and by `--watch`), and the token never written to
 * the database file nor its -wal/-shm companions.
 */
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Effect, Schema } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import type { Envelope } from "../../src/domain/Events.js"
import * as HttpTransport from "../../src/sync/HttpTransport.js"
import { Transport } from "../../src/sync/Transport.js"
import {
  useServer,
  background,
  decodeStatus,
  decodeSummary,
  eventually,
  memsync,
  show,
  stop,
  withReplica
} from "./helpers.js"

const TOKENS = { dead: "tok-dead-letters-5e1f", watch: "tok-SECRET-watch-7f3a9c1e" } as const

const fixture = useServer(TOKENS)

const DeadLetters = Schema.parseJson(
  Schema.Array(Schema.Struct({ eventId: Schema.String, reason: Schema.String, message: Schema.String }))
)
const Requeued = Schema.parseJson(Schema.Array(Schema.Struct({ deadLetter: Schema.String, event: Schema.String })))

/** Where the bytes of `needle` appear among a database's files (the file, -wal, -shm), by file name. */
const filesHolding = (db: string, needle: string): Array<string> =>
  [db, `${db}-wal`, `${db}-shm`].filter((f) => existsSync(f) && readFileSync(f).includes(Buffer.from(needle, "utf8")))

/** Push `events` to the server as another client would (the library over HTTP). */
const pushAsAnotherClient = (token: string, events: ReadonlyArray<Envelope>) =>
  Effect.flatMap(Transport, (t) => t.push(token, events)).pipe(
    Effect.provide(HttpTransport.layer({ baseUrl: fixture.server.url })),
    Effect.orDie
  )

describe("memsync sync / status / dead-letters (real processes, loopback HTTP)", () => {
  it.scopedLive(
    "rejected events: sync exits 5; dead-letters lists them, requeues one and all; an unknown id exits 2",
    () =>
      Effect.gen(function* () {
        const db = join(fixture.dir, "dead.db")
        const t = TOKENS.dead
        // Three writes; another client already holds other bodies under the event ids of the first two.
        const created = yield* withReplica(db, (s) =>
          Effect.gen(function* () {
            const ms = yield* s.createMany([{ content: "one" }, { content: "two" }, { content: "three" }])
            return yield* Effect.forEach(ms, (m) => Effect.map(s.history(m.id), (h) => h[0]!))
          })
        )
        const [e1, e2] = created
        const results = yield* pushAsAnotherClient(
          t,
          [e1!, e2!].map(({ seq: _seq, ...e }) => ({ ...e, payload: { ...(e.payload as object), content: "theirs" } }))
        )
        assert.deepStrictEqual(
          results.results.map((r) => r.status),
          ["accepted", "accepted"]
        )

        const first = yield* memsync(["sync", "--server", fixture.server.url, "--token", t, "--db", db, "--json"])
        assert.strictEqual(first.code, 5, show(first))
        const summary = decodeSummary(first.stdout)
        assert.deepStrictEqual([summary.pushed, summary.rejected], [1, 2])
        assert.match(first.stderr, /^memsync: warning: id conflict: /m)
        assert.match(first.stderr, /^memsync: 2 events were rejected by the server \(see memsync dead-letters\)$/m)

        const [list, listText, status] = yield* Effect.all(
          [
            memsync(["dead-letters", "--json", "--db", db]),
            memsync(["dead-letters", "--db", db]),
            memsync(["status", "--json", "--db", db])
          ],
          { concurrency: "unbounded" }
        )
        for (const run of [list, listText, status]) assert.strictEqual(run.code, 0, show(run))
        const dead = Schema.decodeUnknownSync(DeadLetters)(list.stdout)
        assert.deepStrictEqual(
          dead.map((d) => [d.eventId, d.reason]).sort(),
          [
            [e1!.id, "id-conflict"],
            [e2!.id, "id-conflict"]
          ].sort()
        )
        assert.include(listText.stdout, e1!.id)
        assert.include(listText.stdout, "id-conflict")
        const report = decodeStatus(status.stdout)
        assert.deepStrictEqual([report.deadLetters, report.idConflicts, report.pending], [2, 2, 0])
        assert.strictEqual(report.serverUrl, fixture.server.url, "remembered after the sync")

        // A sync with nothing new to reject exits 0, and recalls the dead letters still waiting.
        const recall = yield* memsync(["sync", "--token", t, "--db", db])
        assert.strictEqual(recall.code, 0, show(recall))
        assert.match(
          recall.stderr,
          /^memsync: warning: 2 events were rejected by the server in an earlier sync and are not synced /m
        )

        // A new rejection while older ones wait: the exit-5 line counts both.
        const e4 = yield* withReplica(db, (s) =>
          Effect.flatMap(s.create({ content: "four" }), (m) => Effect.map(s.history(m.id), (h) => h[0]!))
        )
        const { seq: _seq4, ...e4Envelope } = e4
        yield* pushAsAnotherClient(t, [{ ...e4Envelope, payload: { ...(e4.payload as object), content: "theirs" } }])
        const more = yield* memsync(["sync", "--token", t, "--db", db])
        assert.strictEqual(more.code, 5, show(more))
        assert.match(
          more.stderr,
          /^memsync: 1 events were rejected by the server \(and 2 from earlier syncs still wait\) \(see memsync dead-letters\)$/m
        )

        // Requeue one by id; an id that is not a dead letter (unknown, or already requeued) is bad input.
        const one = yield* memsync(["dead-letters", "--requeue", e1!.id, "--json", "--db", db])
        assert.strictEqual(one.code, 0, show(one))
        const [requeued] = Schema.decodeUnknownSync(Requeued)(one.stdout)
        assert.strictEqual(requeued!.deadLetter, e1!.id)
        assert.notStrictEqual(requeued!.event, e1!.id)
        const [unknown, again] = yield* Effect.all(
          [
            memsync(["dead-letters", "--requeue", "01900000-0000-7000-8000-00000000dead", "--db", db]),
            memsync(["dead-letters", "--requeue", e1!.id, "--db", db])
          ],
          { concurrency: "unbounded" }
        )
        for (const run of [unknown, again]) {
          assert.strictEqual(run.code, 2, show(run))
          assert.match(run.stderr, /^memsync: no dead letter with event id /)
          assert.strictEqual(run.stdout, "")
        }
        const all = yield* memsync(["dead-letters", "--requeue-all", "--db", db])
        assert.strictEqual(all.code, 0, show(all))
        assert.match(all.stdout, new RegExp(`^${e2!.id} -> [0-9a-f-]{36}$`, "m"))

        // No --server: the URL remembered in the database. The requeued payloads go out under their new ids.
        const second = yield* memsync(["sync", "--token", t, "--db", db, "--json"])
        assert.strictEqual(second.code, 0, show(second))
        assert.deepStrictEqual([decodeSummary(second.stdout).pushed, decodeSummary(second.stdout).rejected], [3, 0])
        assert.match(second.stderr, /^memsync: warning: the server holds another body under 3 event ids/m)
        assert.notMatch(second.stderr, /earlier sync/, "nothing waits once they are requeued")
        const after = decodeStatus((yield* memsync(["status", "--json", "--db", db])).stdout)
        assert.deepStrictEqual([after.deadLetters, after.pending, after.idConflicts], [0, 0, 3])
        assert.deepStrictEqual(filesHolding(db, t), [], "the token is never stored")
      }),
    240_000
  )

  it.scopedLive(
    "sync --watch remembers the server URL once it has pulled; the token is in none of the database's files",
    () =>
      Effect.gen(function* () {
        const db = join(fixture.dir, "watch.db")
        const t = TOKENS.watch
        yield* withReplica(db, (s) => s.create({ content: "written before watching" }))
        const watcher = yield* background([
          "sync",
          "--watch",
          "--json",
          "--interval-ms",
          "200",
          "--server",
          fixture.server.url,
          "--token",
          t,
          "--db",
          db
        ])
        const remembered = () => {
          const handle = new Sqlite(db, { readonly: true, fileMustExist: true })
          try {
            const row = handle.prepare(`SELECT value FROM sync_state WHERE key = 'server_url'`).pluck().get()
            return typeof row === "string" ? row : undefined
          } finally {
            handle.close()
          }
        }
        const url = yield* eventually("the watcher to remember the server URL", Effect.sync(remembered), {
          timeoutMs: 60_000,
          everyMs: 200
        })
        assert.strictEqual(url, fixture.server.url)
        // While the watcher holds the file open (WAL and shared memory in use), and after it exits.
        assert.isTrue(existsSync(`${db}-wal`), "the watcher's WAL exists")
        assert.deepStrictEqual(filesHolding(db, t), [])
        assert.strictEqual(yield* stop(watcher, "SIGINT"), 0, watcher.stderr())
        assert.deepStrictEqual(filesHolding(db, t), [])
        assert.notInclude(watcher.stdout(), t)
      }),
    120_000
  )
})
