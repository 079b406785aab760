/**
 * The SQLite floor of a workload: record every statement a piece of memsync code runs (SQL and parameters, in order),
 * then run the same statements again on a fresh file of the same schema, with nothing else around them: no HTTP, no
 * decoding, no fold, no Effect. What that replay costs is what SQLite alone costs for exactly that work, so a target
 * below it cannot be met by changing the JavaScript.
 *
 * Recording wraps the methods of better-sqlite3's `Statement` prototype between `start` and `stop`. It is a bench tool
 * only: it slows the recorded run, so that run is never the one timed. Its limits: `db.exec` calls are not recorded (a
 * catch-up into an empty replica makes none), an `iterate` is replayed to its end, and only array arguments are
 * copied when recorded.
 */
import Sqlite from "better-sqlite3"
import { Effect, Logger, LogLevel } from "effect"
import * as Checkpointer from "../src/store/Checkpointer.js"
import * as MemoryStore from "../src/store/MemoryStore.js"
import { openBare } from "./lib.js"

/** One statement call: the method, its SQL, and its arguments (arrays copied at the call). */
export type Recorded = readonly [method: "run" | "get" | "all" | "iterate", sql: string, args: ReadonlyArray<unknown>]

const METHODS = ["run", "get", "all", "iterate"] as const

/** Records statement calls between `start` and `stop` (by this thread). */
export interface Recorder {
  readonly start: () => void
  /** Stop recording (again: no change); returns what was recorded since `start`. */
  readonly stop: () => Array<Recorded>
}

/** A recorder (nothing is wrapped until `start`). */
export const makeRecorder = (): Recorder => {
  const probe = new Sqlite(":memory:")
  const proto = Object.getPrototypeOf(probe.prepare("SELECT 1")) as Record<string, (...a: Array<unknown>) => unknown>
  probe.close()
  const originals = METHODS.map((m) => [m, proto[m]!] as const)
  let statements: Array<Recorded> = []
  return {
    start: () => {
      statements = []
      for (const [m, original] of originals) {
        proto[m] = function (this: { source: string }, ...args: Array<unknown>) {
          statements.push([m, this.source, args.map((a) => (Array.isArray(a) ? [...a] : a))])
          return original.apply(this, args)
        }
      }
    },
    stop: () => {
      for (const [m, original] of originals) proto[m] = original
      return statements
    }
  }
}

/**
 * Replay `statements` on a fresh replica file (`file`, created here with memsync's schema) opened as memsync opens
 * one (WAL, synchronous=NORMAL, 64 MiB cache, recursive triggers) and with memsync's checkpointer told of every
 * COMMIT, as the store does. Returns the wall-clock seconds of the replay alone.
 */
export const replay = async (file: string, statements: ReadonlyArray<Recorded>): Promise<number> => {
  await Effect.runPromise(
    MemoryStore.MemoryStore.pipe(
      Effect.provide(MemoryStore.layer({ filename: file })),
      Effect.scoped,
      Logger.withMinimumLogLevel(LogLevel.Warning)
    )
  )
  const db = openBare(file)
  db.pragma("cache_size = -65536")
  db.pragma("recursive_triggers = ON")
  const checkpointer = Checkpointer.make(file, db)
  const prepared = new Map<string, Sqlite.Statement>()
  const started = performance.now()
  for (const [method, sql, args] of statements) {
    // The checkpointer's own setting of the auto-checkpoint belongs to the replay's checkpointer, not the recording.
    if (sql.startsWith("PRAGMA wal_autocheckpoint")) continue
    let stmt = prepared.get(sql)
    if (stmt === undefined) {
      stmt = db.prepare(sql)
      prepared.set(sql, stmt)
    }
    // `db.pragma()` reads a setting's answer through `all()` even when there is none; a replay just runs it.
    if (!stmt.reader) stmt.run(...args)
    else if (method === "iterate") for (const _ of stmt.iterate(...args));
    else stmt[method](...args)
    if (sql === "COMMIT") checkpointer.committed()
  }
  const seconds = (performance.now() - started) / 1000
  await Effect.runPromise(checkpointer.stop)
  db.close()
  return seconds
}
