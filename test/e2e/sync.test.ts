/**
 * Sync end to end over real HTTP on loopback: one `memsync serve` process shared by the tests of this file (each test
 * in its own space, through its own token), replicas driven by real `memsync sync / status / list / verify`
 * processes where the behaviour under test is the command's (exit codes, output, convergence), and the library for
 * setup writes, setup syncs and reads (a CLI process costs ~1.5 s on a quiet machine, several on a busy one).
 *
 * The tests run in order: the last one stops the server (SIGTERM, exit 0), writes while it is down, and restarts it
 * on the same port over the same database file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option, Scope } from "effect"
import { join } from "node:path"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as HttpTransport from "../../src/sync/HttpTransport.js"
import * as SyncEngine from "../../src/sync/SyncEngine.js"
import {
  useServer,
  background,
  closedPort,
  decodeListed,
  decodeStatus,
  decodeSummary,
  eventually,
  memsync,
  serve,
  show,
  stop,
  syncOnce,
  withReplica
} from "./helpers.js"

const TOKENS = {
  converge: "tok-converge-1",
  auth: "tok-auth-0001",
  watch: "tok-watch-0001",
  offline: "tok-offline-01"
} as const

const fixture = useServer(TOKENS)

const sync = (db: string, token: string, ...extra: Array<string>) =>
  memsync(["sync", "--server", fixture.server.url, "--token", token, "--db", db, ...extra])

/** The first `sync --json` summary of a run that must succeed. */
const synced = (db: string, token: string) =>
  Effect.map(sync(db, token, "--json"), (run) => {
    assert.strictEqual(run.code, 0, show(run))
    return decodeSummary(run.stdout)
  })

