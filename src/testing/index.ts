export * as Arbitraries from "./Arbitraries.js"
export * as MemoryTransport from "./MemoryTransport.js"
