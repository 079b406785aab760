/**
 * The sync protocol over real HTTP (loopback, `NodeHttpServer.layerTest`) through the typed `HttpApiClient` derived
 * from the shared `SyncApi`. Time is the TestClock, set past the fixtures' wall times, so the drift check and the rate
 * limit are deterministic.
 */
import { HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Layer, Logger, Schema, Stream, TestClock } from "effect"
import * as Digest from "../../src/domain/Digest.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import { type PulledEvent, PushResponse } from "../../src/sync/Protocol.js"
import { makeEvent, makeEvents, T0, type WireEvent } from "./fixtures.js"
import { client, layerServer, layerServerOver, raw, TOKEN_A, TOKEN_B } from "./harness.js"

const NOW = T0 + 60 * 60 * 1000

const envelopeOf = ({ seq: _, ...event }: PulledEvent) => event

const pullAll = (c: Effect.Effect.Success<ReturnType<typeof client>>, limit = 1000) =>
  Effect.gen(function* () {
    const events: Array<PulledEvent> = []
    let after = 0
    for (;;) {
      const page = yield* c.sync.pull({ urlParams: { after, limit } })
      events.push(...page.events)
      if (!page.hasMore) return events
      after = page.events[page.events.length - 1]!.seq
    }
  })

const ErrorBody = Schema.Struct({ _tag: Schema.String, message: Schema.String })
const errorBody = (response: HttpClientResponse.HttpClientResponse) =>
  HttpClientResponse.schemaBodyJson(ErrorBody)(response)

/** A push body written by hand: the typed client's JSON.stringify would itself overflow on the deepest values. */
const pushBody = (events: ReadonlyArray<WireEvent | string>) =>
  `{"events":[${events.map((e) => (typeof e === "string" ? e : JSON.stringify(e))).join(",")}]}`

/** The JSON of `event` with its payload replaced by the given JSON text. */
const withRawPayload = (event: WireEvent, payload: string) =>
  JSON.stringify({ ...event, payload: "@payload@" }).replace('"@payload@"', payload)

const summarize = (response: PushResponse) =>
  response.results.map((r) =>
    r.status === "rejected" ? `${r.id}:rejected:${r.reason}` : `${r.id}:${r.status}:${r.seq}`
  )

const postPush = (body: string, token: string = TOKEN_A) =>
  raw(
    HttpClientRequest.post("/v1/push").pipe(
      HttpClientRequest.bearerToken(token),
      HttpClientRequest.bodyText(body, "application/json")
    )
  )

