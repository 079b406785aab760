/**
 * The planted-bug check (`npm run test:mutants`): each deliberately wrong implementation of planted.ts runs under the
 * suite that should catch it, and that suite must FAIL. The property that broke is printed, so the report says what
 * caught each bug.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as ClientModel from "../../src/testing/ClientModel.js"
import type { CrashPoint } from "../../src/testing/CrashPoints.js"
import * as Scenario from "../../src/testing/Scenario.js"
import * as Simulation from "../../src/testing/Simulation.js"
import * as Planted from "./planted.js"

const chaos = (config: Partial<Simulation.Config>) =>
  fc.asyncProperty(Scenario.scenario(), async (s) => {
    await Simulation.runPromise(s, { ...Simulation.DEFAULT_CONFIG, ...config })
  })

const crash = (point: CrashPoint, config: Partial<Simulation.Config>) =>
  fc.asyncProperty(Scenario.crashScenario(point), async (s) => {
    await Simulation.runPromise(s, { ...Simulation.DEFAULT_CONFIG, ...config })
  })

const clientModel = (parts: Partial<ClientModel.Config["parts"]>) =>
  ClientModel.property({ ...ClientModel.DEFAULT, parts: Planted.parts(parts) })

/** Run `property` until it fails (at most `runs` times); the failure's message names the property that caught it. */
const caught = async <T>(name: string, property: fc.IAsyncProperty<T>, runs: number) => {
  const started = performance.now()
  const details = await fc.check(property, { numRuns: runs, endOnFailure: true })
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  const message = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
  console.log(
    details.failed
      ? `${name}: CAUGHT after ${details.numRuns} runs (${seconds} s): ${message.split("\n")[0]}`
      : `${name}: NOT caught in ${runs} runs (${seconds} s)`
  )
  expect(details.failed, `${name} was not caught`).toBe(true)
}

describe("planted bugs are caught", () => {
  it(
    "no server dedup",
    () => caught("no-server-dedup", chaos({ makeServer: Planted.serverWithoutDedup }), 200),
    900_000
  )

  it(
    "401 treated as transient",
    () => caught("auth-as-transient", clientModel({ transport: Planted.authAsTransient }), 200),
    900_000
  )

  it(
    "ack before the durable commit",
    () => caught("ack-before-commit", chaos({ parts: Planted.parts({ ledger: Planted.ackBeforeCommit }) }), 200),
    900_000
  )

  it(
    "non-atomic page apply",
    () =>
      caught(
        "non-atomic-page-apply",
        crash("after-pull-page", { parts: Planted.parts({ ledger: Planted.nonAtomicPageApply }) }),
        40
      ),
    900_000
  )

  it(
    "backoff never reset",
    () => caught("backoff-never-reset", clientModel({ policy: Planted.backoffNeverReset }), 300),
    900_000
  )

  it(
    "server seqs recorded before the epoch is known",
    () => caught("seqs-before-epoch", chaos({ parts: Planted.parts({ ledger: Planted.seqsBeforeEpoch }) }), 200),
    900_000
  )

  it(
    "resync that drops pending events",
    () => caught("resync-drops-pending", chaos({ parts: Planted.parts({ ledger: Planted.resyncDropsPending }) }), 200),
    900_000
  )
})
