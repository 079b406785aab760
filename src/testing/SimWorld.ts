/**
 * The state of one simulation run: the clock, the network and its server(s), the replicas with what the checker
 * last saw of them, and the history of local commits. `Simulation.ts` drives it; this module holds the lifecycle
 * (boot, kill, bury, restore) and the observations (step invariants, trace entries).
 *
 * Invariants: a replica is `running` (checked after every step), a `zombie` (killed, scope not yet closed: never
 * read, its file is closed) or stopped. Every random source is derived from the scenario's seed, and every file lives
 * in the run's own directory.
 */
import { createHash, type Hash } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import { Effect, Random, type Scope } from "effect"
import type * as ServerLog from "../server/ServerLog.js"
import type * as SyncEngine from "../sync/SyncEngine.js"
import type { CrashPoint } from "./CrashPoints.js"
import type { Faults } from "./Scenario.js"
import * as SimCheck from "./SimCheck.js"
import * as SimClock from "./SimClock.js"
import * as SimNetwork from "./SimNetwork.js"
import * as SimReplica from "./SimReplica.js"

/** The space every replica syncs. */
export const SPACE = "sim"

/** Where virtual time starts. */
export const START_MS = 1_700_000_000_000

/** What a world is made from. */
export interface Setup {
  readonly seed: number
  readonly replicas: number
  readonly faults: Faults
  readonly engine: Omit<SyncEngine.Config, "token">
  readonly timeoutMs: number
  readonly parts: SimReplica.Parts
  readonly makeServer: Effect.Effect<ServerLog.Service, unknown, Scope.Scope>
  readonly dir: string
}

/** One replica of the world. */
export interface Replica {
  readonly index: number
  readonly spec: SimReplica.Spec
  running: SimReplica.Running | undefined
  zombie: SimReplica.Running | undefined
  previous: SimCheck.Previous | undefined
  last: SimCheck.ReplicaSnapshot | undefined
  revoked: boolean
  tokens: number
  commits: number
  armed: CrashPoint | undefined
  readonly backupFile: string
}

/** A local commit that returned ok. */
export interface Commit {
  readonly replica: number
  readonly ids: ReadonlyArray<string>
  readonly step: number
  /** Its replica was restored from a copy that predates it, and the server did not have it then. */
  destroyed: boolean
}

/** The world of one run. */
export interface World {
  readonly setup: Setup
  readonly clock: SimClock.SimClock
  readonly network: SimNetwork.SimNetwork
  readonly newServer: Effect.Effect<ServerLog.Service, unknown, Scope.Scope>
  readonly track: SimCheck.ServerTrack
  readonly replicas: ReadonlyArray<Replica>
  readonly history: Array<Commit>
  readonly partitions: Map<string, SimNetwork.Link>
  readonly fired: Record<string, number>
  readonly trace: Hash
}

