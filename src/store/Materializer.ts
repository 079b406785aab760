/**
 * The SQL twin of `Fold`: keeps the `memories` view (and, through triggers, `memories_fts`) equal to the fold of
 * the events held.
 *
 * Each register has a value column and a `<name>_key` column with the order key of its writer. Applying a state is
 * one upsert whose SET clause is `Fold.merge` written in SQL: a register moves only when the incoming key is greater,
 * `created` and `deleted` only go from 0 to 1. A batch is first merged in memory (one row per memory), then
 * upserted with one prepared statement per memory inside the caller's transaction.
 */
import type Sqlite from "better-sqlite3"
import { Context, Effect, Layer, Schema } from "effect"
import { classify, type Envelope, type MemoryEvent } from "../domain/Events.js"
import { foldInto, REGISTERS, type MemoryState, type Register, type RegisterName } from "../domain/Fold.js"
import { Database } from "./Database.js"
import type { StorageError } from "./Errors.js"

/** The materializer service. */
export interface Materializer {
  /** Fold envelopes into the view (unknown kinds are skipped); returns the ids of the memories touched. */
  readonly apply: (
    events: ReadonlyArray<Envelope>,
    table?: string
  ) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /**
   * `apply` as a plain call (throws on failure) on the handle `Database.write` or `Database.raw` passes, so while the
   * caller holds the connection: the interactive write path, where an Effect around each step costs about as much as
   * the SQLite work.
   */
  readonly unsafeApply: (db: Sqlite.Database, events: ReadonlyArray<Envelope>, table?: string) => ReadonlyArray<string>
  /** Merge pre-folded states into the view. */
  readonly applyStates: (states: Iterable<MemoryState>, table?: string) => Effect.Effect<void, StorageError>
  /** Every row of a view table as fold states (tests, verify). */
  readonly readStates: (table?: string) => Effect.Effect<Map<string, MemoryState>, StorageError>
}

/** The materializer tag. */
export const Materializer = Context.GenericTag<Materializer>("memsync/Materializer")

/** The view column of each register. */
export const COLUMNS: Record<RegisterName, string> = {
  content: "content",
  category: "category",
  tags: "tags",
  keywords: "keywords",
  importance: "importance",
  sensitive: "sensitive",
  createdAt: "created_at",
  updatedAt: "updated_at",
  deletedAt: "deleted_at"
}

/** Build the materializer over the open database. */
export const make = Effect.gen(function* () {
  const database = yield* Database
  const upserts = new Map<string, Sqlite.Statement>()
  const upsertFor = (db: Sqlite.Database, table: string, rows: number, narrow: boolean): Sqlite.Statement => {
    const key = `${table}\u0000${rows}\u0000${narrow}`
    let stmt = upserts.get(key)
    if (stmt === undefined) {
      stmt = db.prepare(upsertRowsSql(table, rows, narrow ? NARROW_SKIPS : []))
      upserts.set(key, stmt)
    }
    return stmt
  }
  const lookups = new Map<string, { readonly triggers: Sqlite.Statement; readonly rownum: Sqlite.Statement }>()
  const lookupFor = (db: Sqlite.Database, table: string) => {
    let l = lookups.get(table)
    if (l === undefined) {
      // SQLite re-prepares these by itself after a schema change (a rebuild drops and recreates the triggers).
      l = {
        triggers: db.prepare(FTS_TRIGGER_COUNT).pluck(),
        rownum: db.prepare(`SELECT rownum FROM ${table} WHERE id = ?`).pluck()
      }
      lookups.set(table, l)
    }
    return l
  }

  const writeStates = (db: Sqlite.Database, states: Iterable<MemoryState>, table: string) => {
    const all = Array.from(states)
    // Only the main `memories` table carries the FTS triggers (a rebuild drops them while it runs); the order of
    // a single row does not matter (the interactive path).
    let rows = all
    if (all.length > 1 && table === "memories") {
      const l = lookupFor(db, table)
      if (l.triggers.get() !== 0) rows = inRownumOrder(all, l.rownum)
    }
    // States that write neither `category` nor `createdAt` (updates without a category, deletes) go through an
    // upsert whose SET clause leaves those columns out, so SQLite does not rewrite their index entries.
    const narrow: Array<MemoryState> = []
    const full: Array<MemoryState> = []
    for (const s of rows) (s.category === undefined && s.createdAt === undefined ? narrow : full).push(s)
    for (const [group, isNarrow] of [
      [narrow, true],
      [full, false]
    ] as const) {
      let i = 0
      for (const size of CHUNKS) {
        for (; group.length - i >= size; i += size) {
          const params: Array<string | number | null> = []
          for (let k = i; k < i + size; k++) pushStateRow(params, group[k]!)
          upsertFor(db, table, size, isNarrow).run(params)
        }
      }
    }
  }

  const applyStates = (states: Iterable<MemoryState>, table = "memories") =>
    database.raw((db) => writeStates(db, states, table))

  const apply = (events: ReadonlyArray<Envelope>, table = "memories") =>
    Effect.suspend(() => {
      const states = foldEnvelopes(events)
      return Effect.as(applyStates(states.values(), table), Array.from(states.keys()))
    })

  const unsafeApply = (db: Sqlite.Database, events: ReadonlyArray<Envelope>, table = "memories") => {
    const states = foldEnvelopes(events)
    writeStates(db, states.values(), table)
    return Array.from(states.keys())
  }

  const readStates = (table = "memories") =>
    database.raw((db) => {
      const out = new Map<string, MemoryState>()
      for (const row of db.prepare(`SELECT * FROM ${table}`).iterate()) {
        const s = rowToState(row)
        out.set(s.id, s)
      }
      return out
    })

  return Materializer.of({ apply, unsafeApply, applyStates, readStates })
})

