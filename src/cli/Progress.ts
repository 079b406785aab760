/**
 * Progress on stderr for long work: a single updating line when stderr is a TTY, silence otherwise (scripts and
 * pipes get clean output; stdout is never used).
 */
import { Effect } from "effect"
import type { Progress } from "../store/Replay.js"

/** A progress callback that redraws `label: done/total (pct%)` at most every 100 ms, and ends the line once at 100%. */
export const progressReporter = (label: string, options: { readonly quiet?: boolean } = {}) => {
  const enabled = options.quiet !== true && process.stderr.isTTY === true
  let last = 0
  let ended = false
  return (p: Progress): Effect.Effect<void> =>
    Effect.sync(() => {
      if (!enabled || ended) return
      const now = performance.now()
      const finished = p.done >= p.total
      if (!finished && now - last < 100) return
      last = now
      ended = finished
      const pct = p.total === 0 ? 100 : Math.floor((p.done / p.total) * 100)
      process.stderr.write(`\r${label}: ${p.done}/${p.total} events (${pct}%)${finished ? "\n" : ""}`)
    })
}

/**
 * The `onProgress` option of a long command, or none: only when stderr is a TTY and `--quiet` is off, since the
 * totals a bar needs cost a pass of their own (a count over the log, the lines of an import file). A command whose
 * results stream to stdout passes `streaming`: when stdout is that same terminal the results are the progress, and a
 * redrawn line would be torn apart by them.
 */
export const progressOption = (
  label: string,
  quiet: boolean,
  options: { readonly streaming?: boolean } = {}
): { readonly onProgress?: (p: Progress) => Effect.Effect<void> } => {
  if (quiet || process.stderr.isTTY !== true) return {}
  if (options.streaming === true && process.stdout.isTTY === true) return {}
  return { onProgress: progressReporter(label) }
}
