/**
 * The real transport: the typed client derived from the shared `SyncApi`, with a per-request timeout, and every
 * failure classified into one typed error (Classify.ts).
 *
 * Invariant: every non-2xx response is classified by its status (and Retry-After), whatever its body: the server may
 * sit behind a proxy that answers 502 in HTML or 429 in plain text. Only a 2xx body that does not decode is a
 * ProtocolError.
 */
import {
  HttpApiClient,
  HttpClient,
  HttpClientError,
  HttpClientRequest,
  type HttpClientResponse
} from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Clock, Duration, Effect, FiberRef, Layer, Option, ParseResult, Schema } from "effect"
import { classify, parseRetryAfter, type Observed } from "./Classify.js"
import type { SyncError } from "./Errors.js"
import { SyncApi } from "./Protocol.js"
import { Transport } from "./Transport.js"

/** Options of the HTTP transport. */
export interface Options {
  /** The server's base URL, e.g. `http://127.0.0.1:8787`. */
  readonly baseUrl: string
  /** Per-request timeout (default 15 s). */
  readonly timeoutMs?: number
}

/** The bearer token of the request being made (set per call, read by the client's request transform). */
const currentToken = FiberRef.unsafeMake("")

/** Build the transport over the `HttpClient` in context. */
export const make = (options: Options) =>
  Effect.gen(function* () {
    const client = yield* HttpApiClient.make(SyncApi, {
      baseUrl: options.baseUrl,
      transformClient: (c) =>
        c.pipe(
          HttpClient.mapRequestEffect((req) =>
            Effect.map(FiberRef.get(currentToken), (t) => HttpClientRequest.bearerToken(req, t))
          ),
          // Every non-2xx answer stops here, before the typed client decodes it against the protocol's error schemas:
          // a proxy's HTML 502 or a plain-text 429 does not decode as a memsync error, and it is the status that says
          // what a failure is (Classify.ts), not the body.
          HttpClient.transformResponse(Effect.flatMap(failUnlessOk))
        )
    })
    const timeout = Duration.millis(options.timeoutMs ?? 15_000)

    const call = <A>(token: string, effect: Effect.Effect<A, unknown>): Effect.Effect<A, SyncError> =>
      effect.pipe(
        Effect.timeoutFail({ duration: timeout, onTimeout: () => ({ _tag: "Timeout" as const }) }),
        Effect.locally(currentToken, token),
        Effect.catchAll((e) => Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fail(classify(observe(e, now)))))
      )

    return Transport.of({
      push: (token, events) => call(token, client.sync.push({ payload: { events } })),
      pull: (token, after, limit) => call(token, client.sync.pull({ urlParams: { after, limit } })),
      head: (token) => call(token, client.sync.head()),
      authCheck: (token) => call(token, client.sync.authCheck())
    })
  })

/** The HTTP transport over Node's HTTP client. */
export const layer = (options: Options): Layer.Layer<Transport> =>
  Layer.effect(Transport, make(options)).pipe(Layer.provide(NodeHttpClient.layerUndici))

/**
 * What a failure of the typed client looked like on the wire (pure; `now` resolves an HTTP-date Retry-After).
 * A non-2xx answer is a `StatusCode` ResponseError carrying its body text (see `failUnlessOk`).
 */
export const observe = (e: unknown, now: number): Observed => {
  if (e instanceof HttpClientError.RequestError) {
    // The client's own message ("Transport error (GET url)") hides why; the cause says it (ECONNREFUSED, ENOTFOUND).
    const why = causeMessage(e.cause)
    return {
      _tag: "Network",
      message: `cannot reach the server: ${e.methodAndUrl}${why === undefined ? "" : `: ${why}`}`
    }
  }
  if (e instanceof HttpClientError.ResponseError) {
    const status = e.response.status
    // A 2xx whose body could not be read to its end (reset, cut off): the link failed, not the server's answer.
    if (e.reason === "Decode" && !(e.cause instanceof SyntaxError)) {
      const why = causeMessage(e.cause)
      return {
        _tag: "Network",
        message: `the connection failed while reading the answer: ${e.methodAndUrl}${why === undefined ? "" : `: ${why}`}`
      }
    }
    // Decode (not JSON) / EmptyBody: a 2xx whose body is not what the protocol says.
    if (e.reason !== "StatusCode") return { _tag: "Undecodable", status, message: e.message }
    const body = Option.getOrUndefined(decodeErrorBody(e.description ?? ""))
    const retryAfter = parseRetryAfter(e.response.headers["retry-after"], now) ?? body?.retryAfterSeconds
    return {
      _tag: "Status",
      status,
      message: body?.message ?? statusMessage(e),
      ...(retryAfter === undefined ? {} : { retryAfterSeconds: retryAfter })
    }
  }
  if (e instanceof ParseResult.ParseError) return { _tag: "Undecodable", message: e.message }
  if (typeof e === "object" && e !== null && "_tag" in e && e._tag === "Timeout") {
    return { _tag: "Timeout", message: "the server did not answer in time" }
  }
  return { _tag: "Undecodable", message: `unexpected failure: ${String(e)}` }
}

/** The message of a network failure's cause (one level: undici puts the socket error there), if it has one. */
const causeMessage = (cause: unknown): string | undefined =>
  cause instanceof Error && cause.message !== "" ? cause.message : undefined

/** The most of a failure body kept for its message. */
const MAX_BODY_CHARS = 4_096

/**
 * Pass a 2xx response on; fail any other with a `StatusCode` ResponseError. The body is read here, while the
 * response is at hand, and carried as the error's `description`: the client's error channel only admits
 * `HttpClientError`, and `observe` stays pure.
 */
const failUnlessOk = (
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.ResponseError> =>
  response.status >= 200 && response.status < 300
    ? Effect.succeed(response)
    : response.text.pipe(
        Effect.orElseSucceed(() => ""),
        Effect.flatMap((text) =>
          Effect.fail(
            new HttpClientError.ResponseError({
              reason: "StatusCode",
              request: response.request,
              response,
              description: text.slice(0, MAX_BODY_CHARS)
            })
          )
        )
      )

/** A memsync error body (`{ _tag, message }`, plus `retryAfterSeconds` on a 429); other servers send anything. */
const decodeErrorBody = Schema.decodeUnknownOption(
  Schema.parseJson(Schema.Struct({ message: Schema.String, retryAfterSeconds: Schema.optional(Schema.Number) }))
)

/** A message for a failure whose body is not a memsync error: the status, and a short plain-text body if any. */
const statusMessage = (e: HttpClientError.ResponseError): string => {
  const type = e.response.headers["content-type"] ?? ""
  const text = type.startsWith("text/plain") ? (e.description ?? "").replace(/\s+/g, " ").trim().slice(0, 200) : ""
  return `the server answered ${e.response.status} to ${e.methodAndUrl}${text === "" ? "" : `: ${text}`}`
}
