/**
 * Deterministic event generator for the benchmarks: a seeded stream of envelopes as several replicas would write
 * them (UUIDv7 ids, HLC stamps that increase, payloads that decode with the v1 schemas).
 *
 * Mix: each event is a create, an update or a delete of a live memory with the requested probabilities (an update
 * or delete falls back to a create while no memory is live). Contents are 100-400 characters of words, 1-4 tags
 * from a small pool, 2-6 keywords; updates patch 1-3 fields.
 */
import type { Envelope } from "../src/domain/Events.js"
import { encode } from "../src/domain/Hlc.js"
import { v7 } from "../src/domain/Uuid.js"

/** How to generate. */
export interface GenOptions {
  readonly seed?: number
  /** Number of replicas writing (each has its own client id). Default 4. */
  readonly clients?: number
  /** Probabilities of create and update (delete is the rest). Default 0.5 / 0.35 (so 0.15 delete). */
  readonly create?: number
  readonly update?: number
  /** Wall time of the first event, epoch ms. */
  readonly startMillis?: number
}

/** A seeded stream of envelopes. */
export interface Generator {
  /** The next `n` envelopes. */
  readonly take: (n: number) => Array<Envelope>
  /** A memory that is live after everything generated so far (for `get`). */
  readonly liveId: () => string | undefined
  /** Counts by type so far. */
  readonly counts: { created: number; updated: number; deleted: number }
}

/** Make a generator. Same options, same events. */
export const makeGenerator = (options: GenOptions = {}): Generator => {
  const rand = mulberry32(options.seed ?? 42)
  const clients = Array.from({ length: options.clients ?? 4 }, (_, i) => `bench-client-${i}`)
  const pCreate = options.create ?? 0.5
  const pUpdate = options.update ?? 0.35
  const start = options.startMillis ?? 1_700_000_000_000
  const live: Array<string> = []
  const counts = { created: 0, updated: 0, deleted: 0 }
  let i = 0

  const { int, pick, bytes, fields, content, labels, importance } = makeFields(rand)

  const next = (): Envelope => {
    // Several events share a millisecond, as a busy writer's would; the counter keeps the stamps distinct.
    const wall = start + Math.floor(i / 4)
    const counter = i % 4
    i++
    const clientId = pick(clients)
    const hlc = encode({ wall, counter, clientId })
    const id = v7(wall, bytes())
    const r = rand()
    if (live.length === 0 || r < pCreate) {
      const memoryId = v7(wall, bytes())
      live.push(memoryId)
      counts.created++
      const payload = { id: memoryId, ...fields(), createdAt: wall, updatedAt: wall }
      return { id, type: "memory.created", version: 1, payload, hlc, clientId }
    }
    const at = Math.floor(rand() * live.length)
    const memoryId = live[at]!
    if (r < pCreate + pUpdate) {
      counts.updated++
      const patch: Record<string, unknown> = {}
      const fields = int(1, 3)
      for (let k = 0; k < fields; k++) {
        const f = pick(PATCH_FIELDS)
        if (f === "content") patch.content = content()
        else if (f === "category") patch.category = pick(CATEGORIES)
        else if (f === "tags") patch.tags = labels(TAGS, 1, 4)
        else if (f === "keywords") patch.keywords = labels(WORDS, 2, 6)
        else if (f === "importance") patch.importance = importance()
        else patch.sensitive = rand() < 0.1
      }
      return {
        id,
        type: "memory.updated",
        version: 1,
        payload: { id: memoryId, patch, updatedAt: wall },
        hlc,
        clientId
      }
    }
    counts.deleted++
    live[at] = live[live.length - 1]!
    live.pop()
    return { id, type: "memory.deleted", version: 1, payload: { id: memoryId, deletedAt: wall }, hlc, clientId }
  }

  return {
    take: (n) => Array.from({ length: n }, next),
    liveId: () => live[0],
    counts
  }
}

/** `n` create inputs of realistic size (the interactive benchmark). */
export const makeInputs = (n: number, seed = 7) => {
  const { fields } = makeFields(mulberry32(seed))
  return Array.from({ length: n }, fields)
}

/** Random memory fields drawn from `rand`. */
const makeFields = (rand: () => number) => {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rand() * xs.length)]!
  const bytes = () => {
    const b = new Uint8Array(10)
    for (let k = 0; k < 10; k++) b[k] = Math.floor(rand() * 256)
    return b
  }
  const content = () => {
    const target = int(100, 400)
    let s = pick(WORDS)
    while (s.length < target) s += (rand() < 0.08 ? ". " : " ") + pick(WORDS)
    return s.slice(0, 400)
  }
  const labels = (pool: ReadonlyArray<string>, lo: number, hi: number) =>
    Array.from(new Set(Array.from({ length: int(lo, hi) }, () => pick(pool))))
  const importance = () => Math.round(rand() * 100) / 100
  const fields = () => ({
    content: content(),
    category: pick(CATEGORIES),
    tags: labels(TAGS, 1, 4),
    keywords: labels(WORDS, 2, 6),
    importance: importance(),
    sensitive: rand() < 0.1
  })
  return { int, pick, bytes, fields, content, labels, importance }
}

const PATCH_FIELDS = ["content", "content", "category", "tags", "keywords", "importance", "importance", "sensitive"]

const CATEGORIES = ["general", "work", "personal", "project", "preference", "fact", "todo", "reference"]

const TAGS = Array.from({ length: 40 }, (_, i) => `tag-${i}`)

/** A vocabulary of common words plus syllable-made ones, so FTS sees a realistic spread of terms. */
const WORDS: ReadonlyArray<string> = (() => {
  const common = (
    "the user prefers dark mode and likes short answers meeting tomorrow about the release plan remember " +
    "that alice owns the billing service deploy happens on friday coffee with bob project deadline moved " +
    "api key rotation database migration notes from the call customer asked for export feature bug in " +
    "search ranking travel to berlin next month birthday gift idea book recommendation kubernetes cluster " +
    "upgrade weekly report draft performance review feedback lunch vegetarian allergy peanuts password " +
    "manager family vacation budget spreadsheet quarterly goals onboarding checklist"
  ).split(" ")
  const syl = ["ka", "lo", "mi", "ten", "ra", "vo", "sen", "dri", "ul", "pa", "zor", "nem", "qui", "bel", "tor", "fi"]
  const rand = mulberry32(1234)
  const made = Array.from({ length: 3000 }, () => {
    let w = ""
    const n = 2 + Math.floor(rand() * 3)
    for (let k = 0; k < n; k++) w += syl[Math.floor(rand() * syl.length)]
    return w
  })
  return [...common, ...common, ...made]
})()

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
