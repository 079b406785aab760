/**
 * Blame and explain: who set each field of a memory, and what one event did. Both replay the events of ONE memory
 * with the reference semantics (`Fold.fromEvent` / `Fold.merge`) and compare register keys: the event whose order
 * key `(hlc, id)` is the register's key won it; every other event that wrote the register lost to it.
 *
 * Dead-lettered events are shown but never folded (they left the event set), as the view does; events of a kind
 * this build does not know, and known kinds whose payload does not decode, are shown and skipped by the fold.
 */
import { Effect } from "effect"
import { classify, memoryIdOf, orderKey, type MemoryEvent } from "../domain/Events.js"
import { fold, fromEvent, isVisible, REGISTERS, type MemoryState, type RegisterName } from "../domain/Fold.js"
import type { StoredEvent } from "../store/EventLog.js"
import { EventNotFound, MemoryUnknown } from "./Errors.js"
import { EventSource, type Entry, type SyncState } from "./EventSource.js"

/** An event, named by what a reader needs to find it. */
export interface EventRef {
  readonly id: string
  readonly seq: number
  readonly type: string
  readonly hlc: string
  readonly clientId: string
}

/** A value an event wrote, and the event. */
export interface Write extends EventRef {
  readonly value: unknown
}

/** One field of a memory: its current value, the event that set it, and the writes that lost to it (latest first). */
export interface FieldBlame {
  readonly field: RegisterName
  readonly value: unknown
  readonly setBy: EventRef
  readonly lost: ReadonlyArray<Write>
}

/** Why an event of the memory is not in the fold. */
export interface Skipped extends EventRef {
  readonly why: "dead-lettered" | "unknown-kind" | "invalid"
  readonly message: string
}

/** Where a memory stands, as the fold says. */
export interface MemoryStatus {
  readonly id: string
  /** Its create is held. */
  readonly created: boolean
  /** A delete is held (it wins over every update, earlier or later). */
  readonly deleted: boolean
  /** Readers see it: created and not deleted. */
  readonly visible: boolean
  /** When no create is held because the server rejected it: that create, with the server's reason. */
  readonly rejectedCreate?: Skipped
}

/** What `blame` found. */
export interface BlameReport {
  readonly memory: MemoryStatus
  readonly events: number
  readonly fields: ReadonlyArray<FieldBlame>
  readonly skipped: ReadonlyArray<Skipped>
}

/** What one event did. */
export interface Explanation {
  readonly event: StoredEvent
  readonly sync: SyncState
  /** In the fold: in the event set and of a kind this build reads. */
  readonly applied: boolean
  /** Why not, when it was not applied. */
  readonly skipped?: Skipped
  readonly memory?: MemoryStatus
  /** The registers it holds now. */
  readonly won: ReadonlyArray<{ readonly field: RegisterName; readonly value: unknown }>
  /** The registers it wrote and lost, with the write that beat it. */
  readonly lost: ReadonlyArray<{ readonly field: RegisterName; readonly value: unknown; readonly to: Write }>
  /** A delete: the memory is gone for good, whatever the order of the other events. */
  readonly tombstone: boolean
}

/** Which event set each field of a memory, and which writes lost. `field` narrows the report to one register. */
export const blame = Effect.fn("Inspect.blame")(function* (memoryId: string, field?: RegisterName) {
  const source = yield* EventSource
  const entries = yield* source.byMemory(memoryId)
  if (entries.length === 0) return yield* new MemoryUnknown({ memoryId })
  const a = analyze(memoryId, entries)
  const fields: Array<FieldBlame> = []
  for (const name of field === undefined ? REGISTERS : [field]) {
    const winner = a.state[name]
    if (winner === undefined) continue
    const setBy = a.byKey.get(winner.key)
    if (setBy === undefined) continue
    const lost = a.writes(name).filter((w) => orderKey(w) !== winner.key)
    fields.push({ field: name, value: winner.value, setBy: refOf(setBy.entry.event), lost })
  }
  const report: BlameReport = { memory: a.status, events: entries.length, fields, skipped: a.skipped }
  return report
})

