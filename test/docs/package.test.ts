/**
 * The package's entry points (`memsync`, `memsync/server`, `memsync/testing`) must load in plain Node, without tsx:
 * that is how a service depending on memsync imports it. They point at the compiled `dist/` (`npm run build`, run by
 * `prepack` before publishing); this test builds it when it is missing or older than the sources, then imports the
 * package by name from a child `node` process and uses it.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { beforeAll } from "vitest"
import { pickEntry } from "../../bin/entry.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
/**
 * Asynchronous, so the worker's event loop turns while npm and node run: `execFileSync` here held it for up to 15 s
 * on a loaded machine, and vitest's worker RPC has a 60 s deadline. Rejects on a non-zero exit, as the sync form threw.
 */
const exec = (file: string, args: ReadonlyArray<string>) =>
  promisify(execFile)(file, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  readonly exports: Record<string, { readonly types: string; readonly default: string }>
}

/** The newest modification time of any file under `dir`. */
const newest = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .reduce((max, e) => Math.max(max, statSync(join(e.parentPath, e.name)).mtimeMs), 0)

beforeAll(async () => {
  const built = join(ROOT, "dist", "index.js")
  if (!existsSync(built) || statSync(built).mtimeMs < newest(join(ROOT, "src"))) await exec("npm", ["run", "build"])
  // The CLI bundle the launcher runs (`npm pack` builds it through `prepare`; here the dry run skips scripts).
  if (pickEntry(ROOT).kind === "sources") await exec("npm", ["run", "bundle"])
}, 180_000)

describe("package entry points", () => {
  it("every export names a compiled module and its declarations, and both are in the published files", async () => {
    const packed = JSON.parse(
      (await exec("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"])).stdout
    ) as ReadonlyArray<{ readonly files: ReadonlyArray<{ readonly path: string }> }>
    const files = new Set(packed[0]!.files.map((f) => f.path))
    for (const file of ["bin/memsync.js", "bin/entry.js", "dist/cli.mjs"]) {
      assert.isTrue(files.has(file), `${file} (the CLI) is not in the published files`)
    }
    assert.deepStrictEqual(Object.keys(pkg.exports), [".", "./server", "./testing"])
    for (const target of Object.values(pkg.exports)) {
      for (const file of [target.default, target.types]) {
        assert.isTrue(existsSync(join(ROOT, file)), `${file} was not built`)
        assert.isTrue(files.has(file.slice(2)), `${file} is not in the published files`)
      }
    }
  })

  it("plain node imports memsync by name and writes, searches and verifies a store", async () => {
    const script = `
      import { Effect } from "effect"
      import { MemoryStore, Replay } from "memsync"
      import { ServerLog } from "memsync/server"
      import { MemoryTransport, Simulation } from "memsync/testing"
      const program = Effect.gen(function* () {
        const store = yield* MemoryStore.MemoryStore
        yield* store.create({ content: "compiled entry points work", tags: ["packaging"] })
        const hits = yield* store.search("compiled")
        const report = yield* Replay.verify()
        return { hits: hits.length, ok: report.ok }
      })
      const result = await Effect.runPromise(program.pipe(Effect.provide(MemoryStore.layer({ filename: ":memory:" }))))
      const kinds = [typeof ServerLog.ServerLog, typeof MemoryTransport.make, typeof Simulation.run]
      console.log(JSON.stringify({ ...result, kinds }))
    `
    // No tsx loader here: only what package.json's exports point at.
    const out = (await exec(process.execPath, ["--input-type=module", "-e", script])).stdout
    assert.deepStrictEqual(JSON.parse(out), { hits: 1, ok: true, kinds: ["function", "function", "function"] })
  })
})
