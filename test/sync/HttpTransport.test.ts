/**
 * The HTTP transport against a real local HTTP server (node:http on 127.0.0.1) that answers with shapes a memsync
 * server never produces but proxies, load balancers and other servers do: every failure must come out as exactly one
 * typed error, the one `Classify.classify` gives for its status (Retry-After parsed), whatever the body.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, TestClock } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import * as HttpTransport from "../../src/sync/HttpTransport.js"
import type { SyncError } from "../../src/sync/Errors.js"
import { closedPort } from "../e2e/helpers.js"

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** A loopback HTTP server answering with `handler` (replaceable per test), closed with the scope. */
const fakeServer = Effect.acquireRelease(
  Effect.async<{ url: string; set: (h: Handler) => void; close: () => void }>((resume) => {
    let handler: Handler = (_req, res) => res.end()
    const sockets = new Set<Socket>()
    const server = createServer((req, res) => handler(req, res))
    server.on("connection", (s) => {
      sockets.add(s)
      s.on("close", () => sockets.delete(s))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(
        Effect.succeed({
          url: `http://127.0.0.1:${port}`,
          set: (h: Handler) => void (handler = h),
          close: () => {
            for (const s of sockets) s.destroy()
            server.close()
          }
        })
      )
    })
  }),
  (s) => Effect.sync(s.close)
)

/** Answer every request with `status`, `headers` and `body`. */
const answer =
  (status: number, headers: Record<string, string>, body: string): Handler =>
  (req, res) => {
    req.resume()
    res.writeHead(status, headers)
    res.end(body)
  }

/** The transport over an undici client that lives as long as the test's scope. */
const transportAt = (baseUrl: string, timeoutMs?: number) =>
  Effect.flatMap(Layer.build(NodeHttpClient.layerUndici), (client) =>
    HttpTransport.make({ baseUrl, ...(timeoutMs === undefined ? {} : { timeoutMs }) }).pipe(Effect.provide(client))
  )

/** The one typed error of a call (it must fail). */
const failureOf = <A>(call: Effect.Effect<A, SyncError>) =>
  Effect.flatMap(Effect.exit(call), (exit) =>
    Exit.isFailure(exit) && exit.cause._tag === "Fail"
      ? Effect.succeed(exit.cause.error)
      : Effect.dieMessage(`expected exactly one typed failure, got ${JSON.stringify(exit)}`)
  )

const HTML = "<html><body><h1>Bad Gateway</h1></body></html>"
const event = {
  id: "0190b3c1-0000-7000-8000-000000000001",
  type: "memory.deleted",
  version: 1,
  payload: { id: "m1" },
  hlc: "0000000000001:0000:client",
  clientId: "client"
}

