/**
 * The sync protocol (DESIGN §4), defined once with `HttpApi` and shared by the server (`HttpApiBuilder`) and the
 * client (`HttpApiClient`). Versioned under `/v1`.
 *
 * Guarantees the schemas encode:
 * - push answers one result per event, in request order: accepted / duplicate (with the server seq) / rejected
 *   (with a reason). One bad event never blocks the others, so the push body is a list of unknown values that the
 *   server decodes one by one; only a body that is not `{ events: [...] }` is a 400.
 * - pull returns events ordered by seq, with `hasMore` when `limit` cut the page.
 * - head returns `{ head, digest, epoch }`; digest is an order-independent hash of the ids of events 1..head.
 */
import {
  HttpApi,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  OpenApi
} from "@effect/platform"
import { Arbitrary, Context, JSONSchema, ParseResult, Schema, type SchemaAST } from "effect"
import { envelopeFields, fastEnvelope, stampNamesWriter } from "../domain/Events.js"

/** A server sequence number (per space, gapless, from 1). */
export const Seq = Schema.Number.pipe(Schema.int(), Schema.nonNegative())

/** Why the server refused one event. */
export const RejectReason = Schema.Literal("invalid", "too-large", "clock-drift", "id-conflict")
export type RejectReason = typeof RejectReason.Type

/** The result for one pushed event. */
export const PushResult = Schema.Union(
  Schema.Struct({ status: Schema.Literal("accepted"), id: Schema.String, seq: Seq }),
  Schema.Struct({ status: Schema.Literal("duplicate"), id: Schema.String, seq: Seq }),
  Schema.Struct({ status: Schema.Literal("rejected"), id: Schema.String, reason: RejectReason, message: Schema.String })
)
export type PushResult = typeof PushResult.Type

/** `POST /v1/push` body: events are decoded one by one by the server, so a bad one is rejected alone. */
export const PushRequest = Schema.Struct({ events: Schema.Array(Schema.Unknown) })
/**
 * `POST /v1/push` answer. `epoch` names the log the results' seqs belong to, as in `PullResponse`: a client records no
 * seq of a log other than the one its bookkeeping is about. Optional because servers before it did not send it.
 */
export const PushResponse = Schema.Struct({
  results: Schema.Array(PushResult),
  head: Seq,
  epoch: Schema.optional(Schema.String)
})
export type PushResponse = typeof PushResponse.Type

/** An event as the server serves it: the envelope plus its seq in the space. */
export const PulledEvent = Schema.Struct({ seq: Seq, ...envelopeFields }).pipe(Schema.filter(stampNamesWriter))
export type PulledEvent = typeof PulledEvent.Type

const PulledEventArray = Schema.Array(PulledEvent)

/**
 * The events of a pull page: `Schema.Array(PulledEvent)`, decoded by hand in the common case.
 *
 * Decoding a page through the Struct schema cost ~5.5 us per event on the client, a fifth of its CPU per pulled event.
 * Each event is checked with `seq` (a non-negative integer) plus `Events.fastEnvelope`, which accepts only what the
 * Envelope schema accepts and returns the same value. On anything it is unsure of, and under any parse option that is
 * not the default (`exact`, `onExcessProperty`, `propertyOrder`: `Schema.is` sets `exact`), the whole array goes
 * through the schema, which decides and says what is wrong. The results are the schema's for any value made of data
 * properties (what JSON.parse makes); an accessor is read once more when the schema takes over.
 * `test/sync/PulledEvents.test.ts` compares the two.
 */
export const PulledEvents: Schema.Schema<ReadonlyArray<PulledEvent>> = Schema.declare([], {
  decode: () => (u, options) => {
    const fast = defaultOptions(options) ? decodeEventsFast(u) : undefined
    return fast === undefined ? ParseResult.decodeUnknown(PulledEventArray)(u, options) : ParseResult.succeed(fast)
  },
  encode: () => (u, options) => ParseResult.encodeUnknown(PulledEventArray)(u, options)
}).annotations({
  // The same document as the array schema's, for the OpenAPI description (a declaration has none of its own).
  jsonSchema: withoutDialect(JSONSchema.make(PulledEventArray)),
  arbitrary: () => () => Arbitrary.make(PulledEventArray)
})

