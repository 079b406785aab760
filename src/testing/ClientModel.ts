/**
 * The client error model (TESTING.md P9): one real replica (store + engine over its own SQLite file) against a
 * scripted server — the real `ServerLog` behind `SimNetwork`, whose next answers a command picks from the P9 menu
 * (5xx, 429 with Retry-After, 401, 403, a body that does not decode, connection refused, a dropped request, a response
 * lost after the server committed) — driven by `fc.commands` on the simulation clock.
 *
 * After every command, the checker reads every request made since the last one and holds the engine to its promises:
 * - transient errors: the same step loop (fiber) retries no sooner than Retry-After, and no later than the backoff
 *   ceiling of its attempt, counted from its last success — so a backoff that does not reset is caught;
 * - a response that does not decode: the next try waits the slow schedule (never a hot loop);
 * - 401/403: no request carries a refused token again, but `/v1/auth-check` probes spaced by the slow schedule, until
 *   the credentials change or a probe is accepted; the status says `auth-failed` meanwhile;
 * - nothing is lost: every local commit is on the server exactly once or still pending.
 * At the end the faults stop and the replica must settle: outbox empty, every commit on the server once, view = fold.
 *
 * The engine is configured so that each step makes one request per run (large batches and pages, resync only at
 * start): then a fiber's next request after a failure is that failure's retry, and the timing checks are exact.
 */
import { Effect, Exit, FastCheck as fc, Logger, LogLevel, Option, Random, Schema, Scope, SubscriptionRef } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import * as Policy from "../sync/Policy.js"
import { Checker, coverage, Violation } from "./ClientChecker.js"
import * as EventLoop from "./EventLoop.js"
import type * as SyncEngine from "../sync/SyncEngine.js"
import * as SimCheck from "./SimCheck.js"
import * as SimClock from "./SimClock.js"
import * as SimNetwork from "./SimNetwork.js"
import * as SimReplica from "./SimReplica.js"
import { DEFAULT_CONFIG, realServer } from "./Simulation.js"

/** The engine under test: one request per step run, short timers. */
export const ENGINE: Omit<SyncEngine.Config, "token"> = {
  mode: "sync",
  pullIntervalMs: 4_000,
  batchSize: 500,
  pageSize: 1_000,
  commitDebounceMs: 50,
  flushTimeoutMs: 500,
  resyncEvery: 1_000_000_000,
  backoff: { ...Policy.DEFAULT_BACKOFF, baseMs: 100, capMs: 5_000, slowMs: 20_000 }
}

/** How long a client waits for a lost request or response (virtual ms). */
export const TIMEOUT_MS = 1_000

/** The P9 response menu: what the scripted server answers next. */
export const Answer = Schema.Literal("5xx", "429", "401", "403", "malformed", "refused", "drop", "lose")
export type Answer = typeof Answer.Type

/** One command (plain JSON, so a failure's command list can be saved and replayed). */
export const Cmd = Schema.Union(
  Schema.Struct({ _tag: Schema.Literal("commit"), n: Schema.Int }),
  Schema.Struct({ _tag: Schema.Literal("script"), answer: Answer, count: Schema.Int, retryAfterSeconds: Schema.Int }),
  Schema.Struct({ _tag: Schema.Literal("advance"), ms: Schema.Int }),
  Schema.Struct({ _tag: Schema.Literal("revoke") }),
  Schema.Struct({ _tag: Schema.Literal("regrant") }),
  Schema.Struct({ _tag: Schema.Literal("newToken") })
)
export type Cmd = typeof Cmd.Type

/** What a run can substitute (the planted-bug check). */
export interface Config {
  readonly parts: SimReplica.Parts
  readonly dir: string
}

/** The production pieces. */
export const DEFAULT: Config = { parts: SimReplica.DEFAULT_PARTS, dir: DEFAULT_CONFIG.dir }

export { coverage, Violation } from "./ClientChecker.js"

// --- the world of one run ------------------------------------------------------------------------------------------

interface Real {
  readonly clock: SimClock.SimClock
  readonly network: SimNetwork.SimNetwork
  readonly replica: SimReplica.Running
  readonly spec: SimReplica.Spec
  readonly checker: Checker
  readonly committed: Set<string>
  token: string
  tokens: number
  commits: number
}

const SPACE = "p9"
const NAME = "r0"
const run = <A>(effect: Effect.Effect<A, unknown>) =>
  Effect.runPromise(effect.pipe(Logger.withMinimumLogLevel(LogLevel.None)))

