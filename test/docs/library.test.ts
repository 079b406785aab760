/**
 * docs/library.md promises a runnable example: examples/library.ts, shown verbatim, printing what the page says it
 * prints. These tests hold the page, the file and the program's behaviour together.
 */
import { assert, describe, it } from "@effect/vitest"
import { Console, Effect } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import { main } from "../../examples/library.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const EXAMPLE = join(ROOT, "examples", "library.ts")
const doc = readFileSync(join(ROOT, "docs", "library.md"), "utf8")

const dirs: Array<string> = []
const tempDb = () => {
  const dir = mkdtempSync(join(tmpdir(), "memsync-example-"))
  dirs.push(dir)
  return join(dir, "memsync.db")
}
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

/** The lines of the first fenced block of `language` after `marker` in the page. */
const blockAfter = (marker: string, language: string): Array<string> => {
  const start = doc.indexOf(marker)
  assert.isAtLeast(start, 0, `docs/library.md has no "${marker}"`)
  const open = doc.indexOf("```" + language + "\n", start)
  const close = doc.indexOf("\n```", open)
  return doc.slice(open + language.length + 4, close).split("\n")
}

const printed = blockAfter("It prints:", "text")

describe("docs/library.md and examples/library.ts", () => {
  it("the page shows the example file verbatim", () => {
    assert.include(doc, "```ts\n" + readFileSync(EXAMPLE, "utf8") + "```\n")
  })

  it.live("the example runs against a temporary database and prints what the page says", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const console = yield* Effect.console
      const capture: Console.Console = {
        ...console,
        log: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.map(String).join(" ")))
      }
      const filename = tempDb()
      const result = yield* main(filename).pipe(Effect.withConsole(capture))
      assert.deepStrictEqual(lines, printed)
      assert.strictEqual(result.events, 4)
      assert.isTrue(result.ok)
      assert.isTrue(existsSync(filename), "the program wrote to the file it was given")
    })
  )

  it.live(
    "the example runs as a script with tsx",
    () =>
      Effect.gen(function* () {
        const filename = tempDb()
        const run = yield* Effect.async<{ code: number | null; stdout: string; stderr: string }>((resume) => {
          const child = spawn(process.execPath, ["--import", "tsx", EXAMPLE, filename], {
            cwd: ROOT,
            stdio: ["ignore", "pipe", "pipe"]
          })
          let stdout = ""
          let stderr = ""
          child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
          child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
          child.on("error", (error) => resume(Effect.die(error)))
          child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
          return Effect.sync(() => child.kill())
        })
        assert.strictEqual(run.stderr, "")
        assert.strictEqual(run.code, 0)
        assert.deepStrictEqual(run.stdout.trimEnd().split("\n"), printed)
        assert.isTrue(existsSync(filename))
      }),
    180_000
  )
})
