/**
 * The digest's hash: stored body hashes and digests depend on its bytes, whichever Node API computes them.
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { createHash } from "node:crypto"
import * as Digest from "../../src/domain/Digest.js"

const reference = (s: string) => createHash("sha256").update(s, "utf8").digest()

describe("Digest", () => {
  it("sha256 is SHA-256 of the UTF-8 bytes, as createHash computes it", () => {
    assert.strictEqual(
      Digest.sha256("abc").toString("hex"),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    for (const s of ["", "é😀", "\uD800 lone", "x".repeat(100_000)])
      assert.deepStrictEqual(Digest.sha256(s), reference(s))
    fc.assert(fc.property(fc.string({ unit: "binary" }), (s) => Digest.sha256(s).equals(reference(s))))
  })

  it("of is the XOR of the ids' hashes, whatever their order, and add extends it by one id", () => {
    const ids = ["a", "b", "c"]
    const xor = Buffer.alloc(32)
    for (const id of ids) reference(id).forEach((byte, i) => (xor[i]! ^= byte))
    assert.strictEqual(Digest.of(ids), xor.toString("hex"))
    assert.strictEqual(Digest.of([...ids].reverse()), Digest.of(ids))
    assert.strictEqual(Digest.add(Digest.of(["a", "b"]), "c"), Digest.of(ids))
    assert.strictEqual(Digest.of([]), Digest.EMPTY)
  })
})
