/**
 * Sync commands: `sync` (one push + pull, or `--watch`), `status`, `dead-letters`.
 * Exit codes: 0 synced · 3 auth failed · 4 server unreachable or transient failure (pending kept) · 5 dead-lettered.
 */
import { Command, Options } from "@effect/cli"
import { Config, Console, Effect, Layer, Logger, LogLevel, Option, Ref, Stream } from "effect"
import { existsSync } from "node:fs"
import * as HttpTransport from "../sync/HttpTransport.js"
import * as Ledger from "../sync/Ledger.js"
import * as SyncEngine from "../sync/SyncEngine.js"
import { DeadLettered } from "../sync/Errors.js"
import { UsageError } from "./Exit.js"
import { corruptionAsBadInput, db, json, note, output, stderrLogger, storeLayer } from "./Shared.js"

const server = Options.text("server").pipe(
  Options.withDescription("the sync server URL (or $MEMSYNC_SERVER; remembered in the database after a sync)"),
  Options.withFallbackConfig(Config.string("MEMSYNC_SERVER")),
  Options.optional
)
const token = Options.text("token").pipe(
  Options.withDescription("the bearer token (or $MEMSYNC_TOKEN; never stored)"),
  Options.withFallbackConfig(Config.string("MEMSYNC_TOKEN")),
  Options.optional
)

const sync = Command.make(
  "sync",
  {
    server,
    token,
    watch: Options.boolean("watch").pipe(Options.withDescription("keep syncing until interrupted, printing status")),
    intervalMs: Options.integer("interval-ms").pipe(
      Options.withDescription("with --watch: pull (and push) every N ms (default 30000)"),
      Options.optional
    ),
    db,
    json
  },
  (a) =>
    Effect.gen(function* () {
      // Everything typed is checked before the database is opened (and, for a new replica, created).
      const t = yield* Option.match(a.token, {
        onNone: () => new UsageError({ message: "no token: pass --token or set MEMSYNC_TOKEN" }),
        onSome: Effect.succeed
      })
      const interval = Option.getOrUndefined(a.intervalMs)
      if (interval !== undefined && interval < 1) {
        return yield* new UsageError({ message: "--interval-ms must be a positive number of milliseconds" })
      }
      if (Option.isSome(a.server)) yield* checkServerUrl(a.server.value)
      // Only an existing replica can remember a server; looking for one must not create the file.
      const remembered = existsSync(a.db)
        ? yield* Effect.flatMap(Ledger.Ledger, (l) => l.get("server_url")).pipe(withLedger(a.db))
        : undefined
      const url = Option.getOrUndefined(a.server) ?? remembered
      if (url === undefined) {
        return yield* new UsageError({ message: "no server: pass --server URL or set MEMSYNC_SERVER" })
      }
      const config: SyncEngine.Config = {
        token: t,
        background: a.watch,
        ...(interval === undefined ? {} : { pullIntervalMs: interval })
      }
      const layer = SyncEngine.layer(config).pipe(
        Layer.provideMerge(Layer.merge(storeLayer(a.db, { create: true }), HttpTransport.layer({ baseUrl: url })))
      )
      yield* Effect.gen(function* () {
        const engine = yield* SyncEngine.SyncEngine
        if (a.watch) {
          yield* note(`syncing with ${url} (Ctrl-C to stop)`)
          // Remembered once a pull from this server has completed, as a one-shot sync remembers it once it succeeded
          // (a mistyped URL is never remembered).
          const pulledBefore = yield* engine.ledger.get("last_pull_at")
          const remembered = yield* Ref.make(false)
          const remember = Effect.gen(function* () {
            if ((yield* Ref.get(remembered)) || (yield* engine.ledger.get("last_pull_at")) === pulledBefore) return
            yield* engine.ledger.set("server_url", url)
            yield* Ref.set(remembered, true)
          })
          yield* engine.statusChanges.pipe(
            Stream.changesWith((x, y) => JSON.stringify(x) === JSON.stringify(y)),
            Stream.runForEach((s) =>
              Effect.zipRight(
                a.json
                  ? Console.log(JSON.stringify(s))
                  : Console.log(
                      `${s.state.padEnd(11)} pending=${s.pending} dead=${s.deadLetters}${s.lastError ? `  (${s.lastError})` : ""}`
                    ),
                remember
              )
            )
          )
          return
        }
        const before = yield* engine.ledger.counts
        const summary = yield* engine.syncNow
        yield* engine.ledger.set("server_url", url)
        const after = yield* engine.ledger.counts
        // New conflicts were logged as they were found; older ones are recalled on every sync until dealt with.
        if (after.idConflicts > 0 && after.idConflicts <= before.idConflicts) {
          yield* note(`warning: ${conflictReminder(after.idConflicts)}`)
        }
        // A pulled id conflict dead-letters this replica's version without a push being rejected in this run.
        const deadLettered = Math.max(summary.rejected, after.deadLetters - before.deadLetters)
        // This run's dead letters are the exit-5 error below; earlier ones are recalled until they are requeued.
        if (deadLettered === 0 && after.deadLetters > 0) {
          yield* note(
            `warning: ${after.deadLetters} event${after.deadLetters === 1 ? " was" : "s were"} rejected by the server ` +
              `in an earlier sync and ${after.deadLetters === 1 ? "is" : "are"} not synced ` +
              `(see memsync dead-letters; --requeue-all sends them again)`
          )
        }
        yield* output(
          a.json,
          summary,
          () =>
            `synced with ${url}: pushed ${summary.pushed}, pulled ${summary.pulled}, rejected ${summary.rejected}` +
            `${summary.resynced ? " (resynced)" : ""} in ${summary.durationMs} ms`
        )
        if (deadLettered > 0) {
          // Older dead letters still waiting are counted in too, so this one line tells the whole story.
          const older = after.deadLetters - deadLettered
          return yield* new DeadLettered({
            count: deadLettered,
            message:
              `${deadLettered} events were rejected by the server` +
              `${older > 0 ? ` (and ${older} from earlier syncs still wait)` : ""} (see memsync dead-letters)`
          })
        }
      }).pipe(Effect.provide(layer), Effect.provide(engineLogger), (self) => corruptionAsBadInput(a.db, self))
    })
).pipe(Command.withDescription("push local events and pull remote ones (once, or --watch)"))

