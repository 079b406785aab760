/**
 * Progress on stderr for long work: a single updating line when stderr is a TTY, silence otherwise (scripts and
 * pipes get clean output; stdout is never used).
 */
import { Effect } from "effect"
import type { Progress } from "../store/Replay.js"

/** A progress callback that redraws `label: done/total (pct%)` at most every 100 ms. */
export const progressReporter = (label: string, options: { readonly quiet?: boolean } = {}) => {
  const enabled = options.quiet !== true && process.stderr.isTTY === true
  let last = 0
  return (p: Progress): Effect.Effect<void> =>
    Effect.sync(() => {
      if (!enabled) return
      const now = performance.now()
      const finished = p.done >= p.total
      if (!finished && now - last < 100) return
      last = now
      const pct = p.total === 0 ? 100 : Math.floor((p.done / p.total) * 100)
      process.stderr.write(`\r${label}: ${p.done}/${p.total} events (${pct}%)${finished ? "\n" : ""}`)
    })
}
