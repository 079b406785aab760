/**
 * A simulated network between replicas and one in-process server running the real server logic (`ServerLog`).
 *
 * The protocol is request/response, so message faults are modelled per request:
 * - drop: the request never reaches the server; the client waits `timeoutMs` and sees a timeout.
 * - hold (reorder): a push is kept in flight and reaches the server later, after newer requests (`deliver`); the
 *   client times out and retries, so the server sees the batch again, out of order.
 * - duplicate: a push reaches the server, and a copy of it is kept in flight and delivered again later.
 * - lose: the server commits, the response is lost; the client times out (an uncertain push, when it was a push).
 * - error: the server answers 5xx, 429 with Retry-After, a body that does not decode, 401 or 403.
 * - links: `cut` (requests lost: a partition), `one-way` (requests arrive, responses are lost: an asymmetric
 *   partition) and `dead` (a crashed replica: every call fails at once and nothing reaches the server).
 * Faults are armed per replica (consumed in request order) or drawn per request from `ambient` probabilities with a
 * seeded `Random`. Tokens map to spaces like the real server, so a revoked token gives a real 401.
 *
 * Invariants: requests and responses pass through JSON and the protocol schemas, like the wire; the server always
 * runs on the simulation's clock without skew (a replica's skew never leaks into the server's drift check); every
 * request is recorded (`calls`), and every fault that fired is counted (`fired`), so coverage can be gated.
 */
import { Effect, FiberId, Random, Schema } from "effect"
import type { Envelope } from "../domain/Events.js"
import { formatError } from "../domain/Events.js"
import type { ServerLog } from "../server/ServerLog.js"
import { classify, type Observed } from "../sync/Classify.js"
import type { SyncError } from "../sync/Errors.js"
import { HeadResponse, PullResponse, PushResponse } from "../sync/Protocol.js"
import { Transport } from "../sync/Transport.js"
import { fail, type FaultKind, observedFor, serverFailure } from "./Faults.js"
import type { SimClock } from "./SimClock.js"

/** A request kind. */
export type Op = "push" | "pull" | "head" | "authCheck"

/** An error a server (or something in front of it) can answer with. */
export type ErrorKind = Exclude<FaultKind, "timeout">

/** A fault armed for one request of a replica. */
export type Armed =
  | { readonly _tag: "drop" }
  | { readonly _tag: "hold" }
  | { readonly _tag: "duplicate" }
  | { readonly _tag: "lose"; readonly op?: Op | undefined }
  | { readonly _tag: "error"; readonly kind: ErrorKind; readonly retryAfterSeconds?: number | undefined }

/** Per-request probabilities of faults drawn while chaos is on (0: off). */
export interface Ambient {
  readonly drop: number
  readonly reorder: number
  readonly duplicate: number
  readonly lostResponse: number
  readonly serverError: number
}

/** No ambient faults. */
export const NO_AMBIENT: Ambient = { drop: 0, reorder: 0, duplicate: 0, lostResponse: 0, serverError: 0 }

/** The state of a replica's link to the server. */
export type Link = "up" | "cut" | "one-way" | "dead"

/** One recorded request. */
export interface Call {
  readonly at: number
  readonly replica: string
  readonly op: Op
  readonly token: string
  /** ok · dead · cut · one-way · drop · hold · lose · error:<kind> · unauthorized · hang · server-error */
  readonly outcome: string
  /** Whether the server processed the request (it may have committed even when the client saw a failure). */
  readonly reached: boolean
  readonly retryAfterMs?: number
  /** The fiber that made the request (each engine step loop is its own fiber: retries share it). */
  readonly fiber: string
  /** When the caller got its answer or its error (a lost request or response: `at + timeoutMs`; never: undefined). */
  readonly doneAt: number | undefined
}

/** A push kept in flight, to be delivered to the server later. */
export interface InFlight {
  readonly id: number
  readonly replica: string
  readonly token: string
  readonly events: ReadonlyArray<unknown>
  readonly why: "hold" | "duplicate"
}

