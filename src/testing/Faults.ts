/**
 * What an injected fault looks like to a client: the observation a transport would make on the wire, classified by
 * the production `classify` (so a test transport fails exactly as HttpTransport would). Shared by the in-memory
 * transport and the simulated network.
 */
import { Effect } from "effect"
import { classify, type Observed } from "../sync/Classify.js"
import type { SyncError } from "../sync/Errors.js"

/** A failure a server, or something in front of it, can answer with. */
export type FaultKind = "refused" | "timeout" | "5xx" | "429" | "401" | "403" | "malformed"

/** The observation for a fault (429 carries `retryAfterSeconds`). */
export const observedFor = (kind: FaultKind, retryAfterSeconds: number): Observed => {
  switch (kind) {
    case "refused":
      return { _tag: "Network", message: "connect ECONNREFUSED" }
    case "timeout":
      return { _tag: "Timeout", message: "request timed out" }
    case "5xx":
      return { _tag: "Status", status: 503, message: "service unavailable" }
    case "429":
      return { _tag: "Status", status: 429, retryAfterSeconds, message: "rate limited" }
    case "401":
      return { _tag: "Status", status: 401, message: "unauthorized" }
    case "403":
      return { _tag: "Status", status: 403, message: "forbidden" }
    case "malformed":
      return { _tag: "Undecodable", status: 200, message: "body does not decode" }
  }
}

/** How the HTTP layer would report a server log's failure: 413 for a batch over the limit, else 500. */
export const serverFailure = (e: { readonly _tag: string; readonly message: string }): Observed =>
  e._tag === "PayloadTooLarge"
    ? { _tag: "Status", status: 413, message: e.message }
    : { _tag: "Status", status: 500, message: e.message }

/** Fail with the typed error of an observation. */
export const fail = (o: Observed): Effect.Effect<never, SyncError> => Effect.fail(classify(o))