/**
 * Advance virtual time in small steps, checking after each (so a violation is seen near where it happened). The
 * world has settled after each step: the event loop turns there (see EventLoop.turn). Without it the loop's timers
 * never ran during the whole suite (measured: 0 ticks of a 50 ms interval in 20 s), and at 4x the runs the vitest
 * worker missed its 60 s RPC deadline.
 */
const advance = async (real: Real, ms: number) => {
  for (let left = ms; left > 0; left -= 1_000) {
    await run(real.clock.advance(Math.min(1_000, left)))
    await check(real)
    await run(EventLoop.turn)
  }
}

/** Every invariant over what happened since the last check. */
const check = async (real: Real) => {
  for (const call of real.network.calls().slice(real.checker.seen)) real.checker.observe(call)
  real.checker.seen = real.network.calls().length
  const { replica, committed } = real
  const [server, pending, status] = await run(
    Effect.all([
      Effect.withClock(SimCheck.serverEvents(real.network.server(), SPACE), real.clock.clock),
      replica.database.raw((db) =>
        db.prepare(`SELECT e.id FROM outbox o JOIN events e ON e.seq = o.seq`).pluck().all().map(String)
      ),
      SubscriptionRef.get(replica.engine.status)
    ])
  )
  const onServer = new Map<string, number>()
  for (const e of server) onServer.set(e.id, (onServer.get(e.id) ?? 0) + 1)
  for (const [id, n] of onServer) if (n > 1) throw new Violation(`P9: ${id} is on the server ${n} times`)
  const waiting = new Set(pending)
  for (const id of committed) {
    if (!onServer.has(id) && !waiting.has(id))
      throw new Violation(`P9: commit ${id} is neither on the server nor pending`)
  }
  if (real.checker.isRefused(real.token) && status.state !== "auth-failed") {
    throw new Violation(`P9: the current token was refused, but the status says ${status.state}`)
  }
}

// --- commands ------------------------------------------------------------------------------------------------------

type Model = { readonly commands: number }

class Command implements fc.AsyncCommand<Model, Real> {
  constructor(readonly cmd: Cmd) {}
  check = () => true
  async run(_model: Model, real: Real) {
    const c = this.cmd
    switch (c._tag) {
      case "commit": {
        const n = real.commits++
        const write: Effect.Effect<unknown, unknown> =
          c.n === 1
            ? real.replica.store.create({ content: `p9:${n}` })
            : real.replica.store.createMany(Array.from({ length: c.n }, (_, i) => ({ content: `p9:${n}.${i}` })))
        await run(real.replica.within(write))
        for (const change of await run(real.replica.changes.takeAll)) {
          if (change.source === "local") for (const id of change.eventIds) real.committed.add(id)
        }
        return advance(real, 20)
      }
      case "script": {
        const armed: SimNetwork.Armed =
          c.answer === "drop"
            ? { _tag: "drop" }
            : c.answer === "lose"
              ? { _tag: "lose" }
              : { _tag: "error", kind: c.answer, retryAfterSeconds: c.retryAfterSeconds }
        real.network.arm(
          NAME,
          Array.from({ length: c.count }, () => armed)
        )
        return advance(real, 20)
      }
      case "advance":
        return advance(real, c.ms)
      case "revoke":
        real.network.revoke(real.token)
        return advance(real, 20)
      case "regrant":
        real.network.grant(real.token)
        return advance(real, 20)
      case "newToken": {
        const token = `p9-token-${++real.tokens}`
        real.network.grant(token)
        real.token = token
        real.checker.credentialsChanged(real.clock.now())
        await run(SubscriptionRef.set(real.replica.engine.credentials, Option.some(token)))
        return advance(real, 20)
      }
    }
  }
  toString = () => JSON.stringify(this.cmd)
  toJSON = () => this.cmd
}

/** Replay a saved command list (as a failure prints it: the commands that ran, in order). */
export const replay = (cmds: ReadonlyArray<Cmd>, seed: number, config: Config = DEFAULT) =>
  runCommands(
    cmds.map((c) => new Command(c)),
    seed,
    config
  )

