/**
 * The regression corpus: every `test/regressions/*.json` (what a property failure printed, saved as
 * `{ suite, note?, counterexample }`: a shrunk scenario, or a command list and seed) is replayed on every run and
 * must pass.
 */
import { describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import * as ClientModel from "../../src/testing/ClientModel.js"
import * as Scenario from "../../src/testing/Scenario.js"
import * as Simulation from "../../src/testing/Simulation.js"

const DIR = join(import.meta.dirname, "../regressions")

/** A simulation scenario (chaos and crash-point suites), or a command list and seed (the client error model). */
const Entry = Schema.Union(
  Schema.Struct({
    suite: Schema.Literal("chaos", "crash"),
    note: Schema.optional(Schema.String),
    counterexample: Schema.Tuple(Scenario.Scenario)
  }),
  Schema.Struct({
    suite: Schema.Literal("client-errors"),
    note: Schema.optional(Schema.String),
    counterexample: Schema.Tuple(Schema.Array(ClientModel.Cmd), Schema.Int)
  })
)

const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .sort()

describe("regression corpus", () => {
  it("holds at least one saved scenario", ({ expect }) => {
    expect(files.length).toBeGreaterThan(0)
  })
  for (const file of files) {
    it(file, async () => {
      const entry = Schema.decodeUnknownSync(Entry)(JSON.parse(readFileSync(join(DIR, file), "utf8")))
      if (entry.suite === "client-errors") await ClientModel.replay(...entry.counterexample)
      else await Simulation.runPromise(entry.counterexample[0])
    })
  }
})
