/**
 * Running properties the way every memsync property suite does: run counts and replay from the environment, and a
 * failure report that says how to replay it.
 *
 * - `MEMSYNC_PBT_RUNS`: the run count of every property (overrides each suite's default).
 * - `MEMSYNC_PBT_SCALE`: multiplies each suite's default run count (the soak uses it).
 * - `MEMSYNC_PBT_SEED`, `MEMSYNC_PBT_PATH`: fast-check's seed and path, to replay one failure exactly
 *   (plus `MEMSYNC_PBT_REPLAY_PATH` for a model-based property: the shrunk command list).
 * A failure prints `{ suite, seed, path, counterexample, error }` as JSON and the command that replays it.
 */
import { FastCheck as fc } from "effect"

/** True when the environment asks to replay one failure (coverage gates do not apply then). */
export const isReplay = (): boolean =>
  process.env.MEMSYNC_PBT_SEED !== undefined || process.env.MEMSYNC_PBT_PATH !== undefined

/** The run count for a suite whose default is `defaultRuns`. */
export const runs = (defaultRuns: number): number => {
  const forced = process.env.MEMSYNC_PBT_RUNS
  if (forced !== undefined && forced !== "") return Math.max(1, Number(forced))
  const scale = Number(process.env.MEMSYNC_PBT_SCALE ?? "1")
  return Math.max(1, Math.round(defaultRuns * (Number.isFinite(scale) && scale > 0 ? scale : 1)))
}

/** True when the suite runs at least its default count (gates on coverage only make sense then). */
export const atFullCount = (defaultRuns: number): boolean => !isReplay() && runs(defaultRuns) >= defaultRuns

/** fast-check parameters: the run count, and seed/path when replaying. */
export const parameters = <T>(defaultRuns: number, extra: fc.Parameters<T> = {}): fc.Parameters<T> => {
  const seed = process.env.MEMSYNC_PBT_SEED
  const path = process.env.MEMSYNC_PBT_PATH
  return {
    ...extra,
    numRuns: runs(defaultRuns),
    ...(seed === undefined || seed === "" ? {} : { seed: Number(seed) }),
    ...(path === undefined || path === "" ? {} : { path })
  }
}

/** What a failed property reports. */
export interface Failure {
  readonly suite: string
  readonly seed: number
  readonly path: string | undefined
  readonly counterexample: unknown
  /** For a model-based property (`fc.commands`): the path that replays its shrunk command list. */
  readonly replayPath: string | undefined
  readonly error: string
}

/** Turn fast-check's run details into a failure report (undefined when the property held). */
export const failureOf = <T>(suite: string, details: fc.RunDetails<T>): Failure | undefined => {
  if (!details.failed) return undefined
  // Properties are checked over tuples of arbitraries: the counterexample is one value per arbitrary.
  const values: ReadonlyArray<unknown> = Array.isArray(details.counterexample) ? details.counterexample : []
  return {
    suite,
    seed: details.seed,
    path: details.counterexamplePath ?? undefined,
    counterexample: values.map(plainCommands),
    replayPath: values.map(replayPathOf).find((p) => p !== undefined),
    error: messageOf(details.errorInstance) ?? "the property failed"
  }
}

/** The text to print for a failure: the JSON report and how to replay it. */
export const describeFailure = (failure: Failure, file: string): string =>
  [
    `memsync property failure in ${failure.suite}:`,
    JSON.stringify(failure, null, 2),
    `replay: MEMSYNC_PBT_SEED=${failure.seed} MEMSYNC_PBT_PATH=${failure.path ?? ""}` +
      (failure.replayPath === undefined ? "" : ` MEMSYNC_PBT_REPLAY_PATH='${failure.replayPath}'`) +
      ` npx vitest run ${file}`,
    `or save {"suite": ..., "counterexample": ...} above as test/regressions/<name>.json to replay it on every run`
  ].join("\n")

/** Check a property with the environment's parameters; throw a replayable report when it fails. */
export const check = async <T>(
  suite: string,
  file: string,
  property: fc.IAsyncPropertyWithHooks<T> | fc.IPropertyWithHooks<T>,
  defaultRuns: number,
  extra: fc.Parameters<T> = {}
): Promise<fc.RunDetails<T>> => {
  const details = await fc.check(property, parameters(defaultRuns, extra))
  const failure = failureOf(suite, details)
  if (failure !== undefined) {
    const text = describeFailure(failure, file)
    // The report must reach the person running the suite even when the runner truncates the thrown message.
    process.stderr.write(text + "\n")
    throw new Error(text)
  }
  return details
}

/** A value that is a command list (fast-check's `fc.commands` output): what it holds. */
const commandsOf = (value: unknown): ReadonlyArray<unknown> | undefined => {
  const commands: unknown = typeof value === "object" && value !== null ? Reflect.get(value, "commands") : undefined
  return Array.isArray(commands) ? commands : undefined
}

/** A command list as the commands that ran, in order (their JSON form); any other value as it is. */
const plainCommands = (value: unknown): unknown => {
  const commands = commandsOf(value)
  if (commands === undefined) return value
  return commands.flatMap((c: unknown) =>
    typeof c === "object" && c !== null && Reflect.get(c, "hasRan") === true ? [Reflect.get(c, "cmd")] : []
  )
}

/** fast-check prints a command list with the path that replays it: `/*replayPath="..."*\/`. */
const replayPathOf = (value: unknown): string | undefined =>
  commandsOf(value) === undefined ? undefined : /replayPath="([^"]*)"/.exec(String(value))?.[1]

const messageOf = (e: unknown): string | undefined =>
  e === undefined || e === null ? undefined : e instanceof Error ? e.message : String(e)
