/**
 * Chaos scenarios: plain JSON data (so a failure prints as JSON and replays from a file), and their generator.
 *
 * A scenario = a seed + a fault configuration + 2–5 replicas + up to 150 steps. Each fault class is switched on or
 * off per run, with a probability from a small set (0 = off): the probability drives the per-request faults the
 * network draws while chaos is on, and a class that is off turns its steps into no-ops. Steps are generated
 * independently of the fault configuration (no `chain`, so both shrink on their own); the only `chain` is on the
 * replica count, so replica indexes are always valid.
 */
import { FastCheck as fc, Schema } from "effect"
import { CRASH_POINTS, type CrashPoint } from "./CrashPoints.js"

/** The fault classes a scenario can switch on. */
export const FAULT_CLASSES = [
  "drop",
  "duplicate",
  "reorder",
  "partition",
  "crash",
  "serverError",
  "lostResponse",
  "token",
  "skew",
  "epochReset",
  "restore"
] as const
export type FaultClass = (typeof FAULT_CLASSES)[number]

/** Per class: 0 (off) or the per-request probability of its ambient faults (steps fire whenever it is on). */
export const Faults = Schema.Struct(
  // One field per class; fromEntries loses the key type, which FAULT_CLASSES fixes.
  Object.fromEntries(FAULT_CLASSES.map((c) => [c, Schema.Number])) as Record<FaultClass, typeof Schema.Number>
)
export type Faults = typeof Faults.Type

const replica = Schema.Int.pipe(Schema.nonNegative())
const tagged = <T extends string, F extends Schema.Struct.Fields>(tag: T, fields: F) =>
  Schema.Struct({ _tag: Schema.Literal(tag), ...fields })

/** One step of the chaos phase. Replica fields are indexes into the scenario's replicas. */
export const Step = Schema.Union(
  tagged("commit", {
    replica,
    kind: Schema.Literal("create", "createMany", "update", "delete"),
    pick: Schema.Int
  }),
  tagged("tick", { ms: Schema.Int }),
  tagged("deliver", { count: Schema.Int, pick: Schema.Int }),
  tagged("drop", { replica, count: Schema.Int }),
  tagged("duplicate", { replica, pick: Schema.Int }),
  tagged("reorder", { replica, count: Schema.Int }),
  tagged("partition", { mode: Schema.Literal("symmetric", "asymmetric", "isolate"), replica, mask: Schema.Int }),
  tagged("heal", {}),
  tagged("crash", { replica }),
  tagged("armCrash", { replica, point: Schema.Literal(...CRASH_POINTS) }),
  tagged("restart", { replica }),
  tagged("serverError", {
    replica,
    kind: Schema.Literal("5xx", "429"),
    count: Schema.Int,
    retryAfterSeconds: Schema.Int
  }),
  tagged("lostResponse", { replica, op: Schema.Literal("push", "any") }),
  tagged("token", { replica, action: Schema.Literal("expire", "refresh") }),
  tagged("skew", { replica, ms: Schema.Int }),
  tagged("epochReset", {}),
  tagged("backup", { replica }),
  tagged("restore", { replica })
)
export type Step = typeof Step.Type

/** A whole scenario: plain JSON, so a failure prints as JSON and replays from a file. */
export const Scenario = Schema.Struct({
  seed: Schema.Int,
  replicas: Schema.Int.pipe(Schema.between(1, 8)),
  faults: Faults,
  steps: Schema.Array(Step)
})
export type Scenario = typeof Scenario.Type

/** The class that gates a step (undefined: always on). */
export const classOf = (step: Step): FaultClass | undefined => {
  switch (step._tag) {
    case "commit":
    case "tick":
    case "deliver":
      return undefined
    case "heal":
      return "partition"
    case "restart":
    case "armCrash":
      return "crash"
    case "backup":
      return "restore"
    default:
      return step._tag
  }
}

