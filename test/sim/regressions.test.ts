/**
 * The regression corpus: every `test/regressions/*.json` (a shrunk scenario a property failure printed, saved as
 * `{ suite, note?, counterexample: [scenario] }`) is replayed on every run and must pass.
 */
import { describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import * as Scenario from "../../src/testing/Scenario.js"
import * as Simulation from "../../src/testing/Simulation.js"

const DIR = join(import.meta.dirname, "../regressions")

const Entry = Schema.Struct({
  suite: Schema.String,
  note: Schema.optional(Schema.String),
  counterexample: Schema.Tuple(Scenario.Scenario)
})

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
      await Simulation.runPromise(entry.counterexample[0])
    })
  }
})
