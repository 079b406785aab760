/**
 * Error classification: a pure function from what was observed on the wire to exactly one typed error.
 *
 * 401/403 → AuthError (never retried by backoff: retrying a refused credential is a retry storm).
 * refused/reset/DNS, timeouts, 408, 425, 429, 5xx → TransientError (backoff; 429's Retry-After is a floor).
 * a body that does not decode, any other status → ProtocolError (slow schedule: a bug will not fix itself).
 */
import { AuthError, ProtocolError, TransientError, type SyncError } from "./Errors.js"

/** What a transport saw when a call failed. */
export type Observed =
  | { readonly _tag: "Status"; readonly status: number; readonly retryAfterSeconds?: number; readonly message: string }
  | { readonly _tag: "Network"; readonly message: string }
  | { readonly _tag: "Timeout"; readonly message: string }
  | { readonly _tag: "Undecodable"; readonly status?: number; readonly message: string }

/** The one typed error for an observation. */
export const classify = (o: Observed): SyncError => {
  switch (o._tag) {
    case "Network":
      return new TransientError({ kind: "unreachable", message: o.message })
    case "Timeout":
      return new TransientError({ kind: "timeout", message: o.message })
    case "Undecodable":
      return new ProtocolError({ ...(o.status === undefined ? {} : { status: o.status }), message: o.message })
    case "Status":
      return fromStatus(o.status, o.message, o.retryAfterSeconds)
  }
}

const fromStatus = (status: number, message: string, retryAfterSeconds?: number): SyncError => {
  if (status === 401 || status === 403) return new AuthError({ status, message })
  if (status === 429) {
    return new TransientError({
      kind: "rate-limited",
      status,
      message,
      ...(retryAfterSeconds === undefined || !Number.isFinite(retryAfterSeconds) || retryAfterSeconds < 0
        ? {}
        : { retryAfterMs: Math.round(retryAfterSeconds * 1000) })
    })
  }
  if (status === 408 || status === 425) return new TransientError({ kind: "timeout", status, message })
  if (status >= 500 && status <= 599) return new TransientError({ kind: "server", status, message })
  return new ProtocolError({ status, message })
}

/** Parse a `Retry-After` header: delta seconds, or an HTTP date relative to `now` (ms). */
export const parseRetryAfter = (value: string | undefined, now: number): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed)
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, (date - now) / 1000)
}
