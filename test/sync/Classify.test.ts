import { assert, describe, it } from "@effect/vitest"
import { classify, parseRetryAfter, type Observed } from "../../src/sync/Classify.js"

describe("Classify", () => {
  const status = (s: number, retryAfterSeconds?: number): Observed => ({
    _tag: "Status",
    status: s,
    message: `status ${s}`,
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds })
  })

  it("401 and 403 are auth errors", () => {
    for (const s of [401, 403]) {
      const e = classify(status(s))
      assert.strictEqual(e._tag, "AuthError")
      if (e._tag === "AuthError") assert.strictEqual(e.status, s)
    }
  })

  it("every 5xx, 408, 425 and 429 is transient; 429 carries Retry-After in ms", () => {
    for (let s = 500; s <= 599; s++) assert.strictEqual(classify(status(s))._tag, "TransientError")
    for (const s of [408, 425]) assert.strictEqual(classify(status(s))._tag, "TransientError")
    const limited = classify(status(429, 7))
    assert.strictEqual(limited._tag, "TransientError")
    if (limited._tag === "TransientError") {
      assert.strictEqual(limited.kind, "rate-limited")
      assert.strictEqual(limited.retryAfterMs, 7000)
    }
    const noHeader = classify(status(429))
    assert.isTrue(noHeader._tag === "TransientError" && noHeader.retryAfterMs === undefined)
    const negative = classify(status(429, -3))
    assert.isTrue(negative._tag === "TransientError" && negative.retryAfterMs === undefined)
  })

  it("every other 4xx, and any other status, is a protocol error", () => {
    for (let s = 400; s <= 499; s++) {
      if ([401, 403, 408, 425, 429].includes(s)) continue
      const e = classify(status(s))
      assert.strictEqual(e._tag, "ProtocolError", `status ${s}`)
    }
    assert.strictEqual(classify(status(302))._tag, "ProtocolError")
  })

  it("network failures and timeouts are transient; an undecodable body is a protocol error", () => {
    const refused = classify({ _tag: "Network", message: "ECONNREFUSED" })
    assert.isTrue(refused._tag === "TransientError" && refused.kind === "unreachable")
    const timeout = classify({ _tag: "Timeout", message: "timeout" })
    assert.isTrue(timeout._tag === "TransientError" && timeout.kind === "timeout")
    assert.strictEqual(classify({ _tag: "Undecodable", status: 200, message: "bad" })._tag, "ProtocolError")
  })

  it("parses Retry-After as seconds or an HTTP date", () => {
    assert.strictEqual(parseRetryAfter("120", 0), 120)
    assert.strictEqual(parseRetryAfter(" 1.5 ", 0), 1.5)
    const now = Date.parse("2026-01-01T00:00:00Z")
    assert.strictEqual(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now), 30)
    assert.strictEqual(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now), 0)
    assert.isUndefined(parseRetryAfter("soon", now))
    assert.isUndefined(parseRetryAfter(undefined, now))
  })
})
