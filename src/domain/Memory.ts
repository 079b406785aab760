/**
 * The memory model: what a memory is, what a caller may write, and the limits every edge enforces.
 *
 * Types come from these schemas; every boundary (CLI, HTTP, SQL rows, stored payloads) decodes through them.
 */
import { Schema } from "effect"

/** Default upper bound for `content`, in UTF-8 bytes. */
export const MAX_CONTENT_BYTES = 64 * 1024

const encoder = new TextEncoder()

/** The size of a string in UTF-8 bytes (what SQLite and the wire actually carry). */
export const utf8Bytes = (s: string): number => encoder.encode(s).length

/** `utf8Bytes(s) <= max`, without encoding short strings (a UTF-16 unit is at most 3 UTF-8 bytes). */
export const fitsBytes = (s: string, max: number): boolean => s.length * 3 <= max || utf8Bytes(s) <= max

/**
 * True when a string is well-formed UTF-16 (no unpaired surrogate). SQLite stores TEXT as UTF-8 and turns an
 * unpaired surrogate into U+FFFD, so such a string would not read back as written (and two ids could become one).
 */
export const isWellFormed = (s: string): boolean => !/[\uD800-\uDFFF]/u.test(s)

/** A memory id: opaque, non-empty, at most 128 characters. New ids are UUIDv7. */
export const MemoryId = Schema.String.pipe(
  Schema.minLength(1, { message: () => "memory id must not be empty" }),
  Schema.maxLength(128, { message: () => "memory id must be at most 128 characters" }),
  Schema.filter((s) => isWellFormed(s) || "memory id must not contain unpaired surrogates")
)
export type MemoryId = typeof MemoryId.Type

/** Memory content: non-empty, at most `MAX_CONTENT_BYTES` UTF-8 bytes. */
export const Content = Schema.String.pipe(
  Schema.filter((s) => s.trim().length > 0 || "content must not be empty"),
  Schema.filter((s) => fitsBytes(s, MAX_CONTENT_BYTES) || `content must be at most ${MAX_CONTENT_BYTES} bytes`),
  Schema.filter((s) => isWellFormed(s) || "content must not contain unpaired surrogates")
)

/** A category: free text, at most 256 characters. */
export const Category = Schema.String.pipe(
  Schema.maxLength(256, { message: () => "category must be at most 256 characters" }),
  Schema.filter((s) => isWellFormed(s) || "category must not contain unpaired surrogates")
)

/**
 * A tag or keyword as stored in events: non-empty, at most 256 characters. Shipped in the v1 payloads, so it stays as
 * it is; what a writer may give is the stricter `InputLabels`.
 */
export const Label = Schema.String.pipe(
  Schema.minLength(1, { message: () => "tags and keywords must not be empty" }),
  Schema.maxLength(256, { message: () => "tags and keywords must be at most 256 characters" })
)

/** The most tags (and the most keywords) a writer may give one memory. */
export const MAX_LABELS = 100

/**
 * Tags or keywords as a writer gives them, normalized here for every write path (create, createMany, update, the
 * CLI): a blank one is refused (it could never be searched or listed by), duplicates are dropped, first one kept.
 * At most `MAX_LABELS`: with the content bound this keeps an event well inside a server's request body limit (1 MiB
 * by default); an event larger than that could never be pushed. A `Label` array once decoded, so events stay
 * readable by builds that only know `Label`.
 */
export const InputLabels = Schema.transform(
  Schema.Array(
    Schema.String.pipe(
      Schema.filter((s) => s.trim().length > 0 || "tags and keywords must not be empty or blank"),
      Schema.maxLength(256, { message: () => "tags and keywords must be at most 256 characters" })
    )
  ).pipe(Schema.maxItems(MAX_LABELS, { message: () => `at most ${MAX_LABELS} tags and ${MAX_LABELS} keywords` })),
  Schema.typeSchema(Schema.Array(Label)),
  { strict: true, decode: (xs) => Array.from(new Set(xs)), encode: (xs) => xs }
)

/** Importance in [0, 1]. */
export const Importance = Schema.Number.pipe(
  Schema.filter((n) => (Number.isFinite(n) && n >= 0 && n <= 1) || "importance must be a number between 0 and 1")
)

/** Epoch milliseconds. */
export const Timestamp = Schema.Number.pipe(Schema.int(), Schema.nonNegative())

/** The fields a writer sets (everything but identity and timestamps). */
export const MemoryFields = Schema.Struct({
  content: Content,
  category: Category,
  tags: Schema.Array(Label),
  keywords: Schema.Array(Label),
  importance: Importance,
  sensitive: Schema.Boolean
})
export type MemoryFields = typeof MemoryFields.Type

/** The names of the fields a writer sets, in a fixed order (the fold and the SQL view iterate over it). */
export const FIELD_NAMES = ["content", "category", "tags", "keywords", "importance", "sensitive"] as const
export type FieldName = (typeof FIELD_NAMES)[number]

/** A memory as readers see it. */
export const Memory = Schema.Struct({
  id: MemoryId,
  ...MemoryFields.fields,
  createdAt: Timestamp,
  updatedAt: Timestamp
})
export type Memory = typeof Memory.Type

/** What `create` takes: content is required, the rest has defaults (see `withDefaults`). */
export const CreateInput = Schema.Struct({
  content: Content,
  category: Schema.optional(Category),
  tags: Schema.optional(InputLabels),
  keywords: Schema.optional(InputLabels),
  importance: Schema.optional(Importance),
  sensitive: Schema.optional(Schema.Boolean)
})
export type CreateInput = typeof CreateInput.Type

const nonEmptyPatch = <P extends object>(p: P) =>
  Object.keys(p).length > 0 || "an update must change at least one field"

/** The patch of a stored `memory.updated` (v1 payload): a partial of the fields, with at least one. */
export const Patch = Schema.partial(MemoryFields).pipe(Schema.filter(nonEmptyPatch))
export type Patch = typeof Patch.Type

/** What `update` takes: a `Patch` whose tags and keywords are normalized like `create`'s (see `InputLabels`). */
export const PatchInput = Schema.partial(
  Schema.Struct({ ...MemoryFields.fields, tags: InputLabels, keywords: InputLabels })
).pipe(Schema.filter(nonEmptyPatch))

/** The defaults a `create` fills in (to a decoded `CreateInput`: its tags and keywords are already normalized). */
export const withDefaults = (input: CreateInput): MemoryFields => ({
  content: input.content,
  category: input.category ?? "general",
  tags: input.tags ?? [],
  keywords: input.keywords ?? [],
  importance: input.importance ?? 0.5,
  sensitive: input.sensitive ?? false
})
