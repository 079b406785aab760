/**
 * A real sync server on a loopback port (`NodeHttpServer.layerTest`) over an in-memory or file log, and typed clients
 * derived from the shared `SyncApi` (the same definition the sync engine's HTTP transport uses).
 */
import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import * as Auth from "../../src/server/Auth.js"
import type { HttpLimits } from "../../src/server/Handlers.js"
import * as RateLimit from "../../src/server/RateLimit.js"
import * as Server from "../../src/server/Server.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import { SyncApi } from "../../src/sync/Protocol.js"

/** Tokens of the test server: two spaces. */
export const TOKEN_A = "token-for-space-a"
export const TOKEN_B = "token-for-space-b"
export const TOKENS: ReadonlyArray<Auth.TokenEntry> = [
  { token: TOKEN_A, space: "space-a" },
  { token: TOKEN_B, space: "space-b" }
]

/** Options of the test server. */
export interface TestServerOptions {
  readonly filename?: string
  readonly limits?: Partial<ServerLog.Limits & HttpLimits>
  readonly rateLimit?: RateLimit.Config
}

/** The server app on `NodeHttpServer.layerTest`; provides an `HttpClient` that targets it. */
export const layerServer = (options: TestServerOptions = {}) =>
  Server.layerApp(options.limits ?? {}).pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(
      Server.layerServices({
        filename: options.filename ?? ":memory:",
        tokens: TOKENS,
        // Tests that do not test the limit must never meet it.
        rateLimit: options.rateLimit ?? { perSecond: 0, burst: 0 },
        ...(options.limits === undefined ? {} : { limits: options.limits })
      })
    )
  )

/**
 * The server app over a given `ServerLog` (e.g. one that fails in a way the real one cannot), with the test tokens and
 * no rate limit.
 */
export const layerServerOver = (log: Layer.Layer<ServerLog.ServerLog>) =>
  Server.layerApp().pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Layer.mergeAll(log, Auth.layer(TOKENS), RateLimit.layer({ perSecond: 0, burst: 0 })))
  )

/** A typed client sending `token` (or no Authorization header). */
export const client = (token: string | undefined) =>
  HttpApiClient.make(SyncApi, {
    transformClient: (c) => (token === undefined ? c : HttpClient.mapRequest(c, HttpClientRequest.bearerToken(token)))
  })

/** A raw request against the test server (for bodies and headers a typed client would not send). */
export const raw = (request: HttpClientRequest.HttpClientRequest) =>
  Effect.flatMap(HttpClient.HttpClient, (c) => c.execute(request))
