/**
 * The chaos steps of a simulation run: what each `Step` does to the world (a local write, a fault armed on the network,
 * a partition, a crash, a restore...), and the invariants checked at the moment they apply (P7 at each commit, P3 on a
 * re-applied page and on a re-delivered push). A step whose fault class is off in the scenario is a no-op.
 */
import { Effect, Option, Queue, type Scope, SubscriptionRef } from "effect"
import type * as MemoryStore from "../store/MemoryStore.js"
import * as CrashPoints from "./CrashPoints.js"
import { classOf, type Step } from "./Scenario.js"
import * as SimCheck from "./SimCheck.js"
import type * as SimNetwork from "./SimNetwork.js"
import * as SimReplica from "./SimReplica.js"
import * as SimWorld from "./SimWorld.js"

/** Apply one chaos step. Crash points fire inside a replica's call; `crashes` gets the replica to kill. */
export const apply = (
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
export const deliver = (world: SimWorld.World, positions: ReadonlyArray<number>) =>
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

export const refresh = (world: SimWorld.World, r: SimWorld.Replica) =>
  Effect.gen(function* () {
    const token = `t-${r.spec.name}-${++r.tokens}`
    world.network.grant(token)
    r.spec.token.value = token
    r.revoked = false
    if (r.running !== undefined) yield* SubscriptionRef.set(r.running.engine.credentials, Option.some(token))
  })
