/**
 * stdout as a sink for the streaming commands (`log`, `replay`, `export`), for outputs of any size.
 *
 * Invariants:
 * - Bounded memory: text is buffered up to 64 KiB, then written; when the stream's buffer is full the writer waits
 *   for `drain`, so a slow reader slows the command instead of filling memory.
 * - One `error` listener per sink for its whole life, and one `drain`/`error`/`close` listener per wait, removed
 *   when the wait ends: a million waits add no listener (Node warns past ten).
 * - A reader that goes away (EPIPE: `memsync export | head -1`) fails the next write or flush with `OutputClosed`,
 *   so the command stops at once; the command turns that into a quiet exit 0, as Unix tools in a pipeline do.
 */
import { Effect, type Scope } from "effect"
import { OutputClosed } from "../inspect/Errors.js"
import type { Sink } from "../inspect/Lines.js"
import { StorageError } from "../store/Errors.js"

/** A sink over `process.stdout`, for the lifetime of the scope. */
export const sink: Effect.Effect<Sink, never, Scope.Scope> = Effect.map(
  Effect.acquireRelease(
    Effect.sync(() => open()),
    (s) => Effect.sync(s.release)
  ),
  (s) => s.sink
)

/** Stop quietly when the reader of stdout went away: the work it wanted is done. */
export const untilClosed = <A, E, R>(self: Effect.Effect<A, E | OutputClosed, R>) =>
  Effect.catchIf(
    self,
    (e): e is OutputClosed => e instanceof OutputClosed,
    () => Effect.void
  )

// ---------------------------------------------------------------------------------------------------------------

const FLUSH_AT = 1 << 16

/** Sinks open now: while one is, it reports stdout's failures itself. */
let active = 0

const open = () => {
  const stream = process.stdout
  guardLateErrors(stream)
  let chunks: Array<string> = []
  let size = 0
  let failure: StorageError | OutputClosed | undefined
  const onError = (e: unknown) => {
    failure ??= isEpipe(e)
      ? new OutputClosed()
      : new StorageError({ message: `cannot write to stdout: ${messageOf(e)}` })
  }
  stream.on("error", onError)
  active++
  const settled = () => (failure === undefined ? Effect.void : Effect.fail(failure))

  const flush = Effect.suspend(() => {
    if (failure !== undefined) return Effect.fail(failure)
    const data = chunks.join("")
    chunks = []
    size = 0
    if (data === "") return Effect.void
    return Effect.async<void, StorageError | OutputClosed>((resume) => {
      // An EPIPE found while writing is emitted on a later tick: `failure` is checked again by the next call.
      if (stream.write(data)) return resume(settled())
      const done = () => {
        stop()
        resume(Effect.suspend(settled))
      }
      const stop = () => {
        stream.off("drain", done)
        stream.off("error", done)
        stream.off("close", done)
      }
      stream.on("drain", done)
      stream.on("error", done)
      stream.on("close", done)
      return Effect.sync(stop)
    })
  })

  const sink: Sink = {
    write: (text) =>
      Effect.suspend(() => {
        if (failure !== undefined) return Effect.fail(failure)
        chunks.push(text)
        size += text.length
        return size >= FLUSH_AT ? flush : Effect.void
      }),
    flush
  }
  const release = () => {
    active--
    stream.off("error", onError)
  }
  return { sink, release }
}

/**
 * Written data can still fail after the command is done with stdout (the reader closes while the last chunk is
 * queued). An `error` with no listener would crash the process with a stack trace, so one listener stays for the
 * life of the process: a closed pipe is ignored, any other failure is one line on stderr and exit code 1.
 */
const guardLateErrors = (stream: NodeJS.WriteStream) => {
  if (stream.listeners("error").includes(lateError)) return
  stream.on("error", lateError)
}

const lateError = (e: unknown) => {
  if (active > 0 || isEpipe(e)) return
  process.stderr.write(`memsync: cannot write to stdout: ${messageOf(e)}\n`)
  process.exitCode = 1
}

const isEpipe = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "code" in e && (e.code === "EPIPE" || e.code === "ERR_STREAM_DESTROYED")

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))