/** The events of `u` when every one passes the hand checks, else undefined. */
function decodeEventsFast(u: unknown): Array<PulledEvent> | undefined {
  if (!Array.isArray(u)) return undefined
  const out = new Array<PulledEvent>(u.length)
  for (let i = 0; i < u.length; i++) {
    const x: unknown = u[i]
    // Read as the Struct reads a required key: an own property (decodeEnvelope refuses arrays).
    if (typeof x !== "object" || x === null || !Object.prototype.hasOwnProperty.call(x, "seq")) return undefined
    const seq: unknown = (x as { readonly seq?: unknown }).seq
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) return undefined
    // Not `decodeEnvelope`: its schema fallback would read the event's fields once more than the array schema does.
    const envelope = fastEnvelope(x)
    if (envelope === undefined) return undefined
    out[i] = { seq, ...envelope }
  }
  return out
}

/** The options the hand checks reproduce: the decoding defaults. */
const defaultOptions = (o: SchemaAST.ParseOptions | undefined): boolean =>
  o === undefined ||
  (o.exact !== true && (o.onExcessProperty ?? "ignore") === "ignore" && (o.propertyOrder ?? "none") === "none")

function withoutDialect(doc: JSONSchema.JsonSchema7Root): object {
  const { $schema: _, ...rest } = doc
  return rest
}

/** `GET /v1/pull` query. */
export const PullParams = Schema.Struct({
  after: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative()), { default: () => 0 }),
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 10_000)), {
    default: () => 1_000
  })
})
/**
 * `GET /v1/pull` answer. `epoch` names the log the page was read from, so a client never applies a page of a log
 * other than the one its cursor indexes; it is optional because servers before it did not send it.
 */
export const PullResponse = Schema.Struct({
  events: PulledEvents,
  head: Seq,
  hasMore: Schema.Boolean,
  epoch: Schema.optional(Schema.String)
})
export type PullResponse = typeof PullResponse.Type

/** `GET /v1/head` answer. */
export const HeadResponse = Schema.Struct({ head: Seq, digest: Schema.String, epoch: Schema.String })
export type HeadResponse = typeof HeadResponse.Type

/** `GET /health` answer. */
export const HealthResponse = Schema.Struct({ status: Schema.Literal("ok") })

/** 400: the body or query does not decode. */
export class BadRequest extends Schema.TaggedError<BadRequest>()(
  "BadRequest",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** 401: missing or unknown bearer token. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/** 403: the token is known but not allowed to do this. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {}

/** 413: body over the byte limit, or more events than the batch limit. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 413 })
) {}

/** 429: over the per-token rate limit. The response also carries a `Retry-After` header (seconds). */
export class RateLimited extends Schema.TaggedError<RateLimited>()(
  "RateLimited",
  { message: Schema.String, retryAfterSeconds: Schema.Number },
  HttpApiSchema.annotations({ status: 429 })
) {}

/** 500: the server failed (storage). */
export class ServerError extends Schema.TaggedError<ServerError>()(
  "ServerError",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 500 })
) {}

/** The space a request's token grants. */
export class CurrentSpace extends Context.Tag("memsync/CurrentSpace")<CurrentSpace, { readonly space: string }>() {}

/**
 * Bearer-token authentication: resolves the token to its space, or fails with 401. It also applies the per-token rate
 * limit (429), because the limit is keyed by the token and only this middleware sees it.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("memsync/Authentication", {
  failure: Schema.Union(Unauthorized, RateLimited),
  provides: CurrentSpace,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** The authenticated sync endpoints. */
export class SyncGroup extends HttpApiGroup.make("sync")
  .add(
    HttpApiEndpoint.post("push", "/v1/push")
      .setPayload(PushRequest)
      .addSuccess(PushResponse)
      .addError(BadRequest)
      .addError(PayloadTooLarge)
  )
  .add(HttpApiEndpoint.get("pull", "/v1/pull").setUrlParams(PullParams).addSuccess(PullResponse).addError(BadRequest))
  .add(HttpApiEndpoint.get("head", "/v1/head").addSuccess(HeadResponse))
  .add(HttpApiEndpoint.get("authCheck", "/v1/auth-check").addSuccess(HttpApiSchema.NoContent))
  .addError(Forbidden)
  .addError(RateLimited)
  .addError(ServerError)
  .middleware(Authentication) {}

/** Unauthenticated endpoints. */
export class HealthGroup extends HttpApiGroup.make("health").add(
  HttpApiEndpoint.get("health", "/health").addSuccess(HealthResponse)
) {}

/** The whole API. */
export class SyncApi extends HttpApi.make("memsync")
  .add(SyncGroup)
  .add(HealthGroup)
  .annotate(OpenApi.Title, "memsync sync protocol")
  .annotate(OpenApi.Version, "1") {}

/** Where the generated OpenAPI document is served. */
export const OPENAPI_PATH = "/v1/openapi.json"
