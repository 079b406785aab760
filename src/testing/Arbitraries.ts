/**
 * fast-check arbitraries for memories and events, shared by the domain/store property tests and the simulations.
 *
 * Invariants of everything generated here:
 * - JSON-safe: no `-0`, no `NaN`/`Infinity`, no `undefined` values, strings are well-formed UTF-16 (no lone
 *   surrogates), so `JSON.parse(JSON.stringify(x))` deep-equals `x` and SQLite TEXT stores it unchanged.
 * - Valid: every `MemoryEvent` decodes through its schema, and an event's `hlc` carries its `clientId`.
 * - Collisions on purpose: memory ids, client ids and stamps come from small pools, so generated sets exercise
 *   ties (same stamp, different event ids), updates before creates, and deletes on both sides of updates.
 */
import { FastCheck as fc } from "effect"
import type { Envelope, MemoryCreated, MemoryDeleted, MemoryEvent, MemoryUpdated } from "../domain/Events.js"
import * as Hlc from "../domain/Hlc.js"
import type { CreateInput, MemoryFields, Patch } from "../domain/Memory.js"

/** Default pool of memory ids (one non-ASCII, to check TEXT round trips of ids). */
export const MEMORY_IDS: ReadonlyArray<string> = ["mem-a", "mem-b", "mem-c", "mém-d"]

/**
 * Default pool of client ids. `a` is a prefix of `a-b`, and `-`, digits, upper case, `_` and lower case sit at
 * different places of ASCII order, so stamp ties resolve on the client id in every direction.
 */
export const CLIENT_IDS: ReadonlyArray<string> = ["a", "a-b", "B7", "z_9"]

/** Options of the event arbitraries. */
export interface EventOptions {
  /** Memory ids events touch (default `MEMORY_IDS`). */
  readonly memoryIds?: ReadonlyArray<string>
  /** Client ids that write events (default `CLIENT_IDS`). */
  readonly clientIds?: ReadonlyArray<string>
  /** Wall clock of the earliest stamp (default 1_700_000_000_000). */
  readonly baseWall?: number
  /** Stamps use walls in `[baseWall, baseWall + wallSpread]` (default 3: small, so stamps collide). */
  readonly wallSpread?: number
  /** Stamps use counters in `[0, maxCounter]` (default 2). */
  readonly maxCounter?: number
}

/** Options of `eventSet`. */
export interface EventSetOptions extends EventOptions {
  readonly minLength?: number
  readonly maxLength?: number
  /** fast-check's size: "max" draws lengths uniformly up to `maxLength` (the default, "small", stays near 10). */
  readonly size?: fc.SizeForArbitrary
}

/** A number with `-0` mapped to `0` (JSON and SQLite cannot tell them apart). */
export const noNegativeZero = (n: number): number => (Object.is(n, -0) ? 0 : n)

/** Well-formed text from a small alphabet that includes multibyte, astral, NUL, quote and FTS-syntax characters. */
export const text = (constraints: { readonly minLength?: number; readonly maxLength?: number } = {}) =>
  fc.string({
    unit: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom("a", "b", "c", "x", "y", " ") },
      { weight: 2, arbitrary: fc.constantFrom("é", "ß", "中", "😀", "e\u0301", "\u0000", '"', "*", "-", ":", "(") },
      { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) }
    ),
    minLength: constraints.minLength ?? 0,
    maxLength: constraints.maxLength ?? 12
  })

/** Valid memory content: at least one non-whitespace character. */
export const content: fc.Arbitrary<string> = fc
  .tuple(text({ maxLength: 6 }), fc.constantFrom("a", "z", "é", "中", "😀", "7"), text({ maxLength: 10 }))
  .map(([before, middle, after]) => before + middle + after)

/** A valid category (may be empty: the schema allows it). */
export const category: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("general", "work", "1", ""),
  text({ maxLength: 8 })
)

/** A valid tag or keyword (non-empty). */
export const label: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("red", "green", "blue", "0"),
  text({ minLength: 1, maxLength: 6 })
)

/** A list of tags or keywords as events may carry them (blank and duplicate ones allowed: event schemas accept them). */
export const labels: fc.Arbitrary<ReadonlyArray<string>> = fc.array(label, { maxLength: 4 })

/** Importance in [0, 1], never `-0`, with the bounds themselves likely. */
export const importance: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(0, 1, 0.5, 0.1),
  fc.double({ min: 0, max: 1, noNaN: true }).map(noNegativeZero)
)

/** Epoch milliseconds (any safe non-negative integer, SQLite INTEGER holds them exactly). */
export const timestamp: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
  fc.maxSafeNat()
)

/** Every writer-set field of a memory. */
export const memoryFields: fc.Arbitrary<MemoryFields> = fc.record({
  content,
  category,
  tags: labels,
  keywords: labels,
  importance,
  sensitive: fc.boolean()
})

