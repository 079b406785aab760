/**
 * Letting the host's event loop turn during a simulation, between steps. Real on purpose: it is not simulated time
 * (that is SimClock) but the worker process's own loop, which must read its messages.
 *
 * Why: Effect's default scheduler runs fibers in microtasks and turns the event loop (a `setTimeout(0)`) only every
 * 2,048 batches of a fiber. A simulation is one long Effect whose every step is synchronous SQLite work, so the loop
 * did not turn for 10-30 s at a time (measured with `monitorEventLoopDelay` in a vitest worker: max 33 s, p99 28 s),
 * and on a loaded machine for over 60 s: the vitest worker then missed the answer to its own "onTaskUpdate" call (a
 * fixed 60 s timeout) and the run failed with every test green.
 *
 * A turn is taken only where the world has settled (after a step's time has passed and every replica's fibers went
 * quiet), so it changes no interleaving of the simulated fibers: the trace stays byte-identical (P12). A scheduler
 * that yields to the event loop more often in the middle of a step did change traces (it reorders fibers' batches).
 */
import { Effect } from "effect"

/** One turn of the event loop (`setImmediate`: after the poll phase that reads pending messages, no 1 ms clamp). */
export const turn: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})
