/**
 * "Never modifies the source database": every read-only command, on a replica in every sync state and on a server
 * space, leaves the file (and its WAL) byte for byte as it was.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { join } from "node:path"
import { created, serve, syncedReplica, tempDir, updated } from "./fixtures.js"
import { fileHash, inProcess } from "./runs.js"

/** The read-only commands over the database `where` selects (`--db FILE`, and `--space S` for a server). */
const readOnly = (where: ReadonlyArray<string>, ids: { memory: string; event: string }, out: string) => [
  ["log", ...where],
  ["log", "--json", "--type", "memory.created", ...where],
  ["replay", "--until", "3", ...where],
  ["replay", "--at", "2025-01-01T00:00:00.003Z", "--ndjson", ...where],
  ["replay", "--until", "4", "--out", join(out, "replay.db"), ...where],
  ["blame", ids.memory, ...where],
  ["explain", ids.event, "--json", ...where],
  ["export", ...where],
  ["export", "--out", join(out, "export.ndjson"), ...where],
  ["stats", ...where],
  ["stats", "--json", ...where]
]

describe("read-only commands", () => {
  it.effect("never modify the database they read (replica and server space)", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const replica = join(dir, "replica.db")
      const { rejected } = yield* syncedReplica(replica)
      const server = join(dir, "server.db")
      const served = [created("m1", "a", 1), updated("m1", "b", 2, { content: "served" })]
      yield* serve(server, "team", served)
      const before = { replica: fileHash(replica), server: fileHash(server) }

      const runs = [
        ...readOnly(["--db", replica], { memory: "m1", event: rejected }, tempDir()),
        ...readOnly(["--db", server, "--space", "team"], { memory: "m1", event: served[1]!.id }, tempDir()),
        ["diff", replica, server, "--space", "team"],
        ["diff", server, replica, "--space", "team", "--json"]
      ]
      for (const args of runs) {
        const run = yield* inProcess(args)
        // diff exits 1 (the logs differ): that is its answer, not a failure to read.
        const ok = Exit.isSuccess(run.exit) || JSON.stringify(run.exit).includes("VerificationFailed")
        assert.isTrue(ok, `${args.join(" ")}: ${JSON.stringify(run.exit)}`)
        assert.strictEqual(fileHash(replica), before.replica, `${args.join(" ")} left the replica as it was`)
        assert.strictEqual(fileHash(server), before.server, `${args.join(" ")} left the server database as it was`)
      }
    })
  )
})