/** Make the world: a server, a network, and replica specs (not booted yet); files go to a fresh directory. */
export const make = (setup: Setup) =>
  Effect.gen(function* () {
    const { seed, faults } = setup
    const clock = SimClock.make({ start: START_MS })
    const dir = mkdtempSync(join(setup.dir, "memsync-sim-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
    const newServer = setup.makeServer.pipe(
      Effect.withRandom(Random.make(`${seed}/server`)),
      Effect.withClock(clock.clock)
    )
    const network = SimNetwork.make({
      clock,
      server: yield* newServer,
      space: SPACE,
      timeoutMs: setup.timeoutMs,
      random: Random.make(`${seed}/network`),
      ambient: {
        drop: faults.drop,
        reorder: faults.reorder,
        duplicate: faults.duplicate,
        lostResponse: faults.lostResponse,
        serverError: faults.serverError
      }
    })
    const replicas = Array.from({ length: setup.replicas }, (_, index): Replica => {
      const name = `r${index}`
      const token = `t-${name}-0`
      network.grant(token)
      return {
        index,
        spec: {
          name,
          clientId: name,
          filename: join(dir, `${name}.db`),
          engine: setup.engine,
          token: { value: token },
          random: Random.make(`${seed}/${name}`),
          skew: { value: 0 }
        },
        running: undefined,
        zombie: undefined,
        previous: undefined,
        last: undefined,
        revoked: false,
        tokens: 0,
        commits: 0,
        armed: undefined,
        backupFile: join(dir, `${name}.backup.db`)
      }
    })
    const world: World = {
      setup,
      clock,
      network,
      newServer,
      track: SimCheck.trackServer(network.server().epoch),
      replicas,
      history: [],
      partitions: new Map(),
      fired: {},
      trace: createHash("sha256")
    }
    // Whatever happens, every replica is stopped before the run's scope (servers, files) goes.
    yield* Effect.addFinalizer(() => Effect.forEach(replicas, (r) => Effect.ignore(stop(world, r)), { discard: true }))
    for (const r of replicas) {
      // The oldest copy of a file is the one it was created as: a restore can always go back to it.
      yield* SimReplica.fromTemplate(setup.dir, r.spec.filename)
      yield* SimReplica.fromTemplate(setup.dir, r.backupFile)
    }
    return world
  })

/** Count something that happened (faults fired, crash points reached...). */
export const bump = (world: World, name: string) => {
  world.fired[name] = (world.fired[name] ?? 0) + 1
}

/** Run a server call on the server's clock. */
export const onServer = <A, E>(world: World, effect: Effect.Effect<A, E>) => Effect.withClock(effect, world.clock.clock)

/** Boot a replica from its file (burying its previous incarnation first). */
export const boot = (world: World, r: Replica) =>
  Effect.gen(function* () {
    yield* bury(world, r)
    world.network.setLink(r.spec.name, world.partitions.get(r.spec.name) ?? "up")
    r.running = yield* SimReplica.start(r.spec, world.network, world.clock, world.setup.parts)
  })

/** Kill a running replica at this instant (see SimReplica.kill); its crash point, if armed, is spent. */
export const kill = (world: World, r: Replica, reason: "crash" | "restore" = "crash") => {
  if (r.running === undefined) return
  SimReplica.kill(r.running, r.spec, world.network)
  world.network.setHook(r.spec.name, undefined)
  r.zombie = r.running
  r.running = undefined
  r.armed = undefined
  if (reason === "crash") bump(world, "crash")
}

/**
 * Close a killed replica's scope, then check what it left in its file (P6: after a crash the log has no holes, the
 * bookkeeping points at events it holds). This is the state it will boot from: a non-atomic write path shows here,
 * before the next boot's resync can paper over it.
 */
export const bury = (world: World, r: Replica) =>
  Effect.gen(function* () {
    const zombie = r.zombie
    if (zombie === undefined) return
    r.zombie = undefined
    yield* SimReplica.bury(zombie, r.spec, world.clock)
    yield* observeServer(world)
    const s = SimCheck.snapshotFile(r.spec.filename)
    yield* Effect.mapError(
      SimCheck.checkReplica(r.spec.name, s, r.previous, world.track),
      (e) => new SimCheck.SimFailure({ property: e.property, detail: `after a crash: ${e.detail}` })
    )
    r.previous = { cursor: s.cursor, epoch: s.epoch }
  })

/** Crash now: kill, then bury. */
export const stop = (world: World, r: Replica, reason: "crash" | "restore" = "crash") =>
  Effect.suspend(() => {
    kill(world, r, reason)
    return bury(world, r)
  })

/** Stop a replica, put its old copy back in place of its file, boot it. */
export const restore = (world: World, r: Replica) =>
  Effect.gen(function* () {
    yield* stop(world, r, "restore")
    yield* SimReplica.restoreFile(r.backupFile, r.spec.filename)
    yield* boot(world, r)
    bump(world, "restore")
    yield* markDestroyed(world)
    // The file went back in time: its cursor is the new baseline.
    r.previous = undefined
    yield* verify(r)
  })

/**
 * After something destroyed data (a file restored from an old copy, a server whose log was replaced): a commit with
 * no copy left anywhere — not on the server, not in flight, not in any replica's file — is gone for a reason no
 * engine can help, and P2 exempts it. Everything that still has a copy somewhere must reach the server.
 */
export const markDestroyed = (world: World) =>
  Effect.gen(function* () {
    yield* observeServer(world)
    const alive = new Set(world.track.idSet)
    for (const m of world.network.inFlight()) for (const e of m.events) alive.add(idOf(e))
    for (const r of world.replicas) {
      const ids =
        r.running !== undefined
          ? (yield* SimCheck.snapshot(r.running.database)).ids
          : SimReplica.fileIds(r.spec.filename)
      for (const id of ids) alive.add(id)
    }
    for (const c of world.history) if (!c.destroyed && c.ids.some((id) => !alive.has(id))) c.destroyed = true
  })

const idOf = (e: unknown): string => {
  const id: unknown = typeof e === "object" && e !== null ? Reflect.get(e, "id") : undefined
  return typeof id === "string" ? id : ""
}

/** P6/P2 on the server (see SimCheck.observeServer). */
export const observeServer = (world: World) =>
  onServer(world, SimCheck.observeServer(world.track, world.network.server(), SPACE))

/** Step invariants: the server, then every running replica. */
export const observe = (world: World) =>
  Effect.gen(function* () {
    yield* observeServer(world)
    for (const r of world.replicas) {
      if (r.running === undefined) continue
      const s = yield* SimCheck.snapshot(r.running.database)
      yield* SimCheck.checkReplica(r.spec.name, s, r.previous, world.track)
      r.previous = { cursor: s.cursor, epoch: s.epoch }
      r.last = s
    }
  })

/** P4 on a running replica, holding its database lock so no fiber writes in between. */
export const verify = (r: Replica) =>
  r.running === undefined
    ? Effect.void
    : r.running.database.transaction(SimCheck.checkRebuild(r.spec.name, r.running.database, r.running.materializer))

/** Add one entry to the trace: what a test can observe after a step. */
export const traceStep = (world: World, index: number, step: unknown) => {
  const replicas = world.replicas.map((r) =>
    r.running === undefined || r.last === undefined
      ? null
      : [r.last.cursor, r.last.events, r.last.outbox, r.last.dead.size, r.last.maxHlc ?? ""]
  )
  world.trace.update(
    SimCheck.canonical([
      index,
      step,
      world.clock.now(),
      world.track.epoch,
      world.track.head,
      replicas,
      world.network.calls().length
    ])
  )
}
