/**
 * Named crash points: places in a sync round where a replica dies. Each is detected from the test side — a network
 * hook watching the replica's requests and responses, or the driver right after a local commit — never by a flag in
 * production code.
 *
 * When a point is reached the hook calls `fire` and the simulation kills the replica at its very next yield: the
 * SQLite handle is closed (SQLite rolls back whatever transaction was open) and its link goes dead, exactly as if the
 * process had died there. A point fires at most once per arming.
 */
import type { Hook, HookPoint } from "./SimNetwork.js"

/** Every named point. */
export const CRASH_POINTS = [
  /** A push left the client; the server never sees it. */
  "before-push-arrives",
  /** The server committed a push; the client dies before it reads the answer. */
  "after-push-commit",
  /** The client got the push's answer and dies while recording it. */
  "while-recording-ack",
  /** Between two pages of one pull (the first page applied, the second requested). */
  "mid-pull",
  /** Right after a page of events arrived (while applying it). */
  "after-pull-page",
  /** A resync asked for the server's head/digest/epoch and dies with the answer in hand. */
  "during-resync-head",
  /** After an epoch reset, the resync dropped its bookkeeping and starts pulling from 0. */
  "resync-after-reset",
  /** After an epoch reset, the server committed a re-push; the client dies before reading the answer. */
  "resync-repush",
  /** A local write committed; the replica dies before it is pushed. */
  "after-local-commit",
  /** The server refused the token; the replica dies while it parks. */
  "after-auth-refused"
] as const
export type CrashPoint = (typeof CRASH_POINTS)[number]

/** What a hook needs to know about the rest of the simulation. */
export interface Context {
  /** True once the server's epoch changed after the point was armed. */
  readonly epochChanged: () => boolean
}

/**
 * The network hook that detects `point` (undefined for points the driver detects itself). `fire` is called once,
 * when the point is reached; "hang" keeps the call from ever returning (the replica dies waiting for it).
 */
export const hook = (point: CrashPoint, fire: () => void, context: Context): Hook | undefined => {
  let fired = false
  let lastPullHadMore = false
  const at = (result: "hang" | "pass"): "hang" | "pass" => {
    fired = true
    fire()
    return result
  }
  const detect = (p: HookPoint): "hang" | "pass" => {
    switch (point) {
      case "before-push-arrives":
        return p.op === "push" && p.phase === "request" ? at("hang") : "pass"
      case "after-push-commit":
        return p.op === "push" && p.phase === "response" && p.refused !== true ? at("hang") : "pass"
      case "while-recording-ack":
        return p.op === "push" && p.phase === "response" && p.refused !== true ? at("pass") : "pass"
      case "mid-pull":
        if (p.op !== "pull") return "pass"
        if (p.phase === "request" && (p.after ?? 0) > 0 && lastPullHadMore) return at("hang")
        if (p.phase === "response") lastPullHadMore = field(p.response, "hasMore") === true
        return "pass"
      case "after-pull-page":
        return p.op === "pull" && p.phase === "response" && eventCount(p.response) > 0 ? at("pass") : "pass"
      case "during-resync-head":
        return p.op === "head" && p.phase === "response" && p.refused !== true ? at("hang") : "pass"
      case "resync-after-reset":
        return p.op === "pull" && p.phase === "request" && p.after === 0 && context.epochChanged() ? at("hang") : "pass"
      case "resync-repush":
        return p.op === "push" && p.phase === "response" && p.refused !== true && context.epochChanged()
          ? at("hang")
          : "pass"
      case "after-auth-refused":
        return p.refused === true ? at("pass") : "pass"
      case "after-local-commit":
        return "pass"
    }
  }
  if (point === "after-local-commit") return undefined
  return (p) => (fired ? "pass" : detect(p))
}

const field = (value: unknown, key: string): unknown =>
  typeof value === "object" && value !== null ? Reflect.get(value, key) : undefined

const eventCount = (response: unknown): number => {
  const events = field(response, "events")
  return Array.isArray(events) ? events.length : 0
}
