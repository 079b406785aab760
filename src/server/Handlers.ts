/**
 * The HTTP side of the server: implementations of the `SyncApi` groups, the Authentication middleware, and the
 * request logger. Handlers only map HTTP to `ServerLog` calls: auth, body limits and errors. Every protocol rule
 * (admission, seqs, idempotency, digest) lives in ServerLog, so the in-process transport behaves the same.
 *
 * How the status codes come out:
 * - 401 / 429: the Authentication middleware fails with `Unauthorized` / `RateLimited` (schemas with a status). The
 *   headers that go with them (`WWW-Authenticate`, `Retry-After`) are added by a pre-response handler registered on
 *   the request fiber before failing: HttpApi error schemas cannot carry headers, pre-response handlers run on every
 *   response of the request, the encoded error included.
 * - 413 / 400 on push: `push` is a raw handler, so HttpApi does not parse the body itself (its parser turns a
 *   malformed JSON body into a defect, i.e. a 500). It checks `Content-Length` before reading, counts bytes while
 *   reading (for bodies without a length), then parses and decodes, failing with `PayloadTooLarge` or `BadRequest`.
 *   A batch over the count limit is `PayloadTooLarge` from ServerLog.
 * - 400 on a bad pull query: HttpApi's own `HttpApiDecodeError` (`{ _tag, message, issues }`).
 * - 404: unknown routes answer JSON `{ _tag: "NotFound", message }` instead of an empty body.
 * - 500: a defect answers JSON `{ _tag: "ServerError", message }` and is logged with its cause (`layerErrors`).
 */
import { HttpApiBuilder, HttpApp, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Clock, Context, Effect, Exit, Layer, Option, Ref, Schema, Stream } from "effect"
import { formatError } from "../domain/Events.js"
import {
  Authentication,
  BadRequest,
  CurrentSpace,
  PayloadTooLarge,
  PushRequest,
  type PushResponse,
  type ServerError,
  SyncApi
} from "../sync/Protocol.js"
import * as Auth from "./Auth.js"
import * as RateLimit from "./RateLimit.js"
import { ServerLog } from "./ServerLog.js"

/** HTTP-level limits. */
export interface HttpLimits {
  /** Largest request body, in bytes (default 1 MiB). */
  readonly maxBodyBytes: number
}

/** Default HTTP limits. */
export const DEFAULT_HTTP_LIMITS: HttpLimits = { maxBodyBytes: 1024 * 1024 }

/**
 * Set while the server drains before shutting down (see Server.ts): every response then carries `Connection: close`,
 * so a keep-alive client does not send its next request on a connection the server is about to drop.
 */
export class Draining extends Context.Tag("memsync/server/Draining")<Draining, Ref.Ref<boolean>>() {}

/** What the request logger learns about a request from inside it (the space, once authenticated). */
export class RequestInfo extends Context.Tag("memsync/server/RequestInfo")<
  RequestInfo,
  { space: string | undefined }
>() {}

/** The Authentication middleware: token to space (401), then the per-token rate limit (429 + Retry-After). */
export const layerAuthentication: Layer.Layer<Authentication, never, Auth.Auth | RateLimit.RateLimiter> = Layer.effect(
  Authentication,
  Effect.gen(function* () {
    const auth = yield* Auth.Auth
    const limiter = yield* RateLimit.RateLimiter
    return Authentication.of({
      bearer: (token) =>
        Effect.gen(function* () {
          const principal = yield* auth
            .authenticate(token)
            .pipe(Effect.tapError(() => setHeader("www-authenticate", 'Bearer realm="memsync"')))
          const info = yield* Effect.serviceOption(RequestInfo)
          // The cell is the request's own (made by the logger for this request): no other fiber sees it.
          if (Option.isSome(info)) info.value.space = principal.space
          yield* limiter
            .consume(principal.key)
            .pipe(Effect.tapError((e) => setHeader("retry-after", String(e.retryAfterSeconds))))
          return { space: principal.space }
        })
    })
  })
)

/** The `sync` group: push, pull, head, auth-check. */
export const layerSync = (limits: HttpLimits = DEFAULT_HTTP_LIMITS) =>
  HttpApiBuilder.group(SyncApi, "sync", (handlers) =>
    Effect.gen(function* () {
      const log = yield* ServerLog
      return handlers
        .handleRaw("push", ({ request }) =>
          Effect.gen(function* () {
            const { space } = yield* CurrentSpace
            const text = yield* readBody(request, limits.maxBodyBytes)
            const body = yield* parsePushBody(text)
            const response = yield* log.push(space, body.events).pipe(Effect.tapErrorTag("ServerError", logServerError))
            return trustedJson(response)
          })
        )
        .handle("pull", ({ urlParams }) =>
          Effect.flatMap(CurrentSpace, ({ space }) =>
            log.pullBody(space, urlParams.after, urlParams.limit).pipe(
              Effect.tapError(logServerError),
              // Already the JSON of a PullResponse (see ServerLog.pullBody): sent as is.
              Effect.map((body) => HttpServerResponse.uint8Array(body, { contentType: "application/json" }))
            )
          )
        )
        .handle("head", () =>
          Effect.flatMap(CurrentSpace, ({ space }) => log.head(space).pipe(Effect.tapError(logServerError)))
        )
        .handle("authCheck", () => Effect.void)
    })
  )

