/**
 * The deterministic multi-replica simulation: K replicas (real store + engine over their own SQLite files) talk
 * through `SimNetwork` to an in-process server running the real `ServerLog`, on one `SimClock`, with every source of
 * randomness seeded from the scenario's seed (see SimWorld).
 *
 * A run has two phases. Chaos: the scenario's steps, each followed by a little virtual time, then the step
 * invariants — P3 (re-delivery changes nothing), P6 (monotonic, gapless, no holes), P7 (causality, at each commit),
 * P11's bookkeeping — and one trace entry. Heal: faults stop, held messages are delivered, crashed replicas restart,
 * expired credentials are refreshed, and virtual time advances until every replica is settled on the server (P8,
 * bounded by `livenessMs`); then the end properties: P1 (every view = fold of the server's events; outboxes empty),
 * P2 (every ok commit is on the server exactly once, or dead-lettered with a reason), P4 (rebuild = view), P11.
 *
 * The trace hash (P12) chains what a test can observe after each step; the same scenario gives the same hash.
 * The driver never sleeps: replicas run on forked fibers and the driver moves virtual time.
 */
import { Context, Effect, Layer, Logger, LogLevel, Queue, type Scope } from "effect"
import { existsSync } from "node:fs"
import { tmpdir } from "node:os"
import * as IdGenerator from "../domain/IdGenerator.js"
import * as ServerLog from "../server/ServerLog.js"
import * as Policy from "../sync/Policy.js"
import type * as SyncEngine from "../sync/SyncEngine.js"
import { FAULT_CLASSES, type FaultClass, type Scenario, type Step } from "./Scenario.js"
import * as SimCheck from "./SimCheck.js"
import * as SimReplica from "./SimReplica.js"
import * as EventLoop from "./EventLoop.js"
import * as SimSteps from "./SimSteps.js"
import * as SimWorld from "./SimWorld.js"

/** Engine settings scaled for simulation: small batches and pages (more rounds), short timers. */
export const ENGINE: Omit<SyncEngine.Config, "token"> = {
  mode: "sync",
  pullIntervalMs: 4_000,
  batchSize: 4,
  pageSize: 5,
  commitDebounceMs: 50,
  flushTimeoutMs: 500,
  resyncEvery: 5,
  backoff: { ...Policy.DEFAULT_BACKOFF, baseMs: 100, capMs: 5_000, slowMs: 20_000 }
}

/** How a simulation is run (the planted-bug check substitutes `parts` and `makeServer`). */
export interface Config {
  readonly engine: Omit<SyncEngine.Config, "token">
  /** How long a client waits for a lost request or response (virtual ms). */
  readonly timeoutMs: number
  /** Virtual time after each chaos step. */
  readonly stepMs: number
  /** P8: the heal phase must settle within this much virtual time. */
  readonly livenessMs: number
  /** Check P4 (rebuild = view) on every live replica every N steps (and after every restart and restore). */
  readonly verifyEvery: number
  readonly parts: SimReplica.Parts
  /** Make a server log (runs with the server's seeded Random, on the simulation clock). */
  readonly makeServer: Effect.Effect<ServerLog.Service, unknown, Scope.Scope>
  /** Parent directory of the run's SQLite files (a RAM-backed one when there is: runs write many small files). */
  readonly dir: string
}

/** The real server log, in memory, with its epoch from the seeded id generator. */
export const realServer: Effect.Effect<ServerLog.Service, unknown, Scope.Scope> = Effect.map(
  Layer.build(ServerLog.layerMemory().pipe(Layer.provide(IdGenerator.layerRandom))),
  (ctx) => Context.get(ctx, ServerLog.ServerLog)
)

/** The default configuration. */
export const DEFAULT_CONFIG: Config = {
  engine: ENGINE,
  timeoutMs: 1_000,
  stepMs: 30,
  livenessMs: 180_000,
  verifyEvery: 25,
  parts: SimReplica.DEFAULT_PARTS,
  makeServer: realServer,
  dir: existsSync("/dev/shm") ? "/dev/shm" : tmpdir()
}

/** What one run observed. */
export interface Report {
  readonly traceHash: string
  /** How often each fault (and other notable thing) fired. */
  readonly fired: Readonly<Record<string, number>>
  /** The fault classes that actually fired in this run. */
  readonly classes: ReadonlyArray<FaultClass>
  readonly steps: number
  /** Virtual ms the heal phase took to settle. */
  readonly healMs: number
  readonly serverEvents: number
  readonly commits: number
  /** Memories in the converged view (visible or not). */
  readonly memories: number
}

/** Run one scenario: chaos, heal, end properties. Fails with `SimFailure` when a property does not hold. */
export const run = (scenario: Scenario, config: Config = DEFAULT_CONFIG) =>
  Effect.scoped(
    Effect.gen(function* () {
      const world = yield* SimWorld.make({ ...config, ...scenario })
      const { clock, replicas } = world
      // Crash points fire inside a replica's call; the kill happens on this fiber, at the replica's next yield.
      const crashes = yield* Queue.unbounded<number>()
      yield* Effect.forkScoped(
        Effect.forever(Effect.map(Queue.take(crashes), (i) => SimWorld.kill(world, replicas[i]!)))
      )
      for (const r of replicas) yield* SimWorld.boot(world, r)

      for (const [index, step] of scenario.steps.entries()) {
        const at = (e: unknown) => atStep(e, index, step)
        yield* Effect.mapError(SimSteps.apply(world, step, index, crashes), at)
        yield* clock.advance(config.stepMs)
        for (const r of replicas) yield* SimWorld.bury(world, r)
        yield* Effect.mapError(SimWorld.observe(world), at)
        if (config.verifyEvery > 0 && index % config.verifyEvery === config.verifyEvery - 1) {
          for (const r of replicas) yield* Effect.mapError(SimWorld.verify(r), at)
        }
        SimWorld.traceStep(world, index, step)
        // The world has settled: let the event loop turn (see EventLoop.turn).
        yield* EventLoop.turn
      }

      const healMs = yield* heal(world, config)
      SimWorld.traceStep(world, scenario.steps.length, "heal")
      const reference = yield* endProperties(world)
      world.trace.update(SimCheck.canonical(reference))
      return report(world, scenario, healMs, reference.length)
    })
  )

