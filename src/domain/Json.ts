/**
 * JSON for event payloads from the wire: a depth bound, the canonical form whose bytes the server's body hashes are
 * made of, and a serializer that no nesting depth can overflow. Nothing here recurses on the shape of a value.
 */

/**
 * How deeply arrays and objects may nest in a pushed payload (`{}` and `[]` are depth 1, `{"a":[1]}` depth 2). The
 * server refuses a deeper payload (`invalid`), and a known event type whose payload is deeper is `Invalid` here: every
 * v1 payload has depth 3 at most, and recursive code (JSON.stringify, Effect's error formatter) overflows the call
 * stack at a few thousand levels, so nothing deeper may reach it.
 */
export const MAX_DEPTH = 64

/** True when arrays and objects nest at most `max` deep in `value`. Iterative: safe on any depth (and on cycles). */
export const withinDepth = (value: unknown, max: number = MAX_DEPTH): boolean => {
  // Depth-first with an explicit stack, so a deep chain is found after `max` steps, whatever the fan-out.
  const stack: Array<readonly [object, number]> = []
  if (typeof value === "object" && value !== null) stack.push([value, 1])
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const [node, depth] = top
    if (depth > max) return false
    const children: ReadonlyArray<unknown> = Array.isArray(node) ? node : Object.values(node)
    for (const child of children) if (typeof child === "object" && child !== null) stack.push([child, depth + 1])
  }
  return true
}

/** Why a payload is refused for its nesting, or undefined when it is within `MAX_DEPTH`. */
export const depthProblem = (payload: unknown): string | undefined =>
  withinDepth(payload, MAX_DEPTH)
    ? undefined
    : `payload nests arrays/objects more than ${MAX_DEPTH} levels deep; the nesting depth limit is ${MAX_DEPTH}`

/**
 * Canonical JSON (sorted object keys): two bodies are "the same event" iff their canonical forms are equal.
 *
 * Stored body hashes depend on these bytes, so they must never change. They are those of the original definition,
 * `JSON.stringify(sortKeys(value))` where `sortKeys` copied every object with its keys inserted in sorted order;
 * this version writes the same text with an explicit stack instead of recursion, so no nesting depth can overflow
 * the call stack (test/domain/Canonical.test.ts compares both).
 */
export const canonicalJson = (value: unknown): string => {
  // A top-level primitive has no keys to sort; the stack writer also gives `undefined` its "null".
  const sorted = typeof value === "object" && value !== null ? sortedCopy(value, 1) : UNSURE
  return sorted === UNSURE ? writeJson(value, sortedKeys) : JSON.stringify(sorted)
}

/** `sortedCopy` could not decide: the value needs the stack writer. */
const UNSURE: unique symbol = Symbol("unsure")

/**
 * The common case of `canonicalJson`: a copy of `value` whose objects have their keys inserted in sorted order, for
 * the native JSON.stringify (the stack writer below cost ~7 us per pushed event, and its garbage as much again in GC).
 * That is the original definition itself, taken only where it is safe and exact:
 * - nesting at most `MAX_DEPTH` deep (this recursion and the native writer's are then bounded);
 * - no key that is integer-like or `__proto__` (the engine's own ordering rules: `sortedKeys` handles those);
 * - only plain objects and arrays (no boxed primitive), and no bigint or function (an own `toJSON` would run).
 * Otherwise it answers UNSURE. test/domain/Canonical.test.ts compares the result with the original definition.
 */
const sortedCopy = (value: unknown, depth: number): unknown => {
  // A function would stay in the copy, and the native writer calls an own `toJSON` one (the stack writer does not).
  if (typeof value === "bigint" || typeof value === "function") return UNSURE
  if (typeof value !== "object" || value === null) return value
  if (depth > MAX_DEPTH) return UNSURE
  if (Array.isArray(value)) {
    const out: Array<unknown> = new Array(value.length)
    for (let i = 0; i < value.length; i++) {
      const v = sortedCopy(value[i], depth + 1)
      if (v === UNSURE) return UNSURE
      out[i] = v
    }
    return out
  }
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return UNSURE
  const keys = Object.keys(value).sort()
  const out: Record<string, unknown> = {}
  for (const k of keys) {
    if (hasEngineOrder(k)) return UNSURE
    const v = sortedCopy(Reflect.get(value, k), depth + 1)
    if (v === UNSURE) return UNSURE
    out[k] = v
  }
  return out
}

