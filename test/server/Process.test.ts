/**
 * `memsync serve` as a real process on a loopback port: it prints its URL, serves the typed client, logs requests
 * without the token, answers the request in flight and exits 0 on SIGTERM and SIGINT, keeps no plaintext token in
 * its heap, and a restart over the same file keeps events, head, digest and epoch.
 */
import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Schedule, Schema } from "effect"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { type IncomingHttpHeaders, request } from "node:http"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Digest from "../../src/domain/Digest.js"
import { PushResponse, SyncApi } from "../../src/sync/Protocol.js"
import { makeEvents } from "./fixtures.js"

const BIN = join(dirname(fileURLToPath(import.meta.url)), "../../bin/memsync.js")
const DOCS_SERVER = join(dirname(fileURLToPath(import.meta.url)), "../../docs/server.md")

interface Running {
  readonly url: string
  readonly output: () => string
  /** Send a signal. */
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Send SIGTERM. */
  readonly terminate: Effect.Effect<void>
  /** The exit code (null when it did not exit within 20 s). */
  readonly exited: Effect.Effect<number | null>
  /** SIGTERM, then the exit code. */
  readonly stop: Effect.Effect<number | null>
}

interface ServeOptions {
  readonly env?: Record<string, string>
  /** Options for node itself, before the script. */
  readonly nodeArgs?: ReadonlyArray<string>
  readonly cwd?: string
}

/** Start `memsync serve ARGS` and wait for the URL line; the process is killed if the scope closes first. */
const serve = (args: ReadonlyArray<string>, options: ServeOptions = {}) =>
  Effect.gen(function* () {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [...(options.nodeArgs ?? []), BIN, "serve", "--port", "0", ...args], {
          env: { ...process.env, MEMSYNC_TOKENS: "", ...options.env },
          stdio: ["ignore", "pipe", "pipe"],
          ...(options.cwd === undefined ? {} : { cwd: options.cwd })
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
    const signal = (name: NodeJS.Signals) => Effect.asVoid(Effect.sync(() => child.kill(name)))
    const terminate = signal("SIGTERM")
    const exitCode = Deferred.await(exited).pipe(
      Effect.timeout("20 seconds"),
      Effect.orElseSucceed(() => null)
    )
    const running: Running = {
      url,
      output: () => out,
      signal,
      terminate,
      exited: exitCode,
      stop: Effect.zipRight(terminate, exitCode)
    }
    return running
  })

const clientFor = (url: string, token: string) =>
  HttpApiClient.make(SyncApi, {
    baseUrl: url,
    transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
  })

/**
 * Start a push that is certainly in flight at the server: the request goes out with `Expect: 100-continue`, and the
 * server's `100 Continue` says it has parsed the headers and dispatched the request. `finish` sends the body and
 * waits for the answer. (A typed client cannot hold a request half-sent.)
 */
const pushInFlight = (url: string, token: string, body: unknown) =>
  Effect.async<{ readonly finish: Effect.Effect<Reply, Error> }, Error>((resume) => {
    const text = JSON.stringify(body)
    const req = request(`${url}/v1/push`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        "content-length": Buffer.byteLength(text),
        expect: "100-continue"
      }
    })
    const reply = new Promise<Reply>((resolve, reject) => {
      req.on("response", (res) => {
        let data = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => (data += chunk))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }))
      })
      req.on("error", reject)
    })
    // Settled here too, so an early failure is never an unhandled rejection.
    reply.catch((e: unknown) => resume(Effect.fail(e instanceof Error ? e : new Error(String(e)))))
    req.on("continue", () =>
      resume(
        Effect.succeed({
          finish: Effect.tryPromise({
            try: () => {
              req.end(text)
              return reply
            },
            catch: (e) => (e instanceof Error ? e : new Error(String(e)))
          })
        })
      )
    )
    req.flushHeaders()
  })

