/**
 * Export and import of event logs as NDJSON: a header line, then one envelope per line, in log order.
 *
 * Export writes the event SET (dead letters left out, as from the view), so importing it into an empty database gives
 * the same view. Unless asked otherwise it redacts sensitive memories — every memory any event marked sensitive: their
 * `content` becomes "[redacted]" and their `keywords` (derived from content) become empty, in every event; payloads of
 * kinds this build cannot read are replaced whole. The header says so, and such a file is refused by import unless
 * the caller accepts it: redacted events keep their ids, so syncing them would clash with the real ones.
 *
 * Import is idempotent by event id and validates line by line: a bad line is reported with its number and skipped,
 * the rest goes on. An id already held with a different body is reported too (a server would refuse it).
 */
import { Clock, Effect, Predicate, Schema } from "effect"
import { classify, decodeEnvelope, formatError, isKnown, type Envelope } from "../domain/Events.js"
import { canonicalJson } from "../domain/Json.js"
import type { Service as ServerLogService } from "../server/ServerLog.js"
import { Database } from "../store/Database.js"
import { StorageError } from "../store/Errors.js"
import { MemoryStore } from "../store/MemoryStore.js"
import type { Progress } from "../store/Replay.js"
import { ImportRefused } from "./Errors.js"
import { EventSource } from "./EventSource.js"
import * as Lines from "./Lines.js"
import type { LogRow } from "./Rows.js"

/** The first line of an export. */
export const ExportHeader = Schema.Struct({
  memsync: Schema.Literal("export"),
  version: Schema.Number,
  redacted: Schema.Boolean,
  source: Schema.optional(Schema.String),
  space: Schema.optional(Schema.NullOr(Schema.String)),
  events: Schema.optional(Schema.Number),
  exportedAt: Schema.optional(Schema.String),
  note: Schema.optional(Schema.String)
})
export type ExportHeader = typeof ExportHeader.Type

/** The export format this build writes and reads. */
export const FORMAT_VERSION = 1

/** What replaces redacted content. */
export const REDACTED = "[redacted]"

/** Options of `exportTo`. */
export interface ExportOptions {
  readonly includeSensitive?: boolean
  readonly pageSize?: number
  readonly onProgress?: (p: Progress) => Effect.Effect<void>
}

/** What an export wrote. */
export interface ExportSummary {
  readonly header: ExportHeader
  /** Event lines written. */
  readonly events: number
  /** Dead letters left out. */
  readonly excluded: number
  /** Events whose payload was redacted. */
  readonly redactedEvents: number
}

/** Write the source's event set as NDJSON to `sink`. */
export const exportTo = Effect.fn("Transfer.exportTo")(function* (sink: Lines.Sink, options: ExportOptions = {}) {
  const source = yield* EventSource
  const pageSize = options.pageSize ?? 5_000
  const sensitive = options.includeSensitive === true ? new Set<string>() : yield* sensitiveMemories
  // Nothing to hide is a complete export: say "redacted" only when some content is replaced.
  const redact = sensitive.size > 0
  const total = yield* source.count()
  const events = yield* source.count({ inSet: true })
  const now = yield* Clock.currentTimeMillis
  const header: ExportHeader = {
    memsync: "export",
    version: FORMAT_VERSION,
    redacted: redact,
    source: source.kind,
    space: source.space ?? null,
    events,
    exportedAt: new Date(now).toISOString(),
    ...(redact
      ? { note: `content and keywords of sensitive memories are replaced by ${JSON.stringify(REDACTED)} and []` }
      : {})
  }
  yield* sink.write(`${JSON.stringify(header)}\n`)
  let after = 0
  let done = 0
  let written = 0
  let redactedEvents = 0
  while (true) {
    const rows = yield* source.rows(after, pageSize)
    if (rows.length === 0) break
    const lines: Array<string> = []
    for (const r of rows) {
      if (r.excluded) continue
      const hidden = r.memoryId !== null && sensitive.has(r.memoryId)
      if (hidden) redactedEvents++
      lines.push(hidden ? redactedLine(r) : line(r, r.payload))
    }
    written += lines.length
    if (lines.length > 0) yield* sink.write(lines.join(""))
    after = rows[rows.length - 1]!.seq
    done += rows.length
    if (options.onProgress) yield* options.onProgress({ done, total })
  }
  const summary: ExportSummary = { header, events: written, excluded: done - written, redactedEvents }
  return summary
})

/** Export into a new file (refused when it exists; the file appears only once complete). */
export const exportToFile = (path: string, options: ExportOptions = {}) =>
  Lines.writeNew(path, (sink) => exportTo(sink, options))

/** Where imported events go. */
export interface Target {
  /** Store a batch; one outcome per event, in order. */
  readonly write: (batch: ReadonlyArray<Envelope>) => Effect.Effect<ReadonlyArray<Outcome>, StorageError>
}

