/**
 * The reference semantics of the view (DESIGN §3): a memory is a per-field last-writer-wins register under the
 * total order `(hlc, id)`, and a delete is a tombstone that wins over every update, earlier or later.
 *
 * `merge` is a semilattice join (commutative, associative, idempotent), so `fold` of a SET of events gives the same
 * states whatever the order or duplication of arrival. The SQL materializer implements the same join as an upsert;
 * property tests check that the two agree.
 */
import { orderKey, type MemoryEvent } from "./Events.js"
import type { Memory } from "./Memory.js"

/** A register: a value and the order key of the event that wrote it. */
export interface Register<A> {
  readonly value: A
  readonly key: string
}

/** Everything the events held say about one memory. Absent registers were never written. */
export interface MemoryState {
  readonly id: string
  /** A create is present: only then is the memory readable. */
  readonly created: boolean
  /** A delete is present: the memory is gone for good. */
  readonly deleted: boolean
  readonly content?: Register<string>
  readonly category?: Register<string>
  readonly tags?: Register<ReadonlyArray<string>>
  readonly keywords?: Register<ReadonlyArray<string>>
  readonly importance?: Register<number>
  readonly sensitive?: Register<boolean>
  readonly createdAt?: Register<number>
  readonly updatedAt?: Register<number>
  readonly deletedAt?: Register<number>
}

/** The registers of a state, in a fixed order (the SQL view has a value and a key column for each). */
export const REGISTERS = [
  "content",
  "category",
  "tags",
  "keywords",
  "importance",
  "sensitive",
  "createdAt",
  "updatedAt",
  "deletedAt"
] as const
export type RegisterName = (typeof REGISTERS)[number]

/** A state under construction (see `absorb`). */
export type MutableState = { -readonly [K in keyof MemoryState]: MemoryState[K] }

/** The state one event alone describes (a fresh object: the caller may `absorb` more events into it). */
export const fromEvent = (e: MemoryEvent): MutableState => {
  const key = orderKey(e)
  const reg = <A>(value: A): Register<A> => ({ value, key })
  switch (e.type) {
    case "memory.created": {
      const p = e.payload
      return {
        id: p.id,
        created: true,
        deleted: false,
        content: reg(p.content),
        category: reg(p.category),
        tags: reg(p.tags),
        keywords: reg(p.keywords),
        importance: reg(p.importance),
        sensitive: reg(p.sensitive),
        createdAt: reg(p.createdAt),
        updatedAt: reg(p.updatedAt)
      }
    }
    case "memory.updated": {
      const { id, patch, updatedAt } = e.payload
      const state: { -readonly [K in keyof MemoryState]: MemoryState[K] } = {
        id,
        created: false,
        deleted: false,
        updatedAt: reg(updatedAt)
      }
      if (patch.content !== undefined) state.content = reg(patch.content)
      if (patch.category !== undefined) state.category = reg(patch.category)
      if (patch.tags !== undefined) state.tags = reg(patch.tags)
      if (patch.keywords !== undefined) state.keywords = reg(patch.keywords)
      if (patch.importance !== undefined) state.importance = reg(patch.importance)
      if (patch.sensitive !== undefined) state.sensitive = reg(patch.sensitive)
      return state
    }
    case "memory.deleted":
      return { id: e.payload.id, created: false, deleted: true, deletedAt: reg(e.payload.deletedAt) }
  }
}

/** The join of two states of the same memory: each register keeps the write with the greater key. */
export const merge = (a: MemoryState, b: MemoryState): MemoryState => {
  const out: { -readonly [K in keyof MemoryState]: MemoryState[K] } = {
    id: a.id,
    created: a.created || b.created,
    deleted: a.deleted || b.deleted
  }
  // The casts keep one loop for nine registers: each name maps to a register of the same type on all three sides.
  const regs = (s: MemoryState) => s as unknown as Record<RegisterName, Register<unknown> | undefined>
  for (const name of REGISTERS) {
    const r = later(regs(a)[name], regs(b)[name])
    if (r !== undefined) regs(out)[name] = r
  }
  return out
}

