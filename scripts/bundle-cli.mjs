#!/usr/bin/env node
/**
 * Bundle the CLI into one file, `dist/cli.mjs`, which `bin/memsync.js` runs when it is up to date.
 *
 * Why: through tsx, every command paid ~3 s of start-up on a quiet 2-core machine (compiling the sources and
 * resolving ~1,000 ESM files of the Effect packages); the bundle starts in ~0.8 s. `npm install` runs this
 * (`prepare`), and so does `npm pack` (the package ships the bundle).
 *
 * Everything is inlined except better-sqlite3, a native addon loaded through `bindings` at run time. The banner
 * gives CommonJS dependencies inside the ESM bundle the `require` they expect for Node's built-in modules.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

// esbuild is a dev dependency: an install without them (`--omit=dev`) keeps the tsx path and must not fail.
const esbuild = await import("esbuild").catch(() => undefined)
if (esbuild === undefined) {
  console.warn("memsync: esbuild is not installed, so the CLI is not bundled; it runs from the sources (slower start)")
  process.exit(0)
}

const outfile = join(root, "dist", "cli.mjs")
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: ["src/cli/bin.ts"],
  outfile,
  write: false,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["better-sqlite3"],
  banner: {
    js: "import { createRequire as __memsyncRequire } from 'node:module'; const require = __memsyncRequire(import.meta.url);"
  },
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: "none",
  logLevel: "warning"
})

// Written aside, then renamed over the old bundle: a CLI process starting meanwhile (tests run many) never loads a
// half-written file.
mkdirSync(dirname(outfile), { recursive: true })
const temp = `${outfile}.${process.pid}.tmp`
writeFileSync(temp, result.outputFiles[0].contents)
renameSync(temp, outfile)
