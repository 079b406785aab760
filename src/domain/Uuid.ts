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
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
