/**
 * The client error model (TESTING.md P9): `fc.commands` against a scripted server. See src/testing/ClientModel.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as ClientModel from "../../src/testing/ClientModel.js"
import * as Pbt from "../../src/testing/Pbt.js"

const RUNS = 300

describe("client error model (P9)", () => {
  it("transient errors back off within bounds and reset; auth errors park without a storm; nothing is lost", async () => {
    await Pbt.check("client-errors", "test/sim/client-errors.test.ts", ClientModel.property(), RUNS)
  }, 1_800_000)

  it("coverage: every check ran many times", () => {
    const c = ClientModel.coverage
    console.log(`client error model coverage: ${JSON.stringify(c)}`)
    if (!Pbt.atFullCount(RUNS)) return
    for (const key of [
      "transientRetries",
      "boundedRetries",
      "retryAfterHonoured",
      "protocolRetries",
      "authEpisodes",
      "probes",
      "unparkedByProbe",
      "credentialChanges"
    ] as const) {
      expect(c[key], key).toBeGreaterThanOrEqual(c.runs / 4)
    }
  })
})
