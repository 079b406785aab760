/**
 * The P9 checks over a replica's requests, as the simulated network recorded them (each with its time, the fiber that
 * made it, its outcome and when the caller learned it). `ClientModel` feeds every new request to `observe`; a
 * violation throws.
 *
 * - transient failure: the same fiber retries no sooner than Retry-After, and no later than the backoff ceiling of its
 *   attempt counted from its last success, unless other requests held the line (requests are serialized);
 * - undecodable answer: the next try waits the slow schedule;
 * - 401/403: no request carries the refused token again, except `/v1/auth-check` probes spaced by the slow schedule,
 *   until a probe passes or the credentials change.
 */
import * as Policy from "../sync/Policy.js"
import type * as SimNetwork from "./SimNetwork.js"

/** What the checks saw across runs (the suite gates on it: a check that never runs proves nothing). */
export const coverage = {
  runs: 0,
  requests: 0,
  transientRetries: 0,
  boundedRetries: 0,
  retryAfterHonoured: 0,
  protocolRetries: 0,
  authEpisodes: 0,
  probes: 0,
  unparkedByProbe: 0,
  credentialChanges: 0
}

/** A P9 violation (the message names what broke). */
export class Violation extends Error {}

/**
 * What the checker knows from the requests: per fiber, its failures since its last success; per token, whether it was
 * refused and when it was last probed.
 */
export class Checker {
  seen = 0
  /** When something reset the engine's retry state out of band (an auth episode began or ended, new credentials). */
  authEventAt = -Infinity
  private readonly history: Array<SimNetwork.Call> = []
  private readonly fibers = new Map<string, { failures: number; last: SimNetwork.Call }>()
  private readonly refused = new Map<string, { since: number; probedAt: number }>()

  constructor(private readonly backoff: Policy.Backoff) {}

  isRefused(token: string): boolean {
    return this.refused.has(token)
  }

  credentialsChanged(at: number) {
    coverage.credentialChanges++
    this.refused.clear()
    this.authEventAt = at
  }

  observe(call: SimNetwork.Call) {
    coverage.requests++
    this.history.push(call)
    const episode = this.refused.get(call.token)
    if (episode !== undefined) {
      if (call.op !== "authCheck") {
        throw new Violation(`P9: ${call.op} at ${call.at} carried a token refused at ${episode.since}`)
      }
      if (call.at - episode.probedAt < this.backoff.slowMs - EPSILON) {
        throw new Violation(`P9: auth probe at ${call.at}, ${call.at - episode.probedAt} ms after the last (a storm)`)
      }
      episode.probedAt = call.at
      coverage.probes++
      if (call.outcome === "ok") {
        coverage.unparkedByProbe++
        this.refused.delete(call.token)
        this.authEventAt = call.at
      }
    }
    this.timing(call)
    if (isAuthFailure(call.outcome) && call.op !== "authCheck") {
      coverage.authEpisodes++
      this.refused.set(call.token, { since: call.doneAt ?? call.at, probedAt: call.doneAt ?? call.at })
      this.authEventAt = call.at
    }
  }

  /**
   * Requests are serialized (one at a time per replica): a retry that is due may wait for other fibers' requests.
   * True when other requests held the line without a gap from `due` until `call` went out.
   */
  private busyUntil(call: SimNetwork.Call, due: number): boolean {
    let covered = due
    for (let moved = true; moved && covered < call.at - EPSILON;) {
      moved = false
      for (const other of this.history) {
        if (other.fiber === call.fiber || other.at > covered) continue
        const end = other.doneAt ?? Infinity
        if (end > covered) {
          covered = end
          moved = true
        }
      }
    }
    return covered >= call.at - EPSILON
  }

  /** A push retry may find its events already confirmed by a pull made while it waited (and send nothing). */
  private pulledWhileWaiting(call: SimNetwork.Call, previous: SimNetwork.Call): boolean {
    return (
      call.op === "push" &&
      this.history.some((c) => c.op === "pull" && c.outcome === "ok" && c.at >= previous.at && c.at <= call.at)
    )
  }

  /** The retry timing of a fiber's request after its previous one failed. */
  private timing(call: SimNetwork.Call) {
    if (call.op === "authCheck") return
    const state = this.fibers.get(call.fiber)
    const previous = state?.last
    if (state !== undefined && previous !== undefined && previous.doneAt !== undefined) {
      const waited = call.at - previous.doneAt
      // Retry-After is a floor up to the slow spacing (Policy.transientDelayMs).
      const floor = Math.min(previous.retryAfterMs ?? 0, this.backoff.slowMs)
      const kind = classOf(previous.outcome)
      if (kind === "protocol") {
        if (waited < this.backoff.slowMs - EPSILON) {
          throw new Violation(
            `P9: retried ${waited} ms after an undecodable response (slow schedule: ${this.backoff.slowMs})`
          )
        }
        coverage.protocolRetries++
        const due = previous.doneAt + this.backoff.slowMs + EPSILON
        if (
          this.authEventAt < previous.at &&
          !this.pulledWhileWaiting(call, previous) &&
          call.at > due &&
          !this.busyUntil(call, due)
        ) {
          throw new Violation(`P9: retried ${waited} ms after an undecodable response; the slow schedule is shorter`)
        }
      }
      if (kind === "transient") {
        if (waited < floor - EPSILON) {
          throw new Violation(`P9: retried ${waited} ms after a 429 asking for ${floor} ms`)
        }
        coverage.transientRetries++
        if (floor > 0) coverage.retryAfterHonoured++
        const ceiling = Math.max(floor, Policy.ceilingMs(this.backoff, state.failures - 1))
        // Only when nothing out of band (an auth episode) restarted the step in between, and no pull took the
        // events off the queue (a pulled event is confirmed): then the retry finds nothing to push and sends nothing.
        if (this.authEventAt < previous.at && !this.pulledWhileWaiting(call, previous)) {
          coverage.boundedRetries++
          const due = previous.doneAt + ceiling + EPSILON
          if (call.at > due && !this.busyUntil(call, due)) {
            throw new Violation(
              `P9: retry ${state.failures} waited ${waited} ms; the backoff allows at most ${ceiling} ms ` +
                `and no other request held the line (did the backoff reset?)`
            )
          }
        }
      }
    }
    const kind = classOf(call.outcome)
    if (kind === "ok" || kind === "other") this.fibers.delete(call.fiber)
    else this.fibers.set(call.fiber, { failures: (state?.failures ?? 0) + 1, last: call })
  }
}

/** Slack for the virtual clock's settle rounds. */
const EPSILON = 5

const isAuthFailure = (outcome: string) =>
  outcome === "unauthorized" || outcome === "error:401" || outcome === "error:403"

const classOf = (outcome: string): "ok" | "transient" | "protocol" | "other" => {
  if (outcome === "ok") return "ok"
  if (outcome === "error:malformed") return "protocol"
  if (["drop", "lose", "cut", "error:5xx", "error:429", "error:refused"].includes(outcome)) return "transient"
  return "other"
}