/**
 * `JSON.stringify` for JSON data (no `toJSON`, replacer or indentation) that works at any nesting depth: the native
 * one recurses and overflows the call stack a few thousand levels deep. Shallow values take the native path.
 */
export const toJson = (value: unknown): string =>
  // `?? "null"`: JSON.stringify answers undefined for a value without a JSON form, whatever its declared type says.
  withinDepth(value, MAX_DEPTH) ? (JSON.stringify(value) ?? "null") : writeJson(value, Object.keys)

/**
 * The JSON text of `value`, objects' keys in `keysOf` order, written with an explicit stack: no recursion, so any
 * depth is fine. Like JSON.stringify, undefined, functions and symbols are left out of objects and written as null in
 * arrays (and holes too).
 */
const writeJson = (value: unknown, keysOf: (o: object) => ReadonlyArray<string>): string => {
  let out = ""
  // What is left to write, last first: strings are text to append, objects are arrays/objects still to expand.
  const todo: Array<string | object> = [jsonOf(value) ?? "null"]
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    if (typeof next === "string") {
      out += next
    } else if (Array.isArray(next)) {
      out += "["
      todo.push("]")
      for (let i = next.length - 1; i >= 0; i--) {
        todo.push(jsonOf(next[i]) ?? "null")
        if (i > 0) todo.push(",")
      }
    } else {
      const fields: Array<readonly [string, string | object]> = []
      for (const k of keysOf(next)) {
        const v = jsonOf(Reflect.get(next, k))
        if (v !== undefined) fields.push([k, v])
      }
      out += "{"
      todo.push("}")
      for (let i = fields.length - 1; i >= 0; i--) {
        const [k, v] = fields[i]!
        todo.push(v, `${i > 0 ? "," : ""}${JSON.stringify(k)}:`)
      }
    }
  }
  return out
}

/**
 * The key order of the original `sortKeys` copy, which inserted the sorted keys into a fresh object and let
 * JSON.stringify read them back. The engine's rules apply then: integer-like keys come first in numeric order, and a
 * `__proto__` key is dropped (assigning it sets the prototype). Only keys that can trigger a rule (a leading digit,
 * `__proto__`) need the round trip through a real object; the stored hashes were made with those rules.
 */
const sortedKeys = (o: object): Array<string> => {
  const keys = Object.keys(o).sort()
  if (!keys.some(hasEngineOrder)) return keys
  const probe: Record<string, true> = {}
  for (const k of keys) probe[k] = true
  return Object.keys(probe)
}

/** A key an object does not keep in insertion order (a leading digit may be integer-like) or drops (`__proto__`). */
const hasEngineOrder = (k: string): boolean => {
  const c = k.charCodeAt(0)
  return (c >= 48 && c <= 57) || k === "__proto__"
}

/**
 * A value as an item of the canonicalJson stack: an array or object stays itself (expanded later), anything else
 * becomes its JSON text; undefined when it has no JSON form (undefined, a function, a symbol).
 */
const jsonOf = (v: unknown): string | object | undefined => {
  switch (typeof v) {
    case "object":
      return v === null ? "null" : v
    case "string":
      return JSON.stringify(v)
    case "number":
      // What JSON.stringify writes for a number (it shares Number#toString), without the cost of calling it.
      return Number.isFinite(v) ? String(v) : "null"
    case "boolean":
      return v ? "true" : "false"
    case "undefined":
    case "function":
    case "symbol":
      return undefined
    case "bigint":
      // JSON.stringify throws on a bigint; so did the original definition. No decoded payload holds one.
      return JSON.stringify(v)
  }
}
