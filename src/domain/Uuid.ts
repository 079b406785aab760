/**
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then version, variant and 74 random bits.
 * Pure: the caller supplies the time and the random bytes, so ids are reproducible under a seeded generator.
 */

/** Format a UUIDv7 from a millisecond timestamp and at least 10 random bytes. */
export const v7 = (millis: number, random: Uint8Array): string => {
  const b = new Uint8Array(16)
  let t = Math.max(0, Math.floor(millis))
  for (let i = 5; i >= 0; i--) {
    b[i] = t % 256
    t = Math.floor(t / 256)
  }
  for (let i = 6; i < 16; i++) b[i] = random[i - 6] ?? 0
  b[6] = 0x70 | (b[6]! & 0x0f)
  b[8] = 0x80 | (b[8]! & 0x3f)
  // A table lookup per byte: every local write makes two ids, and formatting through toString/padStart/join took
  // more time than drawing the random bytes.
  const hex = (from: number, to: number): string => {
    let out = ""
    for (let i = from; i < to; i++) out += HEX[b[i]!]!
    return out
  }
  return `${hex(0, 4)}-${hex(4, 6)}-${hex(6, 8)}-${hex(8, 10)}-${hex(10, 16)}`
}

const HEX: ReadonlyArray<string> = Array.from({ length: 256 }, (_, x) => x.toString(16).padStart(2, "0"))
