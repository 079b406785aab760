/**
 * Crash points (TESTING.md): every named point in a sync round (CrashPoints.ts), 40 scenarios each aimed at it; the
 * replica dies there and reboots from its file through the normal boot path, and every property of the chaos suite
 * must still hold. The gate fails the suite when a point was reached fewer than 30 times: an injector that silently
 * stopped firing would make these runs pass for nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { CRASH_POINTS } from "../../src/testing/CrashPoints.js"
import * as Pbt from "../../src/testing/Pbt.js"
import * as Scenario from "../../src/testing/Scenario.js"
import * as Simulation from "../../src/testing/Simulation.js"

const RUNS = 40
const FILE = "test/sim/crash-points.test.ts"
const hits: Record<string, number> = {}

describe("crash points", () => {
  for (const point of CRASH_POINTS) {
    it(`${point}: the replica dies there, reboots from its file, and everything converges`, async () => {
      let runs = 0
      const property = fc.asyncProperty(Scenario.crashScenario(point), async (scenario) => {
        const report = await Simulation.runPromise(scenario)
        if (runs++ < Pbt.runs(RUNS)) hits[point] = (hits[point] ?? 0) + (report.fired[`crashPoint:${point}`] ?? 0)
      })
      await Pbt.check(`crash:${point}`, FILE, property, RUNS)
    }, 600_000)
  }

  it("coverage gate: every crash point was reached at least 30 times", () => {
    console.log(`crash point hits: ${JSON.stringify(hits)}`)
    if (!Pbt.atFullCount(RUNS)) return
    for (const point of CRASH_POINTS) expect(hits[point] ?? 0, point).toBeGreaterThanOrEqual(30)
  })
})