/** What a hook sees at a request (before the server) or a response (after the server answered). */
export interface HookPoint {
  readonly replica: string
  readonly op: Op
  readonly phase: "request" | "response"
  /** The push body, the pull `after`, as sent. */
  readonly events?: ReadonlyArray<Envelope>
  readonly after?: number
  /** The server's answer (response phase, when it answered). */
  readonly response?: unknown
  /** The token was refused (response phase, 401). */
  readonly refused?: boolean
}

/** A hook returns "hang" to keep the call from ever returning (a crash is coming). */
export type Hook = (point: HookPoint) => "pass" | "hang"

/** Options of `make`. */
export interface Options {
  readonly clock: SimClock
  readonly server: ServerLog["Type"]
  readonly space: string
  /** How long a client waits for a request or response that was lost, in virtual ms. */
  readonly timeoutMs: number
  /** Draws for ambient faults (seed it). */
  readonly random: Random.Random
  readonly ambient?: Ambient
}

/** The network and its controls. */
export interface SimNetwork {
  /** The transport a replica uses. */
  readonly transportFor: (replica: string) => Transport
  readonly server: () => ServerLog["Type"]
  /** A server whose log was replaced (a new epoch). */
  readonly replaceServer: (server: ServerLog["Type"]) => void
  readonly arm: (replica: string, faults: ReadonlyArray<Armed>) => void
  readonly armed: (replica: string) => ReadonlyArray<Armed>
  readonly setLink: (replica: string, link: Link) => void
  readonly link: (replica: string) => Link
  readonly setAmbient: (ambient: Ambient) => void
  readonly setHook: (replica: string, hook: Hook | undefined) => void
  readonly grant: (token: string) => void
  readonly revoke: (token: string) => void
  /** Pushes kept in flight, oldest first. */
  readonly inFlight: () => ReadonlyArray<InFlight>
  /** Deliver the in-flight pushes at these positions (in this order); returns what the server answered to each. */
  readonly deliver: (
    positions: ReadonlyArray<number>
  ) => Effect.Effect<ReadonlyArray<{ readonly message: InFlight; readonly response: PushResponse | undefined }>>
  /** Stop all faults: links up, nothing armed, no ambient faults (in-flight pushes stay until delivered). */
  readonly calm: () => void
  readonly calls: () => ReadonlyArray<Call>
  /** How many times each fault fired (by name), and how many pushes were committed then not answered. */
  readonly fired: () => Readonly<Record<string, number>>
}

