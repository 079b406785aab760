/**
 * The public facade of a replica: validated writes that become events, and reads over the materialized view.
 *
 * Every write is ONE transaction: append the event (+ outbox) and fold it into the view. Watchers are told after the
 * commit, through `changes`. Reads never see a half-applied write because the single connection serializes them
 * behind the transaction.
 */
import { SqlError } from "@effect/sql"
import { Context, Effect, Either, FiberRef, Layer, PubSub, type Queue, Schema, type Scope, Stream } from "effect"
import type { Envelope, MemoryEvent } from "../domain/Events.js"
import { formatError, isKnown, memoryIdOf } from "../domain/Events.js"
import { isVisible, toMemory } from "../domain/Fold.js"
import * as IdGen from "../domain/IdGenerator.js"
import { CreateInput, PatchInput, withDefaults, type Memory, type Patch } from "../domain/Memory.js"
import * as Database from "./Database.js"
import { MemoryNotFound, StorageError, ValidationError } from "./Errors.js"
import * as EventLog from "./EventLog.js"
import * as Materializer from "./Materializer.js"
import * as ReplicaClock from "./ReplicaClock.js"
import { toFts } from "./SearchQuery.js"

/** A memory with its tombstone flag (what `list --include-deleted` shows). */
export interface ListedMemory extends Memory {
  readonly deleted: boolean
}

/** A search result: the memory and its bm25 rank (lower is better). */
export interface SearchHit {
  readonly memory: Memory
  readonly rank: number
}

/** What a commit changed, for watchers. */
export interface Change {
  readonly source: "local" | "remote"
  readonly memoryIds: ReadonlyArray<string>
  readonly eventIds: ReadonlyArray<string>
}

/** Filters of `list`. */
export interface ListOptions {
  readonly category?: string | undefined
  readonly tag?: string | undefined
  readonly includeDeleted?: boolean | undefined
  readonly limit?: number | undefined
  readonly offset?: number | undefined
}

/** Counts for `stats`. */
export interface Stats {
  readonly memories: number
  readonly deleted: number
  readonly events: number
  readonly eventsByType: Readonly<Record<string, number>>
  readonly unknownEvents: number
  readonly pendingOutbox: number
  readonly deadLetters: number
}

/** Failures a write can have. */
export type WriteError = ValidationError | MemoryNotFound | StorageError

/** The store service. */
export interface MemoryStore {
  readonly clientId: string
  readonly create: (input: CreateInput) => Effect.Effect<Memory, ValidationError | StorageError>
  readonly createMany: (
    inputs: ReadonlyArray<CreateInput>
  ) => Effect.Effect<Array<Memory>, ValidationError | StorageError>
  readonly update: (id: string, patch: Patch) => Effect.Effect<Memory, WriteError>
  readonly remove: (id: string) => Effect.Effect<void, MemoryNotFound | StorageError>
  readonly get: (id: string) => Effect.Effect<Memory, MemoryNotFound | StorageError>
  readonly list: (options?: ListOptions) => Effect.Effect<Array<ListedMemory>, StorageError>
  readonly search: (
    query: string,
    options?: { readonly limit?: number }
  ) => Effect.Effect<Array<SearchHit>, StorageError>
  readonly history: (id: string) => Effect.Effect<ReadonlyArray<EventLog.StoredEvent>, StorageError>
  readonly stats: Effect.Effect<Stats, StorageError>
  /**
   * Store events written elsewhere (pulled, imported): new ids are appended (no outbox) and folded into the view in
   * one transaction, and the clock advances past them. Ids already held are skipped. Returns the new events.
   */
  readonly ingest: (events: ReadonlyArray<Envelope>) => Effect.Effect<ReadonlyArray<Envelope>, StorageError>
  /**
   * Append a local event with an arbitrary (type, version, payload), stamped and committed like any write. Used to
   * re-emit a dead letter's payload; the payload is not validated beyond being stored. Returns the new event id.
   */
  readonly emit: (type: string, version: number, payload: unknown) => Effect.Effect<string, StorageError>
  /** Commits as they happen (local writes, and remote ones once sync is running). */
  readonly changes: Stream.Stream<Change>
  /** Subscribe now (the queue sees every commit from this moment; `changes` subscribes when it starts running). */
  readonly subscribe: Effect.Effect<Queue.Dequeue<Change>, never, Scope.Scope>
  /** Tell watchers about a commit made elsewhere (the sync engine's pulls). */
  readonly publish: (change: Change) => Effect.Effect<void>
}

