/**
 * memsync sync as a library: a sync server started in-process, two replicas syncing through it in the background,
 * and a third replica whose token the server refuses.
 *
 * Run it with `npx tsx examples/sync.ts`. test/docs/sync-example.test.ts runs the exported `main` and checks what it
 * prints against docs/sync.md.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Context, Effect, Layer, Logger, LogLevel, Option, Schedule } from "effect"
import { pathToFileURL } from "node:url"
import * as Server from "../src/server/Server.js"
import * as MemoryStore from "../src/store/MemoryStore.js"
import * as HttpTransport from "../src/sync/HttpTransport.js"
import * as SyncEngine from "../src/sync/SyncEngine.js"

const TOKEN = "example-token-1"

/** A replica: its own store (here in memory) and a sync engine talking HTTP to `url`. */
const replica = (url: string, config: SyncEngine.Config) =>
  Effect.gen(function* () {
    const layer = SyncEngine.layer(config).pipe(
      Layer.provideMerge(
        Layer.merge(MemoryStore.layer({ filename: ":memory:" }), HttpTransport.layer({ baseUrl: url }))
      )
    )
    // Built in the caller's scope: the engine's fibers stop (after a final push) when that scope closes.
    const context = yield* Layer.build(layer)
    return { store: Context.get(context, MemoryStore.MemoryStore), engine: Context.get(context, SyncEngine.SyncEngine) }
  })

/** Check `condition` every 20 ms until it holds (at most 10 s). */
const until = <E>(condition: Effect.Effect<boolean, E>) =>
  condition.pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (ok) => ok }),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("gave up waiting") })
  )

/** The program: everything it starts lives in its scope, and stops when it ends. */
export const program = Effect.gen(function* () {
  // The server: an in-memory log, one token for the space "team", a free port on loopback.
  const server = yield* Layer.build(
    Server.layer({ filename: ":memory:", host: "127.0.0.1", port: 0, tokens: [{ token: TOKEN, space: "team" }] })
  )
  const url = yield* Effect.provide(Server.currentUrl, server)
  yield* Console.log(`server: listening on ${new URL(url).hostname}`)

  // The laptop writes in `remote` mode: `confirm` returns once the server has acknowledged the write.
  const laptop = yield* replica(url, { token: TOKEN, mode: "remote" })
  // The phone syncs in the background: its commits are pushed at once, and it pulls every 200 ms.
  const phone = yield* replica(url, { token: TOKEN, pullIntervalMs: 200, commitDebounceMs: 10 })

  const memo = yield* laptop.engine.confirm(laptop.store.create({ content: "Standup moved to 9:30" }))
  yield* Console.log(`laptop: created "${memo.content}" (acknowledged by the server)`)

  const contentOn = (store: MemoryStore.MemoryStore, content: string) =>
    Effect.map(
      Effect.option(store.get(memo.id)),
      Option.exists((m) => m.content === content)
    )
  yield* until(contentOn(phone.store, "Standup moved to 9:30"))
  yield* Console.log(`phone: sees "Standup moved to 9:30"`)

  yield* phone.store.update(memo.id, { content: "Standup moved to 10:00" })
  yield* Console.log(`phone: updated it to "Standup moved to 10:00"`)
  // The laptop pulls every 30 s by default; rather than wait, it syncs now (until the phone's push has landed).
  yield* until(Effect.zipRight(laptop.engine.syncNow, contentOn(laptop.store, "Standup moved to 10:00")))
  yield* Console.log(`laptop: sees "Standup moved to 10:00"`)

  yield* laptop.engine.confirm(laptop.store.remove(memo.id))
  yield* Console.log("laptop: removed it")
  yield* until(Effect.map(phone.store.list({ includeDeleted: true }), (ms) => ms.some((m) => m.deleted)))
  yield* Console.log("phone: sees it deleted")

  // The status is a SubscriptionRef: read it, or follow `engine.statusChanges` as a Stream.
  yield* until(Effect.map(phone.engine.status.get, (s) => s.state === "idle" && s.pending === 0))
  const status = yield* phone.engine.status.get
  yield* Console.log(`phone: ${status.state}, ${status.pending} pending, ${status.deadLetters} dead letters`)

  // A replica with a token the server does not know: its engine parks instead of retrying (one refused request, then
  // a probe every 5 minutes), keeps the write pending, and resumes as soon as `engine.credentials` is set anew.
  const stranger = yield* replica(url, { token: "not-a-valid-token" })
  yield* stranger.store.create({ content: "waits for a valid token" })
  yield* until(Effect.map(stranger.engine.status.get, (s) => s.state === "auth-failed" && s.pending === 1))
  const parked = yield* stranger.engine.status.get
  yield* Console.log(`stranger: ${parked.state}, ${parked.pending} pending`)

  const events = [(yield* laptop.store.stats).events, (yield* phone.store.stats).events]
  yield* Console.log(`events held: laptop ${events[0]}, phone ${events[1]}`)
  return { events, phone: status, stranger: parked }
}).pipe(Effect.scoped)

/** The program with the engine's and server's logs limited to errors, so the output is what the program prints. */
export const main = program.pipe(Logger.withMinimumLogLevel(LogLevel.Error))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  NodeRuntime.runMain(main)
}