/** Wait until a new connection to the server is refused (it has closed its listening socket). */
const stopsAccepting = (url: string) => {
  const { hostname, port } = new URL(url)
  const attempt = Effect.async<void, string>((resume) => {
    const socket = connect(Number(port), hostname)
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.fail("still accepting"))
    })
    socket.once("error", () => resume(Effect.void))
  })
  return attempt.pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("10 seconds"))), Effect.orDie)
}

interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/**
 * The heap snapshot a `--heapsnapshot-signal` process writes into `dir`, once complete. Node writes it synchronously
 * on the main thread, so the server answers a request only after the file is finished.
 */
const heapSnapshotIn = (dir: string, url: string) =>
  Effect.gen(function* () {
    const started = Effect.sync(() => readdirSync(dir).find((f) => f.endsWith(".heapsnapshot")))
    const file = yield* started.pipe(
      Effect.flatMap((f) => (f === undefined ? Effect.fail("not yet") : Effect.succeed(f))),
      Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("20 seconds")))
    )
    const client = yield* HttpClient.HttpClient
    // The write can outlast the keep-alive timeout, so the first try may meet a connection the server has closed.
    yield* client.get(`${url}/health`).pipe(Effect.retry(Schedule.recurs(3)))
    return readFileSync(join(dir, file), "utf8")
  })

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "memsync-serve-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("memsync serve (a real process)", () => {
  it.live(
    "serves the protocol, drains and exits 0 on SIGTERM under load, and keeps everything across a restart",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const db = join(dir, "server.db")
        const tokensFile = join(dir, "tokens.json")
        writeFileSync(tokensFile, JSON.stringify({ "file-token-123": "space-f" }))
        const args = ["--db", db, "--token", "cli-token-123=space-p", "--tokens-file", tokensFile]
        const env = { MEMSYNC_TOKENS: "env-token-123=space-e" }
        const events = makeEvents(30)

        const first = yield* serve(args, { env })
        assert.match(first.url, /^http:\/\/127\.0\.0\.1:\d+$/)
        const p = yield* clientFor(first.url, "cli-token-123")
        const pushed = yield* p.sync.push({ payload: { events } })
        assert.strictEqual(pushed.head, 30)
        const { epoch } = yield* p.sync.head()
        // Every token source works, each confined to its own space.
        for (const token of ["env-token-123", "file-token-123"]) {
          assert.strictEqual((yield* (yield* clientFor(first.url, token)).sync.head()).head, 0)
        }

        // SIGTERM while 4 keep-alive clients keep pushing and one push is known to be in flight: that push is
        // answered, the process exits 0, and every acknowledged event is in the log after a restart.
        const acknowledged: Array<string> = []
        const answered = yield* Deferred.make<void>()
        let signalled = false
        const failedEarly: Array<string> = []
        const pusher = (clientId: string) =>
          Effect.gen(function* () {
            for (let batch = 0; batch < 200; batch++) {
              const chunk = makeEvents(50, { clientId, from: batch * 50 })
              const r = yield* Effect.either(p.sync.push({ payload: { events: chunk } }))
              // Once the server drains, a new request may be refused or meet a closing connection; before, never.
              if (r._tag === "Left") return signalled ? undefined : failedEarly.push(`${clientId}: ${r.left.message}`)
              for (const x of r.right.results) if (x.status === "accepted") acknowledged.push(x.id)
              if (acknowledged.length >= 200) yield* Deferred.succeed(answered, undefined)
            }
          })
        const pushers = yield* Effect.fork(
          Effect.all(["w1", "w2", "w3", "w4"].map(pusher), { concurrency: "unbounded" })
        )
        yield* Deferred.await(answered)
        const inFlightEvents = makeEvents(20, { clientId: "in-flight" })
        const inFlight = yield* pushInFlight(first.url, "cli-token-123", { events: inFlightEvents })
        signalled = true
        yield* first.terminate
        // Only once the server has stopped accepting is the rest of the body sent: the drain is under way by then.
        yield* stopsAccepting(first.url)
        const reply = yield* inFlight.finish
        assert.strictEqual(reply.status, 200, reply.body)
        const inFlightResult = yield* Schema.decodeUnknown(Schema.parseJson(PushResponse))(reply.body)
        assert.deepStrictEqual(
          inFlightResult.results.map((r) => `${r.id}:${r.status}`),
          inFlightEvents.map((e) => `${e.id}:accepted`)
        )
        for (const r of inFlightResult.results) if (r.status === "accepted") acknowledged.push(r.id)
        assert.strictEqual(yield* first.exited, 0)
        yield* Fiber.join(pushers)
        assert.deepStrictEqual(failedEarly, [])
        const log = first.output()
        assert.match(log, /POST \/v1\/push 200/)
        // docs/server.md shows a request log line: same fields, in the order the server writes them.
        const requestLine = (text: string) => text.split("\n").find((l) => l.includes('message="POST /v1/push 200"'))
        const fieldsOf = (line: string | undefined) => Array.from(line?.matchAll(/(?:^| )(\w+)=/g) ?? [], (m) => m[1])
        assert.deepStrictEqual(fieldsOf(requestLine(log)), fieldsOf(requestLine(readFileSync(DOCS_SERVER, "utf8"))))
        assert.match(log, /space=space-p/)
        assert.match(log, /memsync server stopped\n$/)
        for (const token of ["cli-token-123", "env-token-123", "file-token-123"]) assert.notInclude(log, token)

        const second = yield* serve(args, { env })
        const q = yield* clientFor(second.url, "cli-token-123")
        const head = yield* q.sync.head()
        assert.strictEqual(head.epoch, epoch)
        const page = yield* q.sync.pull({ urlParams: { after: 0, limit: 10_000 } })
        assert.deepStrictEqual(
          page.events.map((e) => e.seq),
          Array.from({ length: head.head }, (_, i) => i + 1)
        )
        assert.deepStrictEqual(
          page.events.slice(0, 30).map(({ seq: _, ...e }) => e),
          events
        )
        const stored = new Set(page.events.map((e) => e.id))
        for (const id of acknowledged) assert.isTrue(stored.has(id), `acknowledged event ${id} was lost`)
        assert.strictEqual(head.digest, Digest.of(stored))
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
    "with no token configured it generates one for space default and prints it once; SIGINT drains and exits 0",
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
        // Ctrl-C behaves like SIGTERM: the request in flight is answered, then a clean exit.
        const events = makeEvents(5, { from: 1 })
        const inFlight = yield* pushInFlight(running.url, token, { events })
        yield* running.signal("SIGINT")
        yield* stopsAccepting(running.url)
        const reply = yield* inFlight.finish
        assert.strictEqual(reply.status, 200, reply.body)
        assert.strictEqual(yield* running.exited, 0)
        assert.match(running.output(), /memsync server stopped\n$/)
        assert.strictEqual(running.output().split(token).length - 1, 1)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici), Effect.scoped),
    60_000
  )

  it.live(
    "keeps no plaintext token in its heap: a heap snapshot of the running server does not contain it",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const token = `heap-check-${randomBytes(12).toString("hex")}`
        const tokensFile = join(dir, "tokens.json")
        writeFileSync(tokensFile, JSON.stringify({ [token]: "space-heap" }))
        const running = yield* serve(["--db", join(dir, "server.db"), "--tokens-file", tokensFile], {
          nodeArgs: ["--heapsnapshot-signal=SIGUSR2"],
          cwd: dir
        })
        yield* (yield* clientFor(running.url, token)).sync.authCheck()
        yield* running.signal("SIGUSR2")
        const snapshot = yield* heapSnapshotIn(dir, running.url)
        // The check can see what the server keeps: the space name lives in the token table.
        assert.include(snapshot, '"space-heap"')
        assert.notInclude(snapshot, token)
        assert.strictEqual(yield* running.stop, 0)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici), Effect.scoped),
    60_000
  )
})