/** Run a command over the ledger of an existing replica (a damaged file is bad input, exit 2). */
const withLedger =
  (file: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>) =>
    corruptionAsBadInput(
      file,
      Effect.provide(self, Ledger.layer.pipe(Layer.provideMerge(storeLayer(file, { create: false }))))
    )

/** A server URL must be an absolute http(s) URL: anything else is a typo, not a server that is down. */
const checkServerUrl = (url: string): Effect.Effect<void, UsageError> => {
  const parsed = URL.canParse(url) ? new URL(url) : undefined
  return parsed !== undefined && (parsed.protocol === "http:" || parsed.protocol === "https:")
    ? Effect.void
    : new UsageError({ message: `--server ${JSON.stringify(url)} is not an http:// or https:// URL` })
}

const status = Command.make("status", { db, json }, (a) =>
  Effect.gen(function* () {
    const ledger = yield* Ledger.Ledger
    const counts = yield* ledger.counts
    const num = (v: string | undefined) => (v === undefined ? undefined : Number(v))
    const report = {
      pending: counts.pending,
      deadLetters: counts.deadLetters,
      idConflicts: counts.idConflicts,
      cursor: yield* ledger.cursor,
      epoch: yield* ledger.get("epoch"),
      serverUrl: yield* ledger.get("server_url"),
      lastPushAt: num(yield* ledger.get("last_push_at")),
      lastPullAt: num(yield* ledger.get("last_pull_at"))
    }
    const when = (t: number | undefined) => (t === undefined ? "never" : new Date(t).toISOString())
    yield* output(a.json, report, () =>
      [
        `server        ${report.serverUrl ?? "(none yet)"}`,
        `pending       ${report.pending}`,
        `dead letters  ${report.deadLetters}`,
        `id conflicts  ${report.idConflicts}${report.idConflicts > 0 ? `  (${conflictReminder(report.idConflicts)})` : ""}`,
        `cursor        ${report.cursor}`,
        `epoch         ${report.epoch ?? "(unknown)"}`,
        `last push     ${when(report.lastPushAt)}`,
        `last pull     ${when(report.lastPullAt)}`
      ].join("\n")
    )
  }).pipe(withLedger(a.db))
).pipe(Command.withDescription("sync state of this replica: pending, dead letters, cursor, epoch, last sync"))

const deadLetters = Command.make(
  "dead-letters",
  {
    requeue: Options.text("requeue").pipe(
      Options.withDescription("re-emit this dead letter's payload as a fresh event"),
      Options.optional
    ),
    requeueAll: Options.boolean("requeue-all").pipe(Options.withDescription("re-emit every dead letter")),
    db,
    json
  },
  (a) =>
    Effect.gen(function* () {
      const ledger = yield* Ledger.Ledger
      if (Option.isSome(a.requeue) || a.requeueAll) {
        const ids = Option.isSome(a.requeue) ? [a.requeue.value] : (yield* ledger.deadLetters).map((d) => d.eventId)
        const requeued = yield* Effect.forEach(ids, (id) =>
          Effect.map(ledger.requeue(id), (fresh) => ({ deadLetter: id, event: fresh }))
        )
        return yield* output(a.json, requeued, () =>
          requeued.length === 0 ? "no dead letters" : requeued.map((r) => `${r.deadLetter} -> ${r.event}`).join("\n")
        )
      }
      const list = yield* ledger.deadLetters
      yield* output(a.json, list, () =>
        list.length === 0
          ? "no dead letters"
          : list
              .map((d) => `${d.eventId}  ${d.type.padEnd(15)} ${d.memoryId ?? "-"}  ${d.reason}: ${d.message}`)
              .join("\n")
      )
    }).pipe(withLedger(a.db))
).pipe(Command.withDescription("events the server rejected; --requeue ID or --requeue-all to send them again"))

/**
 * The engine's warnings and errors, as `memsync: warning: ...` lines on stderr, in place of the logfmt lines every
 * other command logs (bin.ts): stdout carries the command's output (`--json` must stay parseable). Below warning is
 * noise for a command line.
 */
const engineLogger = Logger.replace(
  stderrLogger,
  Logger.make(({ logLevel, message }) => {
    if (!LogLevel.greaterThanEqual(logLevel, LogLevel.Warning)) return
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    const label = LogLevel.greaterThanEqual(logLevel, LogLevel.Error) ? "error" : "warning"
    process.stderr.write(`memsync: ${label}: ${text}\n`)
  })
)

const conflictReminder = (n: number): string =>
  `the server holds another body under ${n} event id${n === 1 ? "" : "s"} of this replica, so this replica's view ` +
  `differs from the server's: see docs/sync.md, "ID conflicts"`

/** The sync commands. */
export const syncCommands = [sync, status, deadLetters] as const
