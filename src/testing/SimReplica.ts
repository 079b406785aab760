/**
 * A simulated replica: a real `MemoryStore` + `SyncEngine` over its own SQLite file, built through the normal boot
 * path inside its own `Scope`, with its own skewed view of the simulation clock and its own seeded `Random`.
 *
 * Lifecycle: `start` boots (or reboots) the replica from its file; `kill` stops it at once so that nothing more can
 * reach the server or the file (its link goes `dead`, its SQLite handle is closed: an open transaction is rolled back
 * by SQLite), and `bury` then closes its scope (the engine's closing push fails at once, so no finalizer persists
 * anything). The next `start` on the same file is the normal boot path. `backup` copies the live file (`VACUUM INTO`), `restore` puts such a copy back in
 * place of the file while the replica is stopped, the way a user restores an old backup.
 *
 * Parts can be substituted (`Parts`): the ledger, the retry policy and a wrapper around the transport. That is how
 * the planted-bug check runs the engine with deliberately wrong pieces, without any flag in production code.
 */
import SqliteDatabase from "better-sqlite3"
import type Sqlite from "better-sqlite3"
import { Context, Effect, Exit, Fiber, Layer, Option, type Queue, type Random, Scope } from "effect"
import { copyFileSync, existsSync, rmSync } from "node:fs"
import { join } from "node:path"
import * as IdGenerator from "../domain/IdGenerator.js"
import { Database } from "../store/Database.js"
import { Materializer } from "../store/Materializer.js"
import * as MemoryStore from "../store/MemoryStore.js"
import * as Ledger from "../sync/Ledger.js"
import * as Policy from "../sync/Policy.js"
import * as SyncEngine from "../sync/SyncEngine.js"
import { Transport } from "../sync/Transport.js"
import type { SimClock } from "./SimClock.js"
import type { SimNetwork } from "./SimNetwork.js"

/** Pieces of a replica a simulation may substitute. */
export interface Parts {
  /** The ledger (default `Ledger.layer`). */
  readonly ledger: Layer.Layer<Ledger.Ledger, unknown, LedgerDeps>
  /** The retry policy (default `Policy.layer`). */
  readonly policy: Layer.Layer<Policy.RetryPolicy>
  /** Wrap the replica's transport (default: none). */
  readonly transport?: (inner: Transport) => Transport
}

/** What a ledger layer may need: everything the store provides. */
export type LedgerDeps = Layer.Layer.Success<ReturnType<typeof MemoryStore.layerWithIds>>

/** The production pieces. */
export const DEFAULT_PARTS: Parts = { ledger: Ledger.layer, policy: Policy.layer }

/** What stays the same across restarts of a replica. */
export interface Spec {
  readonly name: string
  readonly clientId: string
  /** The SQLite file (`:memory:` only for replicas that never crash or restore). */
  readonly filename: string
  /** The engine's configuration, without the token (see `token`). */
  readonly engine: Omit<SyncEngine.Config, "token">
  /** The bearer token the replica boots with (mutable: a refresh replaces it). */
  readonly token: { value: string }
  readonly random: Random.Random
  /** Milliseconds added to the simulation clock on this replica's reads (mutable: skew can change at run time). */
  readonly skew: { value: number }
}

/** A running replica. */
export interface Running {
  readonly scope: Scope.CloseableScope
  readonly store: MemoryStore.MemoryStore
  readonly engine: SyncEngine.SyncEngine
  readonly database: Database
  readonly materializer: Materializer
  /** Every commit of the store since boot (the simulation reads its own local commits from here). */
  readonly changes: Queue.Dequeue<MemoryStore.Change>
  /** Run an effect as this replica: its clock view and its Random (local writes go through this). */
  readonly within: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** The raw SQLite handle (closing it is how a crash stops every write at once). */
  readonly handle: Sqlite.Database
}