/** The materializer over the `Database` in context. */
export const layer: Layer.Layer<Materializer, never, Database> = Layer.effect(Materializer, make)

/** Merge envelopes into one state per memory, skipping kinds this build does not know. */
export const foldEnvelopes = (events: Iterable<Envelope>): Map<string, MemoryState> => {
  const states = new Map<string, MemoryState>()
  for (const e of events) {
    const c = classify(e)
    if (c._tag === "Known") foldInto(states, c.event)
  }
  return states
}

/** Keep only the known events of a list (typed), e.g. for a pure fold in tests. */
export const knownEvents = (events: Iterable<Envelope>): Array<MemoryEvent> => {
  const out: Array<MemoryEvent> = []
  for (const e of events) {
    const c = classify(e)
    if (c._tag === "Known") out.push(c.event)
  }
  return out
}

/**
 * The upsert implementing `Fold.merge` on a view table. Registers named in `skip` are left out of the SET clause: only
 * for rows that do not write them, for which their assignment would keep the old value anyway (a missing register's
 * key is NULL, and `NULL > key` is not true).
 */
export const upsertSql = (table: string, skip: ReadonlyArray<RegisterName> = []): string => {
  const cols = REGISTERS.map((r) => COLUMNS[r])
  const names = ["id", "created", "deleted", ...cols.flatMap((c) => [c, `${c}_key`])]
  const set = REGISTERS.filter((r) => !skip.includes(r)).map((r) => COLUMNS[r])
  const sets = [
    `created = max(${table}.created, excluded.created)`,
    `deleted = max(${table}.deleted, excluded.deleted)`,
    ...set.flatMap((c) => {
      const wins = `excluded.${c}_key > coalesce(${table}.${c}_key, '')`
      return [
        `${c} = CASE WHEN ${wins} THEN excluded.${c} ELSE ${table}.${c} END`,
        `${c}_key = CASE WHEN ${wins} THEN excluded.${c}_key ELSE ${table}.${c}_key END`
      ]
    })
  ]
  return `INSERT INTO ${table} (${names.join(", ")}) VALUES (${names.map((n) => `@${n}`).join(", ")})
    ON CONFLICT(id) DO UPDATE SET ${sets.join(",\n")}`
}

/**
 * `upsertSql` for `rows` rows in one statement, with positional parameters in `VIEW_COLUMNS` order. Row by row it
 * does exactly what `rows` single-row upserts would (SQLite applies a multi-row upsert one row at a time, in order).
 */
export const upsertRowsSql = (table: string, rows: number, skip: ReadonlyArray<RegisterName> = []): string => {
  const one = `(${VIEW_COLUMNS.map(() => "?").join(", ")})`
  const single = upsertSql(table, skip)
  const at = single.indexOf(" VALUES (")
  const end = single.indexOf(")", at + 9)
  return `${single.slice(0, at)} VALUES ${Array.from({ length: rows }, () => one).join(", ")}${single.slice(end + 1)}`
}

/** The columns of a view row, in the order `upsertRowsSql` binds them. */
export const VIEW_COLUMNS: ReadonlyArray<string> = [
  "id",
  "created",
  "deleted",
  ...REGISTERS.flatMap((r) => [COLUMNS[r], `${COLUMNS[r]}_key`])
]

/** The named parameters of one state's upsert. */
export const stateParams = (s: MemoryState): Record<string, string | number | null> => {
  const p: Record<string, string | number | null> = { id: s.id, created: s.created ? 1 : 0, deleted: s.deleted ? 1 : 0 }
  for (const r of REGISTERS) {
    const reg = s[r]
    const col = COLUMNS[r]
    p[col] = reg === undefined ? null : toColumn(reg.value)
    p[`${col}_key`] = reg === undefined ? null : reg.key
  }
  return p
}

