import assert from "node:assert/strict";
import { crc32 } from "./crc32.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

/** Bit-at-a-time reference, independent of zlib. */
function reference(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xEDB88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

Deno.test("crc32 matches the published check values", () => {
  assert.equal(crc32(utf8("123456789")), 0xCBF43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(utf8("a")), 0xE8B7BE43);
  assert.equal(crc32(utf8("The quick brown fox jumps over the lazy dog")), 0x414FA339);
  assert.equal(crc32(new Uint8Array(32)), 0x190A55AD);
  assert.equal(crc32(new Uint8Array(32).fill(0xff)), 0xFF6CAB0B);
});

Deno.test("crc32 agrees with a bitwise reference for every length up to 300", () => {
  let x = 12345;
  const bytes = new Uint8Array(300);
  for (let i = 0; i < bytes.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  for (let n = 0; n <= bytes.length; n++) {
    // Odd offsets too, so the 8-byte loop sees unaligned views.
    const view = bytes.subarray(n % 3, n);
    assert.equal(crc32(view), reference(view), `length ${view.length}`);
  }
});

Deno.test("crc32 is incremental: crc(b, crc(a)) == crc(a + b)", () => {
  const all = utf8("123456789 incremental checksum over split buffers");
  for (let split = 0; split <= all.length; split++) {
    const seeded = crc32(all.subarray(split), crc32(all.subarray(0, split)));
    assert.equal(seeded, crc32(all), `split at ${split}`);
  }
  assert.equal(crc32(new Uint8Array(0), 0xCBF43926), 0xCBF43926);
});

Deno.test("crc32 rejects a seed that is not a u32", () => {
  assert.throws(() => crc32(new Uint8Array(1), -1), /seed -1/);
  assert.throws(() => crc32(new Uint8Array(1), 2 ** 32), RangeError);
});
