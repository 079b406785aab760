/**
 * How a replica talks to a sync server. Every failure is already classified into one typed error (Classify.ts), so
 * the engine never sees a raw HTTP or socket error.
 *
 * Implementations: `HttpTransport` (the real thing), and the in-memory transport in `src/testing/` (runs the real
 * server logic in-process, with fault injection).
 */
import { Context, type Effect } from "effect"
import type { Envelope } from "../domain/Events.js"
import type { SyncError } from "./Errors.js"
import type { HeadResponse, PullResponse, PushResponse } from "./Protocol.js"

/** The transport service. Each call carries the bearer token to use. */
export interface Transport {
  readonly push: (token: string, events: ReadonlyArray<Envelope>) => Effect.Effect<PushResponse, SyncError>
  readonly pull: (token: string, after: number, limit: number) => Effect.Effect<PullResponse, SyncError>
  readonly head: (token: string) => Effect.Effect<HeadResponse, SyncError>
  readonly authCheck: (token: string) => Effect.Effect<void, SyncError>
}

/** The transport tag. */
export const Transport = Context.GenericTag<Transport>("memsync/Transport")
