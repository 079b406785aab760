/**
 * `memsync serve`: run the sync server. Thin: gather tokens (hashed at once) and limits from options and the
 * environment, build `Server.layer`, print the URL, and wait. SIGINT/SIGTERM interrupt the main fiber, which closes the layer: the HTTP
 * server stops accepting and finishes in-flight requests, then the database closes, and the process exits 0.
 */
import { Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Config, Console, Effect, Either, Layer, Logger, Option, Schema } from "effect"
import * as Auth from "../server/Auth.js"
import * as Server from "../server/Server.js"
import { UsageError } from "./Exit.js"
import { stderrLogger } from "./Shared.js"

/** The server could not start (port in use, database unusable...). */
export class ServeFailed extends Schema.TaggedError<ServeFailed>()("ServeFailed", { message: Schema.String }) {}

const int = (name: string, description: string) =>
  Options.integer(name).pipe(Options.withDescription(description), Options.optional)

const serve = Command.make(
  "serve",
  {
    db: Options.text("db").pipe(
      Options.withDescription(`the server database file (default ${Server.DEFAULTS.filename}, or $MEMSYNC_SERVER_DB)`),
      Options.withFallbackConfig(Config.string("MEMSYNC_SERVER_DB")),
      Options.withDefault(Server.DEFAULTS.filename)
    ),
    host: Options.text("host").pipe(
      Options.withDescription(`the address to listen on (default ${Server.DEFAULTS.host})`),
      Options.withDefault(Server.DEFAULTS.host)
    ),
    port: Options.integer("port").pipe(
      Options.withDescription(`the port (default ${Server.DEFAULTS.port}; 0 picks a free one)`),
      Options.withDefault(Server.DEFAULTS.port)
    ),
    token: Options.text("token").pipe(
      Options.withDescription("TOKEN=SPACE: a bearer token and the space it grants (repeatable)"),
      Options.repeated
    ),
    tokensFile: Options.text("tokens-file").pipe(
      Options.withDescription('a JSON file of tokens: { "TOKEN": "SPACE" } or [{ "token", "space" }]'),
      Options.optional
    ),
    maxBodyBytes: int("max-body-bytes", "largest request body in bytes (default 1048576)"),
    maxBatch: int("max-batch", "most events in one push (default 1000)"),
    maxEventBytes: int("max-event-bytes", "largest event, as canonical JSON bytes (default 262144)"),
    maxDriftMs: int("max-drift-ms", "how far ahead of the server clock an HLC may be, in ms (default 300000)"),
    rateLimit: int("rate-limit", "sustained requests per second per token (default 200; 0 disables)"),
    rateBurst: int("rate-burst", "requests per token allowed at once (default 400)")
  },
  (a) =>
    Effect.gen(function* () {
      yield* checkRanges([
        ["--port", Option.some(a.port), 0, 65_535],
        ["--max-body-bytes", a.maxBodyBytes, 1, Number.MAX_SAFE_INTEGER],
        ["--max-batch", a.maxBatch, 1, Number.MAX_SAFE_INTEGER],
        ["--max-event-bytes", a.maxEventBytes, 1, Number.MAX_SAFE_INTEGER],
        ["--max-drift-ms", a.maxDriftMs, 0, Number.MAX_SAFE_INTEGER],
        ["--rate-limit", a.rateLimit, 0, Number.MAX_SAFE_INTEGER],
        ["--rate-burst", a.rateBurst, 1, Number.MAX_SAFE_INTEGER]
      ])
      // Only hashes come out: the plain tokens stay inside `tokenTable` and are garbage once it returns.
      const { table: tokens, configured } = yield* tokenTable(a.token, a.tokensFile)
      const limits = {
        ...someOf("maxBodyBytes", a.maxBodyBytes),
        ...someOf("maxBatch", a.maxBatch),
        ...someOf("maxEventBytes", a.maxEventBytes),
        ...someOf("maxDriftMs", a.maxDriftMs)
      }
      const perSecond = Option.getOrElse(a.rateLimit, () => Server.DEFAULT_RATE_LIMIT.perSecond)
      const burst = Option.getOrElse(a.rateBurst, () => Math.max(Server.DEFAULT_RATE_LIMIT.burst, perSecond))
      const layer = Server.layer({
        filename: a.db,
        host: a.host,
        port: a.port,
        tokens,
        limits,
        rateLimit: { perSecond, burst }
      }).pipe(
        // Bad input keeps its own error (exit code 2): a database of the wrong kind, a token table that does not build.
        Layer.mapError((e) =>
          e._tag === "ServeError"
            ? new ServeFailed({ message: startFailure(e) })
            : e._tag === "TokenConfigError"
              ? new UsageError({ message: e.message })
              : e
        )
      )
      yield* Effect.gen(function* () {
        const url = yield* Server.currentUrl
        // Once the server is up: a start that fails (a bad --db) prints only its error.
        if (configured > 0) yield* Console.log(`${configured} token(s) configured`)
        // Last: whoever waits for this line (a script, a test) has everything printed before it.
        yield* Console.log(`memsync server listening on ${url}`)
        return yield* Effect.never
        // Stopped by a signal: runs after the layer is released (requests drained, database closed).
      }).pipe(
        Effect.provide(layer),
        // The request log on stdout (docs/server.md), where bin.ts sends every other command's logs to stderr.
        Effect.provide(Logger.replace(stderrLogger, Logger.defaultLogger)),
        Effect.onInterrupt(() => Console.log("memsync server stopped"))
      )
    })
).pipe(Command.withDescription("run the sync server (prints the URL it listens on)"))

