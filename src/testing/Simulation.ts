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
import { Context, Effect, Layer, Logger, LogLevel, Option, Queue, type Scope, SubscriptionRef } from "effect"
import { existsSync } from "node:fs"
import { tmpdir } from "node:os"
import * as IdGenerator from "../domain/IdGenerator.js"
import * as ServerLog from "../server/ServerLog.js"
import type * as MemoryStore from "../store/MemoryStore.js"
import * as Policy from "../sync/Policy.js"
import type * as SyncEngine from "../sync/SyncEngine.js"
import * as CrashPoints from "./CrashPoints.js"
import { classOf, FAULT_CLASSES, type FaultClass, type Scenario, type Step } from "./Scenario.js"
import * as SimCheck from "./SimCheck.js"
import type * as SimNetwork from "./SimNetwork.js"
import * as SimReplica from "./SimReplica.js"
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
        yield* Effect.mapError(apply(world, step, index, crashes), at)
        yield* clock.advance(config.stepMs)
        for (const r of replicas) yield* SimWorld.bury(world, r)
        yield* Effect.mapError(SimWorld.observe(world), at)
        if (config.verifyEvery > 0 && index % config.verifyEvery === config.verifyEvery - 1) {
          for (const r of replicas) yield* Effect.mapError(SimWorld.verify(r), at)
        }
        SimWorld.traceStep(world, index, step)
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

// --- steps ---------------------------------------------------------------------------------------------------------

const apply = (
  world: SimWorld.World,
  step: Step,
  index: number,
  crashes: Queue.Queue<number>
): Effect.Effect<void, unknown, Scope.Scope> => {
  const cls = classOf(step)
  if (cls !== undefined && world.setup.faults[cls] === 0) return Effect.void
  const { network, replicas } = world
  const r = "replica" in step ? replicas[step.replica % replicas.length]! : undefined
  const arm = (faults: ReadonlyArray<SimNetwork.Armed>) => Effect.sync(() => network.arm(r!.spec.name, faults))
  const times = <A>(n: number, a: A) => Array.from({ length: n }, () => a)
  switch (step._tag) {
    case "commit":
      return commit(world, r!, step, index)
    case "tick":
      return world.clock.advance(step.ms)
    case "deliver": {
      const n = network.inFlight().length
      if (n === 0) return Effect.void
      return deliver(
        world,
        Array.from({ length: step.count }, (_, j) => (step.pick + j * 5) % n)
      )
    }
    case "drop":
      return arm(times(step.count, { _tag: "drop" }))
    case "reorder":
      return arm(times(step.count, { _tag: "hold" }))
    case "duplicate":
      return Effect.zipRight(arm([{ _tag: "duplicate" }]), replayPage(world, r!, step.pick))
    case "serverError":
      return arm(times(step.count, { _tag: "error", kind: step.kind, retryAfterSeconds: step.retryAfterSeconds }))
    case "lostResponse":
      return arm([{ _tag: "lose", op: step.op === "push" ? "push" : undefined }])
    case "partition":
      return Effect.sync(() => partition(world, step, r!))
    case "heal":
      return Effect.sync(() => {
        world.partitions.clear()
        for (const x of replicas) if (x.running !== undefined) network.setLink(x.spec.name, "up")
      })
    case "crash":
      return SimWorld.stop(world, r!)
    case "armCrash":
      return Effect.sync(() => armCrash(world, r!, step.point, crashes))
    case "restart":
      return r!.running !== undefined ? Effect.void : Effect.zipRight(SimWorld.boot(world, r!), SimWorld.verify(r!))
    case "token":
      if (step.action === "refresh") return refresh(world, r!)
      return Effect.sync(() => {
        network.revoke(r!.spec.token.value)
        r!.revoked = true
      })
    case "skew":
      return Effect.sync(() => {
        r!.spec.skew.value = step.ms
        if (step.ms !== 0) SimWorld.bump(world, "skew")
      })
    case "epochReset":
      return Effect.gen(function* () {
        network.replaceServer(yield* world.newServer)
        SimWorld.bump(world, "epochReset")
        yield* SimWorld.markDestroyed(world)
      })
    case "backup":
      return r!.running === undefined ? Effect.void : SimReplica.backup(r!.running, r!.backupFile)
    case "restore":
      return SimWorld.restore(world, r!)
  }
}

