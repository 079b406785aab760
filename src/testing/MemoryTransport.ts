/**
 * An in-process transport that runs the real server logic (`ServerLog`) without HTTP, with fault injection.
 *
 * Faults (each consumed in call order): fail the next N calls with a class (refused, timeout, 5xx, 429 with
 * Retry-After, 401, 403, malformed body), commit then lose the response, delay, partition. Tokens map to spaces as on
 * the real server, so a revoked token gives a real 401. Every call is recorded, so tests can count requests.
 * Requests and responses pass through JSON and the protocol schemas, like the wire.
 */
import { Context, Duration, Effect, Layer, Ref, Schema } from "effect"
import type { Envelope } from "../domain/Events.js"
import { formatError } from "../domain/Events.js"
import type { ServerLog } from "../server/ServerLog.js"
import { classify, type Observed } from "../sync/Classify.js"
import type { SyncError } from "../sync/Errors.js"
import { HeadResponse, PullResponse, PushResponse } from "../sync/Protocol.js"
import { Transport } from "../sync/Transport.js"
import { fail, type FaultKind, observedFor, serverFailure } from "./Faults.js"

/** An injectable failure class. */
export type { FaultKind } from "./Faults.js"

/** One recorded call. */
export interface Call {
  readonly op: "push" | "pull" | "head" | "authCheck"
  readonly token: string
  /** ok · fault:<kind> · lost (committed, response dropped) · partitioned · unauthorized */
  readonly outcome: string
}

/** The fault-injection controls. */
export interface Controls {
  /** Fail the next `n` calls with `kind` (429 carries `retryAfterSeconds`, default 1). */
  readonly failNext: (n: number, kind: FaultKind, retryAfterSeconds?: number) => Effect.Effect<void>
  /** Let the server commit the next `n` calls (of `op`, if given) but drop their responses (a client timeout). */
  readonly loseNext: (n: number, op?: Call["op"]) => Effect.Effect<void>
  /** Delay every call by `ms` of (Test)Clock time. */
  readonly setDelay: (ms: number) => Effect.Effect<void>
  /** While on, every call fails as if the connection were refused. */
  readonly partition: (on: boolean) => Effect.Effect<void>
  readonly setToken: (token: string, space: string) => Effect.Effect<void>
  readonly revokeToken: (token: string) => Effect.Effect<void>
  readonly calls: Effect.Effect<ReadonlyArray<Call>>
  readonly clearCalls: Effect.Effect<void>
  /** Talk to another server from now on (a server whose log was replaced: new epoch). */
  readonly replaceServer: (server: ServerLog["Type"]) => Effect.Effect<void>
}

/** The controls tag (provided next to the transport by `layer`). */
export class MemoryTransportControls extends Context.Tag("memsync/testing/MemoryTransportControls")<
  MemoryTransportControls,
  Controls
>() {}

interface State {
  readonly pending: ReadonlyArray<{ readonly kind: FaultKind; readonly retryAfterSeconds: number }>
  readonly lose: ReadonlyArray<Call["op"] | undefined>
  readonly delayMs: number
  readonly partitioned: boolean
  readonly tokens: ReadonlyMap<string, string>
  readonly calls: ReadonlyArray<Call>
  readonly server: ServerLog["Type"]
}