/** Skews a step can set: within the server's drift bound, and beyond it (events get dead-lettered). */
export const SKEWS: ReadonlyArray<number> = [-120_000, -2_000, 0, 1_500, 45_000, 400_000]

/** Options of the generator. */
export interface GenOptions {
  readonly minReplicas?: number
  readonly maxReplicas?: number
  readonly minSteps?: number
  readonly maxSteps?: number
}

/** The steps for `k` replicas. */
export const step = (k: number): fc.Arbitrary<Step> => {
  const replica = fc.nat({ max: k - 1 })
  return fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({
        _tag: fc.constant("commit" as const),
        replica,
        kind: fc.constantFrom(
          "create" as const,
          "create" as const,
          "update" as const,
          "delete" as const,
          "createMany" as const
        ),
        pick: fc.nat({ max: 63 })
      })
    },
    {
      weight: 6,
      arbitrary: fc.record({
        _tag: fc.constant("tick" as const),
        ms: fc.constantFrom(20, 100, 300, 1_000, 2_500, 8_000)
      })
    },
    {
      weight: 2,
      arbitrary: fc.record({
        _tag: fc.constant("deliver" as const),
        count: fc.integer({ min: 1, max: 3 }),
        pick: fc.nat({ max: 63 })
      })
    },
    {
      weight: 2,
      arbitrary: fc.record({ _tag: fc.constant("drop" as const), replica, count: fc.integer({ min: 1, max: 3 }) })
    },
    {
      weight: 2,
      arbitrary: fc.record({ _tag: fc.constant("duplicate" as const), replica, pick: fc.nat({ max: 63 }) })
    },
    {
      weight: 2,
      arbitrary: fc.record({ _tag: fc.constant("reorder" as const), replica, count: fc.integer({ min: 1, max: 2 }) })
    },
    {
      weight: 2,
      arbitrary: fc.record({
        _tag: fc.constant("partition" as const),
        mode: fc.constantFrom("symmetric" as const, "asymmetric" as const, "isolate" as const),
        replica,
        mask: fc.nat({ max: 31 })
      })
    },
    { weight: 2, arbitrary: fc.constant({ _tag: "heal" as const }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("crash" as const), replica }) },
    {
      weight: 1,
      arbitrary: fc.record({ _tag: fc.constant("armCrash" as const), replica, point: fc.constantFrom(...CRASH_POINTS) })
    },
    { weight: 2, arbitrary: fc.record({ _tag: fc.constant("restart" as const), replica }) },
    {
      weight: 2,
      arbitrary: fc.record({
        _tag: fc.constant("serverError" as const),
        replica,
        kind: fc.constantFrom("5xx" as const, "429" as const),
        count: fc.integer({ min: 1, max: 4 }),
        retryAfterSeconds: fc.integer({ min: 0, max: 3 })
      })
    },
    {
      weight: 2,
      arbitrary: fc.record({
        _tag: fc.constant("lostResponse" as const),
        replica,
        op: fc.constantFrom("push" as const, "any" as const)
      })
    },
    {
      weight: 2,
      arbitrary: fc.record({
        _tag: fc.constant("token" as const),
        replica,
        action: fc.constantFrom("expire" as const, "refresh" as const)
      })
    },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("skew" as const), replica, ms: fc.constantFrom(...SKEWS) }) },
    { weight: 1, arbitrary: fc.constant({ _tag: "epochReset" as const }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("backup" as const), replica }) },
    { weight: 2, arbitrary: fc.record({ _tag: fc.constant("restore" as const), replica }) }
  )
}

/** A fault configuration: each class off, or on with a small or a larger per-request probability. */
export const faults: fc.Arbitrary<Faults> = fc.record(
  // One arbitrary per class; fromEntries loses the key type, which FAULT_CLASSES fixes.
  Object.fromEntries(FAULT_CLASSES.map((c) => [c, fc.constantFrom(0, 0.03, 0.1)])) as Record<
    FaultClass,
    fc.Arbitrary<number>
  >
)