/** A `memories` row as stored (value columns plus keys). */
export const ViewRow = Schema.Struct({
  id: Schema.String,
  created: Schema.Number,
  deleted: Schema.Number,
  content: Schema.NullOr(Schema.String),
  content_key: Schema.NullOr(Schema.String),
  category: Schema.NullOr(Schema.String),
  category_key: Schema.NullOr(Schema.String),
  tags: Schema.NullOr(Schema.String),
  tags_key: Schema.NullOr(Schema.String),
  keywords: Schema.NullOr(Schema.String),
  keywords_key: Schema.NullOr(Schema.String),
  importance: Schema.NullOr(Schema.Number),
  importance_key: Schema.NullOr(Schema.String),
  sensitive: Schema.NullOr(Schema.Number),
  sensitive_key: Schema.NullOr(Schema.String),
  created_at: Schema.NullOr(Schema.Number),
  created_at_key: Schema.NullOr(Schema.String),
  updated_at: Schema.NullOr(Schema.Number),
  updated_at_key: Schema.NullOr(Schema.String),
  deleted_at: Schema.NullOr(Schema.Number),
  deleted_at_key: Schema.NullOr(Schema.String)
})

const decodeViewRow = Schema.decodeUnknownSync(ViewRow)
const StringList = Schema.decodeUnknownSync(Schema.parseJson(Schema.Array(Schema.String)))

/** A view row back to a fold state (throws on a row that does not decode; call inside `Database.raw`). */
export const rowToState = (row: unknown): MemoryState => {
  const r = decodeViewRow(row)
  const reg = <A>(value: A | null, key: string | null): Register<A> | undefined =>
    key === null || value === null ? undefined : { value, key }
  const state: { -readonly [K in keyof MemoryState]: MemoryState[K] } = {
    id: r.id,
    created: r.created === 1,
    deleted: r.deleted === 1
  }
  const set = <A>(name: RegisterName, register: Register<A> | undefined) => {
    // One generic setter for nine registers; `name` and the value's type are paired by the calls below.
    if (register !== undefined) (state as Record<RegisterName, Register<unknown>>)[name] = register
  }
  set("content", reg(r.content, r.content_key))
  set("category", reg(r.category, r.category_key))
  set("tags", reg(r.tags === null ? null : StringList(r.tags), r.tags_key))
  set("keywords", reg(r.keywords === null ? null : StringList(r.keywords), r.keywords_key))
  set("importance", reg(r.importance, r.importance_key))
  set("sensitive", reg(r.sensitive === null ? null : r.sensitive === 1, r.sensitive_key))
  set("createdAt", reg(r.created_at, r.created_at_key))
  set("updatedAt", reg(r.updated_at, r.updated_at_key))
  set("deletedAt", reg(r.deleted_at, r.deleted_at_key))
  return state
}

const toColumn = (v: unknown): string | number | null => {
  if (typeof v === "string" || typeof v === "number") return v
  if (typeof v === "boolean") return v ? 1 : 0
  return JSON.stringify(v)
}

/**
 * Why batches are applied in statements of many rows, in rownum order (measured, see bench/README.md): FTS5 flushes
 * its pending index data to a new segment at every statement savepoint, and also whenever a write goes to a rowid
 * below the previous one. One single-row upsert per memory therefore wrote one FTS segment per row (plus the merges
 * that follow). Multi-row statements flush once per statement; updating existing rows in ascending rownum order,
 * then inserting the new ones (whose rownums come after), keeps the rowids increasing within a statement.
 * Neither changes the result: each row's upsert depends only on its own row, and new rows get the same rownums.
 */
const CHUNKS = [500, 100, 20, 1]

/** The registers a narrow upsert leaves out: the two with an index of their own on `memories`. */
const NARROW_SKIPS: ReadonlyArray<RegisterName> = ["category", "createdAt"]

const FTS_TRIGGER_COUNT = `SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'memories'
  AND name LIKE 'memories_fts_%'`

/** Existing memories in ascending rownum order, then new ones in their original order. */
const inRownumOrder = (states: Array<MemoryState>, rownum: Sqlite.Statement): Array<MemoryState> => {
  const existing: Array<{ readonly n: number; readonly s: MemoryState }> = []
  const fresh: Array<MemoryState> = []
  for (const s of states) {
    const n: unknown = rownum.get(s.id)
    if (typeof n === "number") existing.push({ n, s })
    else fresh.push(s)
  }
  existing.sort((a, b) => a.n - b.n)
  const out: Array<MemoryState> = []
  for (const e of existing) out.push(e.s)
  for (const s of fresh) out.push(s)
  return out
}

/** Append one state's row in `VIEW_COLUMNS` order (same values as `stateParams`). */
const pushStateRow = (out: Array<string | number | null>, s: MemoryState): void => {
  out.push(s.id, s.created ? 1 : 0, s.deleted ? 1 : 0)
  for (const r of REGISTERS) {
    const reg = s[r]
    if (reg === undefined) out.push(null, null)
    else out.push(toColumn(reg.value), reg.key)
  }
}