/** What became of one imported event. */
export type Outcome =
  | { readonly _tag: "Imported" }
  | { readonly _tag: "Duplicate" }
  | { readonly _tag: "Refused"; readonly message: string }

/** A replica target: `MemoryStore.ingest` (append new ids, fold, no outbox); duplicates are checked for body. */
export const replicaTarget = Effect.gen(function* () {
  const store = yield* MemoryStore
  const database = yield* Database
  const target: Target = {
    write: (batch) =>
      Effect.gen(function* () {
        const fresh = new Set((yield* store.ingest(batch)).map((e) => e.id))
        return yield* database.raw((db) => {
          const held = db.prepare(`SELECT type, version, hlc, client_id, payload FROM events WHERE id = ?`)
          return batch.map((e): Outcome => {
            if (fresh.has(e.id)) {
              // The first copy of an id in this batch is the one stored; a later copy is a duplicate.
              fresh.delete(e.id)
              return { _tag: "Imported" }
            }
            return sameAsHeld(e, held.get(e.id))
              ? { _tag: "Duplicate" }
              : { _tag: "Refused", message: `event ${e.id} is already held with a different body` }
          })
        })
      })
  }
  return target
})

/** A server target: pushes through the server log's admission into `space` (in batches of its limit). */
export const serverTarget = (log: ServerLogService, space: string): Target => ({
  write: (batch) =>
    Effect.gen(function* () {
      const out: Array<Outcome> = []
      for (let i = 0; i < batch.length; i += log.limits.maxBatch) {
        const response = yield* log
          .push(space, batch.slice(i, i + log.limits.maxBatch))
          .pipe(Effect.mapError((e) => new StorageError({ message: e.message })))
        for (const r of response.results) {
          out.push(
            r.status === "accepted"
              ? { _tag: "Imported" }
              : r.status === "duplicate"
                ? { _tag: "Duplicate" }
                : { _tag: "Refused", message: `${r.reason}: ${r.message}` }
          )
        }
      }
      return out
    })
})

/** Options of `importFile`. */
export interface ImportOptions {
  /** Accept an export whose sensitive content was redacted. */
  readonly allowRedacted?: boolean
  readonly batchSize?: number
  readonly onProgress?: (p: Progress) => Effect.Effect<void>
  /** Told of every bad line as it is found (the report keeps the first `INVALID_LIMIT`). */
  readonly onInvalid?: (invalid: InvalidLine) => Effect.Effect<void>
}

/** A line that was skipped. */
export interface InvalidLine {
  readonly line: number
  readonly message: string
}

/** What an import did. */
export interface ImportReport {
  readonly lines: number
  readonly header: ExportHeader | null
  /** Valid event lines. */
  readonly events: number
  /** Events new to the target. */
  readonly imported: number
  /** Events the target already held (same body). */
  readonly duplicates: number
  readonly invalidCount: number
  readonly invalid: ReadonlyArray<InvalidLine>
}

/** At most this many invalid lines are kept in the report. */
export const INVALID_LIMIT = 1_000

/** Import an NDJSON export (or any file of envelopes, one per line) into the target. */
export const importFile = Effect.fn("Transfer.importFile")(function* (
  path: string,
  target: Target,
  options: ImportOptions = {}
) {
  const batchSize = options.batchSize ?? 5_000
  const total = options.onProgress === undefined ? 0 : yield* Lines.countLines(path)
  const lines = yield* Lines.reader(path).pipe(Effect.catchAll((e) => new ImportRefused({ path, reason: e.message })))
  let header: ExportHeader | null = null
  let seenContent = false
  let count = 0
  let events = 0
  let imported = 0
  let duplicates = 0
  let invalidCount = 0
  const invalid: Array<InvalidLine> = []
  const bad = (line: number, message: string) => {
    invalidCount++
    const item = { line, message }
    if (invalid.length < INVALID_LIMIT) invalid.push(item)
    return options.onInvalid ? options.onInvalid(item) : Effect.void
  }
  while (true) {
    const page = lines.next(batchSize)
    if (page.length === 0) break
    count = page[page.length - 1]!.number
    const batch: Array<Envelope> = []
    const numbers: Array<number> = []
    for (const l of page) {
      if (l.tooLong) {
        yield* bad(l.number, `line longer than ${Lines.MAX_LINE} characters`)
        continue
      }
      if (l.text.trim() === "") continue
      const first = !seenContent
      seenContent = true
      const parsed = parseLine(l.text)
      if (parsed._tag === "Bad") {
        yield* bad(l.number, parsed.message)
        continue
      }
      if (parsed._tag === "Header") {
        if (!first) {
          yield* bad(l.number, "an export header after the first line")
          continue
        }
        if (parsed.header.version !== FORMAT_VERSION) {
          return yield* new ImportRefused({ path, reason: `export format version ${parsed.header.version} is unknown` })
        }
        if (parsed.header.redacted && options.allowRedacted !== true) {
          return yield* new ImportRefused({
            path,
            reason:
              "it is a redacted export (sensitive content replaced, event ids kept); pass --allow-redacted to " +
              "import it anyway, into a database that will never sync with the original's server"
          })
        }
        header = parsed.header
        continue
      }
      batch.push(parsed.envelope)
      numbers.push(l.number)
    }
    events += batch.length
    const outcomes = batch.length === 0 ? [] : yield* target.write(batch)
    for (let i = 0; i < outcomes.length; i++) {
      const o = outcomes[i]!
      if (o._tag === "Imported") imported++
      else if (o._tag === "Duplicate") duplicates++
      else yield* bad(numbers[i]!, o.message)
    }
    if (options.onProgress) yield* options.onProgress({ done: count, total: Math.max(total, count) })
  }
  const report: ImportReport = { lines: count, header, events, imported, duplicates, invalidCount, invalid }
  return report
}, Effect.scoped)

