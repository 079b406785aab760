import { defineConfig } from "vitest/config"

// `npm run test:mutants`: the planted-bug check (test/mutants), kept out of `npm test`.
export default defineConfig({
  test: {
    include: ["test/mutants/**/*.test.ts"],
    testTimeout: 900_000,
    hookTimeout: 60_000
  }
})