/** Run a scenario to a Promise (logs silenced); a property failure rejects with its message. */
export const runPromise = (scenario: Scenario, config: Config = DEFAULT_CONFIG) =>
  Effect.runPromise(run(scenario, config).pipe(Logger.withMinimumLogLevel(LogLevel.None)))

// --- heal and end --------------------------------------------------------------------------------------------------

/** Stop the faults and advance time until every replica is settled on the server (P8). Returns the virtual ms. */
const heal = (world: SimWorld.World, config: Config) =>
  Effect.gen(function* () {
    const { network, replicas, clock } = world
    network.calm()
    world.partitions.clear()
    for (const r of replicas) {
      network.setHook(r.spec.name, undefined)
      r.armed = undefined
      r.spec.skew.value = 0
    }
    yield* SimSteps.deliver(
      world,
      network.inFlight().map((_, i) => i)
    )
    // A held push was the last copy of a commit whose replica was restored since: if the server refused it on
    // delivery (clock drift, a revoked token), no copy is left anywhere and P2 exempts it.
    yield* SimWorld.markDestroyed(world)
    for (const r of replicas) {
      if (r.running === undefined) {
        yield* SimWorld.boot(world, r)
        yield* SimWorld.verify(r)
      } else network.setLink(r.spec.name, "up")
      if (r.revoked) yield* SimSteps.refresh(world, r)
    }
    const start = clock.now()
    let unsettled: Array<string> = ["not checked"]
    while (clock.now() - start <= config.livenessMs) {
      yield* clock.advance(2_000)
      yield* SimWorld.observe(world)
      unsettled = replicas.flatMap((r) => {
        const why = r.last === undefined ? "no snapshot" : SimCheck.settledOn(r.last, world.track)
        return why === undefined ? [] : [`${r.spec.name}: ${why}`]
      })
      if (unsettled.length === 0) break
    }
    yield* SimCheck.expect(
      unsettled.length === 0,
      "P8",
      () => `not settled ${config.livenessMs} ms after the faults stopped: ${unsettled.join("; ")}`
    )
    return clock.now() - start
  })

/** P1, P4, P2 and the request-rate bound, on the settled world. Returns the reference view. */
const endProperties = (world: SimWorld.World) =>
  Effect.gen(function* () {
    const { network, replicas, track, clock } = world
    const events = yield* SimWorld.onServer(world, SimCheck.serverEvents(network.server(), SimWorld.SPACE))
    const reference = SimCheck.referenceView(events)
    for (const r of replicas) {
      const running = r.running!
      yield* running.database.transaction(
        SimCheck.checkView(r.spec.name, running.database, running.materializer, reference)
      )
    }
    // P2: every commit that returned ok is on the server exactly once (observeServer checks "once"), or
    // dead-lettered with a reason on the replica that wrote it; only commits destroyed by a restore are exempt.
    for (const c of world.history) {
      if (c.destroyed) continue
      const dead = replicas[c.replica]!.last!.dead
      for (const id of c.ids) {
        yield* SimCheck.expect(
          track.idSet.has(id) || (dead.get(id) ?? "").length > 0,
          "P2",
          () => `r${c.replica}'s commit at step ${c.step} (${id}) is neither on the server nor dead-lettered`
        )
      }
    }
    // No hot loop: requests stay within a generous rate over the whole run.
    const calls = network.calls().length
    const seconds = (clock.now() - SimWorld.START_MS) / 1_000
    yield* SimCheck.expect(
      calls <= 1_000 + 60 * seconds * replicas.length,
      "P9",
      () => `${calls} requests in ${seconds} virtual seconds: a hot loop`
    )
    return reference
  })

const report = (world: SimWorld.World, scenario: Scenario, healMs: number, memories: number): Report => {
  const net = world.network.fired()
  const own = world.fired
  const count: Record<FaultClass, number> = {
    drop: net.drop ?? 0,
    duplicate: (net.duplicate ?? 0) + (own.pageReplay ?? 0),
    reorder: net.reorder ?? 0,
    partition: net.partition ?? 0,
    crash: own.crash ?? 0,
    serverError: net.serverError ?? 0,
    lostResponse: net.lostResponse ?? 0,
    token: net.unauthorized ?? 0,
    skew: own.skew ?? 0,
    epochReset: own.epochReset ?? 0,
    restore: own.restore ?? 0
  }
  return {
    traceHash: world.trace.digest("hex"),
    fired: { ...net, ...own },
    classes: FAULT_CLASSES.filter((c) => count[c] > 0),
    steps: scenario.steps.length,
    healMs,
    serverEvents: world.track.head,
    commits: world.history.length,
    memories
  }
}

/** Name the step where a failure happened. */
const atStep = (e: unknown, index: number, step: Step): unknown =>
  e instanceof SimCheck.SimFailure
    ? new SimCheck.SimFailure({
        property: e.property,
        detail: `${e.detail} (after step ${index}: ${SimCheck.canonical(step)})`
      })
    : e
