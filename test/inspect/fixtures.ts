/**
 * Fixtures of the inspection tests: hand-made events (named writers, stamps chosen by the test), replica and server
 * databases in temp files, and readers of a database's view.
 */
import { Effect, Layer, TestClock } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import type { Envelope } from "../../src/domain/Events.js"
import type { MemoryState } from "../../src/domain/Fold.js"
import * as Hlc from "../../src/domain/Hlc.js"
import type { MemoryFields, Patch } from "../../src/domain/Memory.js"
import { v7 } from "../../src/domain/Uuid.js"
import * as EventSource from "../../src/inspect/EventSource.js"
import * as ServerLog from "../../src/server/ServerLog.js"
import * as Materializer from "../../src/store/Materializer.js"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import * as Ledger from "../../src/sync/Ledger.js"

/** Wall time of the first events (2025-01-01T00:00:00Z). */
export const T0 = Date.UTC(2025, 0, 1)

const dirs: Array<string> = []
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

/** A fresh temp directory (removed after the file's tests). */
export const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "memsync-inspect-"))
  dirs.push(dir)
  return dir
}

/** A path in a fresh temp directory. */
export const tempFile = (name: string): string => join(tempDir(), name)

let counter = 0
const eventId = (wall: number): string => {
  const random = new Uint8Array(10)
  new DataView(random.buffer).setUint32(0, ++counter)
  return v7(wall, random)
}

/** A stamp: `offset` ms after T0, with a logical counter, written by `clientId`. */
export const stamp = (clientId: string, offset: number, logical = 0): string =>
  Hlc.encode({ wall: T0 + offset, counter: logical, clientId })

/** A `memory.created` by `clientId` at `offset` ms after T0. */
export const created = (memoryId: string, clientId: string, offset: number, fields: Partial<MemoryFields> = {}) => {
  const wall = T0 + offset
  const e: Envelope = {
    id: eventId(wall),
    type: "memory.created",
    version: 1,
    payload: {
      id: memoryId,
      content: `memory ${memoryId}`,
      category: "general",
      tags: [],
      keywords: [],
      importance: 0.5,
      sensitive: false,
      ...fields,
      createdAt: wall,
      updatedAt: wall
    },
    hlc: stamp(clientId, offset),
    clientId
  }
  return e
}

/** A `memory.updated` by `clientId` at `offset` ms after T0. */
export const updated = (memoryId: string, clientId: string, offset: number, patch: Patch) => {
  const wall = T0 + offset
  const e: Envelope = {
    id: eventId(wall),
    type: "memory.updated",
    version: 1,
    payload: { id: memoryId, patch, updatedAt: wall },
    hlc: stamp(clientId, offset),
    clientId
  }
  return e
}

/** A `memory.deleted` by `clientId` at `offset` ms after T0. */
export const deleted = (memoryId: string, clientId: string, offset: number) => {
  const wall = T0 + offset
  const e: Envelope = {
    id: eventId(wall),
    type: "memory.deleted",
    version: 1,
    payload: { id: memoryId, deletedAt: wall },
    hlc: stamp(clientId, offset),
    clientId
  }
  return e
}

/** An event of a kind this build does not know. */
export const unknownKind = (memoryId: string, clientId: string, offset: number) => {
  const e: Envelope = {
    id: eventId(T0 + offset),
    type: "memory.pinned",
    version: 1,
    payload: { id: memoryId, pinned: true },
    hlc: stamp(clientId, offset),
    clientId
  }
  return e
}

/** The replica store over `filename`. */
export const replica = (filename: string) => MemoryStore.layer({ filename, clientId: "replica" })

/** Ingest events (in this order, batches of `batch`) into the replica at `filename`. */
export const ingest = (filename: string, events: ReadonlyArray<Envelope>, batch = 1_000) =>
  Effect.gen(function* () {
    const store = yield* MemoryStore.MemoryStore
    for (let i = 0; i < events.length; i += batch) yield* store.ingest(events.slice(i, i + batch))
  }).pipe(Effect.provide(replica(filename)))

