/**
 * The typed failures of talking to a sync server (DESIGN §5). Every failure is exactly one of these; the engine
 * treats each class differently (see Policy.ts), and the CLI maps them to exit codes (3 auth, 4 transient/protocol).
 */
import { Schema } from "effect"
import { RejectReason } from "./Protocol.js"

/** 401/403: the credentials are missing, unknown or not allowed. Never retried by the backoff schedule. */
export class AuthError extends Schema.TaggedError<AuthError>()("AuthError", {
  status: Schema.Literal(401, 403),
  message: Schema.String
}) {}

/** Refused, reset, timed out, 5xx, 429: worth retrying with backoff. `retryAfterMs` is a floor on the next delay. */
export class TransientError extends Schema.TaggedError<TransientError>()("TransientError", {
  kind: Schema.Literal("unreachable", "timeout", "server", "rate-limited"),
  status: Schema.optional(Schema.Number),
  retryAfterMs: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/** A response this client cannot use (a body that does not decode, an unexpected 4xx). Retried on the slow schedule. */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  status: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/** The server refused one pushed event; it goes to `dead_letters`, never silently dropped. */
export class RejectedEvent extends Schema.TaggedError<RejectedEvent>()("RejectedEvent", {
  id: Schema.String,
  reason: RejectReason,
  message: Schema.String
}) {}

/** In `remote` mode, the server did not acknowledge a write in time. The write is kept and stays pending. */
export class AckTimeout extends Schema.TaggedError<AckTimeout>()("AckTimeout", {
  message: Schema.String
}) {}

/** A sync run left events in `dead_letters` (exit 5 for the CLI). */
export class DeadLettered extends Schema.TaggedError<DeadLettered>()("DeadLettered", {
  count: Schema.Number,
  message: Schema.String
}) {}

/** Any failure of a call to the server. */
export type SyncError = AuthError | TransientError | ProtocolError

/** `dead-letters --requeue ID` named an event that is not a (pending) dead letter. */
export class DeadLetterNotFound extends Schema.TaggedError<DeadLetterNotFound>()("DeadLetterNotFound", {
  eventId: Schema.String
}) {
  override get message(): string {
    return `no dead letter with event id ${this.eventId}`
  }
}
