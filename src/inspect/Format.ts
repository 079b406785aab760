/**
 * Text renderings of the inspection reports, for people reading a terminal (`--json` prints the reports as they are).
 * Long values are cut to one line; event ids are always printed whole, so they can be pasted into the next command.
 */
import type { Memory } from "../domain/Memory.js"
import type { BlameReport, EventRef, Explanation, MemoryStatus } from "./Blame.js"
import type { DiffReport, EventMismatch, Listed, Side } from "./Diff.js"
import type { Entry } from "./EventSource.js"
import { describeSync, toJson } from "./Log.js"
import type { Summary } from "./Snapshot.js"

const short = (v: unknown): string => {
  const s = JSON.stringify(v) ?? "undefined"
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

/** One `log` line. */
export const formatEntry = (e: Entry): string => {
  const j = toJson(e)
  return `${String(j.seq).padStart(7)}  ${j.id}  ${j.hlc}  ${j.type.padEnd(15)} ${j.memoryId ?? "-"}  ${describeSync(e.sync)}`
}

/** One memory of a printed replay. */
export const formatMemoryLine = (m: Memory & { readonly deleted: boolean }): string => {
  const oneLine = m.content.replace(/\s+/g, " ")
  const text = oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine
  return `${m.id}  ${m.deleted ? "[deleted] " : ""}[${m.category}] ${text}`
}

/** What a replay read and made, in one line. */
export const formatSummary = (s: Summary): string => {
  const point = s.point._tag === "Seq" ? `seq ${s.point.seq}` : new Date(s.point.millis).toISOString()
  return (
    `${s.memories} memories (${s.deleted} deleted) as of ${point}, from ${s.events} events` +
    (s.excluded > 0 ? ` (${s.excluded} dead letters left out)` : "")
  )
}

/** The event id in an order key `hlc id`. */
const writer = (key: string): string => key.slice(key.indexOf(" ") + 1)

const ref = (r: EventRef): string => `${r.id}  seq ${r.seq}  ${r.hlc}  ${r.type}`

const statusOf = (m: MemoryStatus): string =>
  m.visible
    ? "visible"
    : m.deleted
      ? "deleted (a delete is held: it wins over every update, earlier or later)"
      : m.rejectedCreate !== undefined
        ? `hidden (its create ${m.rejectedCreate.id} was dead-lettered: ${m.rejectedCreate.message})`
        : "hidden (no create held: updates are kept until it arrives)"

/** A blame report. */
export const formatBlame = (r: BlameReport): string => {
  const lines = [`memory ${r.memory.id}: ${statusOf(r.memory)}; ${r.events} events`]
  for (const f of r.fields) {
    lines.push("", `${f.field.padEnd(11)} ${short(f.value)}`, `  set by    ${ref(f.setBy)}`)
    for (const l of f.lost) lines.push(`  lost      ${short(l.value)}  ${ref(l)}`)
  }
  if (r.skipped.length > 0) lines.push("", "not folded:")
  for (const s of r.skipped) lines.push(`  ${ref(s)}  ${s.why}: ${s.message}`)
  return lines.join("\n")
}

/** An explanation of one event. */
export const formatExplanation = (e: Explanation): string => {
  const lines = [
    `event     ${e.event.id}  (seq ${e.event.seq})`,
    `type      ${e.event.type} v${e.event.version}`,
    `stamp     ${e.event.hlc}  (client ${e.event.clientId})`,
    `sync      ${describeSync(e.sync)}`
  ]
  if (e.memory !== undefined) lines.push(`memory    ${e.memory.id}: ${statusOf(e.memory)}`)
  lines.push(
    `applied   ${e.applied ? "yes" : `no: ${e.skipped?.why ?? "no memory"}${e.skipped ? ` (${e.skipped.message})` : ""}`}`
  )
  if (e.tombstone && e.applied) lines.push("effect    tombstone: the memory is deleted for good")
  for (const w of e.won) lines.push(`won       ${w.field} = ${short(w.value)}`)
  for (const l of e.lost) {
    lines.push(`lost      ${l.field} = ${short(l.value)}  to ${l.to.id} (${l.to.hlc}) which wrote ${short(l.to.value)}`)
  }
  lines.push(`payload   ${JSON.stringify(e.event.payload)}`)
  return lines.join("\n")
}

/** A diff report. */
export const formatDiff = (r: DiffReport): string => {
  const side = (name: string, s: Side) =>
    `${name}  ${s.filename} (${s.kind}${s.space === undefined ? "" : ` space ${s.space}`}, ${s.events} events)`
  const list = <A>(title: string, l: Listed<A>, show: (a: A) => string) => [
    `${title}: ${l.count}`,
    ...l.items.map((x) => `  ${show(x)}`),
    ...(l.count > l.items.length ? [`  ... ${l.count - l.items.length} more`] : [])
  ]
  const mismatch = (m: EventMismatch) =>
    `${m.id}  A: ${m.a.hlc}${m.a.deadLettered ? " (dead-lettered)" : ""}  B: ${m.b.hlc}${m.b.deadLettered ? " (dead-lettered)" : ""}`
  const lines = [
    side("A", r.a),
    side("B", r.b),
    ...list("events only in A", r.onlyInA, ref),
    ...list("events only in B", r.onlyInB, ref),
    ...list("same id, different body", r.conflicting, mismatch),
    ...list("dead-lettered on one side only", r.deadLetterMismatch, mismatch),
    ...list("memories only in A", r.memoriesOnlyInA, (id) => id),
    ...list("memories only in B", r.memoriesOnlyInB, (id) => id),
    ...list("memories that differ", r.memoriesDiffering, (m) =>
      [
        m.id,
        ...m.fields.map(
          (f) =>
            `    ${f.field}: A=${short(f.a)}${f.aBy ? ` (by ${writer(f.aBy)})` : ""}  B=${short(f.b)}${f.bBy ? ` (by ${writer(f.bBy)})` : ""}`
        )
      ].join("\n")
    )
  ]
  const d = r.firstDivergence
  lines.push(
    d === null
      ? r.identical
        ? "identical: same events, same views"
        : "no event reaches a view differently (the differences are in events no view folds)"
      : `first divergence: ${ref(d.event)} (client ${d.event.clientId}): ${d.why}`
  )
  return lines.join("\n")
}