/** Record events as rejected by a server (dead letters), as the sync engine does after a push. */
export const deadLetter = (filename: string, ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const ledger = yield* Ledger.Ledger
    yield* ledger.recordPush(
      ids.map((id) => ({ status: "rejected" as const, id, reason: "invalid" as const, message: "planted by a test" })),
      T0,
      yield* ledger.generation
    )
  }).pipe(Effect.provide(Ledger.layer.pipe(Layer.provideMerge(replica(filename)))))

/** Record events as accepted by a server at the given seqs (confirmed), as the sync engine does after a push. */
export const confirm = (filename: string, acks: ReadonlyArray<{ readonly id: string; readonly seq: number }>) =>
  Effect.gen(function* () {
    const ledger = yield* Ledger.Ledger
    yield* ledger.recordPush(
      acks.map((a) => ({ status: "accepted" as const, id: a.id, seq: a.seq })),
      T0,
      yield* ledger.generation
    )
  }).pipe(Effect.provide(Ledger.layer.pipe(Layer.provideMerge(replica(filename)))))

/** Write memories locally, as a user does (each create waits in the outbox); returns their events' ids, in order. */
export const writeLocal = (filename: string, contents: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const store = yield* MemoryStore.MemoryStore
    const ids: Array<string> = []
    for (const content of contents) {
      const memory = yield* store.create({ content })
      const [event] = yield* store.history(memory.id)
      if (event !== undefined) ids.push(event.id)
    }
    return ids
  }).pipe(Effect.provide(replica(filename)))

/**
 * A replica in every sync state: five events pulled from elsewhere (unconfirmed: ingested without seqs), then three
 * local creates: one confirmed at server seq 6, one dead-lettered (`invalid: planted by a test`), one pending.
 */
export const syncedReplica = (filename: string) =>
  Effect.gen(function* () {
    const remote = [
      created("m1", "a", 1),
      updated("m1", "b", 2, { content: "b's words" }),
      created("m2", "b", 3),
      deleted("m2", "a", 4),
      updated("m1", "a", 5, { tags: ["t"] })
    ]
    yield* ingest(filename, remote)
    const [confirmed, rejected, pending] = yield* writeLocal(filename, [
      "mine, synced",
      "mine, refused",
      "mine, waiting"
    ])
    if (confirmed === undefined || rejected === undefined || pending === undefined) {
      return yield* Effect.die(new Error("three local writes expected"))
    }
    yield* confirm(filename, [{ id: confirmed, seq: 6 }])
    yield* deadLetter(filename, [rejected])
    return { remote, confirmed, rejected, pending }
  })

/** Push events into `space` of the server database at `filename` (the test clock is moved to accept their stamps). */
export const serve = (filename: string, space: string, events: ReadonlyArray<Envelope>) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(T0 + 86_400_000)
    const log = yield* ServerLog.ServerLog
    for (let i = 0; i < events.length; i += 1_000) {
      const r = yield* log.push(space, events.slice(i, i + 1_000))
      for (const x of r.results) if (x.status === "rejected") return yield* Effect.die(new Error(x.message))
    }
  }).pipe(Effect.provide(ServerLog.layer({ filename })))

/** Every row of a replica's view, as fold states sorted by id. */
export const viewOf = (filename: string) =>
  Effect.flatMap(Materializer.Materializer, (m) => m.readStates()).pipe(
    Effect.map(sortStates),
    Effect.provide(replica(filename))
  )

/** States sorted by id (for deep equality). */
export const sortStates = (states: Map<string, MemoryState>) =>
  [...states.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

/** Run `effect` over the event source of `filename` (and `space`). */
export const withSource =
  (filename: string, space?: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.provide(effect, EventSource.layer({ filename, space }))
