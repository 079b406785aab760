/**
 * An order-independent digest of a set of event ids: the XOR of their SHA-256 hashes, as 64 hex characters.
 *
 * XOR makes it incremental (add an id = one hash and one XOR, so the server's `/v1/head` is O(1)) and independent
 * of arrival order, so a client can compute the same digest over the ids it believes the server holds and compare.
 * It assumes a set: ids are unique per space (the server enforces it), so no id is XORed in twice.
 */
import * as crypto from "node:crypto"

/** The digest of the empty set. */
export const EMPTY = "0".repeat(64)

/** Add one id to a digest. */
export const add = (digest: string, id: string): string => xorHex(digest, hashHex(id))

/** The digest of a collection of distinct ids. */
export const of = (ids: Iterable<string>): string => {
  const acc = Buffer.alloc(32)
  for (const id of ids) {
    const h = sha256(id)
    for (let i = 0; i < 32; i++) acc[i]! ^= h[i]!
  }
  return acc.toString("hex")
}

const hashHex = (id: string): string => sha256(id).toString("hex")

/**
 * SHA-256 of a string's UTF-8 bytes. The server hashes every pushed event twice (its id for the digest, its body for
 * idempotency): the one-shot `crypto.hash` (Node >= 20.12) costs about half of a `createHash` object for texts this
 * short. Earlier Node 20 releases, which lack it, take the Hash object.
 */
export const sha256: (text: string) => Buffer =
  typeof crypto.hash === "function"
    ? (text) => crypto.hash("sha256", text, "buffer")
    : (text) => crypto.createHash("sha256").update(text, "utf8").digest()

const xorHex = (a: string, b: string): string => {
  const x = Buffer.from(a, "hex")
  const y = Buffer.from(b, "hex")
  for (let i = 0; i < 32; i++) x[i]! ^= y[i]!
  return x.toString("hex")
}