/** The commands of a run, from the P9 menu (scripted answers and time are the most frequent). */
export const commands = (maxCommands = 60) =>
  fc.commands(
    [
      fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: 1, max: 3 }).map((n) => new Command({ _tag: "commit", n })) },
        {
          weight: 4,
          arbitrary: fc
            .record({
              answer: fc.constantFrom(...Answer.literals),
              count: fc.integer({ min: 1, max: 4 }),
              retryAfterSeconds: fc.integer({ min: 0, max: 3 })
            })
            .map((s) => new Command({ _tag: "script", ...s }))
        },
        {
          weight: 4,
          arbitrary: fc.constantFrom(50, 200, 1_000, 5_000, 25_000).map((ms) => new Command({ _tag: "advance", ms }))
        },
        { weight: 1, arbitrary: fc.constant(new Command({ _tag: "revoke" })) },
        { weight: 1, arbitrary: fc.constant(new Command({ _tag: "regrant" })) },
        { weight: 1, arbitrary: fc.constant(new Command({ _tag: "newToken" })) }
      )
    ],
    {
      maxCommands,
      size: "max",
      // fast-check replays a shrunk command list from this path (printed with a failure as `replayPath`).
      ...(process.env.MEMSYNC_PBT_REPLAY_PATH ? { replayPath: process.env.MEMSYNC_PBT_REPLAY_PATH } : {})
    }
  )

/** Run one sequence of commands against a fresh replica and server; rejects with a `Violation` when P9 breaks. */
export const runCommands = async (
  cmds: Iterable<fc.AsyncCommand<Model, Real>>,
  seed: number,
  config: Config = DEFAULT
): Promise<void> => {
  const dir = mkdtempSync(join(config.dir, "memsync-p9-"))
  const scope = await Effect.runPromise(Scope.make())
  try {
    const clock = SimClock.make({ start: 1_700_000_000_000 })
    const server = await run(
      realServer.pipe(
        Effect.provideService(Scope.Scope, scope),
        Effect.withClock(clock.clock),
        Effect.withRandom(Random.make(`${seed}/server`))
      )
    )
    const network = SimNetwork.make({ clock, server, space: SPACE, timeoutMs: TIMEOUT_MS, random: Random.make(seed) })
    const token = "p9-token-0"
    network.grant(token)
    const spec: SimReplica.Spec = {
      name: NAME,
      clientId: NAME,
      filename: join(dir, "r0.db"),
      engine: ENGINE,
      token: { value: token },
      random: Random.make(`${seed}/r0`),
      skew: { value: 0 }
    }
    await run(SimReplica.fromTemplate(config.dir, spec.filename))
    const replica = await run(SimReplica.start(spec, network, clock, config.parts))
    const real: Real = {
      clock,
      network,
      replica,
      spec,
      checker: new Checker(ENGINE.backoff!),
      committed: new Set(),
      token,
      tokens: 0,
      commits: 0
    }
    coverage.runs++
    // Start-up (first push, pull and resync) without faults, so every later step run makes one request.
    await advance(real, 1_000)
    try {
      await fc.asyncModelRun(() => ({ model: { commands: 0 }, real }), cmds)
      await heal(real)
    } finally {
      await run(SimReplica.crash(replica, spec, network, clock))
    }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Faults stop and the token is good again: the replica must settle with nothing lost or duplicated. */
const heal = async (real: Real) => {
  real.network.calm()
  real.network.grant(real.token)
  const bound = 2 * ENGINE.backoff!.slowMs + ENGINE.backoff!.capMs + 10_000
  let why: string | undefined = "not checked"
  for (let waited = 0; waited <= bound && why !== undefined; waited += 1_000) {
    await advance(real, 1_000)
    why = await settled(real)
  }
  if (why !== undefined) throw new Violation(`P9/P8: not settled ${bound} ms after the faults stopped: ${why}`)
}

const settled = async (real: Real): Promise<string | undefined> => {
  const { replica } = real
  const events = await run(Effect.withClock(SimCheck.serverEvents(real.network.server(), SPACE), real.clock.clock))
  const s = await run(SimCheck.snapshot(replica.database))
  const status = await run(SubscriptionRef.get(replica.engine.status))
  if (s.outbox > 0) return `${s.outbox} pending`
  if (status.state !== "idle") return `state ${status.state}`
  const ids = new Set(events.map((e) => e.id))
  for (const id of real.committed) if (!ids.has(id)) return `commit ${id} is not on the server`
  const reference = SimCheck.referenceView(events)
  const view = SimCheck.viewLines(await run(replica.materializer.readStates()))
  if (view.join("\n") !== reference.join("\n")) return "the view differs from the fold of the server's events"
  return undefined
}

/** The P9 property: any command sequence keeps the invariants. */
export const property = (config: Config = DEFAULT, maxCommands = 60) =>
  fc.asyncProperty(commands(maxCommands), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (cmds, seed) =>
    runCommands(cmds, seed, config)
  )
