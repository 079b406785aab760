/**
 * The bundled CLI (`dist/cli.mjs`, built by `npm install` through scripts/bundle-cli.mjs) and the launcher's choice
 * between it and the sources (`bin/entry.js`). The bundle must answer exactly like the sources: it is what users run.
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { pickEntry } from "../../bin/entry.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const BUNDLE = join(ROOT, "dist", "cli.mjs")
const dirs: Array<string> = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "memsync-bundle-"))
  dirs.push(dir)
  return dir
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

/** A fake package root: `src/` with two files, and optionally a bundle; times in seconds since the epoch. */
const fakeRoot = (times: { readonly source: number; readonly newerSource?: number; readonly bundle?: number }) => {
  const root = tempDir()
  mkdirSync(join(root, "src", "cli"), { recursive: true })
  const files = [join(root, "src", "cli", "bin.ts"), join(root, "src", "cli", "data.ts")]
  files.forEach((f) => writeFileSync(f, ""))
  utimesSync(files[0]!, times.source, times.source)
  utimesSync(files[1]!, times.newerSource ?? times.source, times.newerSource ?? times.source)
  if (times.bundle !== undefined) {
    mkdirSync(join(root, "dist"))
    writeFileSync(join(root, "dist", "cli.mjs"), "")
    utimesSync(join(root, "dist", "cli.mjs"), times.bundle, times.bundle)
  }
  return root
}

describe("bin/entry.js", () => {
  it("runs the bundle when it is newer than every source", () => {
    const root = fakeRoot({ source: 1_000, newerSource: 2_000, bundle: 3_000 })
    expect(pickEntry(root)).toEqual({ kind: "bundle", path: join(root, "dist", "cli.mjs") })
  })

  it("runs the sources when one of them was edited after the bundle was built", () => {
    const root = fakeRoot({ source: 1_000, newerSource: 4_000, bundle: 3_000 })
    expect(pickEntry(root)).toEqual({ kind: "sources", path: join(root, "src", "cli", "bin.ts") })
  })

  it("runs the sources when there is no bundle", () => {
    expect(pickEntry(fakeRoot({ source: 1_000 })).kind).toBe("sources")
  })

  it("counts equal times as fresh (npm pack gives every file the same time)", () => {
    expect(pickEntry(fakeRoot({ source: 500, bundle: 500 })).kind).toBe("bundle")
  })
})

describe("dist/cli.mjs", () => {
  // Built here when missing or stale (a source edited since `npm install`); written atomically, so CLI processes of
  // other test files starting meanwhile never load half a file.
  if (pickEntry(ROOT).kind === "sources") execFileSync("npm", ["run", "bundle"], { cwd: ROOT, stdio: "ignore" })

  // Asynchronous: a test of several CLI runs through `spawnSync` held the worker's event loop for up to 28 s on a
  // loaded machine, and vitest's worker RPC has a 60 s deadline.
  const run = (entry: ReadonlyArray<string>, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [...entry, ...args], {
        cwd: ROOT,
        env: { ...process.env, MEMSYNC_DB: "", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
      child.on("error", reject)
      child.on("close", (code) => resolve({ code, stdout, stderr }))
    })
  const bundled = (args: ReadonlyArray<string>) => run([BUNDLE], args)
  const fromSources = (args: ReadonlyArray<string>) =>
    run(["--import", "tsx", join(ROOT, "src", "cli", "bin.ts")], args)

  it("prints the same help and usage errors as the sources", async () => {
    for (const args of [["--help"], ["sync", "--help"], ["add"], ["get", "x", "--db"]]) {
      expect(await bundled(args), args.join(" ")).toEqual(await fromSources(args))
    }
  }, 60_000)

  it("prints help without colour codes when stdout is not a terminal, and never alters a command's output", async () => {
    for (const args of [[], ["--help"], ["add", "--help"], ["serve", "-h"]]) {
      const r = await bundled(args)
      expect(r.code, args.join(" ")).toBe(0)
      expect(r.stdout, args.join(" ")).toContain("USAGE")
      expect(r.stdout, args.join(" ")).not.toContain("\u001b[")
    }
    // A memory whose content holds escape codes is printed as it was written.
    const db = join(tempDir(), "ansi.db")
    const id = (await bundled(["add", "\u001b[31mred\u001b[0m", "--db", db])).stdout.trim()
    expect((await bundled(["get", id, "--db", db])).stdout).toContain("content     \u001b[31mred\u001b[0m")
  }, 60_000)

  it("writes, reads and searches a database, with the sources' exit codes", async () => {
    const db = join(tempDir(), "m.db")
    const add = await bundled(["add", "a bundled memory about tides", "--db", db, "--tag", "sea", "--json"])
    expect(add.stderr).toBe("")
    expect(add.code).toBe(0)
    const id = (JSON.parse(add.stdout) as { id: string }).id
    // The sources read what the bundle wrote, and the other way round.
    expect(JSON.parse((await fromSources(["get", id, "--db", db, "--json"])).stdout)).toMatchObject({
      id,
      tags: ["sea"]
    })
    const found = await bundled(["search", "tides", "--db", db, "--json"])
    expect((JSON.parse(found.stdout) as Array<{ memory: { id: string } }>).map((r) => r.memory.id)).toEqual([id])
    const missing = await bundled(["get", "no-such-id", "--db", db])
    expect(missing).toEqual(await fromSources(["get", "no-such-id", "--db", db]))
    expect(missing.code).toBe(2)
    expect((await bundled(["verify", "--db", db])).code).toBe(0)
  }, 60_000)
})
