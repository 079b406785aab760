/**
 * memsync/testing: what a project building on memsync needs to test against it (see docs/testing.md).
 *
 * - `MemoryTransport`: the real server logic in-process behind the `Transport` interface, with fault injection.
 * - `Arbitraries`: fast-check generators of memories, patches and events.
 * - The deterministic simulation (`Simulation.run` a `Scenario` on K replicas over `SimNetwork`, `SimClock` and
 *   `SimWorld`, checked by `SimCheck`), its crash points, and the client error model (`ClientModel`,
 *   `ClientChecker`) with the replay helpers of `Pbt`.
 */
export * as Arbitraries from "./Arbitraries.js"
export * as ClientChecker from "./ClientChecker.js"
export * as ClientModel from "./ClientModel.js"
export * as CrashPoints from "./CrashPoints.js"
export * as Faults from "./Faults.js"
export * as MemoryTransport from "./MemoryTransport.js"
export * as Pbt from "./Pbt.js"
export * as Scenario from "./Scenario.js"
export * as SimCheck from "./SimCheck.js"
export * as SimClock from "./SimClock.js"
export * as EventLoop from "./EventLoop.js"
export * as SimNetwork from "./SimNetwork.js"
export * as SimReplica from "./SimReplica.js"
export * as SimSteps from "./SimSteps.js"
export * as SimWorld from "./SimWorld.js"
export * as Simulation from "./Simulation.js"
