/**
 * Benchmark 2: interactive `MemoryStore.create` latency (event + outbox + view + FTS in one transaction) against a
 * bare single-row @effect/sql transaction (`sql.withTransaction(sql\`INSERT INTO bare ...\`)`) on the same kind of
 * database (memsync's `Database` layer: same client, same lock, WAL, synchronous=NORMAL, BEGIN IMMEDIATE).
 *
 * Each iteration times one create and then one bare insert, so both see the same machine noise. A warm-up (not
 * recorded) lets the JIT and statement caches settle. Latency is measured around the Effect, so it includes the
 * Effect runtime's own overhead on both sides.
 */
import { Context, Effect, Layer } from "effect"
import { join } from "node:path"
import * as Database from "../src/store/Database.js"
import * as MemoryStore from "../src/store/MemoryStore.js"
import { makeInputs } from "./gen.js"
import { BARE_TABLE, fmt, median, percentile, progress, removeDb, type Row } from "./lib.js"

/** Options of the create benchmark. */
export interface CreateOptions {
  readonly dir: string
  readonly creates: number
  readonly reps: number
}

/** Target: create p50 at most this multiple of the bare transaction's p50. */
export const TARGET_FACTOR = 2

interface Sample {
  readonly store: Array<number>
  readonly bare: Array<number>
}

const WARMUP = 200

/** One repetition on fresh files: `n` interleaved (create, bare insert) pairs after a warm-up. */
const runOnce = (storeFile: string, bareFile: string, n: number): Promise<Sample> =>
  Effect.gen(function* () {
    const storeCtx = yield* Layer.build(MemoryStore.layer({ filename: storeFile }))
    const bareCtx = yield* Layer.build(Database.layer({ filename: bareFile }))
    const store = Context.get(storeCtx, MemoryStore.MemoryStore)
    const { sql } = Context.get(bareCtx, Database.Database)
    yield* sql.unsafe(BARE_TABLE)
    const inputs = makeInputs(WARMUP + n)
    const sample: Sample = { store: [], bare: [] }
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!
      const payload = JSON.stringify(input)
      const t0 = performance.now()
      const memory = yield* store.create(input)
      const t1 = performance.now()
      yield* sql.withTransaction(
        sql`INSERT INTO bare (id, type, version, memory_id, hlc, client_id, payload)
            VALUES (${memory.id}, ${"memory.created"}, ${1}, ${memory.id}, ${String(t1)}, ${"bare"}, ${payload})`
      )
      const t2 = performance.now()
      if (i >= WARMUP) {
        sample.store.push(t1 - t0)
        sample.bare.push(t2 - t1)
      }
    }
    return sample
  }).pipe(Effect.scoped, Effect.runPromise)

/** Run the benchmark; returns summary rows. */
export const runCreate = async (o: CreateOptions): Promise<ReadonlyArray<Row>> => {
  console.log(
    `\n[create] ${fmt(o.creates)} creates (content 100-400 chars, 1-4 tags, 2-6 keywords) interleaved with ` +
      `${fmt(o.creates)} bare @effect/sql single-row transactions, ${o.reps} repetitions, ${WARMUP} warm-up each`
  )
  const p50s: Array<[number, number]> = []
  const p99s: Array<[number, number]> = []
  for (let rep = 0; rep < o.reps; rep++) {
    const storeFile = join(o.dir, `create-store-${rep}.db`)
    const bareFile = join(o.dir, `create-bare-${rep}.db`)
    const s = await runOnce(storeFile, bareFile, o.creates)
    removeDb(storeFile)
    removeDb(bareFile)
    p50s.push([percentile(s.store, 50), percentile(s.bare, 50)])
    p99s.push([percentile(s.store, 99), percentile(s.bare, 99)])
    progress(
      `rep ${rep + 1}: create p50 ${ms(p50s[rep]![0])} p99 ${ms(p99s[rep]![0])}; ` +
        `bare p50 ${ms(p50s[rep]![1])} p99 ${ms(p99s[rep]![1])}`
    )
  }
  const storeP50 = median(p50s.map((x) => x[0]))
  const bareP50 = median(p50s.map((x) => x[1]))
  const storeP99 = median(p99s.map((x) => x[0]))
  const bareP99 = median(p99s.map((x) => x[1]))
  const ratio = storeP50 / bareP50
  const pass = ratio <= TARGET_FACTOR
  console.log(`  MemoryStore.create:            p50 ${ms(storeP50)}  p99 ${ms(storeP99)} (median of repetitions)`)
  console.log(`  bare @effect/sql transaction:  p50 ${ms(bareP50)}  p99 ${ms(bareP99)}`)
  console.log(`  p50 ratio ${ratio.toFixed(2)}x bare (target <= ${TARGET_FACTOR}x): ${pass ? "PASS" : "MISS"}`)
  return [
    {
      bench: "2 create",
      metric: `p50 latency (${fmt(o.creates)} creates)`,
      value: ms(storeP50),
      baseline: `${ms(bareP50)} bare tx`,
      ratio: `${ratio.toFixed(2)}x`,
      target: `<= ${TARGET_FACTOR}x bare`,
      pass
    },
    {
      bench: "2 create",
      metric: "p99 latency",
      value: ms(storeP99),
      baseline: `${ms(bareP99)} bare tx`,
      ratio: `${(storeP99 / bareP99).toFixed(2)}x`,
      target: "(info)"
    }
  ]
}

const ms = (x: number): string => `${x.toFixed(3)} ms`