describe("sync server over HTTP", () => {
  it.effect("push then pull returns the same events in seq order", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const a = yield* client(TOKEN_A)
      const events = makeEvents(10)
      const pushed = yield* a.sync.push({ payload: { events } })
      assert.deepStrictEqual(
        pushed.results,
        events.map((e, i) => ({ status: "accepted" as const, id: e.id, seq: i + 1 }))
      )
      assert.strictEqual(pushed.head, 10)
      const page = yield* a.sync.pull({ urlParams: { after: 0, limit: 100 } })
      assert.isFalse(page.hasMore)
      assert.strictEqual(page.head, 10)
      assert.deepStrictEqual(
        page.events.map((e) => e.seq),
        events.map((_, i) => i + 1)
      )
      assert.deepStrictEqual(page.events.map(envelopeOf), events)
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("pull pages with hasMore; head and digest agree with the events pulled", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const a = yield* client(TOKEN_A)
      yield* a.sync.push({ payload: { events: makeEvents(25) } })
      const p1 = yield* a.sync.pull({ urlParams: { after: 0, limit: 10 } })
      const p2 = yield* a.sync.pull({ urlParams: { after: 10, limit: 10 } })
      const p3 = yield* a.sync.pull({ urlParams: { after: 20, limit: 10 } })
      assert.deepStrictEqual(
        [p1, p2, p3].map((p) => [p.events.length, p.hasMore]),
        [
          [10, true],
          [10, true],
          [5, false]
        ]
      )
      const all = yield* pullAll(a, 7)
      assert.deepStrictEqual(
        all.map((e) => e.seq),
        Array.from({ length: 25 }, (_, i) => i + 1)
      )
      const head = yield* a.sync.head()
      assert.strictEqual(head.head, 25)
      assert.strictEqual(head.digest, Digest.of(all.map((e) => e.id)))
      assert.match(head.epoch, /^[0-9a-f-]{36}$/)
      const beyond = yield* a.sync.pull({ urlParams: { after: 25, limit: 10 } })
      assert.deepStrictEqual([beyond.events.length, beyond.hasMore, beyond.head], [0, false, 25])
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("a re-push is idempotent: duplicates keep their seq, head and digest do not move", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const a = yield* client(TOKEN_A)
      const events = makeEvents(5)
      yield* a.sync.push({ payload: { events } })
      const before = yield* a.sync.head()
      // Key order and extra fields do not make it a different event.
      const reordered = events.map(({ id, ...rest }) => ({ extra: "ignored", ...rest, id }))
      const again = yield* a.sync.push({ payload: { events: reordered.reverse() } })
      assert.deepStrictEqual(
        again.results,
        [...events].reverse().map((e) => ({ status: "duplicate" as const, id: e.id, seq: events.indexOf(e) + 1 }))
      )
      assert.deepStrictEqual(yield* a.sync.head(), before)
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("the same id with another body is rejected as id-conflict", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const a = yield* client(TOKEN_A)
      const original = makeEvent(1)
      yield* a.sync.push({ payload: { events: [original] } })
      const forged = makeEvent(1, { content: "a different body" })
      assert.strictEqual(forged.id, original.id)
      const result = yield* a.sync.push({ payload: { events: [forged] } })
      const [r] = result.results
      assert.strictEqual(r?.status, "rejected")
      assert.strictEqual(r?.status === "rejected" ? r.reason : undefined, "id-conflict")
      assert.strictEqual(result.head, 1)
      const [stored] = (yield* a.sync.pull({ urlParams: { after: 0, limit: 10 } })).events
      assert.deepStrictEqual(envelopeOf(stored!), original)
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("a mixed batch gets one result per event, in order, and bad events block nothing", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const a = yield* client(TOKEN_A)
      const good = makeEvent(1)
      const invalid: WireEvent = { ...makeEvent(2), payload: { id: "m", content: "" } }
      const tooLarge = makeEvent(3, { content: "x".repeat(300 * 1024) })
      const drifted = makeEvent(4, { wall: NOW + 10 * 60 * 1000 })
      const future: WireEvent = { ...makeEvent(5), type: "memory.pinned", version: 7, payload: { anything: [1] } }
      const notAnEvent = { hello: "world" }
      const good2 = makeEvent(6)
      const result = yield* a.sync.push({
        payload: { events: [good, invalid, tooLarge, drifted, future, notAnEvent, good2] }
      })
      const summary = result.results.map((r) =>
        r.status === "rejected" ? `${r.id}:rejected:${r.reason}` : `${r.id}:${r.status}:${r.seq}`
      )
      assert.deepStrictEqual(summary, [
        `${good.id}:accepted:1`,
        `${invalid.id}:rejected:invalid`,
        `${tooLarge.id}:rejected:too-large`,
        `${drifted.id}:rejected:clock-drift`,
        `${future.id}:accepted:2`,
        `:rejected:invalid`,
        `${good2.id}:accepted:3`
      ])
      for (const r of result.results) if (r.status === "rejected") assert.isAbove(r.message.length, 0)
      // The event of an unknown type/version is stored and served as it came (forward compatibility).
      const page = yield* a.sync.pull({ urlParams: { after: 0, limit: 10 } })
      assert.deepStrictEqual(envelopeOf(page.events[1]!), future)
    }).pipe(Effect.provide(layerServer({ limits: { maxBodyBytes: 1024 * 1024 } })))
  )

  it.effect("20 concurrent clients pushing 50 events each get seqs 1..1000 with no gap or duplicate", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const clients = Array.from({ length: 20 }, (_, i) => `client-${i}`)
      const pushAll = (clientId: string) =>
        Effect.gen(function* () {
          const c = yield* client(TOKEN_A)
          const events = makeEvents(50, { clientId })
          const seqs: Array<number> = []
          // Batches of 10, so the 20 clients' requests interleave at the server.
          for (let i = 0; i < 50; i += 10) {
            const r = yield* c.sync.push({ payload: { events: events.slice(i, i + 10) } })
            for (const x of r.results) if (x.status === "accepted") seqs.push(x.seq)
          }
          return seqs
        })
      const perClient = yield* Effect.all(clients.map(pushAll), { concurrency: "unbounded" })
      for (const seqs of perClient) {
        assert.strictEqual(seqs.length, 50)
        assert.deepStrictEqual(
          seqs,
          [...seqs].sort((x, y) => x - y)
        )
      }
      const all = perClient.flat().sort((x, y) => x - y)
      assert.deepStrictEqual(
        all,
        Array.from({ length: 1000 }, (_, i) => i + 1)
      )
      const a = yield* client(TOKEN_A)
      const pulled = yield* pullAll(a)
      assert.deepStrictEqual(
        pulled.map((e) => e.seq),
        all
      )
      assert.strictEqual(new Set(pulled.map((e) => e.id)).size, 1000)
      assert.strictEqual((yield* a.sync.head()).digest, Digest.of(pulled.map((e) => e.id)))
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("a token for space B never sees space A's events", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const a = yield* client(TOKEN_A)
      const b = yield* client(TOKEN_B)
      const events = makeEvents(3)
      yield* a.sync.push({ payload: { events } })
      const pageB = yield* b.sync.pull({ urlParams: { after: 0, limit: 100 } })
      assert.deepStrictEqual([pageB.events.length, pageB.head], [0, 0])
      const headB = yield* b.sync.head()
      assert.deepStrictEqual([headB.head, headB.digest], [0, Digest.EMPTY])
      // Ids are scoped by space: the same events are new in B, with B's own seqs.
      const pushedB = yield* b.sync.push({ payload: { events: events.slice(0, 1) } })
      assert.deepStrictEqual(pushedB.results, [{ status: "accepted", id: events[0]!.id, seq: 1 }])
      assert.strictEqual((yield* a.sync.head()).head, 3)
      assert.strictEqual((yield* b.sync.pull({ urlParams: { after: 0, limit: 100 } })).events.length, 1)
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("401 for a missing or unknown token, with WWW-Authenticate; health needs none", () =>
    Effect.gen(function* () {
      const none = yield* client(undefined)
      const wrong = yield* client("not-a-real-token")
      assert.strictEqual((yield* Effect.flip(none.sync.head()))._tag, "Unauthorized")
      assert.strictEqual((yield* Effect.flip(wrong.sync.push({ payload: { events: [] } })))._tag, "Unauthorized")
      const response = yield* raw(HttpClientRequest.get("/v1/pull"))
      assert.strictEqual(response.status, 401)
      assert.strictEqual(response.headers["www-authenticate"], 'Bearer realm="memsync"')
      assert.strictEqual((yield* errorBody(response))._tag, "Unauthorized")
      assert.deepStrictEqual(yield* none.health.health(), { status: "ok" })
      const a = yield* client(TOKEN_A)
      yield* a.sync.authCheck()
      const check = yield* raw(HttpClientRequest.get("/v1/auth-check").pipe(HttpClientRequest.bearerToken(TOKEN_A)))
      assert.strictEqual(check.status, 204)
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("413 for a body over the byte limit and for a batch over the count limit", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const a = yield* client(TOKEN_A)
      const big = JSON.stringify({ events: [makeEvent(1, { content: "y".repeat(70 * 1024) })] })
      const response = yield* postPush(big)
      assert.strictEqual(response.status, 413)
      assert.strictEqual((yield* errorBody(response))._tag, "PayloadTooLarge")
      // Without a Content-Length (chunked), the body is counted while read; the client still gets the 413.
      const chunk = new TextEncoder().encode(" ".repeat(16 * 1024))
      const chunked = yield* raw(
        HttpClientRequest.post("/v1/push").pipe(
          HttpClientRequest.bearerToken(TOKEN_A),
          HttpClientRequest.bodyStream(Stream.make(chunk, chunk, chunk, chunk, chunk), {
            contentType: "application/json"
          })
        )
      )
      assert.strictEqual(chunked.status, 413)
      assert.strictEqual((yield* errorBody(chunked))._tag, "PayloadTooLarge")
      const typed = yield* Effect.flip(
        a.sync.push({ payload: { events: [makeEvent(2, { content: "z".repeat(70 * 1024) })] } })
      )
      assert.strictEqual(typed._tag, "PayloadTooLarge")
      const tooMany = yield* Effect.flip(a.sync.push({ payload: { events: makeEvents(51) } }))
      assert.strictEqual(tooMany._tag, "PayloadTooLarge")
      assert.match(tooMany.message, /51 events.*limit is 50/)
      // Nothing of the refused requests was stored; a batch at the limit is fine.
      assert.strictEqual((yield* a.sync.head()).head, 0)
      assert.strictEqual((yield* a.sync.push({ payload: { events: makeEvents(50) } })).head, 50)
    }).pipe(Effect.provide(layerServer({ limits: { maxBodyBytes: 64 * 1024, maxBatch: 50 } })))
  )

  it.effect("400 with a message for malformed JSON and for bodies or queries of the wrong shape", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, RegExp]> = [
        ['{"events": [1,', /malformed JSON/],
        ["", /malformed JSON/],
        ['{"events": 5}', /events/],
        ["[]", /push body must be/],
        ['{"evts": []}', /events: is missing/]
      ]
      for (const [body, message] of cases) {
        const response = yield* postPush(body)
        assert.strictEqual(response.status, 400, body)
        const error = yield* errorBody(response)
        assert.strictEqual(error._tag, "BadRequest")
        assert.match(error.message, message)
      }
      for (const query of ["after=abc", "after=-1", "limit=0", "limit=100000"]) {
        const response = yield* raw(
          HttpClientRequest.get(`/v1/pull?${query}`).pipe(HttpClientRequest.bearerToken(TOKEN_A))
        )
        assert.strictEqual(response.status, 400, query)
        const error = yield* errorBody(response)
        assert.strictEqual(error._tag, "HttpApiDecodeError")
      }
      const unknown = yield* raw(HttpClientRequest.get("/v1/nothing-here"))
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual((yield* errorBody(unknown))._tag, "NotFound")
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("429 with Retry-After past the per-token rate, per token, until the bucket refills", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const a = yield* client(TOKEN_A)
      const b = yield* client(TOKEN_B)
      yield* a.sync.head()
      yield* a.sync.head()
      const limited = yield* raw(HttpClientRequest.get("/v1/head").pipe(HttpClientRequest.bearerToken(TOKEN_A)))
      assert.strictEqual(limited.status, 429)
      assert.strictEqual(limited.headers["retry-after"], "2")
      assert.strictEqual((yield* errorBody(limited))._tag, "RateLimited")
      const typed = yield* Effect.flip(a.sync.pull({ urlParams: { after: 0, limit: 10 } }))
      assert.strictEqual(typed._tag, "RateLimited")
      assert.strictEqual(typed._tag === "RateLimited" ? typed.retryAfterSeconds : 0, 2)
      // Another token has its own bucket.
      yield* b.sync.head()
      yield* TestClock.adjust("2 seconds")
      yield* a.sync.head()
    }).pipe(Effect.provide(layerServer({ rateLimit: { perSecond: 0.5, burst: 2 } })))
  )

  it.effect("a deeply nested payload is rejected on its own: the rest of its batch is stored", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      // The audit's case: 3 events, the middle one's payload 3000 arrays deep (a 6.8 KB body). It used to overflow the
      // stack while hashing, fail the whole push with an empty 500 and lose both good events.
      const [good, middle, good2] = makeEvents(3)
      const deep = (n: number) => "[".repeat(n) + "]".repeat(n)
      const body = pushBody([good!, withRawPayload(middle!, deep(3000)), good2!])
      assert.isBelow(body.length, 8 * 1024)
      const response = yield* postPush(body)
      assert.strictEqual(response.status, 200)
      const result = yield* HttpClientResponse.schemaBodyJson(PushResponse)(response)
      assert.deepStrictEqual(summarize(result), [
        `${good!.id}:accepted:1`,
        `${middle!.id}:rejected:invalid`,
        `${good2!.id}:accepted:2`
      ])
      const [, rejected] = result.results
      assert.match(rejected?.status === "rejected" ? rejected.message : "", /nesting depth limit is 64/)

      // Every way in: an unknown type (no payload schema), far deeper, a whole event that is only nesting, and the
      // boundary (64 levels pass, 65 do not).
      const unknownType = (n: number): WireEvent => ({ ...makeEvent(n), type: "memory.pinned" })
      const cases = [
        withRawPayload(unknownType(10), deep(100_000)),
        withRawPayload(makeEvent(11), `{"id":"m","patch":{"tags":${deep(5000)}},"updatedAt":1}`),
        deep(50_000),
        withRawPayload(unknownType(12), deep(64)),
        withRawPayload(unknownType(13), deep(65)),
        JSON.stringify(makeEvent(14))
      ]
      const mixed = yield* postPush(`{"events":[${cases.join(",")}]}`)
      assert.strictEqual(mixed.status, 200)
      assert.deepStrictEqual(summarize(yield* HttpClientResponse.schemaBodyJson(PushResponse)(mixed)), [
        `${unknownType(10).id}:rejected:invalid`,
        `${makeEvent(11).id}:rejected:invalid`,
        `:rejected:invalid`,
        `${unknownType(12).id}:accepted:3`,
        `${unknownType(13).id}:rejected:invalid`,
        `${makeEvent(14).id}:accepted:4`
      ])
      const a = yield* client(TOKEN_A)
      const page = yield* a.sync.pull({ urlParams: { after: 0, limit: 10 } })
      assert.deepStrictEqual(
        page.events.map((e) => e.id),
        [good!.id, good2!.id, unknownType(12).id, makeEvent(14).id]
      )
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("a push body that is only deep nesting is a 400 with a message, not a crash", () =>
    Effect.gen(function* () {
      for (const body of [
        "[".repeat(100_000) + "]".repeat(100_000),
        `{"events":${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}}`
      ]) {
        const response = yield* postPush(body)
        assert.strictEqual(response.status, 400)
        const error = yield* errorBody(response)
        assert.strictEqual(error._tag, "BadRequest")
        assert.match(error.message, /push body must be/)
      }
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("401 for an Authorization header of another scheme (Basic)", () =>
    Effect.gen(function* () {
      const basic = yield* raw(
        HttpClientRequest.get("/v1/head").pipe(
          HttpClientRequest.setHeader("authorization", `Basic ${btoa(`user:${TOKEN_A}`)}`)
        )
      )
      assert.strictEqual(basic.status, 401)
      assert.strictEqual(basic.headers["www-authenticate"], 'Bearer realm="memsync"')
      assert.strictEqual((yield* errorBody(basic))._tag, "Unauthorized")
      // The bare token without a scheme is not accepted either.
      const bare = yield* raw(
        HttpClientRequest.get("/v1/head").pipe(HttpClientRequest.setHeader("authorization", TOKEN_A))
      )
      assert.strictEqual(bare.status, 401)
    }).pipe(Effect.provide(layerServer()))
  )

  it.effect("an unexpected failure in a handler answers 500 with a JSON { _tag, message } body, and is logged", () => {
    const logs: Array<string> = []
    const capture = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ cause, message }) => logs.push(`${String(message)} ${Cause.pretty(cause)}`))
    )
    // A log whose every call dies: a defect, not one of the protocol's errors.
    const broken = ServerLog.ServerLog.of({
      epoch: "e",
      limits: ServerLog.DEFAULT_LIMITS,
      push: () => Effect.die(new RangeError("planted defect in push")),
      pull: () => Effect.die(new Error("planted defect in pull")),
      pullBody: () => Effect.die(new Error("planted defect in pull")),
      head: () => Effect.sync(() => JSON.parse("{ not json"))
    })
    return Effect.gen(function* () {
      const push = yield* postPush(pushBody([makeEvent(1)]))
      assert.strictEqual(push.status, 500)
      const error = yield* errorBody(push)
      assert.strictEqual(error._tag, "ServerError")
      assert.isAbove(error.message.length, 0)
      // The typed client reads it as the protocol's ServerError (which a sync client retries).
      const a = yield* client(TOKEN_A)
      const pulled = yield* Effect.flip(a.sync.pull({ urlParams: { after: 0, limit: 10 } }))
      assert.strictEqual(pulled._tag, "ServerError")
      const head = yield* raw(HttpClientRequest.get("/v1/head").pipe(HttpClientRequest.bearerToken(TOKEN_A)))
      assert.deepStrictEqual([head.status, (yield* errorBody(head))._tag], [500, "ServerError"])
      // Each defect is logged with its cause; the request line says 500.
      const all = logs.join("\n")
      assert.include(all, "planted defect in push")
      assert.include(all, "planted defect in pull")
      assert.include(all, "SyntaxError")
      assert.match(all, /POST \/v1\/push 500/)
    }).pipe(Effect.provide(layerServerOver(Layer.succeed(ServerLog.ServerLog, broken)).pipe(Layer.provide(capture))))
  })

  it.effect("the OpenAPI document is served", () =>
    Effect.gen(function* () {
      const response = yield* raw(HttpClientRequest.get("/v1/openapi.json"))
      assert.strictEqual(response.status, 200)
      const doc = yield* HttpClientResponse.schemaBodyJson(
        Schema.Struct({
          info: Schema.Struct({ title: Schema.String }),
          paths: Schema.Record({ key: Schema.String, value: Schema.Unknown })
        })
      )(response)
      assert.strictEqual(doc.info.title, "memsync sync protocol")
      for (const path of ["/v1/push", "/v1/pull", "/v1/head", "/v1/auth-check", "/health"]) {
        assert.property(doc.paths, path)
      }
    }).pipe(Effect.provide(layerServer()))
  )
})
