/**
 * WAL checkpoints on a worker thread, so that a writer never waits for one.
 *
 * Why: in WAL mode a commit appends pages to the `-wal` file, and SQLite's auto-checkpoint (run by the commit that
 * takes the WAL past `wal_autocheckpoint` pages, 1,000 by default) copies them into the database file and fsyncs
 * it, on the writer's thread, inside that commit. Measured on a bulk ingest (bench/README.md): ~45-50 µs of its
 * ~200 µs per event; it is also the p99 of an interactive create. A PASSIVE checkpoint by another connection runs
 * while the writer goes on appending (neither waits for the other), so a worker thread does it, on another core.
 * Durability is unchanged: a commit is exactly as durable as before (the WAL holds it), and a checkpoint
 * interrupted by a crash is finished by the next open.
 *
 * The worker starts the first time the WAL holds the auto-checkpoint's number of frames, "the first time a checkpoint
 * was due": a thread costs ~60 ms of CPU to start, which a short CLI command or a small test database would pay for
 * nothing. The file's size does not say so: SQLite reuses the file from its beginning once it was checkpointed and
 * keeps its size, so a WAL made large by a bulk write (this process's, or another's on the same file, such as a
 * `memsync sync --watch` pulling a backlog) would start a thread for every short write after it. What does say so is
 * whether the WAL's frame number `wal_autocheckpoint` belongs to the current use of the file: a frame carries the salts
 * of the WAL header it was written under, and SQLite changes them at every restart (SQLite's file format, "WAL File
 * Format"). (Capping the file with `journal_size_limit` would also do, but cutting it back and growing it again cost a
 * bulk ingest ~5-8% in three interleaved runs. Reading `mxFrame` from the `-shm` file is not safe: SQLite holds POSIX
 * locks on it, and closing any descriptor of that file drops every lock the process holds on it.)
 *
 * Until the worker runs, and if it ever fails, SQLite's own auto-checkpoint does the work as before; while it runs, the
 * writer's auto-checkpoint stays on as a safety net at `SAFETY_FACTOR` times the size (it also lets SQLite restart the
 * WAL from its beginning when the writer never pauses long enough for the worker to catch up).
 */
import type Sqlite from "better-sqlite3"
import { Effect } from "effect"
import { closeSync, existsSync, openSync, readSync } from "node:fs"
import { createRequire } from "node:module"
import { resolve } from "node:path"
import { Worker, type WorkerOptions } from "node:worker_threads"

/** The checkpointer of one open database. */
export interface Checkpointer {
  /** Call after every commit of the writer connection (cheap: a counter; two small WAL reads while idle). */
  readonly committed: () => void
  /** Where the worker stands (tests, diagnostics). */
  readonly state: () => State
  /** How many checkpoints the worker has run. */
  readonly checkpoints: () => number
  /** Stop the worker and wait until it has closed its connection. Run before the writer's connection closes. */
  readonly stop: Effect.Effect<void>
}

/** `idle`: not started (no checkpoint was due yet); `failed`: the worker died, SQLite's auto-checkpoint took over. */
export type State = "idle" | "starting" | "running" | "failed" | "stopped"

/** Options (tests). */
export interface Options {
  /** How often the worker looks for new commits, in milliseconds. Default 50. */
  readonly intervalMs?: number
  /** The module the worker loads to open the database. Default: better-sqlite3, resolved from this module. */
  readonly driver?: string
  /** Creates the thread. Default: `new Worker` (tests: one that throws, as Node does when no thread can be made). */
  readonly spawn?: (source: string, options: WorkerOptions) => Worker
}

/** The WAL file's header and each frame's header, in bytes; a frame's salts sit 8 bytes into its header. */
const WAL_HEADER = 32
const FRAME_HEADER = 24

/** The writer's own auto-checkpoint while the worker runs: this many times the size it had. */
export const SAFETY_FACTOR = 10

// Slots of the shared counters. The worker reports through them rather than by message: a writer busy with a bulk
// load may not turn its event loop for seconds, and it must hear at once that the worker runs (or died).
const COMMITS = 0
const STOP = 1
const DONE = 2
const WORKER = 3
const READY = 1
const DEAD = 2

/**
 * The worker, as CommonJS source: the CLI runs from a one-file bundle, where a worker module of its own would have
 * no file to load. It waits on the shared STOP slot with a timeout (a wake-up every `intervalMs`), and checkpoints
 * when the writer has committed since its last look.
 */
const WORKER_SOURCE = `
const { workerData } = require("node:worker_threads")
const flags = new Int32Array(workerData.flags)
try {
  const Sqlite = require(workerData.driver)
  const db = new Sqlite(workerData.filename, { fileMustExist: true })
  const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)")
  Atomics.store(flags, ${WORKER}, ${READY})
  let seen = 0
  while (Atomics.load(flags, ${STOP}) === 0) {
    Atomics.wait(flags, ${STOP}, 0, workerData.intervalMs)
    const commits = Atomics.load(flags, ${COMMITS})
    if (commits !== seen && Atomics.load(flags, ${STOP}) === 0) {
      seen = commits
      checkpoint.run()
      Atomics.add(flags, ${DONE}, 1)
    }
  }
  db.close()
} catch (e) {
  Atomics.store(flags, ${WORKER}, ${DEAD})
  throw e
}
`

