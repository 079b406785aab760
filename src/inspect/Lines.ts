/**
 * Line I/O with bounded memory: a reader that hands out numbered lines a page at a time, and buffered sinks.
 * Files are read and written synchronously in 1 MiB chunks (one syscall per chunk, no stream machinery per line).
 */
import { Effect, type Scope } from "effect"
import { closeSync, existsSync, linkSync, openSync, readSync, rmSync, writeSync } from "node:fs"
import { StringDecoder } from "node:string_decoder"
import { StorageError } from "../store/Errors.js"
import { type OutputClosed, OutputExists } from "./Errors.js"

/** A numbered line (1-based); `tooLong` when it exceeded `MAX_LINE` and its text was dropped. */
export interface Line {
  readonly number: number
  readonly text: string
  readonly tooLong: boolean
}

/** Lines longer than this (in characters) are reported, not held: bounded memory on any input. */
export const MAX_LINE = 8 * 1024 * 1024

/** Where text goes. A sink whose reader went away fails with `OutputClosed`, so the writer stops at once. */
export interface Sink {
  readonly write: (text: string) => Effect.Effect<void, StorageError | OutputClosed>
  /** Write out what is buffered. */
  readonly flush: Effect.Effect<void, StorageError | OutputClosed>
}

/** Open a file for reading lines; `next(n)` returns up to n lines (fewer only at the end). */
export const reader = (
  path: string
): Effect.Effect<{ readonly next: (n: number) => Array<Line> }, StorageError, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.try({ try: () => openSync(path, "r"), catch: (e) => new StorageError({ message: messageOf(e) }) }),
      (fd) => Effect.sync(() => closeSync(fd))
    ),
    (fd) => {
      const buffer = Buffer.allocUnsafe(1 << 20)
      const decoder = new StringDecoder("utf8")
      let queue: Array<string> = []
      let at = 0
      let pending = ""
      // `skipping`: the line being read is overlong and its text is dropped; `headTooLong`: queue[0] ends one.
      let skipping = false
      let headTooLong = false
      let eof = false
      let number = 0
      const line = (text: string, tooLong: boolean): Line => ({
        number: ++number,
        text: text.endsWith("\r") ? text.slice(0, -1) : text,
        tooLong
      })
      const next = (n: number): Array<Line> => {
        const out: Array<Line> = []
        while (out.length < n) {
          if (at < queue.length) {
            const text = queue[at]!
            out.push(at === 0 && headTooLong ? line("", true) : line(text, false))
            at++
            continue
          }
          if (eof) {
            if (pending !== "" || skipping) out.push(line(pending, skipping))
            pending = ""
            skipping = false
            break
          }
          const read = readSync(fd, buffer, 0, buffer.length, null)
          if (read === 0) eof = true
          const text = read === 0 ? decoder.end() : decoder.write(buffer.subarray(0, read))
          const parts = (pending + text).split("\n")
          const last = parts.pop() ?? ""
          headTooLong = skipping && parts.length > 0
          if (parts.length > 0) skipping = false
          pending = skipping ? "" : last
          if (pending.length > MAX_LINE) {
            pending = ""
            skipping = true
          }
          queue = parts
          at = 0
        }
        return out
      }
      return { next }
    }
  )

/** A buffered sink over a file descriptor. */
export const fdSink = (fd: number): Sink => {
  let chunks: Array<string> = []
  let size = 0
  const flush = Effect.try({
    try: () => {
      if (size === 0) return
      const data = Buffer.from(chunks.join(""))
      chunks = []
      size = 0
      let off = 0
      while (off < data.length) off += writeSync(fd, data, off)
    },
    catch: (e) => new StorageError({ message: messageOf(e) })
  })
  return {
    write: (text) =>
      Effect.suspend(() => {
        chunks.push(text)
        size += text.length
        return size >= 1 << 20 ? flush : Effect.void
      }),
    flush
  }
}

/**
 * Write a new file through `body`: it goes to a partial file next to `path`, which is linked into place only when
 * `body` succeeds (so `path` is absent or complete) and never over an existing file.
 */
export const writeNew = <A, E, R>(path: string, body: (sink: Sink) => Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    if (existsSync(path)) return yield* new OutputExists({ path })
    const partial = `${path}.partial-${process.pid}`
    const result = yield* Effect.acquireUseRelease(
      Effect.try({ try: () => openSync(partial, "wx"), catch: (e) => new StorageError({ message: messageOf(e) }) }),
      (fd) => {
        const sink = fdSink(fd)
        return Effect.tap(body(sink), () => sink.flush)
      },
      (fd) => Effect.sync(() => closeSync(fd))
    ).pipe(Effect.onError(() => Effect.sync(() => rmSync(partial, { force: true }))))
    yield* linkNew(partial, path)
    return result
  })

/** Link `from` to a new name `to` (refusing an existing one), then drop `from`. */
export const linkNew = (from: string, to: string) =>
  Effect.try({
    try: () => linkSync(from, to),
    catch: (e) =>
      e instanceof Error && "code" in e && e.code === "EEXIST"
        ? new OutputExists({ path: to })
        : new StorageError({ message: `cannot create ${to}: ${messageOf(e)}` })
  }).pipe(Effect.ensuring(Effect.sync(() => rmSync(from, { force: true }))))

/** Count the lines of a file (for progress), reading it once in chunks. */
export const countLines = (path: string) =>
  Effect.try({
    try: () => {
      const fd = openSync(path, "r")
      try {
        const buffer = Buffer.allocUnsafe(1 << 20)
        let lines = 0
        let last = 10
        let read: number
        while ((read = readSync(fd, buffer, 0, buffer.length, null)) > 0) {
          for (let i = buffer.indexOf(10, 0); i !== -1 && i < read; i = buffer.indexOf(10, i + 1)) lines++
          last = buffer[read - 1]!
        }
        return last === 10 ? lines : lines + 1
      } finally {
        closeSync(fd)
      }
    },
    catch: (e) => new StorageError({ message: messageOf(e) })
  })

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))
