/**
 * Multi-replica chaos (TESTING.md P1–P8, P10, P11): generated scenarios over 2–5 replicas with every fault class
 * switched on or off per run, then heal; the coverage gates fail the suite when a fault injector stops firing.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Pbt from "../../src/testing/Pbt.js"
import * as Scenario from "../../src/testing/Scenario.js"
import * as Simulation from "../../src/testing/Simulation.js"

const RUNS = 300
const FILE = "test/sim/chaos.test.ts"

const seen = { runs: 0, steps: 0, uncertain: 0, byClass: {} as Record<string, number>, maxHealMs: 0 }

describe("chaos simulation", () => {
  it("replicas converge under drops, duplicates, reordering, partitions, crashes, errors, auth, skew, resets", async () => {
    const property = fc.asyncProperty(Scenario.scenario(), async (scenario) => {
      const report = await Simulation.runPromise(scenario)
      // Count the generated runs only: a failure's shrinking runs would skew the coverage figures.
      if (seen.runs >= Pbt.runs(RUNS)) return
      seen.runs++
      seen.steps += report.steps
      if ((report.fired.uncertainPush ?? 0) > 0) seen.uncertain++
      for (const c of report.classes) seen.byClass[c] = (seen.byClass[c] ?? 0) + 1
      seen.maxHealMs = Math.max(seen.maxHealMs, report.healMs)
    })
    await Pbt.check("chaos", FILE, property, RUNS)
  }, 1_800_000)

  it("coverage gates: every fault class fired in >= 25% of runs, an uncertain push in >= 10%", () => {
    console.log(
      `chaos coverage: ${JSON.stringify(seen)} (mean steps ${(seen.steps / Math.max(1, seen.runs)).toFixed(1)})`
    )
    if (!Pbt.atFullCount(RUNS)) return
    for (const c of Scenario.FAULT_CLASSES) {
      expect((seen.byClass[c] ?? 0) / seen.runs, `fault class ${c}`).toBeGreaterThanOrEqual(0.25)
    }
    expect(seen.uncertain / seen.runs, "uncertain pushes").toBeGreaterThanOrEqual(0.1)
    expect(seen.steps / seen.runs, "mean steps").toBeGreaterThanOrEqual(60)
  })
})