/** Boot a replica from its file, connected to the network. */
export const start = (
  spec: Spec,
  network: SimNetwork,
  clock: SimClock,
  parts: Parts = DEFAULT_PARTS
): Effect.Effect<Running, unknown> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const view = clock.viewWithSkew(() => spec.skew.value)
    const within = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.withClock(view), Effect.withRandom(spec.random))
    const store = MemoryStore.layerWithIds({ filename: spec.filename, clientId: spec.clientId }).pipe(
      Layer.provide(IdGenerator.layerRandom)
    )
    const inner = network.transportFor(spec.name)
    const transport = Layer.succeed(Transport, parts.transport === undefined ? inner : parts.transport(inner))
    const layer = SyncEngine.layerWithoutDefaults({ ...spec.engine, token: spec.token.value }).pipe(
      Layer.provide(Layer.merge(parts.ledger, parts.policy)),
      Layer.provideMerge(Layer.merge(store, transport))
    )
    const built = yield* within(Layer.build(layer)).pipe(
      Scope.extend(scope),
      Effect.tapErrorCause(() => Scope.close(scope, Exit.void))
    )
    const memoryStore = Context.get(built, MemoryStore.MemoryStore)
    const changes = yield* memoryStore.subscribe.pipe(Scope.extend(scope))
    const database = Context.get(built, Database)
    return {
      handle: yield* database.raw((db) => db),
      scope,
      store: memoryStore,
      engine: Context.get(built, SyncEngine.SyncEngine),
      database,
      materializer: Context.get(built, Materializer),
      changes,
      within
    }
  })

/**
 * Kill a replica where it stands: its link goes dead (nothing it sends reaches the server any more) and its SQLite
 * handle is closed, so no write lands after this instant and SQLite rolls back any transaction left open. Its fibers
 * are still there (every call they make now fails) until `bury` closes its scope.
 */
export const kill = (running: Running, spec: Spec, network: SimNetwork) => {
  network.setLink(spec.name, "dead")
  running.handle.close()
}

/**
 * Close a killed replica's scope: the engine's closing push fails at once (the file is closed, the link dead), the
 * fibers are interrupted. Virtual time is advanced while it closes, since the engine bounds its closing push with a
 * timer; at most `flushTimeoutMs` passes.
 */
export const bury = (running: Running, spec: Spec, clock: SimClock) =>
  Effect.gen(function* () {
    const closing = yield* Effect.fork(Scope.close(running.scope, Exit.void))
    const bound = spec.engine.flushTimeoutMs ?? 5_000
    for (let waited = 0; waited <= bound + 100; waited += 50) {
      yield* clock.settle
      if (Option.isSome(yield* Fiber.poll(closing))) break
      yield* clock.advance(50)
    }
    yield* Fiber.join(closing)
  })

/** Kill, then bury: a crash at the current instant. */
export const crash = (running: Running, spec: Spec, network: SimNetwork, clock: SimClock) =>
  Effect.suspend(() => {
    kill(running, spec, network)
    return bury(running, spec, clock)
  })

/** Copy the live file of a running replica to `to` (a consistent snapshot, like a backup tool would take). */
export const backup = (running: Running, to: string) =>
  Effect.gen(function* () {
    yield* Effect.sync(() => rmSync(to, { force: true }))
    yield* running.database.raw((db) => db.exec(`VACUUM INTO '${to.replaceAll("'", "''")}'`))
  })

/** Replace a stopped replica's file with an old copy (its WAL and shared-memory files go too, as they must). */
export const restoreFile = (from: string, filename: string) =>
  Effect.sync(() => {
    for (const suffix of ["-wal", "-shm", "-journal"]) rmSync(filename + suffix, { force: true })
    copyFileSync(from, filename)
  })

/** The event ids in a stopped replica's file (read-only; the replica is not running). */
export const fileIds = (filename: string): ReadonlySet<string> => {
  if (!existsSync(filename)) return new Set()
  const db = new SqliteDatabase(filename, { readonly: true })
  try {
    return new Set(db.prepare(`SELECT id FROM events`).pluck().all().map(String))
  } finally {
    db.close()
  }
}

/**
 * A freshly created replica file (migrated, empty) in `dir`, made once per process and then copied: new replicas
 * start from a copy instead of running every migration again, which is most of the cost of a boot.
 */
export const template = (dir: string) =>
  Effect.gen(function* () {
    const cached = templates.get(dir)
    if (cached !== undefined && existsSync(cached)) return cached
    const file = join(dir, `memsync-sim-template-${process.pid}.db`)
    yield* Effect.scoped(
      Layer.build(
        MemoryStore.layerWithIds({ filename: file, clientId: "template" }).pipe(Layer.provide(IdGenerator.layer))
      )
    )
    templates.set(dir, file)
    process.once("exit", () => rmSync(file, { force: true }))
    return file
  })

/** Put a copy of the template at `to`. */
export const fromTemplate = (dir: string, to: string) =>
  Effect.flatMap(template(dir), (file) => Effect.sync(() => copyFileSync(file, to)))

const templates = new Map<string, string>()
