#!/usr/bin/env node
// The memsync CLI: the bundled build when it is up to date, else the sources through tsx (see entry.js).
import { fileURLToPath, pathToFileURL } from "node:url"
import { pickEntry } from "./entry.js"

const entry = pickEntry(fileURLToPath(new URL("..", import.meta.url)))
if (entry.kind === "sources") {
  const { register } = await import("tsx/esm/api")
  register()
}
await import(pathToFileURL(entry.path).href)
