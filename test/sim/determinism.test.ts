/**
 * P12 determinism: the same scenario and seed give a byte-identical trace twice. Time, randomness, ids and the network
 * are all derived from the scenario, so a failure of any other property replays exactly from its printed scenario.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Pbt from "../../src/testing/Pbt.js"
import * as Scenario from "../../src/testing/Scenario.js"
import * as Simulation from "../../src/testing/Simulation.js"

const RUNS = 25
const FILE = "test/sim/determinism.test.ts"

describe("determinism (P12)", () => {
  it("a scenario run twice gives the same trace hash, step for step", async () => {
    const property = fc.asyncProperty(Scenario.scenario({ maxSteps: 80 }), async (scenario) => {
      const first = await Simulation.runPromise(scenario)
      const second = await Simulation.runPromise(scenario)
      expect(second.traceHash, "P12: the trace differs between two runs of the same scenario").toBe(first.traceHash)
      expect(second.fired).toEqual(first.fired)
    })
    await Pbt.check("determinism", FILE, property, RUNS)
  }, 900_000)

  it("the trace depends on the scenario: another seed or one more step gives another hash", async () => {
    const [scenario] = fc.sample(Scenario.scenario({ minSteps: 20, maxSteps: 40 }), { numRuns: 1, seed: 7 })
    const base = await Simulation.runPromise(scenario!)
    const reseeded = await Simulation.runPromise({ ...scenario!, seed: scenario!.seed + 1 })
    const longer = await Simulation.runPromise({ ...scenario!, steps: [...scenario!.steps, { _tag: "tick", ms: 100 }] })
    expect(reseeded.traceHash).not.toBe(base.traceHash)
    expect(longer.traceHash).not.toBe(base.traceHash)
  }, 120_000)
})
