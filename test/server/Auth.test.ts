/**
 * Token configuration and lookup, and the token bucket.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Redacted } from "effect"
import { inspect } from "node:util"
import * as Auth from "../../src/server/Auth.js"
import * as RateLimit from "../../src/server/RateLimit.js"

const SECRET = "s3cret-token-value"

describe("Auth", () => {
  it("parses TOKEN=SPACE, lists and files, splitting at the last '='", () => {
    assert.deepStrictEqual(Either.getOrThrow(Auth.parseSpec("abc123==x=space-1")), {
      token: "abc123==x",
      space: "space-1"
    })
    assert.deepStrictEqual(Either.getOrThrow(Auth.parseList(" tok-one-1=a, ,tok-two-2=b ")), [
      { token: "tok-one-1", space: "a" },
      { token: "tok-two-2", space: "b" }
    ])
    assert.deepStrictEqual(Either.getOrThrow(Auth.parseFile(`{"${SECRET}": "a"}`)), [{ token: SECRET, space: "a" }])
    assert.deepStrictEqual(Either.getOrThrow(Auth.parseFile(`[{"token": "${SECRET}", "space": "b"}]`)), [
      { token: SECRET, space: "b" }
    ])
  })

  it("reports bad configuration without ever quoting a token", () => {
    const failures: ReadonlyArray<Either.Either<unknown, Auth.TokenConfigError>> = [
      Auth.parseSpec(`${SECRET}`),
      Auth.parseSpec(`${SECRET}=bad space`),
      Auth.parseSpec("short=a"),
      Auth.parseFile(`{"${SECRET}": 42}`),
      Auth.parseFile(`{"${SECRET}": "ok", oops}`),
      Auth.parseFile(`[{"token": "${SECRET}"}]`),
      Auth.parseFile(`"${SECRET}"`),
      Either.map(
        Auth.make([
          { token: SECRET, space: "a" },
          { token: SECRET, space: "b" }
        ]),
        () => []
      )
    ]
    for (const f of failures) {
      assert.isTrue(Either.isLeft(f))
      if (Either.isLeft(f)) {
        assert.strictEqual(f.left._tag, "TokenConfigError")
        assert.notInclude(f.left.message, SECRET)
      }
    }
  })

  it.effect("maps a token to its one space; unknown and empty tokens are 401", () =>
    Effect.gen(function* () {
      const auth = Either.getOrThrow(
        Auth.make([
          { token: SECRET, space: "a" },
          { token: "another-token", space: "b" },
          { token: SECRET, space: "a" }
        ])
      )
      assert.strictEqual(auth.size, 2)
      assert.strictEqual((yield* auth.authenticate(Redacted.make(SECRET))).space, "a")
      assert.strictEqual((yield* auth.authenticate(Redacted.make("another-token"))).space, "b")
      const unknown = yield* Effect.flip(auth.authenticate(Redacted.make(SECRET + "x")))
      assert.strictEqual(unknown._tag, "Unauthorized")
      assert.match((yield* Effect.flip(auth.authenticate(Redacted.make("")))).message, /missing/)
      const token = yield* Auth.generateToken
      assert.match(token, /^[A-Za-z0-9_-]{43}$/)
      assert.isTrue(Either.isRight(Auth.parseSpec(`${token}=default`)))
    })
  )

  it.effect("a token table holds hashes and spaces only, and serves the same lookups", () =>
    Effect.gen(function* () {
      const table = Either.getOrThrow(Auth.hash([{ token: SECRET, space: "a" }]))
      // Everything reachable from the table, printed: the space is there, the token is not.
      const shown = inspect(table, { depth: null, showHidden: true, maxArrayLength: null, maxStringLength: null })
      assert.include(shown, "'a'")
      assert.notInclude(shown, SECRET)
      const auth = yield* Effect.provide(Auth.Auth, Auth.layer(table))
      assert.strictEqual((yield* auth.authenticate(Redacted.make(SECRET))).space, "a")
      const conflict = yield* Effect.flip(
        Effect.provide(
          Auth.Auth,
          Auth.layer([
            { token: SECRET, space: "a" },
            { token: SECRET, space: "b" }
          ])
        )
      )
      assert.strictEqual(conflict._tag, "TokenConfigError")
    })
  )
})

describe("RateLimit", () => {
  it("a bucket starts full, refuses past its burst with the wait until the next unit, and refills", () => {
    const config = { perSecond: 2, burst: 3 }
    let bucket: RateLimit.Bucket | undefined
    const waits: Array<number | undefined> = []
    for (let i = 0; i < 4; i++) {
      const r = RateLimit.take(bucket, 1000, config)
      bucket = r.bucket
      waits.push(r.waitMs)
    }
    assert.deepStrictEqual(waits, [undefined, undefined, undefined, 500])
    assert.strictEqual(RateLimit.take(bucket, 1499, config).waitMs, 2)
    assert.isUndefined(RateLimit.take(bucket, 1500, config).waitMs)
    // Refill is capped at the burst.
    const later = RateLimit.take(bucket, 1_000_000, config).bucket
    assert.strictEqual(later.units, 2)
  })

  it.effect("perSecond 0 disables the limit", () =>
    Effect.gen(function* () {
      const limiter = RateLimit.make({ perSecond: 0, burst: 0 })
      for (let i = 0; i < 1000; i++) yield* limiter.consume("k")
    })
  )
})