describe("memsync sync against memsync serve (real processes, loopback HTTP)", () => {
  it.scopedLive(
    "two replicas and the server converge: adds, updates and deletes on both; list and verify agree",
    () =>
      Effect.gen(function* () {
        const a = join(fixture.dir, "converge-a.db")
        const b = join(fixture.dir, "converge-b.db")
        const t = TOKENS.converge
        const [m1, m2] = yield* withReplica(a, (s) =>
          s.createMany([{ content: "m1 written on A" }, { content: "m2 written on A", tags: ["a"] }])
        )
        const m3 = yield* withReplica(b, (s) => s.create({ content: "m3 written on B", importance: 0.2 }))

        // The first exchange through the library (setup); the CLI syncs the concurrent edits below.
        assert.strictEqual((yield* syncOnce(a, fixture.server.url, t)).pushed, 2)
        const firstB = yield* syncOnce(b, fixture.server.url, t)
        assert.deepStrictEqual([firstB.pushed, firstB.pulled], [1, 2])

        // Concurrent edits: different fields of m1 on each side (both survive), an update racing a delete on m2
        // (the delete wins), B deletes its own m3, A adds m4.
        const m4 = yield* withReplica(a, (s) =>
          Effect.gen(function* () {
            yield* s.update(m1!.id, { content: "m1 edited on A" })
            yield* s.remove(m2!.id)
            return yield* s.create({ content: "m4 written on A" })
          })
        )
        yield* withReplica(b, (s) =>
          Effect.gen(function* () {
            yield* s.update(m1!.id, { tags: ["from-b"] })
            yield* s.update(m2!.id, { content: "m2 edited on B after A deleted it" })
            yield* s.remove(m3.id)
          })
        )

        assert.strictEqual((yield* synced(a, t)).pushed, 3)
        const secondB = yield* synced(b, t)
        assert.deepStrictEqual([secondB.pushed, secondB.pulled], [3, 3])
        // B holds everything now: its checks run while A pulls; then A's checks.
        const [lastA, listB, verifyB] = yield* Effect.all(
          [synced(a, t), memsync(["list", "--include-deleted", "--json", "--db", b]), memsync(["verify", "--db", b])],
          { concurrency: "unbounded" }
        )
        assert.strictEqual(lastA.pulled, 3)
        const [listA, verifyA] = yield* Effect.all(
          [memsync(["list", "--include-deleted", "--json", "--db", a]), memsync(["verify", "--db", a])],
          { concurrency: "unbounded" }
        )
        for (const run of [listA, listB, verifyA, verifyB]) assert.strictEqual(run.code, 0, show(run))
        const viewA = decodeListed(listA.stdout)
        const viewB = decodeListed(listB.stdout)
        assert.deepStrictEqual(viewA, viewB)
        const byId = new Map(viewA.map((m) => [m.id, m]))
        assert.strictEqual(byId.size, 4)
        assert.include(byId.get(m1!.id), { content: "m1 edited on A", deleted: false })
        assert.deepStrictEqual(byId.get(m1!.id)?.tags, ["from-b"])
        assert.isTrue(byId.get(m2!.id)?.deleted)
        assert.isTrue(byId.get(m3.id)?.deleted)
        assert.include(byId.get(m4.id), { content: "m4 written on A", deleted: false })
      }),
    180_000
  )

  it.scopedLive(
    "a refused token exits 3, an unreachable server exits 4, and the write stays pending either way",
    () =>
      Effect.gen(function* () {
        const db = join(fixture.dir, "auth.db")
        yield* withReplica(db, (s) => s.create({ content: "not sent yet" }))
        const port = yield* closedPort
        const [refused, unreachable] = yield* Effect.all(
          [
            memsync(["sync", "--server", fixture.server.url, "--token", "not-a-known-token", "--db", db]),
            memsync(["sync", "--server", `http://127.0.0.1:${port}`, "--token", TOKENS.auth, "--db", db])
          ],
          { concurrency: "unbounded" }
        )
        assert.strictEqual(refused.code, 3, show(refused))
        assert.match(refused.stderr, /^memsync: .*token/)
        assert.strictEqual(refused.stdout, "")
        assert.strictEqual(unreachable.code, 4, show(unreachable))
        // One line naming the server and why, and saying what became of the write.
        assert.match(
          unreachable.stderr,
          new RegExp(
            `^memsync: cannot reach the server: \\w+ http://127.0.0.1:${port}/.*ECONNREFUSED.*stay pending.*\\n$`
          )
        )
        assert.notInclude(unreachable.stderr, "token")
        assert.match(refused.stderr, /local writes stay pending\)\n$/)
        const stats = yield* withReplica(db, (s) => s.stats)
        assert.strictEqual(stats.pendingOutbox, 1)
        // A replica with nothing to push that cannot reach its server has not pushed: status must not say it did.
        const empty = join(fixture.dir, "auth-empty.db")
        const failed = yield* memsync([
          "sync",
          "--server",
          `http://127.0.0.1:${port}`,
          "--token",
          TOKENS.auth,
          "--db",
          empty
        ])
        assert.strictEqual(failed.code, 4, show(failed))
        const status = yield* memsync(["status", "--json", "--db", empty])
        assert.strictEqual(status.code, 0, show(status))
        const report = decodeStatus(status.stdout)
        assert.isUndefined(report.lastPushAt, status.stdout)
        assert.isUndefined(report.lastPullAt, status.stdout)
        // The right token against the live server: the same replica syncs, so the failures were about the credential
        // and the address, not the replica.
        assert.strictEqual((yield* syncOnce(db, fixture.server.url, TOKENS.auth)).pushed, 1)
      }),
    120_000
  )

  it.scopedLive(
    "sync --watch picks up another replica's write within seconds, and pushes its own on the interval",
    () =>
      Effect.gen(function* () {
        const watched = join(fixture.dir, "watch-w.db")
        const other = join(fixture.dir, "watch-v.db")
        const watcher = yield* background([
          "sync",
          "--watch",
          "--json",
          "--interval-ms",
          "200",
          "--server",
          fixture.server.url,
          "--token",
          TOKENS.watch,
          "--db",
          watched
        ])
        // The watcher reports its first full pull before the test writes anything.
        yield* eventually(
          "the watcher's first pull",
          Effect.sync(() => (/"firstPullDone":true/.test(watcher.stdout()) ? true : undefined)),
          { timeoutMs: 60_000 }
        )

        // Another replica V (this process: the library over HTTP) and W's own file, opened here while the watcher
        // holds it (WAL: the two processes share it safely).
        const v = yield* Layer.build(
          SyncEngine.layer({ token: TOKENS.watch, background: false }).pipe(
            Layer.provideMerge(
              Layer.merge(MemoryStore.layer({ filename: other }), HttpTransport.layer({ baseUrl: fixture.server.url }))
            )
          )
        ).pipe(Effect.orDie)
        const vStore = Context.get(v, MemoryStore.MemoryStore)
        const vEngine = Context.get(v, SyncEngine.SyncEngine)
        const w = yield* Layer.build(MemoryStore.layer({ filename: watched, create: false })).pipe(Effect.orDie)
        const wStore = Context.get(w, MemoryStore.MemoryStore)
        const found = (store: MemoryStore.MemoryStore, id: string) =>
          Effect.map(Effect.option(store.get(id)), Option.getOrUndefined)

        // V writes and pushes; the watcher pulls it on its 200 ms interval.
        const fromV = yield* vStore.create({ content: "written on V while W watches" })
        assert.strictEqual((yield* vEngine.syncNow).pushed, 1)
        yield* eventually("the watcher to pull V's write", found(wStore, fromV.id), { timeoutMs: 10_000 })

        // A write into W's file by another process: the watcher learns of it only through its interval, and pushes.
        const intoW = yield* wStore.create({ content: "written into W's file" })
        yield* eventually(
          "the watcher to push the write made into its file",
          Effect.zipRight(vEngine.syncNow, found(vStore, intoW.id)),
          { timeoutMs: 10_000, everyMs: 200 }
        )
        yield* eventually(
          "the watcher to record the server's ack",
          Effect.map(wStore.stats, (s) => (s.pendingOutbox === 0 ? true : undefined))
        )

        // Ctrl-C: the watcher closes its engine (final push) and exits cleanly.
        const code = yield* stop(watcher, "SIGINT")
        assert.strictEqual(code, 0, watcher.stderr())
      }),
    120_000
  )

  it.scopedLive(
    "writes made while the server is down are kept (exit 4, pending) and converge once it is back",
    () =>
      Effect.gen(function* () {
        const c = join(fixture.dir, "offline-c.db")
        const d = join(fixture.dir, "offline-d.db")
        const t = TOKENS.offline
        yield* withReplica(c, (s) => s.create({ content: "synced before the outage" }))
        assert.strictEqual((yield* syncOnce(c, fixture.server.url, t)).pushed, 1)

        // SIGTERM: the server finishes in-flight requests, closes its database and exits 0.
        const stopped = yield* stop(fixture.server, "SIGTERM")
        assert.strictEqual(stopped, 0, fixture.server.stderr())
        assert.include(fixture.server.stdout(), "memsync server stopped")

        const during = yield* withReplica(c, (s) =>
          Effect.gen(function* () {
            const first = yield* s.create({ content: "written during the outage" })
            const second = yield* s.create({ content: "also written during the outage" })
            yield* s.update(first.id, { importance: 0.9 })
            yield* s.remove(second.id)
            return first
          })
        )
        const down = yield* sync(c, t)
        assert.strictEqual(down.code, 4, show(down))
        assert.match(down.stderr, /^memsync: /)

        // The restart and the status check run side by side (neither needs the other).
        const [status, restarted] = yield* Effect.all(
          [
            memsync(["status", "--json", "--db", c]),
            serve({
              db: join(fixture.dir, "server.db"),
              port: fixture.server.port,
              tokens: Object.entries(TOKENS).map(([space, token]) => `${token}=${space}`)
            }).pipe(Scope.extend(fixture.scope))
          ],
          { concurrency: "unbounded" }
        )
        assert.strictEqual(status.code, 0, show(status))
        const report = decodeStatus(status.stdout)
        assert.strictEqual(report.pending, 4)
        assert.strictEqual(report.deadLetters, 0)
        fixture.server = restarted

        const back = yield* synced(c, t)
        assert.strictEqual(back.pushed, 4)
        assert.isFalse(back.resynced, "the restarted server kept its log and epoch")
        assert.strictEqual((yield* syncOnce(d, fixture.server.url, t)).pulled, 5)
        const seen = yield* withReplica(d, (s) => s.list())
        assert.deepStrictEqual(
          seen.map((m) => [m.content, m.importance]),
          [
            ["written during the outage", 0.9],
            ["synced before the outage", 0.5]
          ]
        )
        assert.strictEqual(seen[0]?.id, during.id)
        assert.strictEqual((yield* withReplica(c, (s) => s.stats)).pendingOutbox, 0)

        const exit = yield* stop(fixture.server, "SIGTERM")
        assert.strictEqual(exit, 0, fixture.server.stderr())
      }),
    180_000
  )
})
