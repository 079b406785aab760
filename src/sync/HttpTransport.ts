/**
 * The real transport: the typed client derived from the shared `SyncApi`, with a per-request timeout, and every
 * failure classified into one typed error (Classify.ts).
 */
import { HttpApiClient, HttpClient, HttpClientError, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Clock, Duration, Effect, FiberRef, Layer, ParseResult } from "effect"
import { classify, parseRetryAfter, type Observed } from "./Classify.js"
import type { SyncError } from "./Errors.js"
import { BadRequest, Forbidden, PayloadTooLarge, RateLimited, ServerError, SyncApi, Unauthorized } from "./Protocol.js"
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
      transformClient: HttpClient.mapRequestEffect((req) =>
        Effect.map(FiberRef.get(currentToken), (t) => HttpClientRequest.bearerToken(req, t))
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

/** What a failure of the typed client looked like on the wire. */
export const observe = (e: unknown, now: number): Observed => {
  if (e instanceof Unauthorized) return { _tag: "Status", status: 401, message: e.message }
  if (e instanceof Forbidden) return { _tag: "Status", status: 403, message: e.message }
  if (e instanceof BadRequest) return { _tag: "Status", status: 400, message: e.message }
  if (e instanceof PayloadTooLarge) return { _tag: "Status", status: 413, message: e.message }
  if (e instanceof ServerError) return { _tag: "Status", status: 500, message: e.message }
  if (e instanceof RateLimited) {
    return { _tag: "Status", status: 429, message: e.message, retryAfterSeconds: e.retryAfterSeconds }
  }
  if (e instanceof HttpClientError.RequestError) return { _tag: "Network", message: e.message }
  if (e instanceof HttpClientError.ResponseError) {
    const status = e.response.status
    if (e.reason !== "StatusCode") return { _tag: "Undecodable", status, message: e.message }
    const retryAfter = parseRetryAfter(e.response.headers["retry-after"], now)
    return {
      _tag: "Status",
      status,
      message: e.message,
      ...(retryAfter === undefined ? {} : { retryAfterSeconds: retryAfter })
    }
  }
  if (e instanceof ParseResult.ParseError) return { _tag: "Undecodable", message: e.message }
  if (typeof e === "object" && e !== null && "_tag" in e && e._tag === "Timeout") {
    return { _tag: "Timeout", message: "the server did not answer in time" }
  }
  return { _tag: "Undecodable", message: `unexpected failure: ${String(e)}` }
}