/** The store tag. */
export const MemoryStore = Context.GenericTag<MemoryStore>("memsync/MemoryStore")

/**
 * While set, every local commit made by this fiber (or a fiber it forks) adds its event ids here: how a caller learns
 * exactly which events its own write made, among concurrent writers, without holding the database around the write.
 */
const committedIds = FiberRef.unsafeMake<Array<string> | undefined>(undefined)

/** Run `write`; return its result and the ids of the events its local commits made, in commit order. */
export const collectCommits = <A, E, R>(
  write: Effect.Effect<A, E, R>
): Effect.Effect<{ readonly value: A; readonly eventIds: ReadonlyArray<string> }, E, R> =>
  Effect.suspend(() => {
    const eventIds: Array<string> = []
    return Effect.map(Effect.locally(write, committedIds, eventIds), (value) => ({ value, eventIds }))
  })

/** Build the store over the database, log, materializer, clock and id generator in context. */
export const make = Effect.gen(function* () {
  const { sql, raw, write } = yield* Database.Database
  const log = yield* EventLog.EventLog
  const view = yield* Materializer.Materializer
  const clock = yield* ReplicaClock.ReplicaClock
  const ids = yield* IdGen.IdGenerator
  const changes = yield* PubSub.unbounded<Change>()

  const stmts = yield* raw((db) => ({
    row: db.prepare(`SELECT * FROM memories WHERE id = ?`)
  }))

  // The small steps of the write path are plain combinators, not `Effect.gen`: a generator costs ~2 µs per call.
  const event = <E extends MemoryEvent>(type: E["type"], payload: E["payload"]) =>
    Effect.zipWith(ids.next, clock.stamp, (id, hlc): Envelope => ({
      id,
      type,
      version: 1,
      payload,
      hlc,
      clientId: clock.clientId
    }))

  /**
   * In one transaction: run `decide` (its checks read the state this write applies to; nothing can change it in
   * between), append its events + outbox, fold them into the view, then read `result`. Then tell watchers.
   */
  const commitWith = <A, E>(
    decide: Effect.Effect<ReadonlyArray<Envelope>, E>,
    result: Effect.Effect<A, E>
  ): Effect.Effect<A, E | StorageError> =>
    Effect.gen(function* () {
      const { events, memoryIds, value } = yield* sql
        .withTransaction(
          Effect.gen(function* () {
            const events = yield* decide
            yield* log.appendLocal(events)
            const memoryIds = yield* view.apply(events)
            return { events, memoryIds, value: yield* result }
          })
        )
        .pipe(storageError)
      yield* announce(memoryIds, events)
      return value
    })

  /**
   * Append + outbox + view in one transaction, then tell watchers (`commitWith` without the checks: the create path).
   * One synchronous call under the lock: on this path the Effect machinery around each statement cost more than the
   * SQLite work (bench/README.md).
   */
  const commit = (events: ReadonlyArray<Envelope>) =>
    Effect.tap(
      write((db) => {
        log.unsafeAppendLocal(events)
        return view.unsafeApply(db, events)
      }),
      (memoryIds) => announce(memoryIds, events)
    )

  /** After a local commit: tell watchers, and the caller collecting its own commits (`collectCommits`), if any. */
  const announce = (memoryIds: ReadonlyArray<string>, events: ReadonlyArray<Envelope>) =>
    Effect.flatMap(FiberRef.get(committedIds), (sink) => {
      const eventIds = events.map((e) => e.id)
      if (sink !== undefined) sink.push(...eventIds)
      return PubSub.publish(changes, { source: "local", memoryIds, eventIds })
    })

  const readState = (id: string) =>
    raw(() => {
      const row = stmts.row.get(id)
      return row === undefined ? undefined : Materializer.rowToState(row)
    })

  const get = Effect.fn("MemoryStore.get")(function* (id: string) {
    const state = yield* readState(id)
    const memory = state === undefined ? undefined : toMemory(state)
    if (state === undefined || memory === undefined || state.deleted) {
      return yield* new MemoryNotFound({ id, deleted: state?.deleted ?? false })
    }
    return memory
  })

  /** A validated input's memory and its `memory.created` event (not yet committed). */
  const created = (raw: CreateInput) =>
    Effect.gen(function* () {
      const input = yield* validateCreate(raw)
      const id = yield* ids.next
      const now = yield* clock.now
      const memory: Memory = { id, ...withDefaults(input), createdAt: now, updatedAt: now }
      return [memory, yield* event("memory.created", memory)] as const
    })

  const createMany = Effect.fn("MemoryStore.createMany")(function* (inputs: ReadonlyArray<CreateInput>) {
    const made = yield* Effect.forEach(inputs, created)
    if (made.length > 0) yield* commit(made.map(([, e]) => e))
    return made.map(([m]) => m)
  })

  // `created` + `commit` without `createMany`'s forEach, arrays and nested generators (a few µs each). The memory is
  // returned as made: nothing reads it back from the view. Spanned only under a real tracer (see `whenTraced`).
  const create = (raw: CreateInput) =>
    Effect.gen(function* () {
      const input = yield* validateCreate(raw)
      const id = yield* ids.next
      const now = yield* clock.now
      const memory: Memory = { id, ...withDefaults(input), createdAt: now, updatedAt: now }
      yield* commit([yield* event("memory.created", memory)])
      return memory
    }).pipe(whenTraced("MemoryStore.create"))

  // update and remove check the id inside their write transaction: a delete committed between a check and the
  // write would otherwise leave an event written by a call that then fails.
  const update = Effect.fn("MemoryStore.update")(function* (id: string, rawPatch: Patch) {
    const patch = yield* validatePatch(rawPatch)
    const decide = Effect.gen(function* () {
      yield* get(id)
      const now = yield* clock.now
      return [yield* event("memory.updated", { id, patch, updatedAt: now })]
    })
    return yield* commitWith(decide, get(id))
  })

  const remove = Effect.fn("MemoryStore.remove")(function* (id: string) {
    const decide = Effect.gen(function* () {
      yield* get(id)
      const now = yield* clock.now
      return [yield* event("memory.deleted", { id, deletedAt: now })]
    })
    yield* commitWith(decide, Effect.void)
  })

  const list = Effect.fn("MemoryStore.list")(function* (options: ListOptions = {}) {
    const where = [
      sql`created = 1`,
      ...(options.includeDeleted === true ? [] : [sql`deleted = 0`]),
      ...(options.category === undefined ? [] : [sql`category = ${options.category}`]),
      ...(options.tag === undefined
        ? []
        : [sql`EXISTS (SELECT 1 FROM json_each(memories.tags) WHERE value = ${options.tag})`])
    ]
    const rows = yield* sql`SELECT * FROM memories WHERE ${sql.and(where)}
      ORDER BY created_at DESC, id LIMIT ${options.limit ?? 100} OFFSET ${options.offset ?? 0}`.pipe(storageError)
    return yield* fromRows(rows, (row): Array<ListedMemory> => {
      const state = Materializer.rowToState(row)
      const memory = toMemory(state)
      return memory === undefined ? [] : [{ ...memory, deleted: state.deleted }]
    })
  })

  const search = Effect.fn("MemoryStore.search")(function* (query: string, options: { readonly limit?: number } = {}) {
    const match = toFts(query)
    if (match === undefined) return []
    // bm25 weights: content, tags, keywords, category.
    const rows = yield* sql`SELECT m.*, bm25(memories_fts, 1.0, 2.0, 2.0, 0.5) AS rank
      FROM memories_fts JOIN memories m ON m.rownum = memories_fts.rowid
      WHERE memories_fts MATCH ${match} AND m.created = 1 AND m.deleted = 0
      ORDER BY rank LIMIT ${options.limit ?? 20}`.pipe(storageError)
    return yield* fromRows(rows, (row): Array<SearchHit> => {
      const state = Materializer.rowToState(row)
      const memory = isVisible(state) ? toMemory(state) : undefined
      return memory === undefined ? [] : [{ memory, rank: RankOf(row).rank }]
    })
  })

  const history = (id: string) => log.byMemory(id)

  const emit = Effect.fn("MemoryStore.emit")(function* (type: string, version: number, payload: unknown) {
    const id = yield* ids.next
    const hlc = yield* clock.stamp
    yield* commit([{ id, type, version, payload, hlc, clientId: clock.clientId }])
    return id
  })

  const ingest = Effect.fn("MemoryStore.ingest")(function* (events: ReadonlyArray<Envelope>) {
    const fresh = yield* sql
      .withTransaction(Effect.tap(log.ingest(events), (added) => view.apply(added)))
      .pipe(storageError)
    if (fresh.length === 0) return fresh
    let max = fresh[0]!.hlc
    for (const e of fresh) if (e.hlc > max) max = e.hlc
    yield* clock.observe(max)
    const memoryIds = Array.from(new Set(fresh.flatMap((e) => memoryIdOf(e) ?? [])))
    yield* PubSub.publish(changes, { source: "remote", memoryIds, eventIds: fresh.map((e) => e.id) })
    return fresh
  })

  const stats = raw((db) => {
    const count = (q: string): number => Number(db.prepare(q).pluck().get() ?? 0)
    const byType: Record<string, number> = {}
    let unknownEvents = 0
    for (const row of db.prepare(`SELECT type, version, count(*) AS n FROM events GROUP BY type, version`).all()) {
      const r = TypeCount(row)
      byType[r.type] = (byType[r.type] ?? 0) + r.n
      if (!isKnown(r.type, r.version)) unknownEvents += r.n
    }
    return {
      memories: count(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 0`),
      // Like `list({ includeDeleted })`: a tombstone for an id never created here is not a deleted memory.
      deleted: count(`SELECT count(*) FROM memories WHERE created = 1 AND deleted = 1`),
      events: count(`SELECT count(*) FROM events`),
      eventsByType: byType,
      unknownEvents,
      pendingOutbox: count(`SELECT count(*) FROM outbox`),
      deadLetters: count(`SELECT count(*) FROM dead_letters`)
    }
  })

  return MemoryStore.of({
    clientId: clock.clientId,
    create,
    createMany,
    update,
    remove,
    get,
    list,
    search,
    history,
    stats,
    ingest,
    emit,
    changes: Stream.fromPubSub(changes),
    subscribe: PubSub.subscribe(changes),
    publish: (change) => Effect.asVoid(PubSub.publish(changes, change))
  })
})

/** Options of the full local stack. */
export interface Config extends Database.Config, ReplicaClock.Options {}

/** Everything a replica's store is made of, with ids from the `IdGenerator` in context (simulations). */
export const layerWithIds = (config: Config) => {
  const db = Database.layer(config)
  const log = EventLog.layer.pipe(Layer.provideMerge(db))
  const parts = Layer.mergeAll(ReplicaClock.layer(config), Materializer.layer).pipe(Layer.provideMerge(log))
  return Layer.effect(MemoryStore, make).pipe(Layer.provideMerge(parts))
}

/** The full local stack over a file (or `:memory:`), with production ids. */
export const layer = (config: Config) => layerWithIds(config).pipe(Layer.provide(IdGen.layer))

/**
 * `Effect.withSpan(name)` when a tracer other than Effect's built-in one is installed (e.g. OpenTelemetry's). The
 * built-in tracer exports nothing, yet a span cost ~10 µs per call, and `Effect.fn` ~15-20 µs (it also captures a
 * stack trace): a tenth of the interactive create's whole latency, for a span nobody sees.
 */
const whenTraced =
  (name: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.tracerWith((tracer) => (tracer === builtinTracer ? self : Effect.withSpan(self, name)))

const builtinTracer = Effect.runSync(Effect.tracer)

/** SQL failures become the store's StorageError; other failures pass through. */
const storageError = <A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, SqlError.SqlError> | StorageError, R> =>
  Effect.mapError(self, (e) =>
    e instanceof SqlError.SqlError ? new StorageError({ message: e.message }) : (e as Exclude<E, SqlError.SqlError>)
  )

/** Decode view rows read through `sql` (a row that does not decode is storage corruption, not a defect). */
const fromRows = <A>(rows: ReadonlyArray<unknown>, f: (row: unknown) => ReadonlyArray<A>) =>
  Effect.try({ try: () => rows.flatMap(f), catch: (e) => new StorageError({ message: Database.messageOf(e) }) })

/**
 * A decoder of writers' input to ValidationError. Synchronous (an Either, which `yield*` runs as an Effect) and built
 * once: an Effect-returning decoder made per call cost a few µs more on every write.
 */
const validator = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema)
  return (input: unknown): Either.Either<A, ValidationError> =>
    Either.mapLeft(decode(input), (e) => new ValidationError({ message: formatError(e) }))
}

const validateCreate = validator(CreateInput)

const validatePatch = validator(PatchInput)

const RankOf = Schema.decodeUnknownSync(Schema.Struct({ rank: Schema.Number }))

const TypeCount = Schema.decodeUnknownSync(
  Schema.Struct({ type: Schema.String, version: Schema.Number, n: Schema.Number })
)
