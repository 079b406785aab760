/**
 * Deliberately wrong implementations, substituted through the same seams the production code takes its pieces from
 * (the server log, the ledger, the retry policy, the transport). `npm run test:mutants` runs the convergence suites
 * with each one and shows that they fail: a suite that passes with a planted bug proves nothing.
 *
 * Nothing here is reachable from production code, and production code has no flag that turns any of it on.
 */
import { Clock, Duration, Effect, Either, Layer, Random, Schedule, type Scope } from "effect"
import * as Digest from "../../src/domain/Digest.js"
import * as Events from "../../src/domain/Events.js"
import type * as ServerLog from "../../src/server/ServerLog.js"
import { Database } from "../../src/store/Database.js"
import { TransientError } from "../../src/sync/Errors.js"
import * as Ledger from "../../src/sync/Ledger.js"
import * as Policy from "../../src/sync/Policy.js"
import type { PulledEvent } from "../../src/sync/Protocol.js"
import type { Transport } from "../../src/sync/Transport.js"
import type * as SimReplica from "../../src/testing/SimReplica.js"

/**
 * No server dedup: every valid event pushed is appended with a new seq, even one the space already holds (a retried
 * push after a lost response, a duplicated message).
 */
export const serverWithoutDedup: Effect.Effect<ServerLog.Service, never, Scope.Scope> = Effect.gen(function* () {
  const epoch = `naive-${yield* Random.nextIntBetween(0, 1_000_000_000)}`
  const spaces = new Map<string, Array<PulledEvent>>()
  const log = (space: string) => {
    const found = spaces.get(space)
    if (found !== undefined) return found
    const fresh: Array<PulledEvent> = []
    spaces.set(space, fresh)
    return fresh
  }
  const pull = (space: string, after: number, limit: number) =>
    Effect.sync(() => {
      const events = log(space).slice(after, after + limit)
      return { events, head: log(space).length, hasMore: after + events.length < log(space).length }
    })
  return {
    epoch,
    limits: { maxEventBytes: 256 * 1024, maxDriftMs: 5 * 60_000, maxBatch: 1000, maxPullLimit: 10_000 },
    push: (space, values) =>
      Effect.gen(function* () {
        yield* Clock.currentTimeMillis
        const events = log(space)
        const results = values.map((value) => {
          const decoded = Events.decodeEnvelope(value)
          if (Either.isLeft(decoded)) {
            return { status: "rejected" as const, id: "?", reason: "invalid" as const, message: decoded.left }
          }
          events.push({ seq: events.length + 1, ...decoded.right })
          return { status: "accepted" as const, id: decoded.right.id, seq: events.length }
        })
        return { results, head: events.length }
      }),
    pull,
    pullBody: (space, after, limit) =>
      Effect.map(pull(space, after, limit), (page) => Buffer.from(JSON.stringify(page))),
    head: (space) =>
      Effect.sync(() => ({
        head: log(space).length,
        digest: Digest.of(log(space).map((e) => e.id)),
        epoch
      }))
  }
})

/** 401/403 treated as transient: the transport reports a refused credential as a server error, so it is retried. */
export const authAsTransient = (inner: Transport): Transport => {
  const reclassify = <A, E extends { readonly _tag: string; readonly message: string }>(
    effect: Effect.Effect<A, E>
  ): Effect.Effect<A, E | TransientError> =>
    Effect.catchIf(
      effect,
      (e) => e._tag === "AuthError",
      (e) => Effect.fail(new TransientError({ kind: "server", status: 503, message: e.message }))
    )
  return {
    push: (token, events) => reclassify(inner.push(token, events)),
    pull: (token, after, limit) => reclassify(inner.pull(token, after, limit)),
    head: (token) => reclassify(inner.head(token)),
    authCheck: (token) => reclassify(inner.authCheck(token))
  }
}

/** A ledger that wraps the real one, changing some of its operations. */
const ledgerWith = (change: (real: Ledger.Ledger, database: Database) => Partial<Ledger.Ledger>) =>
  Layer.effect(
    Ledger.Ledger,
    Effect.gen(function* () {
      const real = yield* Ledger.make
      const database = yield* Database
      return { ...real, ...change(real, database) }
    })
  )

/**
 * Ack before the durable commit: a batch leaves the outbox when it is read for sending, before the server has it.
 * A push that then fails has lost its events.
 */
export const ackBeforeCommit = ledgerWith((real, database) => ({
  outboxBatch: (limit) =>
    Effect.tap(real.outboxBatch(limit), (batch) =>
      database.raw((db) => {
        const leave = db.prepare(`DELETE FROM outbox WHERE seq = ?`)
        for (const e of batch) leave.run(e.seq)
      })
    )
}))

/** Non-atomic page apply: the cursor moves in its own transaction, before the page's events are stored. */
export const nonAtomicPageApply = ledgerWith((real) => ({
  applyPull: (events, cursor) =>
    Effect.gen(function* () {
      const current = yield* real.cursor
      if (cursor > current) yield* real.set("cursor", String(cursor))
      // A separate transaction is a separate trip through the database lock: other fibers (and a crash) run here.
      yield* Effect.yieldNow()
      return yield* real.applyPull(events, cursor)
    })
}))

/** A resync that drops pending events: forgetting the old server's log empties the outbox, and nothing re-pushes. */
export const resyncDropsPending = ledgerWith((real, database) => ({
  resetForEpoch: (epoch) =>
    Effect.zipRight(
      real.resetForEpoch(epoch),
      database.raw((db) => db.prepare(`DELETE FROM outbox`).run().changes * 0)
    )
}))

/**
 * Bookkeeping before the epoch is known: first contact stores no epoch, so push and pull record server seqs for a log
 * whose identity the replica does not know (the next resync then adopts an epoch over them).
 */
export const seqsBeforeEpoch = ledgerWith(() => ({
  firstContact: () => Effect.succeed("kept" as const)
}))

/** A backoff that never resets: one attempt counter for the replica's whole life, not one per run of a step. */
export const backoffNeverReset: Layer.Layer<Policy.RetryPolicy> = Layer.sync(Policy.RetryPolicy, () => {
  let attempts = 0
  return {
    retry: <E extends Policy.StepError>(
      b: Policy.Backoff,
      onRetry: (error: E, delayMs: number) => Effect.Effect<void> = () => Effect.void
    ): Schedule.Schedule<[E, number], E> =>
      Schedule.identity<E>().pipe(
        Schedule.intersect(Schedule.count),
        Schedule.whileInput((e: E) => e._tag === "TransientError" || e._tag === "ProtocolError"),
        Schedule.addDelayEffect(([error]) =>
          Effect.gen(function* () {
            const u = yield* Random.next
            const ms = Policy.delayFor(b, error, attempts++, u) ?? 0
            yield* onRetry(error, ms)
            return Duration.millis(ms)
          })
        )
      )
  }
})

/** Replica parts with one piece replaced. */
export const parts = (change: Partial<SimReplica.Parts>): SimReplica.Parts => ({
  ledger: Ledger.layer,
  policy: Policy.layer,
  ...change
})