/** A checkpointer for the WAL database `filename`, open (for writing) on `db`. */
export const make = (filename: string, db: Sqlite.Database, options: Options = {}): Checkpointer => {
  // Absolute: the worker must open this very file even if the process changes directory meanwhile.
  const path = resolve(filename)
  const wal = `${path}-wal`
  const autocheckpoint = Number(db.pragma("wal_autocheckpoint", { simple: true }))
  const flags = new Int32Array(new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT))
  let state: State = autocheckpoint > 0 ? "idle" : "stopped"
  let worker: Worker | undefined

  /** Set the writer's auto-checkpoint, unless its connection is gone (a crash simulation closes it under us). */
  const setAutocheckpoint = (pages: number) => {
    if (db.open) db.pragma(`wal_autocheckpoint = ${pages}`)
  }

  // The `-wal` file, open while the checkpointer waits for a checkpoint to be due. SQLite locks the database and
  // `-shm` files, never the WAL, so a descriptor of it can be opened and closed without touching SQLite's locks.
  let walFd: number | undefined
  const closeWal = () => {
    const fd = walFd
    walFd = undefined
    try {
      if (fd !== undefined) closeSync(fd)
    } catch {
      // Nothing is left to release: the descriptor is gone either way.
    }
  }
  const header = Buffer.alloc(WAL_HEADER)
  const frame = Buffer.alloc(FRAME_HEADER)
  /** Does the WAL hold `autocheckpoint` frames written since SQLite last restarted it (so a checkpoint is due)? */
  const due = (): boolean => {
    if (walFd === undefined) {
      // No WAL file (yet): nothing is due.
      if (!existsSync(wal)) return false
      walFd = openSync(wal, "r")
    }
    if (readSync(walFd, header, 0, WAL_HEADER, 0) < WAL_HEADER) return false
    const pageSize = header.readUInt32BE(8)
    const at = WAL_HEADER + (autocheckpoint - 1) * (FRAME_HEADER + pageSize)
    if (readSync(walFd, frame, 0, FRAME_HEADER, at) < FRAME_HEADER) return false
    return frame.compare(header, 16, 24, 8, 16) === 0
  }

  const start = () => {
    closeWal()
    state = "starting"
    const spawn = options.spawn ?? ((source, o) => new Worker(source, o))
    const w = spawn(WORKER_SOURCE, {
      eval: true,
      workerData: {
        driver: options.driver ?? createRequire(import.meta.url).resolve("better-sqlite3"),
        filename: path,
        flags: flags.buffer,
        intervalMs: options.intervalMs ?? 50
      }
    })
    // A checkpointer never keeps a process alive; `stop` holds it while it waits for the exit.
    w.unref()
    // An exit before `stop` is a failure even when the worker could not say so (killed, out of memory).
    w.on("exit", () => Atomics.compareExchange(flags, WORKER, READY, DEAD))
    // Its error is already accounted for (the writer's auto-checkpoint takes over); it must not crash the process.
    w.on("error", () => Atomics.store(flags, WORKER, DEAD))
    worker = w
  }

  /** Follow the worker's reports: raise the writer's auto-checkpoint while it runs, restore it if it dies. */
  const follow = () => {
    const reported = Atomics.load(flags, WORKER)
    if (state === "starting" && reported === READY) {
      state = "running"
      setAutocheckpoint(autocheckpoint * SAFETY_FACTOR)
    } else if ((state === "starting" || state === "running") && reported === DEAD) {
      state = "failed"
      setAutocheckpoint(autocheckpoint)
    }
  }

  // Never throws: it runs after a COMMIT, which must not be reported as failed (nor its lock kept) because a thread
  // could not be made (Node throws EAGAIN under a thread limit) or the WAL could not be looked at. Either leaves the
  // checkpoints to the writer's own auto-checkpoint, unchanged until a worker reports that it runs.
  const committed = () => {
    Atomics.add(flags, COMMITS, 1)
    try {
      if (state === "idle") {
        if (due()) start()
      } else if (state === "starting" || state === "running") follow()
    } catch {
      if (worker === undefined) {
        state = "failed"
        closeWal()
      }
    }
  }

  const stop = Effect.async<void>((resume) => {
    closeWal()
    const w = worker
    const alive = (state === "running" || state === "starting") && Atomics.load(flags, WORKER) !== DEAD
    state = "stopped"
    if (w === undefined || !alive) return resume(Effect.void)
    w.ref()
    w.once("exit", () => resume(Effect.void))
    Atomics.store(flags, STOP, 1)
    Atomics.notify(flags, STOP)
  })

  return {
    committed,
    state: () => {
      follow()
      return state
    },
    checkpoints: () => Atomics.load(flags, DONE),
    stop
  }
}