/** The `health` group (no auth). */
export const layerHealth = HttpApiBuilder.group(SyncApi, "health", (handlers) =>
  handlers.handle("health", () => Effect.succeed({ status: "ok" as const }))
)

/**
 * What the protocol's errors do not cover still answers JSON `{ _tag, message }`: an unknown route is a 404
 * `NotFound`, and a defect (an unexpected exception in a handler) is logged with its cause and answered as a 500
 * `ServerError` instead of the platform's empty 500. Typed errors pass through, to be encoded with their schema.
 */
export const layerErrors: Layer.Layer<never> = HttpApiBuilder.middleware((app) =>
  Effect.catchAllCause(app, (cause) => {
    // The app is typed as never failing; the router still fails with RouteNotFound at run time.
    const failure: unknown = Option.getOrUndefined(Cause.failureOption(cause))
    if (HttpServerError.isServerError(failure) && failure._tag === "RouteNotFound") {
      return HttpServerResponse.json({ _tag: "NotFound", message: "no such endpoint" }, { status: 404 }).pipe(
        Effect.orDie
      )
    }
    // A client that went away interrupts its request: there is no one to answer.
    if (failure !== undefined || Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
    return Effect.logError("unexpected failure while handling a request", cause).pipe(
      Effect.zipRight(
        HttpServerResponse.json(
          { _tag: "ServerError", message: "unexpected server failure (the server log has the details)" },
          { status: 500 }
        )
      ),
      Effect.orDie
    )
  })
)

/**
 * Log every request through Effect's logger: method, path (no query), status, duration and space — never the token
 * (the Authorization header is not read here). While draining, it also marks every response `Connection: close`.
 */
export const requestLogger = (app: HttpApp.Default): HttpApp.Default =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const start = yield* Clock.currentTimeNanos
    const info: Context.Tag.Service<RequestInfo> = { space: undefined }
    const draining = yield* Effect.serviceOption(Draining)
    if (Option.isSome(draining) && (yield* Ref.get(draining.value))) yield* setHeader("connection", "close")
    const exit = yield* Effect.exit(Effect.provideService(app, RequestInfo, info))
    const end = yield* Clock.currentTimeNanos
    const status = Exit.isSuccess(exit) ? exit.value.status : Cause.isInterruptedOnly(exit.cause) ? 499 : 500
    yield* Effect.logInfo(`${request.method} ${pathOf(request.url)} ${status}`).pipe(
      Effect.annotateLogs({
        method: request.method,
        path: pathOf(request.url),
        status,
        durationMs: Number(end - start) / 1e6,
        space: info.space ?? "-"
      })
    )
    return yield* exit
  })

// ---------------------------------------------------------------------------------------------------------------

/**
 * Serialize a push answer without running it through its Schema's encoder: ServerLog builds it, and its encoded form
 * equals its type (no transformations), so the encoder would only re-validate it on the hot path.
 */
const trustedJson = (value: PushResponse) => HttpServerResponse.unsafeJson(value)

const setHeader = (name: string, value: string) =>
  HttpApp.appendPreResponseHandler((_request, response) =>
    Effect.succeed(HttpServerResponse.setHeader(response, name, value))
  )

/**
 * Read the body as text within `max` bytes: 413 when over (declared or actual), 400 when unreadable.
 *
 * A declared length over the limit is refused before reading (Node discards the rest of the body). A body without a
 * length is read to its end even past the limit, up to `DRAIN_FACTOR` times it, so the client gets the 413 instead of
 * a reset connection (stopping a request stream early destroys its socket); beyond that the connection is dropped.
 */
const readBody = (request: HttpServerRequest.HttpServerRequest, max: number) =>
  Effect.gen(function* () {
    const tooLarge = (size: string) => new PayloadTooLarge({ message: `body is ${size} bytes; the limit is ${max}` })
    const declared = request.headers["content-length"]
    if (declared !== undefined && Number(declared) > max) return yield* tooLarge(declared)
    const read = yield* request.stream.pipe(
      Stream.runFoldWhile(
        { chunks: new Array<Uint8Array>(), bytes: 0 },
        (acc) => acc.bytes <= max * DRAIN_FACTOR,
        (acc, chunk) => {
          // The accumulator is local to this fold, so growing it in place is safe and avoids copying per chunk.
          acc.bytes += chunk.length
          if (acc.bytes <= max) acc.chunks.push(chunk)
          return acc
        }
      ),
      Effect.mapError((e) => new BadRequest({ message: `cannot read the body: ${e.message}` }))
    )
    if (read.bytes > max) return yield* tooLarge(`more than ${max}`)
    return Buffer.concat(read.chunks).toString("utf8")
  })

const DRAIN_FACTOR = 4

const decodePushRequest = Schema.decodeUnknownEither(PushRequest)

const parsePushBody = (text: string) =>
  Effect.gen(function* () {
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (cause) =>
        new BadRequest({ message: `malformed JSON body: ${cause instanceof Error ? cause.message : String(cause)}` })
    })
    return yield* Effect.mapError(
      decodePushRequest(json),
      (e) => new BadRequest({ message: `push body must be { "events": [...] }: ${formatError(e)}` })
    )
  })

const logServerError = (e: ServerError) => Effect.logError(`storage failure: ${e.message}`)

const pathOf = (url: string): string => {
  const q = url.indexOf("?")
  return q === -1 ? url : url.slice(0, q)
}