/** A local write with unique contents and tags, then P7 on what it wrote. */
const commit = (world: SimWorld.World, r: SimWorld.Replica, step: Extract<Step, { _tag: "commit" }>, index: number) =>
  Effect.gen(function* () {
    const running = r.running
    if (running === undefined) return
    const before = yield* running.database.raw((db) => db.prepare(`SELECT max(hlc) FROM events`).pluck().get())
    const next = () => {
      const n = r.commits++
      return { content: `${r.spec.name}:${n}`, tags: [`${r.spec.name}-t${n}`] }
    }
    const visible = yield* running.store.list({ limit: 1_000 })
    const target = visible.length === 0 ? undefined : visible[step.pick % visible.length]!
    const write: Effect.Effect<unknown, MemoryStore.WriteError> =
      step.kind === "createMany"
        ? running.store.createMany([next(), next()])
        : step.kind === "update" && target !== undefined
          ? running.store.update(target.id, next())
          : step.kind === "delete" && target !== undefined
            ? running.store.remove(target.id)
            : running.store.create(next())
    const ok = yield* Effect.either(running.within(write))
    if (ok._tag === "Left") {
      if (ok.left._tag === "MemoryNotFound") return
      return yield* SimCheck.violated("commit", `${r.spec.name}: ${ok.left._tag}: ${ok.left.message}`)
    }
    const changes = yield* running.changes.takeAll
    const ids = Array.from(changes).flatMap((c) => (c.source === "local" ? c.eventIds : []))
    yield* SimCheck.expect(ids.length > 0, "commit", () => `${r.spec.name}: a commit published no event`)
    world.history.push({ replica: r.index, ids, step: index, destroyed: false })
    // P7: what this replica wrote sorts after everything its log held when it wrote.
    const stamps = yield* running.database.raw((db) =>
      ids.map((id) => String(db.prepare(`SELECT hlc FROM events WHERE id = ?`).pluck().get(id)))
    )
    for (const hlc of stamps) {
      yield* SimCheck.expect(
        typeof before !== "string" || hlc > before,
        "P7",
        () => `${r.spec.name} wrote ${hlc} after seeing ${String(before)}`
      )
    }
    if (r.armed === "after-local-commit") {
      SimWorld.bump(world, "crashPoint:after-local-commit")
      SimWorld.kill(world, r)
    }
  })

/** P3 on a replica: re-applying a page it already applied changes nothing. */
const replayPage = (world: SimWorld.World, r: SimWorld.Replica, pick: number) =>
  Effect.gen(function* () {
    const running = r.running
    const s = r.last
    if (running === undefined || s === undefined || s.epoch !== world.track.epoch || s.cursor === 0) return
    const size = 1 + (pick % Math.min(s.cursor, 5))
    const page = yield* SimWorld.onServer(world, world.network.server().pull(SimWorld.SPACE, s.cursor - size, size))
    if (page.events.length === 0) return
    SimWorld.bump(world, "pageReplay")
    const { database, materializer, engine } = running
    yield* database.transaction(
      Effect.gen(function* () {
        const count = database.raw((db) => Number(db.prepare(`SELECT count(*) FROM events`).pluck().get()))
        const before = SimCheck.viewLines(yield* materializer.readStates())
        const eventsBefore = yield* count
        const fresh = yield* engine.ledger.applyPull(page.events, page.events[page.events.length - 1]!.seq)
        const after = SimCheck.viewLines(yield* materializer.readStates())
        const eventsAfter = yield* count
        yield* SimCheck.expect(
          fresh === 0 && eventsBefore === eventsAfter && before.join("\n") === after.join("\n"),
          "P3",
          () => `${r.spec.name}: re-applying server seqs ${page.events[0]!.seq}.. changed the replica`
        )
      })
    )
  })

/** Deliver held pushes; P3 on the server: what it already held comes back `duplicate` at the same seq. */
const deliver = (world: SimWorld.World, positions: ReadonlyArray<number>) =>
  Effect.gen(function* () {
    yield* SimWorld.observeServer(world)
    const epoch = world.track.epoch
    const knownSeq = new Map(world.track.ids.map((id, i) => [id, i + 1]))
    const results = yield* world.network.deliver(positions)
    for (const { response } of results) {
      if (response === undefined || world.network.server().epoch !== epoch) continue
      SimWorld.bump(world, "delivered")
      for (const result of response.results) {
        const seq = knownSeq.get(result.id)
        if (seq === undefined) continue
        yield* SimCheck.expect(
          result.status === "duplicate" && result.seq === seq,
          "P3",
          () => `re-delivered ${result.id} (seq ${seq}) answered ${SimCheck.canonical(result)}`
        )
      }
    }
  })

const partition = (world: SimWorld.World, step: Extract<Step, { _tag: "partition" }>, r: SimWorld.Replica) => {
  const { replicas, network } = world
  const mask = step.mode === "isolate" ? 1 << r.index : step.mask & ((1 << replicas.length) - 1)
  const chosen = replicas.filter((x) => (mask & (1 << x.index)) !== 0)
  const link = step.mode === "asymmetric" ? "one-way" : "cut"
  for (const x of chosen.length === 0 ? [r] : chosen) {
    world.partitions.set(x.spec.name, link)
    if (x.running !== undefined) network.setLink(x.spec.name, link)
  }
}

const armCrash = (
  world: SimWorld.World,
  r: SimWorld.Replica,
  point: CrashPoints.CrashPoint,
  crashes: Queue.Queue<number>
) => {
  if (r.running === undefined) return
  r.armed = point
  const epoch = world.network.server().epoch
  const hook = CrashPoints.hook(
    point,
    () => {
      SimWorld.bump(world, `crashPoint:${point}`)
      Queue.unsafeOffer(crashes, r.index)
    },
    { epochChanged: () => world.network.server().epoch !== epoch }
  )
  world.network.setHook(r.spec.name, hook)
}

const refresh = (world: SimWorld.World, r: SimWorld.Replica) =>
  Effect.gen(function* () {
    const token = `t-${r.spec.name}-${++r.tokens}`
    world.network.grant(token)
    r.spec.token.value = token
    r.revoked = false
    if (r.running !== undefined) yield* SubscriptionRef.set(r.running.engine.credentials, Option.some(token))
  })

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
    yield* deliver(
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
      if (r.revoked) yield* refresh(world, r)
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