/** Make a network over a server log. */
export const make = (options: Options): SimNetwork => {
  const { clock, space, timeoutMs, random } = options
  let server = options.server
  let ambient = options.ambient ?? NO_AMBIENT
  const tokens = new Set<string>()
  const links = new Map<string, Link>()
  const queues = new Map<string, Array<Armed>>()
  const hooks = new Map<string, Hook>()
  const held: Array<InFlight> = []
  const calls: Array<Call> = []
  const fired: Record<string, number> = {}
  let nextId = 1

  const count = (name: string) => {
    fired[name] = (fired[name] ?? 0) + 1
  }
  const record = (c: Omit<Call, "at" | "doneAt">) => {
    const at = clock.now()
    const doneAt = c.outcome === "hang" ? undefined : TIMED_OUT.has(c.outcome) ? at + timeoutMs : at
    calls.push({ at, doneAt, ...c })
  }
  /** The server's own time, whatever the calling replica's skew. */
  const onServer = <A, E>(effect: Effect.Effect<A, E>) => Effect.withClock(effect, clock.clock)
  const timeout = (message: string) => Effect.zipRight(Effect.sleep(timeoutMs), fail({ _tag: "Timeout", message }))

  /** The fault for this request: an armed one first (if it applies to `op`), else an ambient draw. */
  const nextFault = (replica: string, op: Op) =>
    Effect.gen(function* () {
      const queue = queues.get(replica) ?? []
      const i = queue.findIndex((a) => applies(a, op))
      if (i >= 0) return queue.splice(i, 1)[0]
      if (op === "authCheck") return undefined
      const draw = (p: number) => (p > 0 ? Effect.map(Random.next, (u) => u < p) : Effect.succeed(false))
      const use = <A>(e: Effect.Effect<A>) => Effect.withRandom(e, random)
      if (yield* use(draw(ambient.drop))) return { _tag: "drop" } as const
      if (yield* use(draw(ambient.serverError))) {
        const kind = yield* use(Random.choice(["5xx", "5xx", "429"] as const))
        return { _tag: "error", kind, retryAfterSeconds: 1 } as const
      }
      if (op === "push" && (yield* use(draw(ambient.reorder)))) return { _tag: "hold" } as const
      if (op === "push" && (yield* use(draw(ambient.duplicate)))) return { _tag: "duplicate" } as const
      if (yield* use(draw(ambient.lostResponse))) return { _tag: "lose" } as const
      return undefined
    })

  /** One request through links, hooks and faults to the server and back. */
  const call = <A, I>(
    replica: string,
    op: Op,
    token: string,
    schema: Schema.Schema<A, I>,
    detail: Pick<HookPoint, "events" | "after">,
    run: (server: ServerLog["Type"]) => Effect.Effect<unknown, Observed>
  ): Effect.Effect<A, SyncError> =>
    Effect.gen(function* () {
      clock.touch()
      const fiber = FiberId.threadName(yield* Effect.fiberId)
      const hook = hooks.get(replica)
      const link = links.get(replica) ?? "up"
      if (link === "dead") {
        record({ replica, op, token, fiber, outcome: "dead", reached: false })
        return yield* fail({ _tag: "Network", message: "connect ECONNREFUSED (replica stopped)" })
      }
      if (hook !== undefined && hook({ replica, op, phase: "request", ...detail }) === "hang") {
        record({ replica, op, token, fiber, outcome: "hang", reached: false })
        return yield* Effect.never
      }
      if (link === "cut") {
        count("partition")
        record({ replica, op, token, fiber, outcome: "cut", reached: false })
        return yield* timeout("request timed out (partitioned)")
      }
      const fault = yield* nextFault(replica, op)
      if (fault?._tag === "drop") {
        count("drop")
        record({ replica, op, token, fiber, outcome: "drop", reached: false })
        return yield* timeout("request timed out (dropped)")
      }
      if (fault?._tag === "error") {
        count(fault.kind === "401" || fault.kind === "403" ? "authError" : "serverError")
        const observed = observedFor(fault.kind, fault.retryAfterSeconds ?? 1)
        record({
          replica,
          op,
          token,
          fiber,
          outcome: `error:${fault.kind}`,
          reached: false,
          ...(fault.kind === "429" ? { retryAfterMs: (fault.retryAfterSeconds ?? 1) * 1000 } : {})
        })
        return yield* fail(observed)
      }
      if (fault?._tag === "hold" && detail.events !== undefined) {
        count("reorder")
        held.push({ id: nextId++, replica, token, events: wire(detail.events), why: "hold" })
        record({ replica, op, token, fiber, outcome: "hold", reached: false })
        return yield* timeout("request timed out (held in the network)")
      }
      if (!tokens.has(token)) {
        count("unauthorized")
        record({ replica, op, token, fiber, outcome: "unauthorized", reached: false })
        if (hook !== undefined && hook({ replica, op, phase: "response", ...detail, refused: true }) === "hang") {
          return yield* Effect.never
        }
        return yield* fail({ _tag: "Status", status: 401, message: "unknown token" })
      }
      const answered = yield* Effect.either(onServer(run(server)))
      if (answered._tag === "Left") {
        record({ replica, op, token, fiber, outcome: "server-error", reached: true })
        return yield* fail(answered.left)
      }
      const body = answered.right
      if (fault?._tag === "duplicate" && detail.events !== undefined) {
        count("duplicate")
        held.push({ id: nextId++, replica, token, events: wire(detail.events), why: "duplicate" })
      }
      if (hook !== undefined && hook({ replica, op, phase: "response", ...detail, response: body }) === "hang") {
        if (op === "push") count("uncertainPush")
        record({ replica, op, token, fiber, outcome: "hang", reached: true })
        return yield* Effect.never
      }
      if (link === "one-way" || fault?._tag === "lose") {
        count(link === "one-way" ? "partition" : "lostResponse")
        if (op === "push") count("uncertainPush")
        record({ replica, op, token, fiber, outcome: link === "one-way" ? "one-way" : "lose", reached: true })
        return yield* timeout("response lost after the server answered")
      }
      record({ replica, op, token, fiber, outcome: "ok", reached: true })
      // Through JSON and the protocol schema, as over the wire.
      return yield* Schema.decodeUnknown(schema)(JSON.parse(JSON.stringify(body) ?? "null")).pipe(
        Effect.mapError((e) => classify({ _tag: "Undecodable", message: formatError(e) }))
      )
    })

  const transportFor = (replica: string): Transport =>
    Transport.of({
      push: (token, events) =>
        call(replica, "push", token, PushResponse, { events }, (s) =>
          Effect.mapError(s.push(space, wire(events)), serverFailure)
        ),
      pull: (token, after, limit) =>
        call(replica, "pull", token, PullResponse, { after }, (s) =>
          Effect.mapError(s.pull(space, after, limit), serverFailure)
        ),
      head: (token) =>
        call(replica, "head", token, HeadResponse, {}, (s) => Effect.mapError(s.head(space), serverFailure)),
      authCheck: (token) =>
        Effect.asVoid(call(replica, "authCheck", token, Schema.Unknown, {}, () => Effect.succeed(null)))
    })

  const deliver = (positions: ReadonlyArray<number>) =>
    Effect.gen(function* () {
      const chosen = Array.from(new Set(positions.filter((p) => p >= 0 && p < held.length)))
      const messages = chosen.map((p) => held[p]!)
      for (const m of messages) held.splice(held.indexOf(m), 1)
      const out: Array<{ message: InFlight; response: PushResponse | undefined }> = []
      for (const message of messages) {
        clock.touch()
        if (!tokens.has(message.token)) {
          out.push({ message, response: undefined })
          continue
        }
        const response = yield* Effect.option(onServer(server.push(space, message.events)))
        out.push({ message, response: response._tag === "Some" ? response.value : undefined })
      }
      return out
    })

  return {
    transportFor,
    server: () => server,
    replaceServer: (next) => {
      server = next
    },
    arm: (replica, faults) => {
      queues.set(replica, [...(queues.get(replica) ?? []), ...faults])
    },
    armed: (replica) => queues.get(replica) ?? [],
    setLink: (replica, link) => {
      links.set(replica, link)
    },
    link: (replica) => links.get(replica) ?? "up",
    setAmbient: (next) => {
      ambient = next
    },
    setHook: (replica, hook) => {
      if (hook === undefined) hooks.delete(replica)
      else hooks.set(replica, hook)
    },
    grant: (token) => {
      tokens.add(token)
    },
    revoke: (token) => {
      tokens.delete(token)
    },
    inFlight: () => held.slice(),
    deliver,
    calm: () => {
      for (const [replica, link] of links) if (link !== "dead") links.set(replica, "up")
      queues.clear()
      ambient = NO_AMBIENT
    },
    calls: () => calls,
    fired: () => ({ ...fired })
  }
}

/** Outcomes the caller learns of only when its timeout fires. */
const TIMED_OUT: ReadonlySet<string> = new Set(["cut", "drop", "hold", "one-way", "lose"])

const applies = (a: Armed, op: Op): boolean => {
  switch (a._tag) {
    case "hold":
    case "duplicate":
      return op === "push"
    case "lose":
      return a.op === undefined ? op !== "authCheck" : a.op === op
    case "drop":
      return op !== "authCheck"
    case "error":
      return true
  }
}

/** What goes over the wire: plain JSON values. */
const wire = (events: ReadonlyArray<Envelope>): ReadonlyArray<unknown> => JSON.parse(JSON.stringify(events))
