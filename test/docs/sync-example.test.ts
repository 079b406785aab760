/**
 * docs/sync.md promises a runnable example: examples/sync.ts, shown verbatim, printing what the page says it prints.
 * These tests hold the page, the file and the program's behaviour together.
 */
import { assert, describe, it } from "@effect/vitest"
import { Console, Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { main } from "../../examples/sync.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const EXAMPLE = join(ROOT, "examples", "sync.ts")
const doc = readFileSync(join(ROOT, "docs", "sync.md"), "utf8")

/** The lines of the first fenced block of `language` after `marker` in the page. */
const blockAfter = (marker: string, language: string): Array<string> => {
  const start = doc.indexOf(marker)
  assert.isAtLeast(start, 0, `docs/sync.md has no "${marker}"`)
  const open = doc.indexOf("```" + language + "\n", start)
  const close = doc.indexOf("\n```", open)
  return doc.slice(open + language.length + 4, close).split("\n")
}

describe("docs/sync.md and examples/sync.ts", () => {
  it("the page shows the example file verbatim", () => {
    assert.include(doc, "```ts\n" + readFileSync(EXAMPLE, "utf8") + "```\n")
  })

  it.live("the example runs (server in-process, replicas over HTTP) and prints what the page says", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const console = yield* Effect.console
      const capture: Console.Console = {
        ...console,
        log: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.map(String).join(" ")))
      }
      const result = yield* main.pipe(Effect.withConsole(capture))
      assert.deepStrictEqual(lines, blockAfter("It prints:", "text"))
      assert.deepStrictEqual(result.events, [3, 3])
      assert.strictEqual(result.phone.state, "idle")
      assert.strictEqual(result.stranger.state, "auth-failed")
      assert.strictEqual(result.stranger.pending, 1)
    })
  )

  it("the page documents every field of SyncEngine.Config", () => {
    const source = readFileSync(join(ROOT, "src", "sync", "SyncEngine.ts"), "utf8")
    const body = /export interface Config \{([\s\S]*?)\n\}/.exec(source)?.[1] ?? ""
    const fields = Array.from(body.matchAll(/^\s*readonly (\w+)\??:/gm), (m) => m[1]!)
    assert.isAtLeast(fields.length, 10)
    const section = doc.slice(doc.indexOf("## Configuration"), doc.indexOf("## Modes"))
    for (const field of fields) assert.include(section, `| \`${field}\``, `docs/sync.md does not document ${field}`)
  })
})
