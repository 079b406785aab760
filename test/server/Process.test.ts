/**
 * `memsync serve` as a real process on a loopback port: it prints its URL, serves the typed client, logs requests
 * without the token, exits 0 on SIGTERM, and a restart over the same file keeps events, head, digest and epoch.
 */
import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Digest from "../../src/domain/Digest.js"
import { SyncApi } from "../../src/sync/Protocol.js"
import { makeEvents } from "./fixtures.js"

const BIN = join(dirname(fileURLToPath(import.meta.url)), "../../bin/memsync.js")

interface Running {
  readonly url: string
  readonly output: () => string
  /** SIGTERM, then the exit code. */
  readonly stop: Effect.Effect<number | null>
}

/** Start `memsync serve ARGS` and wait for the URL line; the process is killed if the scope closes first. */
const serve = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.gen(function* () {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [BIN, "serve", "--port", "0", ...args], {
          env: { ...process.env, MEMSYNC_TOKENS: "", ...env },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
    )
    let out = ""
    const exited = yield* Deferred.make<number | null>()
    const listening = yield* Deferred.make<string, Error>()
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8")
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m !== null) Deferred.unsafeDone(listening, Effect.succeed(m[1]!))
    })
    child.stderr.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")))
    child.on("exit", (code) => {
      Deferred.unsafeDone(exited, Effect.succeed(code))
      Deferred.unsafeDone(listening, Effect.fail(new Error(`memsync serve exited (${code}): ${out}`)))
    })
    const url = yield* Deferred.await(listening).pipe(Effect.timeout("30 seconds"))
    const running: Running = {
      url,
      output: () => out,
      stop: Effect.zipRight(
        Effect.sync(() => child.kill("SIGTERM")),
        Deferred.await(exited).pipe(Effect.timeout("20 seconds"), Effect.orElseSucceed(() => null))
      )
    }
    return running
  })

const clientFor = (url: string, token: string) =>
  HttpApiClient.make(SyncApi, {
    baseUrl: url,
    transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
  })

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "memsync-serve-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("memsync serve (a real process)", () => {
  it.live(
    "serves the protocol, exits 0 on SIGTERM, and keeps everything across a restart",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const db = join(dir, "server.db")
        const tokensFile = join(dir, "tokens.json")
        writeFileSync(tokensFile, JSON.stringify({ "file-token-123": "space-f" }))
        const args = ["--db", db, "--token", "cli-token-123=space-p", "--tokens-file", tokensFile]
        const env = { MEMSYNC_TOKENS: "env-token-123=space-e" }
        const events = makeEvents(30)

        const first = yield* serve(args, env)
        assert.match(first.url, /^http:\/\/127\.0\.0\.1:\d+$/)
        const p = yield* clientFor(first.url, "cli-token-123")
        const pushed = yield* p.sync.push({ payload: { events } })
        assert.strictEqual(pushed.head, 30)
        const before = yield* p.sync.head()
        assert.strictEqual(before.digest, Digest.of(events.map((e) => e.id)))
        // Every token source works, each confined to its own space.
        for (const token of ["env-token-123", "file-token-123"]) {
          assert.strictEqual((yield* (yield* clientFor(first.url, token)).sync.head()).head, 0)
        }
        assert.strictEqual(yield* first.stop, 0)
        const log = first.output()
        assert.match(log, /POST \/v1\/push 200/)
        assert.match(log, /space=space-p/)
        assert.match(log, /memsync server stopped/)
        for (const token of ["cli-token-123", "env-token-123", "file-token-123"]) assert.notInclude(log, token)

        const second = yield* serve(args, env)
        const q = yield* clientFor(second.url, "cli-token-123")
        assert.deepStrictEqual(yield* q.sync.head(), before)
        const page = yield* q.sync.pull({ urlParams: { after: 0, limit: 100 } })
        assert.deepStrictEqual(
          page.events.map(({ seq: _, ...e }) => e),
          events
        )
        const again = yield* q.sync.push({ payload: { events: events.slice(0, 3) } })
        assert.deepStrictEqual(
          again.results.map((r) => r.status),
          ["duplicate", "duplicate", "duplicate"]
        )
        assert.strictEqual(yield* second.stop, 0)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici), Effect.scoped),
    60_000
  )

  it.live(
    "with no token configured it generates one for space default and prints it once",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const running = yield* serve(["--db", join(dir, "server.db")])
        const m = /generated one for space "default" \(shown once\): (\S+)/.exec(running.output())
        assert.isNotNull(m)
        const token = m![1]!
        const c = yield* clientFor(running.url, token)
        yield* c.sync.authCheck()
        yield* c.sync.push({ payload: { events: makeEvents(1) } })
        assert.strictEqual(yield* running.stop, 0)
        assert.strictEqual(running.output().split(token).length - 1, 1)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici), Effect.scoped),
    60_000
  )
})
