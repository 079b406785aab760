// Which entry point `bin/memsync.js` runs: the bundle `dist/cli.mjs` (built by `npm install`, see
// scripts/bundle-cli.mjs; it starts in ~0.8 s instead of ~3 s) when it is at least as new as every source file;
// otherwise (no bundle yet, or a source edited since) the TypeScript sources through tsx: slower, never stale.
import { readdirSync, statSync } from "node:fs"
import { join } from "node:path"

/** Modification time in ms of a file, or undefined when there is no such file. */
const mtime = (path) => {
  const stat = statSync(path, { throwIfNoEntry: false })
  return stat?.isFile() ? stat.mtimeMs : undefined
}

/**
 * The newest modification time of the files under `dir` (the sources: ~100 files, about a millisecond). Directories
 * do not count: unpacking a package creates them at install time, after the bundle's packed time.
 */
const newest = (dir) => {
  let max = 0
  for (const name of readdirSync(dir, { recursive: true })) max = Math.max(max, mtime(join(dir, name)) ?? 0)
  return max
}

/**
 * `{ kind: "bundle", path }` or `{ kind: "sources", path }` for the package rooted at `root`. Equal times count as
 * fresh: `npm pack` gives every file of a package the same time.
 */
export const pickEntry = (root) => {
  const bundle = join(root, "dist", "cli.mjs")
  const sources = join(root, "src")
  const built = mtime(bundle)
  return built !== undefined && built >= newest(sources)
    ? { kind: "bundle", path: bundle }
    : { kind: "sources", path: join(sources, "cli", "bin.ts") }
}
