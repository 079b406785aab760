/**
 * What the sync engine tells the outside world, as one value in a `SubscriptionRef` (watchers get a Stream).
 */
import { Schema } from "effect"

/** The engine's state. */
export const SyncState = Schema.Literal("idle", "syncing", "offline", "auth-failed", "disabled")
export type SyncState = typeof SyncState.Type

/** A snapshot of the engine. Times are epoch milliseconds from Effect's Clock. */
export const SyncStatus = Schema.Struct({
  state: SyncState,
  pending: Schema.Number,
  deadLetters: Schema.Number,
  /** Ids under which the server holds another body than this replica: the views differ there (docs/sync.md). */
  idConflicts: Schema.Number,
  lastPushAt: Schema.optional(Schema.Number),
  lastPullAt: Schema.optional(Schema.Number),
  lastError: Schema.optional(Schema.String),
  nextRetryAt: Schema.optional(Schema.Number),
  firstPullDone: Schema.Boolean
})
export type SyncStatus = typeof SyncStatus.Type

/** The status before anything happened. */
export const initial = (state: SyncState): SyncStatus => ({
  state,
  pending: 0,
  deadLetters: 0,
  idConflicts: 0,
  firstPullDone: false
})

/** What one `syncNow` did. */
export interface SyncSummary {
  readonly pushed: number
  readonly pulled: number
  readonly rejected: number
  readonly resynced: boolean
  readonly durationMs: number
}