describe("HttpTransport against a real HTTP server", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly status: number
    readonly headers: Record<string, string>
    readonly body: string
    readonly expect: (e: SyncError) => void
  }> = [
    {
      name: "429 text with Retry-After: 7",
      status: 429,
      headers: { "content-type": "text/plain", "retry-after": "7" },
      body: "slow down",
      expect: (e) => {
        assert.strictEqual(e._tag, "TransientError")
        if (e._tag !== "TransientError") return
        assert.strictEqual(e.kind, "rate-limited")
        assert.strictEqual(e.status, 429)
        assert.strictEqual(e.retryAfterMs, 7000)
        assert.include(e.message, "slow down")
      }
    },
    {
      name: "429 memsync body with Retry-After",
      status: 429,
      headers: { "content-type": "application/json", "retry-after": "3" },
      body: JSON.stringify({ _tag: "RateLimited", message: "over the rate limit", retryAfterSeconds: 3 }),
      expect: (e) => {
        assert.isTrue(e._tag === "TransientError" && e.kind === "rate-limited" && e.retryAfterMs === 3000)
        assert.strictEqual(e.message, "over the rate limit")
      }
    },
    {
      name: "429 memsync body without the header: the body's retryAfterSeconds",
      status: 429,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ _tag: "RateLimited", message: "over the rate limit", retryAfterSeconds: 2 }),
      expect: (e) => assert.isTrue(e._tag === "TransientError" && e.kind === "rate-limited" && e.retryAfterMs === 2000)
    },
    {
      name: "429 HTML with an HTTP-date Retry-After (the TestClock's now is the epoch)",
      status: 429,
      headers: { "content-type": "text/html", "retry-after": "Thu, 01 Jan 1970 00:00:30 GMT" },
      body: HTML,
      expect: (e) =>
        assert.isTrue(e._tag === "TransientError" && e.kind === "rate-limited" && e.retryAfterMs === 30_000)
    },
    ...[
      { status: 500, headers: { "content-type": "text/html" }, body: HTML },
      { status: 502, headers: { "content-type": "text/html" }, body: HTML },
      { status: 503, headers: { "content-type": "application/json" }, body: "{}" },
      { status: 504, headers: {}, body: "" }
    ].map((c) => ({
      name: `${c.status} ${c.headers["content-type"] ?? "empty"}`,
      ...c,
      expect: (e: SyncError) => {
        assert.strictEqual(e._tag, "TransientError")
        assert.isTrue(e._tag === "TransientError" && e.kind === "server" && e.status === c.status)
        assert.notInclude(e.message, "<html>", "markup is not a message")
      }
    })),
    ...[
      { status: 401, headers: { "content-type": "text/plain" }, body: "who are you" },
      { status: 401, headers: {}, body: "" },
      { status: 403, headers: { "content-type": "text/html" }, body: "<h1>Forbidden</h1>" }
    ].map((c) => ({
      name: `${c.status} ${c.headers["content-type"] ?? "empty"}`,
      ...c,
      expect: (e: SyncError) => {
        assert.strictEqual(e._tag, "AuthError")
        assert.isTrue(e._tag === "AuthError" && e.status === c.status)
      }
    })),
    {
      name: "401 memsync body keeps the server's message",
      status: 401,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ _tag: "Unauthorized", message: "unknown token" }),
      expect: (e) => {
        assert.isTrue(e._tag === "AuthError" && e.status === 401)
        assert.strictEqual(e.message, "unknown token")
      }
    },
    {
      name: "404 HTML (not a memsync server)",
      status: 404,
      headers: { "content-type": "text/html" },
      body: "<h1>Not Found</h1>",
      expect: (e) => assert.isTrue(e._tag === "ProtocolError" && e.status === 404)
    },
    {
      name: "200 with a body that does not decode",
      status: 200,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ events: "nope" }),
      expect: (e) => assert.strictEqual(e._tag, "ProtocolError")
    },
    {
      name: "200 with a body that is not JSON",
      status: 200,
      headers: { "content-type": "text/html" },
      body: HTML,
      expect: (e) => assert.strictEqual(e._tag, "ProtocolError")
    }
  ]

  for (const c of cases) {
    it.scoped(`${c.name} -> one typed error, on every call`, () =>
      Effect.gen(function* () {
        const server = yield* fakeServer
        server.set(answer(c.status, c.headers, c.body))
        const http = yield* transportAt(server.url)
        const calls: ReadonlyArray<Effect.Effect<unknown, SyncError>> = [
          http.pull("t", 0, 10),
          http.push("t", [event]),
          http.head("t")
        ]
        for (const call of calls) c.expect(yield* failureOf(call))
      })
    )
  }

  it.scoped("a memsync-shaped success still decodes (204 auth-check, 200 pull)", () =>
    Effect.gen(function* () {
      const server = yield* fakeServer
      server.set((req, res) => {
        req.resume()
        if (req.url?.startsWith("/v1/auth-check")) {
          res.writeHead(204)
          return res.end()
        }
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ events: [], head: 0, hasMore: false }))
      })
      const http = yield* transportAt(server.url)
      yield* http.authCheck("t")
      const page = yield* http.pull("t", 0, 10)
      assert.deepStrictEqual(page, { events: [], head: 0, hasMore: false })
    })
  )

  it.scoped("connection refused -> TransientError unreachable", () =>
    Effect.gen(function* () {
      const port = yield* closedPort
      const http = yield* transportAt(`http://127.0.0.1:${port}`)
      const e = yield* failureOf(http.pull("t", 0, 10))
      assert.isTrue(e._tag === "TransientError" && e.kind === "unreachable", JSON.stringify(e))
      // The one line a user sees names the server and why (not just "Transport error").
      assert.match(
        e.message,
        new RegExp(`^cannot reach the server: GET http://127.0.0.1:${port}/v1/pull.*ECONNREFUSED`)
      )
    })
  )

  it.scoped("a connection reset mid-request -> TransientError unreachable", () =>
    Effect.gen(function* () {
      const server = yield* fakeServer
      server.set((req) => req.socket.destroy())
      const http = yield* transportAt(server.url)
      const e = yield* failureOf(http.head("t"))
      assert.isTrue(e._tag === "TransientError" && e.kind === "unreachable", JSON.stringify(e))
    })
  )

  it.scoped("a 200 whose body is cut by a connection reset -> TransientError unreachable, not a protocol error", () =>
    Effect.gen(function* () {
      const server = yield* fakeServer
      server.set((req, res) => {
        req.resume()
        res.writeHead(200, { "content-type": "application/json", "content-length": "100000" })
        res.write('{"events":[', () => setTimeout(() => req.socket.destroy(), 20))
      })
      const http = yield* transportAt(server.url)
      const e = yield* failureOf(http.pull("t", 0, 10))
      assert.isTrue(e._tag === "TransientError" && e.kind === "unreachable", JSON.stringify(e))
      assert.match(e.message, /connection failed while reading the answer: GET http:\/\/127\.0\.0\.1:\d+\/v1\/pull/)
    })
  )

  it.scoped("a server that never answers -> TransientError timeout (driven by the TestClock)", () =>
    Effect.gen(function* () {
      const server = yield* fakeServer
      const received = yield* Deferred.make<void>()
      // Never answers: the request stays open until the transport gives up.
      server.set((req) => {
        req.resume()
        Deferred.unsafeDone(received, Exit.void)
      })
      const http = yield* transportAt(server.url, 5_000)
      const call = yield* Effect.fork(failureOf(http.pull("t", 0, 10)))
      yield* Deferred.await(received)
      yield* TestClock.adjust("5 seconds")
      const e = yield* Fiber.join(call)
      assert.isTrue(e._tag === "TransientError" && e.kind === "timeout", JSON.stringify(e))
    })
  )
})
