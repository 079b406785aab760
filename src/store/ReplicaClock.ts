/**
 * The replica's hybrid logical clock: its client id and the HLC state, as a service.
 *
 * Invariants: the state starts past the greatest stamp in the log (so a restart, even with the wall clock set back,
 * never issues a stamp that sorts before one already written), and every stamp is taken with `Ref.modify`, so
 * concurrent writers get distinct, increasing stamps. Wall time comes from Effect's `Clock`.
 */
import { Clock, Context, Effect, Layer, Random, Ref } from "effect"
import * as Hlc from "../domain/Hlc.js"
import { Database } from "./Database.js"
import type { StorageError } from "./Errors.js"
import { EventLog } from "./EventLog.js"

/** The clock service. */
export interface ReplicaClock {
  readonly clientId: string
  /** A fresh stamp for a local event. */
  readonly stamp: Effect.Effect<string>
  /** Advance past a stamp seen on a remote event (ignored when it does not parse). */
  readonly observe: (hlc: string) => Effect.Effect<void>
  /** Current wall time in milliseconds (from Effect's Clock). */
  readonly now: Effect.Effect<number>
}

/** The clock tag. */
export const ReplicaClock = Context.GenericTag<ReplicaClock>("memsync/ReplicaClock")

/** Options: a fixed client id (simulations); otherwise the one stored in the database, made on first open. */
export interface Options {
  readonly clientId?: string
}

/** Build the clock: load or create the client id, then start past the log's greatest stamp. */
export const make = (options: Options = {}): Effect.Effect<ReplicaClock, StorageError, Database | EventLog> =>
  Effect.gen(function* () {
    const database = yield* Database
    const log = yield* EventLog
    const stored = yield* database.raw((db) => {
      const v = db.prepare(`SELECT value FROM memsync_meta WHERE key = 'client_id'`).pluck().get()
      return typeof v === "string" ? v : undefined
    })
    const clientId = options.clientId ?? stored ?? (yield* randomClientId)
    if (stored !== clientId) {
      yield* database.raw((db) =>
        db.prepare(`INSERT OR REPLACE INTO memsync_meta (key, value) VALUES ('client_id', ?)`).run(clientId)
      )
    }
    const max = yield* log.maxHlc
    const parsed = max === undefined ? undefined : Hlc.decode(max)
    const state = yield* Ref.make(parsed === undefined ? Hlc.initial : Hlc.fromStamp(parsed))

    const stamp = Effect.flatMap(Clock.currentTimeMillis, (now) => Ref.modify(state, (s) => Hlc.send(s, now, clientId)))
    const observe = (hlc: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const remote = Hlc.decode(hlc)
        return remote === undefined ? Effect.void : Ref.update(state, (s) => Hlc.receive(s, remote, now))
      })
    return ReplicaClock.of({ clientId, stamp, observe, now: Clock.currentTimeMillis })
  })

/** The clock over the database and log in context. */
export const layer = (options: Options = {}): Layer.Layer<ReplicaClock, StorageError, Database | EventLog> =>
  Layer.effect(ReplicaClock, make(options))

const randomClientId = Effect.gen(function* () {
  let id = ""
  for (let i = 0; i < 16; i++) id += (yield* Random.nextIntBetween(0, 16)).toString(16)
  return id
})
