/**
 * Events for the server tests: valid `memory.created` envelopes with distinct ids, made from plain counters so a test
 * can name exactly which events it expects back.
 */
import * as Hlc from "../../src/domain/Hlc.js"
import { v7 } from "../../src/domain/Uuid.js"

/** A fixed wall time for events (2025-01-01T00:00:00Z): tests run the server clock at or after it. */
export const T0 = Date.UTC(2025, 0, 1)

/** An envelope as a client would push it. */
export interface WireEvent {
  readonly id: string
  readonly type: string
  readonly version: number
  readonly payload: unknown
  readonly hlc: string
  readonly clientId: string
}

/** The `n`-th event of `clientId` (distinct `(clientId, n)` give distinct ids). */
export const makeEvent = (
  n: number,
  options: { readonly clientId?: string; readonly wall?: number; readonly content?: string } = {}
): WireEvent => {
  const clientId = options.clientId ?? "client-a"
  const wall = options.wall ?? T0 + n
  const random = new Uint8Array(10)
  // The counter and a hash of the client id fill the "random" bits, so ids never collide across clients.
  const view = new DataView(random.buffer)
  view.setUint32(0, n)
  view.setUint32(4, hashString(clientId))
  const id = v7(wall, random)
  return {
    id,
    type: "memory.created",
    version: 1,
    payload: {
      id: `mem-${clientId}-${n}`,
      content: options.content ?? `memory ${n} of ${clientId}`,
      category: "test",
      tags: ["t"],
      keywords: [],
      importance: 0.5,
      sensitive: false,
      createdAt: wall,
      updatedAt: wall
    },
    hlc: Hlc.encode({ wall, counter: n % 1_000_000, clientId }),
    clientId
  }
}

/** `count` events of one client, numbered from `from`. */
export const makeEvents = (count: number, options: { readonly clientId?: string; readonly from?: number } = {}) =>
  Array.from({ length: count }, (_, i) =>
    makeEvent((options.from ?? 0) + i, options.clientId === undefined ? {} : { clientId: options.clientId })
  )

const hashString = (s: string): number => {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  return h >>> 0
}
