/**
 * Log rows: a row gives back the envelope that was stored, and a corrupt row is refused with its seq in the message
 * (so a replay or export names the row to look at instead of folding garbage).
 */
import { assert, describe, it } from "@effect/vitest"
import type { Envelope } from "../../src/domain/Events.js"
import * as Rows from "../../src/inspect/Rows.js"
import * as Arbitraries from "../../src/testing/Arbitraries.js"

const rowOf = (e: Envelope, seq: number): Rows.LogRow => ({
  seq,
  id: e.id,
  type: e.type,
  version: e.version,
  memoryId: null,
  hlc: e.hlc,
  clientId: e.clientId,
  payload: JSON.stringify(e.payload),
  excluded: false
})

describe("Rows", () => {
  it.prop("a row gives back the envelope stored in it", [Arbitraries.mixedEventSet()], ([set]) => {
    set.all.forEach((e, i) => assert.deepStrictEqual(Rows.toEnvelope(rowOf(e, i + 1)), e))
  })

  it("a corrupt row is refused with its seq", () => {
    const row: Rows.LogRow = {
      seq: 7,
      id: "019a0000-0000-7000-8000-000000000000",
      type: "memory.created",
      version: 1,
      memoryId: null,
      hlc: "001735689600000:000000:a",
      clientId: "a",
      payload: "{not json",
      excluded: false
    }
    assert.throws(() => Rows.toEnvelope(row), /corrupt event row 7: the payload is not JSON/)
    assert.throws(() => Rows.toEnvelope({ ...row, payload: "{}", clientId: "b" }), /corrupt event row 7/)
    assert.throws(() => Rows.readRow({ seq: 8, id: 1 }), /corrupt event row 8/)
  })
})