/** Every numeric option given within its range, checked before anything is opened (exit 2 naming the option). */
const checkRanges = (
  checks: ReadonlyArray<readonly [name: string, value: Option.Option<number>, min: number, max: number]>
): Effect.Effect<void, UsageError> => {
  for (const [name, value, min, max] of checks) {
    if (Option.isSome(value) && (value.value < min || value.value > max)) {
      const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `${min}-${max}`
      return new UsageError({ message: `${name} ${value.value}: must be ${range}` })
    }
  }
  return Effect.void
}

/** The `serve` command. */
export const serveCommands = [serve] as const

/**
 * The token table of the configured tokens (and how many), or of one generated for space `default` when none is
 * configured (printed here, once). The plain tokens live only in this effect: nothing it returns holds one, so they
 * are not reachable once it is done (a heap snapshot of a running server must not contain them).
 */
const tokenTable = (specs: ReadonlyArray<string>, file: Option.Option<string>) =>
  Effect.gen(function* () {
    const configured = yield* gatherTokens(specs, file)
    if (configured.length > 0) return { table: yield* hashed(configured), configured: configured.length }
    const generated = yield* Auth.generateToken
    yield* Console.log(`no token configured: generated one for space "default" (shown once): ${generated}`)
    return { table: yield* hashed([{ token: generated, space: "default" }]), configured: 0 }
  })

// A token given for two spaces is bad input (exit 2), not a start failure.
const hashed = (entries: ReadonlyArray<Auth.TokenEntry>) =>
  Either.mapLeft(Auth.hash(entries), (e) => new UsageError({ message: e.message }))

const gatherTokens = (specs: ReadonlyArray<string>, file: Option.Option<string>) =>
  Effect.gen(function* () {
    const fromEnv = yield* Config.option(Config.string("MEMSYNC_TOKENS")).pipe(Effect.orElseSucceed(Option.none))
    const fromFile = yield* Option.match(file, {
      onNone: () => Effect.succeed(Either.right([])),
      onSome: (path) =>
        Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
          Effect.map(Auth.parseFile),
          Effect.mapError((e) => new UsageError({ message: `cannot read tokens file ${path}: ${e.message}` }))
        )
    })
    const parts = [
      ...specs.map((s) => Either.map(Auth.parseSpec(s), (e) => [e])),
      Option.match(fromEnv, { onNone: () => Either.right([]), onSome: (list) => Auth.parseList(list) }),
      fromFile
    ]
    return (yield* Either.all(parts).pipe(Either.mapLeft((e) => new UsageError({ message: e.message })))).flat()
  })

const startFailure = (e: { readonly _tag: string; readonly message?: string; readonly cause?: unknown }): string => {
  const cause = e.cause instanceof Error ? e.cause.message : undefined
  return `cannot start the server: ${cause ?? e.message ?? e._tag}`
}

const someOf = <K extends string, A>(key: K, value: Option.Option<A>): { [P in K]?: A } =>
  Option.isSome(value) ? ({ [key]: value.value } as { [P in K]?: A }) : {}
