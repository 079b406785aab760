/**
 * End-to-end helpers: real `memsync` processes (`node bin/memsync.js ...`) and a real `memsync serve` on a loopback
 * port, plus in-process access to a replica file through the library (fast setup and checks; a CLI process costs
 * ~1.5 s on a quiet machine, much more on a busy one, so tests keep their count low).
 *
 * Every child is killed when the effect that started it is interrupted or its scope closes, so a failing test never
 * leaves a server behind.
 */
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import { Memory } from "../../src/domain/Memory.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as HttpTransport from "../../src/sync/HttpTransport.js"
import * as SyncEngine from "../../src/sync/SyncEngine.js"

export const ROOT = fileURLToPath(new URL("../..", import.meta.url))
export const BIN = join(ROOT, "bin", "memsync.js")

/** A finished CLI run. */
export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The environment of a child: no memsync settings leak in from the developer's shell. */
const childEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  for (const key of ["MEMSYNC_DB", "MEMSYNC_SERVER", "MEMSYNC_TOKEN", "MEMSYNC_TOKENS", "MEMSYNC_SERVER_DB"]) {
    delete env[key]
  }
  return env
}

/** Run the CLI to completion (the child is killed if the effect is interrupted). */
export const memsync = (args: ReadonlyArray<string>) =>
  Effect.async<Run>((resume) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: childEnv(),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", (error) => resume(Effect.die(error)))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** A long-running child whose output is collected as it comes. */
export interface Background {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves with the exit code once the process has ended. */
  readonly exited: Promise<number | null>
}

/** Start the CLI in the background for the lifetime of the scope (SIGKILLed on close if still running). */
export const background = (args: ReadonlyArray<string>): Effect.Effect<Background, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd: ROOT,
        env: childEnv(),
        stdio: ["ignore", "pipe", "pipe"]
      })
      let out = ""
      let err = ""
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk))
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk))
      const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)))
      return { child, stdout: () => out, stderr: () => err, exited }
    }),
    (bg) =>
      Effect.sync(() => void (bg.child.exitCode === null && bg.child.signalCode === null && bg.child.kill("SIGKILL")))
  )

/** Send `signal` and wait (at most `timeoutMs`) for the exit code. */
export const stop = (bg: Background, signal: NodeJS.Signals, timeoutMs = 30_000) =>
  Effect.gen(function* () {
    bg.child.kill(signal)
    return yield* Effect.promise(() => bg.exited).pipe(
      Effect.timeoutFail({
        duration: timeoutMs,
        onTimeout: () => new Error(`the process did not exit within ${timeoutMs} ms of ${signal}: ${bg.stderr()}`)
      }),
      Effect.orDie
    )
  })

/** Poll `check` (every `everyMs`) until it returns a value, or die with `what` after `timeoutMs`. */
export const eventually = <A, E, R>(
  what: string,
  check: Effect.Effect<A | undefined, E, R>,
  options: { readonly timeoutMs?: number; readonly everyMs?: number } = {}
): Effect.Effect<A, E, R> =>
  Effect.gen(function* () {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000)
    while (true) {
      const value = yield* check
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* Effect.sleep(options.everyMs ?? 50)
    }
  })

/** A running `memsync serve`. */
export interface ServeProcess extends Background {
  readonly url: string
  readonly port: number
}

/** Start `memsync serve` on `port` (0: a free one) and wait for the URL it prints. */
export const serve = (options: {
  readonly db: string
  readonly port: number
  readonly tokens: ReadonlyArray<string>
}): Effect.Effect<ServeProcess, never, Scope.Scope> =>
  Effect.gen(function* () {
    const bg = yield* background([
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      String(options.port),
      "--db",
      options.db,
      ...options.tokens.flatMap((t) => ["--token", t])
    ])
    const url = yield* eventually(
      "memsync serve to print its URL",
      Effect.suspend(() => {
        if (bg.child.exitCode !== null) {
          return Effect.dieMessage(`memsync serve exited with ${bg.child.exitCode}: ${bg.stderr()}`)
        }
        return Effect.succeed(/listening on (http:\/\/\S+)/.exec(bg.stdout())?.[1])
      }),
      { timeoutMs: 60_000 }
    )
    return { ...bg, url, port: Number(new URL(url).port) }
  })

/** A loopback port that nothing listens on (bound, then released). */
export const closedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A temp directory removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "memsync-e2e-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Run `f` against the store in `filename` (opened for the call, closed after). */
export const withReplica = <A, E>(filename: string, f: (store: MemoryStore.MemoryStore) => Effect.Effect<A, E>) =>
  Effect.flatMap(MemoryStore.MemoryStore, f).pipe(Effect.provide(MemoryStore.layer({ filename })), Effect.orDie)

/** One `syncNow` of the replica in `filename` through the library (what `memsync sync` does, without a process). */
export const syncOnce = (filename: string, url: string, token: string) =>
  Effect.flatMap(SyncEngine.SyncEngine, (engine) => engine.syncNow).pipe(
    Effect.provide(
      SyncEngine.layer({ token, background: false }).pipe(
        Layer.provideMerge(Layer.merge(MemoryStore.layer({ filename }), HttpTransport.layer({ baseUrl: url })))
      )
    ),
    Effect.orDie
  )

/** `list --json` output. */
export const Listed = Schema.Array(Schema.Struct({ ...Memory.fields, deleted: Schema.Boolean }))
export const decodeListed = Schema.decodeUnknownSync(Schema.parseJson(Listed))

/** `status --json` output. */
export const StatusReport = Schema.Struct({
  pending: Schema.Number,
  deadLetters: Schema.Number,
  idConflicts: Schema.Number,
  cursor: Schema.Number,
  epoch: Schema.optional(Schema.String),
  serverUrl: Schema.optional(Schema.String),
  lastPushAt: Schema.optional(Schema.Number),
  lastPullAt: Schema.optional(Schema.Number)
})
export const decodeStatus = Schema.decodeUnknownSync(Schema.parseJson(StatusReport))

/** `sync --json` output. */
export const SyncSummary = Schema.Struct({
  pushed: Schema.Number,
  pulled: Schema.Number,
  rejected: Schema.Number,
  resynced: Schema.Boolean,
  durationMs: Schema.Number
})
export const decodeSummary = Schema.decodeUnknownSync(Schema.parseJson(SyncSummary))

/** Describe a run for assertion messages. */
export const show = (run: Run): string => `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`

/**
 * A `memsync serve` process on a free port with these tokens (space -> token), and a temp dir, for a test file: started
 * before its tests, stopped (and the dir removed) after them. Read its fields inside tests only; a test that restarts
 * the server extends `scope` and replaces `server`.
 */
export const useServer = (tokens: Readonly<Record<string, string>>) => {
  // Filled in by beforeAll: tests run after it (the non-null assertions hold from then on).
  const fixture: { server: ServeProcess; dir: string; scope: Scope.CloseableScope } = {
    server: undefined!,
    dir: "",
    scope: undefined!
  }
  beforeAll(async () => {
    const scope = await Effect.runPromise(Scope.make())
    fixture.scope = scope
    fixture.dir = await Effect.runPromise(Scope.extend(tempDir, scope))
    fixture.server = await Effect.runPromise(
      Scope.extend(
        serve({
          db: join(fixture.dir, "server.db"),
          port: 0,
          tokens: Object.entries(tokens).map(([space, token]) => `${token}=${space}`)
        }),
        scope
      )
    )
  }, 90_000)
  afterAll(() => (fixture.scope === undefined ? undefined : Effect.runPromise(Scope.close(fixture.scope, Exit.void))))
  return fixture
}
