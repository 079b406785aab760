/**
 * Bearer tokens: each maps to exactly one space, and every read and write of a request is confined to it.
 *
 * Invariants:
 * - Only SHA-256 hashes of tokens are kept: a `TokenTable` holds hashes and spaces, and everything that lives as long
 *   as the server (the Auth layer, `Server.layer`) takes one, or hashes the entries it is given before returning.
 * - A presented token is compared against every entry in constant time (no early exit), so response time does not
 *   reveal how much of a token matched or which entry it was.
 * - Nothing here logs a token or its hash.
 *
 * Sources (merged, a token may appear twice only with the same space): `--token TOKEN=SPACE`, `MEMSYNC_TOKENS`
 * (`tok1=space1,tok2=space2`), and a JSON tokens file (`{ "TOKEN": "SPACE" }` or `[{ "token", "space" }]`).
 */
import { Context, Effect, Either, Layer, ParseResult, Redacted, Schema } from "effect"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { Unauthorized } from "../sync/Protocol.js"

/** A space name: 1–64 characters of `[A-Za-z0-9_.-]`. */
export const Space = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_.-]{1,64}$/, { message: () => "space must be 1-64 characters of [A-Za-z0-9_.-]" })
)

/** A token: 8–512 visible ASCII characters without `,` (the list separator). */
export const Token = Schema.String.pipe(
  Schema.pattern(/^[\x21-\x2b\x2d-\x7e]{8,512}$/, {
    message: () => "token must be 8-512 visible ASCII characters without ','"
  })
)

/** One configured token. */
export const TokenEntry = Schema.Struct({ token: Token, space: Space })
export type TokenEntry = typeof TokenEntry.Type

/** A token configuration that does not parse. */
export class TokenConfigError extends Schema.TaggedError<TokenConfigError>()("TokenConfigError", {
  message: Schema.String
}) {}

/** Who a request is: its space, and an opaque key for per-token state (rate limits). Never the token. */
export interface Principal {
  readonly space: string
  readonly key: string
}

/** Resolves bearer tokens to spaces. */
export interface Service {
  /** The principal of a token, or 401. */
  readonly authenticate: (token: Redacted.Redacted<string>) => Effect.Effect<Principal, Unauthorized>
  /** How many tokens are configured. */
  readonly size: number
}

/** The token table service. */
export class Auth extends Context.Tag("memsync/server/Auth")<Auth, Service>() {}

/**
 * The configured tokens as the server keeps them: SHA-256 hashes and spaces, never a token. Pass one (not the plain
 * entries) to whatever lives as long as the server. Made by `hash`, which checks the entries.
 */
export class TokenTable {
  constructor(readonly entries: ReadonlyArray<{ readonly hash: Buffer; readonly space: string }>) {}
}

/** Hash `entries` into a table; a token listed for two different spaces is an error. */
export const hash = (entries: ReadonlyArray<TokenEntry>): Either.Either<TokenTable, TokenConfigError> => {
  const bySpace = new Map<string, string>()
  for (const e of entries) {
    const other = bySpace.get(e.token)
    if (other !== undefined && other !== e.space) {
      return Either.left(
        new TokenConfigError({ message: `a token is configured for two spaces (${other}, ${e.space})` })
      )
    }
    bySpace.set(e.token, e.space)
  }
  return Either.right(new TokenTable(Array.from(bySpace, ([token, space]) => ({ hash: sha256(token), space }))))
}

/** The service over a token table. */
export const fromTable = (tokens: TokenTable): Service => {
  const table = tokens.entries.map((e, i) => ({ ...e, key: `t${i}` }))
  const missing = new Unauthorized({ message: "missing bearer token (send Authorization: Bearer TOKEN)" })
  const unknown = new Unauthorized({ message: "unknown bearer token" })
  return {
    size: table.length,
    authenticate: (token) =>
      Effect.suspend(() => {
        const value = Redacted.value(token)
        if (value === "") return Effect.fail(missing)
        const hash = sha256(value)
        let found: (typeof table)[number] | undefined
        for (const entry of table) if (timingSafeEqual(entry.hash, hash) && found === undefined) found = entry
        return found === undefined ? Effect.fail(unknown) : Effect.succeed({ space: found.space, key: found.key })
      })
  }
}

/** Build the table from entries; a token listed for two different spaces is an error. */
export const make = (entries: ReadonlyArray<TokenEntry>): Either.Either<Service, TokenConfigError> =>
  Either.map(hash(entries), fromTable)

/**
 * A layer over a token table, or over entries hashed right now (not when the layer is built), so the layer never
 * holds a plain token.
 */
export const layer = (tokens: ReadonlyArray<TokenEntry> | TokenTable): Layer.Layer<Auth, TokenConfigError> => {
  const table = tokens instanceof TokenTable ? Either.right(tokens) : hash(tokens)
  return Either.match(table, {
    onLeft: (e) => Layer.fail(e),
    onRight: (t) => Layer.succeed(Auth, fromTable(t))
  })
}

/** Parse `TOKEN=SPACE` (split at the last `=`, so base64 padding in tokens survives). */
export const parseSpec = (spec: string): Either.Either<TokenEntry, TokenConfigError> => {
  const at = spec.lastIndexOf("=")
  if (at <= 0) return Either.left(new TokenConfigError({ message: "expected TOKEN=SPACE" }))
  return decodeEntry({ token: spec.slice(0, at), space: spec.slice(at + 1) })
}

/** Parse `tok1=space1,tok2=space2` (the `MEMSYNC_TOKENS` format); blank items are ignored. */
export const parseList = (list: string): Either.Either<Array<TokenEntry>, TokenConfigError> =>
  Either.all(
    list
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")
      .map(parseSpec)
  )

/** Parse a tokens file: `{ "TOKEN": "SPACE", ... }` or `[{ "token": "...", "space": "..." }, ...]`. */
export const parseFile = (text: string): Either.Either<Array<TokenEntry>, TokenConfigError> => {
  const fail = (message: string) => Either.left(new TokenConfigError({ message: `tokens file: ${message}` }))
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    // JSON.parse messages quote the text around the error, which may be a token.
    return fail("not valid JSON")
  }
  if (typeof json !== "object" || json === null) {
    return fail('expected { "TOKEN": "SPACE" } or [{ "token": "...", "space": "..." }]')
  }
  const items: Array<unknown> = Array.isArray(json)
    ? json
    : Object.entries(json).map(([token, space]) => ({ token, space }))
  return Either.all(
    items.map((item, i) =>
      Either.mapLeft(
        decodeEntry(item),
        (e) => new TokenConfigError({ message: `tokens file: entry ${i + 1}: ${e.message}` })
      )
    )
  )
}

/** A fresh random token (32 bytes, base64url). */
export const generateToken: Effect.Effect<string> = Effect.sync(() => randomBytes(32).toString("base64url"))

const decodeEntry = (u: unknown): Either.Either<TokenEntry, TokenConfigError> =>
  Schema.decodeUnknownEither(TokenEntry)(u).pipe(
    Either.mapLeft((e) => new TokenConfigError({ message: safeMessage(e) }))
  )

// Never quote a value: it may be a secret. Refinements carry their own value-free messages.
const safeMessage = (e: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(e)
    .map((i) => {
      const path = i.path.join(".") || "entry"
      return i._tag === "Refinement"
        ? i.message
        : i._tag === "Missing"
          ? `${path} is missing`
          : `${path} has the wrong type`
    })
    .join("; ")

const sha256 = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest()