// ---------------------------------------------------------------------------------------------------------------

/** Memory ids that any event (dead letters included: be cautious) marked sensitive. */
const sensitiveMemories = Effect.gen(function* () {
  const source = yield* EventSource
  const { table, where, params } = source.scoped
  return yield* source.database.raw((db) => {
    const flag = (path: string) => `CASE WHEN json_valid(e.payload) THEN json_extract(e.payload, '${path}') END = 1`
    const ids = db
      .prepare(
        `SELECT DISTINCT e.memory_id FROM ${table} e WHERE ${where} AND e.memory_id IS NOT NULL
         AND (${flag("$.sensitive")} OR ${flag("$.patch.sensitive")})`
      )
      .pluck()
      .all(...params)
    return new Set(ids.map(String))
  })
})

/** An envelope line from row columns (the payload text is the log's JSON, written by JSON.stringify). */
const line = (r: LogRow, payload: string, extra = ""): string =>
  `{"id":${JSON.stringify(r.id)},"type":${JSON.stringify(r.type)},"version":${r.version},` +
  `"hlc":${JSON.stringify(r.hlc)},"clientId":${JSON.stringify(r.clientId)},"payload":${payload}${extra}}\n`

const redactedLine = (r: LogRow): string => {
  let payload: unknown
  try {
    payload = JSON.parse(r.payload)
  } catch {
    payload = null
  }
  return line(r, JSON.stringify(redactPayload(r, payload)), `,"redacted":true`)
}

const redactPayload = (r: LogRow, payload: unknown): unknown => {
  if (!isKnown(r.type, r.version) || !Predicate.isRecord(payload)) return { id: r.memoryId, redacted: true }
  const scrub = (o: Record<string, unknown>): Record<string, unknown> => {
    const out = { ...o }
    if ("content" in out) out.content = REDACTED
    if ("keywords" in out) out.keywords = []
    return out
  }
  const out = scrub(payload)
  if (Predicate.isRecord(out.patch)) out.patch = scrub(out.patch)
  return out
}

type Parsed =
  | { readonly _tag: "Header"; readonly header: ExportHeader }
  | { readonly _tag: "Event"; readonly envelope: Envelope }
  | { readonly _tag: "Bad"; readonly message: string }

const decodeHeader = Schema.decodeUnknownEither(ExportHeader)

const parseLine = (text: string): Parsed => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return { _tag: "Bad", message: `not JSON: ${e instanceof Error ? e.message : String(e)}` }
  }
  if (Predicate.isRecord(json) && "memsync" in json) {
    const h = decodeHeader(json)
    return h._tag === "Right"
      ? { _tag: "Header", header: h.right }
      : { _tag: "Bad", message: `bad export header: ${formatError(h.left)}` }
  }
  const envelope = decodeEnvelope(json)
  if (envelope._tag === "Left") return { _tag: "Bad", message: envelope.left }
  const c = classify(envelope.right)
  if (c._tag === "Invalid") return { _tag: "Bad", message: `${envelope.right.type}: ${c.message}` }
  return { _tag: "Event", envelope: envelope.right }
}

const HeldRow = Schema.Struct({
  type: Schema.String,
  version: Schema.Number,
  hlc: Schema.String,
  client_id: Schema.String,
  payload: Schema.String
})
const decodeHeld = Schema.decodeUnknownSync(HeldRow)

const sameAsHeld = (e: Envelope, row: unknown): boolean => {
  if (row === undefined) return false
  const h = decodeHeld(row)
  return (
    h.type === e.type &&
    h.version === e.version &&
    h.hlc === e.hlc &&
    h.client_id === e.clientId &&
    (h.payload === JSON.stringify(e.payload) || canonicalJson(JSON.parse(h.payload)) === canonicalJson(e.payload))
  )
}
