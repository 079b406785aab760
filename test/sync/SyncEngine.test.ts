import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { makeReplica, makeServer } from "./harness.js"

describe("SyncEngine", () => {
  it.scoped("two replicas converge through syncNow", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a", engine: { background: false } })
      const b = yield* makeReplica(server, { clientId: "b", engine: { background: false } })
      const m = yield* a.store.create({ content: "from a" })
      const sa = yield* a.engine.syncNow
      assert.strictEqual(sa.pushed, 1)
      const sb = yield* b.engine.syncNow
      assert.strictEqual(sb.pulled, 1)
      const got = yield* b.store.get(m.id)
      assert.strictEqual(got.content, "from a")
    })
  )

  it.scoped("background push after a local commit", () =>
    Effect.gen(function* () {
      const server = yield* makeServer()
      const a = yield* makeReplica(server, { clientId: "a" })
      yield* a.store.create({ content: "bg" })
      yield* TestClock.adjust("1 second")
      const head = yield* server.head("space-a")
      assert.strictEqual(head.head, 1)
    })
  )
})
