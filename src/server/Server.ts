/**
 * The sync server assembled: the `SyncApi` handlers over a `ServerLog`, token auth and the rate limit, served by any
 * `HttpServer` (Node on a port, or `NodeHttpServer.layerTest` in tests). The OpenAPI document is at
 * `GET /v1/openapi.json`.
 *
 * Shutdown order (layers release in reverse order of construction): the HTTP server is built on top of the log, so
 * closing the scope first stops accepting connections and waits for in-flight requests (`server.close`), and only
 * then closes the database.
 */
import { HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Fiber, Layer, Option, Ref, Schedule } from "effect"
import { createServer, type Server as NodeServer } from "node:http"
import { OPENAPI_PATH, SyncApi } from "../sync/Protocol.js"
import * as Auth from "./Auth.js"
import * as Handlers from "./Handlers.js"
import * as RateLimit from "./RateLimit.js"
import * as ServerLog from "./ServerLog.js"

/** Everything `layer` needs to know. */
export interface Config {
  /** The server database file (`:memory:` for a throwaway server). */
  readonly filename: string
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  /**
   * The bearer tokens: a table of hashes (`Auth.hash`), or plain entries, hashed when the layer is made. Either way the
   * server keeps only hashes; a caller that wants no plain token left in memory drops its own copy too.
   */
  readonly tokens: ReadonlyArray<Auth.TokenEntry> | Auth.TokenTable
  readonly rateLimit?: RateLimit.Config
  readonly limits?: Partial<ServerLog.Limits & Handlers.HttpLimits>
  readonly synchronous?: "NORMAL" | "FULL"
}

/** Defaults of `memsync serve`. */
export const DEFAULTS = { filename: "./memsync-server.db", host: "127.0.0.1", port: 8787 } as const

/**
 * The HTTP app over whatever `HttpServer`, `ServerLog`, `Auth` and `RateLimiter` are provided: routes, auth, error
 * mapping, request logs, OpenAPI.
 */
export const layerApp = (limits: Partial<Handlers.HttpLimits> = {}) => {
  const httpLimits: Handlers.HttpLimits = { ...Handlers.DEFAULT_HTTP_LIMITS, ...limits }
  const api = HttpApiBuilder.api(SyncApi).pipe(
    Layer.provide([Handlers.layerSync(httpLimits), Handlers.layerHealth]),
    // The sync group's middleware: needed by the group layer and by the api (to apply it).
    Layer.provide(Handlers.layerAuthentication)
  )
  return HttpApiBuilder.serve(Handlers.requestLogger).pipe(
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: OPENAPI_PATH })),
    Layer.provide(Handlers.layerErrors),
    Layer.provide(api)
  )
}

/** The services behind the app: the SQLite log, the token table and the rate limiter (tokens hashed right away). */
export const layerServices = (config: Omit<Config, "host" | "port">) => {
  const { maxBodyBytes: _, ...logLimits } = config.limits ?? {}
  return Layer.mergeAll(
    ServerLog.layer({
      filename: config.filename,
      ...logLimits,
      ...(config.synchronous === undefined ? {} : { synchronous: config.synchronous })
    }),
    Auth.layer(config.tokens),
    RateLimit.layer(config.rateLimit ?? RateLimit.DEFAULT_CONFIG)
  )
}

/** How long a shutdown waits for in-flight requests before dropping the remaining connections. */
export const DRAIN_TIMEOUT_MS = 10_000

/**
 * A complete Node server listening on `host:port`; it also provides `HttpServer` (for its address) and the log.
 *
 * Closing it drains first: stop accepting connections, answer the requests in flight (and any that arrive on open
 * keep-alive connections, marked `Connection: close`), close idle connections as they free up, and after
 * `DRAIN_TIMEOUT_MS` drop what is left. Only then does the app detach from the server and the database close.
 * (Without this, the platform detaches the request handler before closing the server, so a request arriving on a
 * keep-alive connection during shutdown would never be answered and the server would never finish closing.)
 */
export const layer = (config: Config) => {
  // Made now, so the tokens are hashed before this returns; the closure below keeps `services`, never `config`.
  const services = layerServices(config)
  const { host, port, limits } = config
  return Layer.unwrapEffect(
    Effect.gen(function* () {
      const server = createServer()
      const draining = yield* Ref.make(false)
      const app = layerApp(limits ?? {}).pipe(
        Layer.provide(Layer.succeed(Handlers.Draining, draining)),
        Layer.provideMerge(NodeHttpServer.layer(() => server, { host, port })),
        // Built first, released last: the database outlives every request.
        Layer.provideMerge(services)
      )
      // Built last, so released first: the drain runs while the app still answers requests.
      const drain = Layer.scopedDiscard(Effect.addFinalizer(() => drainServer(server, draining)))
      return drain.pipe(Layer.provideMerge(app))
    })
  )
}

/** The default per-token rate limit. */
export const DEFAULT_RATE_LIMIT = RateLimit.DEFAULT_CONFIG

/** The URL a running server answers on. */
export const url = (server: HttpServer.HttpServer): string => HttpServer.formatAddress(server.address)

/** Stop accepting, let in-flight requests finish (bounded by DRAIN_TIMEOUT_MS), then drop what remains. */
const drainServer = (server: NodeServer, draining: Ref.Ref<boolean>) =>
  Effect.gen(function* () {
    yield* Ref.set(draining, true)
    const closed = Effect.async<void>((resume) => {
      if (!server.listening) return resume(Effect.void)
      server.close(() => resume(Effect.void))
    })
    // `close` only drops connections idle at the moment it is called; connections that finish a request later go
    // idle too and must be dropped as well, or `close` never completes.
    const reapIdle = Effect.sync(() => server.closeIdleConnections()).pipe(
      Effect.repeat(Schedule.spaced("50 millis")),
      Effect.asVoid
    )
    const finished = yield* Effect.raceFirst(closed, reapIdle).pipe(
      Effect.timeout(`${DRAIN_TIMEOUT_MS} millis`),
      Effect.option
    )
    if (Option.isNone(finished)) yield* Effect.sync(() => server.closeAllConnections())
  }).pipe(
    // A finalizer runs uninterruptibly, so the race and the timeout above could never stop their losers there. The
    // drain runs in its own fiber, interruptible inside, and the finalizer waits for it.
    Effect.interruptible,
    Effect.forkDaemon,
    Effect.flatMap(Fiber.join)
  )

/** The URL of the server in context. */
export const currentUrl: Effect.Effect<string, never, HttpServer.HttpServer> = Effect.map(HttpServer.HttpServer, url)
