/**
 * Hybrid logical clock: pure stamp arithmetic and a lexically sortable encoding.
 *
 * Invariants:
 * - `send` returns a stamp strictly greater than every stamp this clock issued or received before.
 * - `receive` advances the clock past the remote stamp, so anything written after seeing an event sorts after it.
 * - The encoding sorts lexically in the same order as (wall, counter, clientId), so SQL can compare stamps as text.
 *
 * Encoding: `WWWWWWWWWWWWWWW:CCCCCC:client` — wall-clock milliseconds (15 digits), a logical counter (6 digits)
 * and the client id. A counter that would overflow moves the wall forward by one millisecond instead.
 */
import { Schema } from "effect"

/** A client id: 1–64 characters of `[A-Za-z0-9_-]` (all sort above the space used in order keys). */
export const ClientId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_-]{1,64}$/, { message: () => "client id must be 1-64 characters of [A-Za-z0-9_-]" })
)
export type ClientId = typeof ClientId.Type

/** The decoded parts of a stamp. */
export interface Hlc {
  readonly wall: number
  readonly counter: number
  readonly clientId: string
}

/** The state a replica keeps between stamps. */
export interface HlcState {
  readonly wall: number
  readonly counter: number
}

const WALL_DIGITS = 15
const COUNTER_DIGITS = 6
const MAX_COUNTER = 10 ** COUNTER_DIGITS - 1

/** Where the client id starts in an encoded stamp (`wall:counter:` comes first, fixed width). */
export const CLIENT_OFFSET = WALL_DIGITS + 1 + COUNTER_DIGITS + 1
const STAMP = /^(\d{15}):(\d{6}):([A-Za-z0-9_-]{1,64})$/

/** An encoded stamp (validated shape). */
export const Stamp = Schema.String.pipe(
  Schema.pattern(STAMP, { message: () => "hlc must look like WWWWWWWWWWWWWWW:CCCCCC:clientId" })
)

/** Default bound on how far ahead of a receiver's wall clock a stamp may be: 5 minutes. */
export const DEFAULT_MAX_DRIFT_MS = 5 * 60 * 1000

/** The clock before it has issued anything. */
export const initial: HlcState = { wall: 0, counter: 0 }

/** Encode a stamp; it sorts lexically like (wall, counter, clientId). */
export const encode = (h: Hlc): string =>
  `${String(h.wall).padStart(WALL_DIGITS, "0")}:${String(h.counter).padStart(COUNTER_DIGITS, "0")}:${h.clientId}`

/** Decode a stamp, or undefined when it is not one. */
export const decode = (s: string): Hlc | undefined => {
  const m = STAMP.exec(s)
  if (m === null) return undefined
  return { wall: Number(m[1]), counter: Number(m[2]), clientId: m[3]! }
}

/** Issue a stamp for a local event at wall time `now`. */
export const send = (state: HlcState, now: number, clientId: string): readonly [string, HlcState] => {
  const wall = Math.max(state.wall, now)
  const next = normalize(wall, wall === state.wall ? state.counter + 1 : 0)
  return [encode({ ...next, clientId }), next]
}

/** Advance the clock past a remote stamp seen at wall time `now`. */
export const receive = (state: HlcState, remote: Hlc, now: number): HlcState => {
  const wall = Math.max(state.wall, remote.wall, now)
  let counter = 0
  if (wall === state.wall && wall === remote.wall) counter = Math.max(state.counter, remote.counter) + 1
  else if (wall === state.wall) counter = state.counter + 1
  else if (wall === remote.wall) counter = remote.counter + 1
  return normalize(wall, counter)
}

/** The state that follows a stamp that was already issued or received (used when reopening a log). */
export const fromStamp = (h: Hlc): HlcState => ({ wall: h.wall, counter: h.counter })

/** How many milliseconds a stamp is ahead of `now` (0 when it is not ahead). */
export const driftAhead = (h: Hlc, now: number): number => Math.max(0, h.wall - now)

/** True when a stamp is further than `maxDrift` ahead of the wall clock `now`. */
export const isTooFarAhead = (h: Hlc, now: number, maxDrift: number = DEFAULT_MAX_DRIFT_MS): boolean =>
  driftAhead(h, now) > maxDrift

const normalize = (wall: number, counter: number): HlcState =>
  counter > MAX_COUNTER ? { wall: wall + 1, counter: 0 } : { wall, counter }