/** The scenario generator. */
export const scenario = (options: GenOptions = {}): fc.Arbitrary<Scenario> =>
  fc.integer({ min: options.minReplicas ?? 2, max: options.maxReplicas ?? 5 }).chain((replicas) =>
    fc.record({
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      replicas: fc.constant(replicas),
      faults,
      // Unbiased lengths (uniform up to the maximum: a mean near 75 steps), while shrinking still goes to short ones.
      steps: fc.noBias(
        fc.array(step(replicas), { minLength: options.minSteps ?? 1, maxLength: options.maxSteps ?? 150, size: "max" })
      )
    })
  )

// --- crash points ----------------------------------------------------------------------------------------------------

/** The fault classes a crash point needs on (besides `crash`). */
const ENABLERS: Partial<Record<CrashPoint, FaultClass>> = {
  "resync-after-reset": "epochReset",
  "resync-repush": "epochReset",
  "after-auth-refused": "token"
}

/** The steps that lead replica `r` to `point` once it is armed. */
const towards = (point: CrashPoint, r: number, k: number): fc.Arbitrary<ReadonlyArray<Step>> => {
  const other = (r + 1) % k
  const commit = (replica: number, kind: "create" | "createMany") =>
    fc.nat({ max: 63 }).map((pick): Step => ({ _tag: "commit", replica, kind, pick }))
  switch (point) {
    case "before-push-arrives":
    case "after-push-commit":
    case "while-recording-ack":
    case "after-local-commit":
      return fc.tuple(commit(r, "create"))
    case "mid-pull":
    case "after-pull-page":
      // More than a page (5 events) for r to pull, written by another replica.
      return fc.tuple(
        commit(other, "createMany"),
        commit(other, "createMany"),
        commit(other, "createMany"),
        tick(2_500)
      )
    case "during-resync-head":
      // A resync runs at boot and every few pull cycles.
      return fc.constant([{ _tag: "restart", replica: r } as const])
    case "resync-after-reset":
      return fc.constant([{ _tag: "epochReset" } as const])
    case "resync-repush":
      return fc
        .tuple(commit(r, "create"), tick(2_500))
        .map((steps): ReadonlyArray<Step> => [...steps, { _tag: "epochReset" }])
    case "after-auth-refused":
      return fc
        .tuple(commit(r, "create"))
        .map((steps): ReadonlyArray<Step> => [{ _tag: "token", replica: r, action: "expire" }, ...steps])
  }
}

const tick = (ms: number) => fc.constant<Step>({ _tag: "tick", ms })

/**
 * Scenarios aimed at one crash point: rounds of (some commits, arm the point on a replica, the steps that lead there,
 * time for it to happen, restart), with only the classes the point needs switched on.
 */
export const crashScenario = (point: CrashPoint): fc.Arbitrary<Scenario> =>
  fc.integer({ min: 2, max: 4 }).chain((replicas) => {
    const round = fc
      .tuple(
        fc.array(
          step(replicas).filter((s) => s._tag === "commit"),
          { maxLength: 3 }
        ),
        fc
          .nat({ max: replicas - 1 })
          .chain((r) =>
            towards(point, r, replicas).map((lead): ReadonlyArray<Step> => [
              { _tag: "armCrash", replica: r, point },
              ...lead,
              { _tag: "tick", ms: 2_500 },
              { _tag: "tick", ms: 8_000 },
              { _tag: "tick", ms: 8_000 },
              { _tag: "tick", ms: 8_000 },
              { _tag: "restart", replica: r }
            ])
          )
      )
      .map(([commits, rest]) => [...commits, ...rest])
    const enabler = ENABLERS[point]
    return fc.record({
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      replicas: fc.constant(replicas),
      faults: fc.constant(
        Object.fromEntries(FAULT_CLASSES.map((c) => [c, c === "crash" || c === enabler ? 0.03 : 0])) as Record<
          FaultClass,
          number
        >
      ),
      steps: fc.array(round, { minLength: 1, maxLength: 3 }).map((rounds) => rounds.flat())
    })
  })
