import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import * as MemoryStore from "../../src/store/MemoryStore.js"
import { toFts } from "../../src/store/SearchQuery.js"

describe("SearchQuery", () => {
  it("control characters separate words; NUL never reaches SQLite", () => {
    assert.strictEqual(toFts("a\u0000b"), `"a" "b"`)
    assert.strictEqual(toFts("\u0000\u0001"), undefined)
    assert.strictEqual(toFts("tab\tnew\nline"), `"tab" "new" "line"`)
  })

  // One store for every run: the property is about the query text, not the data.
  layer(MemoryStore.layer({ filename: ":memory:" }))((it) => {
    it.effect.prop(
      "whatever a user types, search answers (hits or none), never a storage error",
      [
        fc.array(fc.oneof(fc.string({ unit: "binary" }), fc.constantFrom("\u0000", '"', "*", "AND", "NEAR(", ":", "-")))
      ],
      ([parts]) =>
        Effect.gen(function* () {
          const store = yield* MemoryStore.MemoryStore
          yield* store.search(parts.join(""))
          yield* store.search(parts.join(" "))
        }),
      { fastCheck: { numRuns: 300 } }
    )
  })
})