/** The event, whether it was applied, which registers it won and lost (and to whom), and its sync state. */
export const explain = Effect.fn("Inspect.explain")(function* (eventId: string) {
  const source = yield* EventSource
  const entry = yield* source.entry(eventId)
  if (entry === undefined) return yield* new EventNotFound({ eventId })
  const { event, sync } = entry
  const base = { event, sync, won: [], lost: [], tombstone: event.type === "memory.deleted" }
  const memoryId = memoryIdOf(entry.event)
  if (memoryId === undefined) {
    const explanation: Explanation = { ...base, applied: false, ...skippedOf(entry) }
    return explanation
  }
  const a = analyze(memoryId, yield* source.byMemory(memoryId))
  const mine = a.skipped.find((s) => s.id === event.id)
  if (mine !== undefined) {
    const explanation: Explanation = { ...base, applied: false, skipped: mine, memory: a.status }
    return explanation
  }
  const key = orderKey(event)
  const won: Array<{ field: RegisterName; value: unknown }> = []
  const lost: Array<{ field: RegisterName; value: unknown; to: Write }> = []
  const own = a.byKey.get(key)?.state
  for (const name of REGISTERS) {
    const written = own?.[name]
    const current = a.state[name]
    if (written === undefined || current === undefined) continue
    if (current.key === key) {
      won.push({ field: name, value: written.value })
      continue
    }
    const winner = a.byKey.get(current.key)
    if (winner !== undefined)
      lost.push({ field: name, value: written.value, to: { ...refOf(winner.entry.event), value: current.value } })
  }
  const explanation: Explanation = { ...base, applied: true, memory: a.status, won, lost }
  return explanation
})

// ---------------------------------------------------------------------------------------------------------------

interface Folded {
  readonly entry: Entry
  readonly event: MemoryEvent
  readonly state: MemoryState
}

/** Fold the events of one memory, keeping each event's own state by order key and the ones left out. */
const analyze = (memoryId: string, entries: ReadonlyArray<Entry>) => {
  const byKey = new Map<string, Folded>()
  const skipped: Array<Skipped> = []
  for (const entry of entries) {
    const why = skippedOf(entry).skipped
    if (why !== undefined) {
      skipped.push(why)
      continue
    }
    const c = classify(entry.event)
    if (c._tag !== "Known") continue
    byKey.set(orderKey(c.event), { entry, event: c.event, state: fromEvent(c.event) })
  }
  const folded = fold(Array.from(byKey.values(), (f) => f.event)).get(memoryId)
  const state: MemoryState = folded ?? { id: memoryId, created: false, deleted: false }
  const rejectedCreate = state.created
    ? undefined
    : skipped.find((s) => s.why === "dead-lettered" && s.type === "memory.created")
  const status: MemoryStatus = {
    id: memoryId,
    created: state.created,
    deleted: state.deleted,
    visible: isVisible(state),
    ...(rejectedCreate === undefined ? {} : { rejectedCreate })
  }
  // Every write of a register, latest first (entries come in (hlc, id) order).
  const writes = (name: RegisterName): Array<Write> => {
    const out: Array<Write> = []
    for (const f of byKey.values()) {
      const r = f.state[name]
      if (r !== undefined) out.push({ ...refOf(f.entry.event), value: r.value })
    }
    return out.reverse()
  }
  return { byKey, skipped, state, status, writes }
}

const skippedOf = (entry: Entry): { skipped?: Skipped } => {
  const ref = refOf(entry.event)
  if (entry.sync.state === "dead-lettered") {
    const { reason, message } = entry.sync
    return { skipped: { ...ref, why: "dead-lettered", message: `rejected by the server: ${reason}: ${message}` } }
  }
  const c = classify(entry.event)
  if (c._tag === "Unknown") {
    const message = `${entry.event.type} v${entry.event.version} is not a kind this build reads (kept, not folded)`
    return { skipped: { ...ref, why: "unknown-kind", message } }
  }
  if (c._tag === "Invalid") return { skipped: { ...ref, why: "invalid", message: c.message } }
  return {}
}

const refOf = (e: StoredEvent): EventRef => ({ id: e.id, seq: e.seq, type: e.type, hlc: e.hlc, clientId: e.clientId })