/** A valid, non-empty patch. */
export const patch: fc.Arbitrary<Patch> = fc
  .record(
    { content, category, tags: labels, keywords: labels, importance, sensitive: fc.boolean() },
    { requiredKeys: [] }
  )
  .filter((p) => Object.keys(p).length > 0)

/** Tags or keywords a writer may give: none blank (the write API refuses those); duplicates allowed (it drops them). */
export const writableLabels: fc.Arbitrary<ReadonlyArray<string>> = fc.array(
  label.filter((l) => l.trim().length > 0),
  { maxLength: 4 }
)

/** A valid `create` input: content, and any subset of the optional fields. */
export const createInput: fc.Arbitrary<CreateInput> = fc.record(
  { content, category, tags: writableLabels, keywords: writableLabels, importance, sensitive: fc.boolean() },
  { requiredKeys: ["content"] }
)

/** An event id (a lowercase UUIDv7). */
export const eventId: fc.Arbitrary<string> = fc.uuid({ version: 7 })

/** An encoded stamp for `clientId`, from a small space so stamps collide. */
export const stamp = (clientId: string, options: EventOptions = {}): fc.Arbitrary<string> =>
  fc
    .record({
      wall: fc.integer({ min: 0, max: options.wallSpread ?? 3 }),
      counter: fc.integer({ min: 0, max: options.maxCounter ?? 2 })
    })
    .map(({ wall, counter }) => Hlc.encode({ wall: (options.baseWall ?? 1_700_000_000_000) + wall, counter, clientId }))

/** The envelope fields every event shares: id, hlc and the matching client id. */
export const envelopeBase = (options: EventOptions = {}) =>
  fc
    .constantFrom(...(options.clientIds ?? CLIENT_IDS))
    .chain((clientId) => fc.record({ id: eventId, hlc: stamp(clientId, options), clientId: fc.constant(clientId) }))

/** A valid `memory.created` v1. */
export const created = (options: EventOptions = {}): fc.Arbitrary<MemoryCreated> =>
  fc
    .record({
      base: envelopeBase(options),
      id: memoryId(options),
      fields: memoryFields,
      createdAt: timestamp,
      updatedAt: timestamp
    })
    .map(({ base, id, fields, createdAt, updatedAt }) => ({
      ...base,
      type: "memory.created",
      version: 1,
      payload: { id, ...fields, createdAt, updatedAt }
    }))

/** A valid `memory.updated` v1. */
export const updated = (options: EventOptions = {}): fc.Arbitrary<MemoryUpdated> =>
  fc
    .record({ base: envelopeBase(options), id: memoryId(options), patch, updatedAt: timestamp })
    .map(({ base, id, patch, updatedAt }) => ({
      ...base,
      type: "memory.updated",
      version: 1,
      payload: { id, patch, updatedAt }
    }))

/** A valid `memory.deleted` v1. */
export const deleted = (options: EventOptions = {}): fc.Arbitrary<MemoryDeleted> =>
  fc
    .record({ base: envelopeBase(options), id: memoryId(options), deletedAt: timestamp })
    .map(({ base, id, deletedAt }) => ({
      ...base,
      type: "memory.deleted",
      version: 1,
      payload: { id, deletedAt }
    }))

/** Any valid event, updates most likely (they make the interesting merges). */
export const memoryEvent = (options: EventOptions = {}): fc.Arbitrary<MemoryEvent> =>
  fc.oneof(
    { weight: 3, arbitrary: created(options) },
    { weight: 5, arbitrary: updated(options) },
    { weight: 1, arbitrary: deleted(options) }
  )

/** A set of valid events with distinct ids (the log's idempotency key). */
export const eventSet = (options: EventSetOptions = {}): fc.Arbitrary<Array<MemoryEvent>> =>
  fc.uniqueArray(memoryEvent(options), {
    selector: (e) => e.id,
    minLength: options.minLength ?? 0,
    maxLength: options.maxLength ?? 30,
    ...(options.size === undefined ? {} : { size: options.size })
  })

/** A set of events with distinct ids, some of kinds this build does not know (kept apart for the reference fold). */
export interface MixedEvents {
  /** The events this build understands. */
  readonly known: Array<MemoryEvent>
  /** The envelopes it must keep but skip. */
  readonly unknown: Array<Envelope>
  /** Both, in generation order. */
  readonly all: Array<Envelope>
}