/** Make a transport over a server log, with `tokens` mapping bearer tokens to spaces. */
export const make = (server: ServerLog["Type"], tokens: Readonly<Record<string, string>>) =>
  Effect.gen(function* () {
    const state = yield* Ref.make<State>({
      pending: [],
      lose: [],
      delayMs: 0,
      partitioned: false,
      tokens: new Map(Object.entries(tokens)),
      calls: [],
      server
    })
    const record = (call: Call) => Ref.update(state, (s) => ({ ...s, calls: [...s.calls, call] }))

    /** Run one call through the fault model, then the server, then the wire schema. */
    const call = <A, I>(
      op: Call["op"],
      token: string,
      schema: Schema.Schema<A, I>,
      run: (space: string, server: ServerLog["Type"]) => Effect.Effect<unknown, Observed>
    ): Effect.Effect<A, SyncError> =>
      Effect.gen(function* () {
        const s = yield* Ref.get(state)
        if (s.delayMs > 0) yield* Effect.sleep(Duration.millis(s.delayMs))
        if (s.partitioned) {
          yield* record({ op, token, outcome: "partitioned" })
          return yield* fail({ _tag: "Network", message: "connect ECONNREFUSED (partitioned)" })
        }
        const fault = s.pending[0]
        if (fault !== undefined) {
          yield* Ref.update(state, (x) => ({ ...x, pending: x.pending.slice(1) }))
          yield* record({ op, token, outcome: `fault:${fault.kind}` })
          return yield* fail(observedFor(fault.kind, fault.retryAfterSeconds))
        }
        const space = s.tokens.get(token)
        if (space === undefined) {
          yield* record({ op, token, outcome: "unauthorized" })
          return yield* fail({ _tag: "Status", status: 401, message: "unknown token" })
        }
        const body = yield* Effect.mapError(run(space, s.server), classify)
        const lost = s.lose.findIndex((o) => o === undefined || o === op)
        if (lost >= 0) {
          yield* Ref.update(state, (x) => ({ ...x, lose: x.lose.filter((_, i) => i !== lost) }))
          yield* record({ op, token, outcome: "lost" })
          return yield* fail({ _tag: "Timeout", message: "response lost after the server committed" })
        }
        yield* record({ op, token, outcome: "ok" })
        // Through JSON and the protocol schema, as over the wire.
        return yield* Schema.decodeUnknown(schema)(JSON.parse(JSON.stringify(body) ?? "null")).pipe(
          Effect.mapError((e) => classify({ _tag: "Undecodable", message: formatError(e) }))
        )
      })

    const transport = Transport.of({
      push: (token, events: ReadonlyArray<Envelope>) =>
        call("push", token, PushResponse, (space, server) =>
          Effect.mapError(server.push(space, JSON.parse(JSON.stringify(events))), serverFailure)
        ),
      pull: (token, after, limit) =>
        call("pull", token, PullResponse, (space, server) =>
          Effect.mapError(server.pull(space, after, limit), serverFailure)
        ),
      head: (token) =>
        call("head", token, HeadResponse, (space, server) => Effect.mapError(server.head(space), serverFailure)),
      authCheck: (token) => Effect.asVoid(call("authCheck", token, Schema.Unknown, () => Effect.succeed(null)))
    })

    const controls: Controls = {
      failNext: (n, kind, retryAfterSeconds = 1) =>
        Ref.update(state, (s) => ({
          ...s,
          pending: [...s.pending, ...Array.from({ length: n }, () => ({ kind, retryAfterSeconds }))]
        })),
      loseNext: (n, op) =>
        Ref.update(state, (s) => ({ ...s, lose: [...s.lose, ...Array.from({ length: n }, () => op)] })),
      setDelay: (ms) => Ref.update(state, (s) => ({ ...s, delayMs: ms })),
      partition: (on) => Ref.update(state, (s) => ({ ...s, partitioned: on })),
      setToken: (token, space) => Ref.update(state, (s) => ({ ...s, tokens: new Map(s.tokens).set(token, space) })),
      revokeToken: (token) =>
        Ref.update(state, (s) => {
          const tokens = new Map(s.tokens)
          tokens.delete(token)
          return { ...s, tokens }
        }),
      calls: Effect.map(Ref.get(state), (s) => s.calls),
      clearCalls: Ref.update(state, (s) => ({ ...s, calls: [] })),
      replaceServer: (next) => Ref.update(state, (s) => ({ ...s, server: next }))
    }
    return { transport, controls }
  })

/** A layer providing the transport and its controls over a server log. */
export const layer = (server: ServerLog["Type"], tokens: Readonly<Record<string, string>>) =>
  Layer.effectContext(
    Effect.map(make(server, tokens), ({ transport, controls }) =>
      Context.make(Transport, transport).pipe(Context.add(MemoryTransportControls, controls))
    )
  )