/**
 * `merge(state, fromEvent(e))`, written into `state` instead of a copy (for `e`'s memory, and a state the caller owns
 * alone, e.g. one from `fromEvent`): a batch path folds a memory's events one after another without making a state
 * and a merged copy per event. Each register moves exactly when `merge` would take the event's, on a greater key.
 */
export const absorb = (state: MutableState, e: MemoryEvent): void => {
  const key = orderKey(e)
  switch (e.type) {
    case "memory.created": {
      const p = e.payload
      state.created = true
      if (wins(state.content, key)) state.content = { value: p.content, key }
      if (wins(state.category, key)) state.category = { value: p.category, key }
      if (wins(state.tags, key)) state.tags = { value: p.tags, key }
      if (wins(state.keywords, key)) state.keywords = { value: p.keywords, key }
      if (wins(state.importance, key)) state.importance = { value: p.importance, key }
      if (wins(state.sensitive, key)) state.sensitive = { value: p.sensitive, key }
      if (wins(state.createdAt, key)) state.createdAt = { value: p.createdAt, key }
      if (wins(state.updatedAt, key)) state.updatedAt = { value: p.updatedAt, key }
      return
    }
    case "memory.updated": {
      const { patch, updatedAt } = e.payload
      if (wins(state.updatedAt, key)) state.updatedAt = { value: updatedAt, key }
      if (patch.content !== undefined && wins(state.content, key)) state.content = { value: patch.content, key }
      if (patch.category !== undefined && wins(state.category, key)) state.category = { value: patch.category, key }
      if (patch.tags !== undefined && wins(state.tags, key)) state.tags = { value: patch.tags, key }
      if (patch.keywords !== undefined && wins(state.keywords, key)) state.keywords = { value: patch.keywords, key }
      if (patch.importance !== undefined && wins(state.importance, key)) {
        state.importance = { value: patch.importance, key }
      }
      if (patch.sensitive !== undefined && wins(state.sensitive, key)) state.sensitive = { value: patch.sensitive, key }
      return
    }
    case "memory.deleted":
      state.deleted = true
      if (wins(state.deletedAt, key)) state.deletedAt = { value: e.payload.deletedAt, key }
  }
}

/** Fold a collection of events (any order, duplicates allowed) into the state of every memory they touch. */
export const fold = (events: Iterable<MemoryEvent>): Map<string, MemoryState> => {
  const states = new Map<string, MemoryState>()
  for (const e of events) foldInto(states, e)
  return states
}

/** Fold one event into a map of states, in place (the batch paths use it to pre-merge a page). */
export const foldInto = (states: Map<string, MemoryState>, e: MemoryEvent): void => {
  const next = fromEvent(e)
  const prev = states.get(next.id)
  states.set(next.id, prev === undefined ? next : merge(prev, next))
}

/** True when readers see the memory: its create is present and no delete is. */
export const isVisible = (s: MemoryState): boolean => s.created && !s.deleted

/** The memory as readers see it, when its create is present (deleted ones included; check `deleted`). */
export const toMemory = (s: MemoryState): Memory | undefined => {
  if (!s.created) return undefined
  const { content, category, tags, keywords, importance, sensitive, createdAt, updatedAt } = s
  // A create writes every register, so once `created` holds they are all present.
  if (
    content === undefined ||
    category === undefined ||
    tags === undefined ||
    keywords === undefined ||
    importance === undefined ||
    sensitive === undefined ||
    createdAt === undefined ||
    updatedAt === undefined
  ) {
    return undefined
  }
  return {
    id: s.id,
    content: content.value,
    category: category.value,
    tags: tags.value,
    keywords: keywords.value,
    importance: importance.value,
    sensitive: sensitive.value,
    createdAt: createdAt.value,
    updatedAt: updatedAt.value
  }
}

/** True when a write with order key `key` replaces `current` (as `later` would choose it). */
const wins = (current: Register<unknown> | undefined, key: string): boolean =>
  current === undefined || key > current.key

const later = <A>(a: Register<A> | undefined, b: Register<A> | undefined): Register<A> | undefined => {
  if (a === undefined) return b
  if (b === undefined) return a
  return b.key > a.key ? b : a
}