/** Known and unknown events together, ids distinct across both (about one in `unknownRatio` is unknown). */
export const mixedEventSet = (
  options: EventSetOptions & { readonly unknownRatio?: number } = {}
): fc.Arbitrary<MixedEvents> =>
  fc
    .uniqueArray(
      fc.oneof(
        { weight: Math.max(1, (options.unknownRatio ?? 10) - 1), arbitrary: memoryEvent(options).map(known) },
        { weight: 1, arbitrary: unknownEnvelope(options).map(unknown) }
      ),
      {
        selector: (t) => t.envelope.id,
        minLength: options.minLength ?? 0,
        maxLength: options.maxLength ?? 30,
        ...(options.size === undefined ? {} : { size: options.size })
      }
    )
    .map((tagged) => ({
      known: tagged.flatMap((t) => (t._tag === "known" ? [t.event] : [])),
      unknown: tagged.flatMap((t) => (t._tag === "unknown" ? [t.envelope] : [])),
      all: tagged.map((t) => t.envelope)
    }))

/** A JSON value that survives `JSON.stringify` / `JSON.parse` unchanged (no `-0`, no `NaN`). */
export const jsonValue: fc.Arbitrary<unknown> = fc
  .jsonValue({ maxDepth: 3 })
  .map((v): unknown => JSON.parse(JSON.stringify(v)))

/**
 * An envelope this build does not know: an unknown type, or a known type at a future version. Its payload may
 * name a memory id from the pool (so it touches memories the view holds) or be any JSON value.
 */
export const unknownEnvelope = (options: EventOptions = {}): fc.Arbitrary<Envelope> =>
  fc
    .record({
      base: envelopeBase(options),
      kind: fc.constantFrom(
        { type: "memory.archived", version: 1 },
        { type: "memory.created", version: 2 },
        { type: "memory.updated", version: 9 }
      ),
      payload: fc.oneof(
        fc.record({ id: memoryId(options), extra: jsonValue }),
        fc.record({ id: memoryId(options), content: content, tags: labels }),
        jsonValue
      )
    })
    .map(({ base, kind, payload }) => ({ ...base, ...kind, payload }))

/**
 * How a set of items is delivered, independent of the items (so a failing case shrinks the items and the delivery
 * separately): a sort key per delivery, which items arrive a second time, and the batch sizes.
 */
export interface DeliveryPlan {
  readonly keys: ReadonlyArray<number>
  readonly again: ReadonlyArray<boolean>
  readonly sizes: ReadonlyArray<number>
}

/** A delivery plan with batches of 1..maxBatch. */
export const deliveryPlan = (options: { readonly maxBatch?: number } = {}): fc.Arbitrary<DeliveryPlan> =>
  fc.record({
    keys: fc.array(fc.nat({ max: 1000 }), { maxLength: 120 }),
    again: fc.array(fc.boolean(), { maxLength: 60 }),
    sizes: fc.array(fc.integer({ min: 1, max: options.maxBatch ?? 8 }), { minLength: 1, maxLength: 16 })
  })

/**
 * Apply a plan: every item once, the items `again` marks a second time, ordered by their keys (deliveries without a
 * key keep their place, ties keep generation order), cut into batches whose sizes cycle through `sizes`.
 */
export const planDelivery = <A>(items: ReadonlyArray<A>, plan: DeliveryPlan): Array<Array<A>> => {
  const all = [...items, ...items.filter((_, i) => plan.again[i] === true)]
  const ordered = all
    .map((item, i) => ({ item, i, key: plan.keys[i] ?? i }))
    .sort((a, b) => a.key - b.key || a.i - b.i)
    .map((d) => d.item)
  return batches(ordered, plan.sizes)
}

/** A delivery of `items`: shuffled, some re-delivered, in batches (see `DeliveryPlan`). */
export const delivery = <A>(
  items: ReadonlyArray<A>,
  options: { readonly maxBatch?: number } = {}
): fc.Arbitrary<Array<Array<A>>> => deliveryPlan(options).map((plan) => planDelivery(items, plan))

/** A shuffled copy of `items` (every element exactly once). */
export const permutation = <A>(items: ReadonlyArray<A>): fc.Arbitrary<Array<A>> =>
  fc.shuffledSubarray(Array.from(items), { minLength: items.length, maxLength: items.length })

type Tagged =
  | { readonly _tag: "known"; readonly event: MemoryEvent; readonly envelope: Envelope }
  | { readonly _tag: "unknown"; readonly envelope: Envelope }
const known = (event: MemoryEvent): Tagged => ({ _tag: "known", event, envelope: event })
const unknown = (envelope: Envelope): Tagged => ({ _tag: "unknown", envelope })

const memoryId = (options: EventOptions): fc.Arbitrary<string> => fc.constantFrom(...(options.memoryIds ?? MEMORY_IDS))

/** Cut `items` into consecutive batches whose sizes cycle through `sizes`. */
const batches = <A>(items: ReadonlyArray<A>, sizes: ReadonlyArray<number>): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  let i = 0
  let k = 0
  while (i < items.length) {
    const size = Math.max(1, sizes[k % sizes.length] ?? 1)
    out.push(items.slice(i, i + size))
    i += size
    k++
  }
  return out
}
