import { defineConfig } from "vitest/config"

// `npm run test:mutants`: the planted-bug check (test/mutants) alone; `npm test` runs it too.
export default defineConfig({
  test: {
    include: ["test/mutants/**/*.test.ts"],
    testTimeout: 900_000,
    hookTimeout: 60_000
  }
})
