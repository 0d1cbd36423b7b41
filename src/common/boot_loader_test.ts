import assert from "node:assert/strict";
import { codeCacheKey, encodeCodeCache, readCodeCache } from "./boot_loader.ts";

const bundle = Buffer.from("module.exports = 42;\n");
const data = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));

Deno.test("boot loader: a code cache file reads back for the bundle it was made for", () => {
  const key = codeCacheKey(bundle);
  const got = readCodeCache(encodeCodeCache(data, key), key);
  assert.ok(got !== null);
  assert.deepEqual(Buffer.from(got), data);
});

Deno.test("boot loader: the cache of another bundle is not used", () => {
  const file = encodeCodeCache(data, codeCacheKey(bundle));
  // Same length, one character changed: V8 alone would accept this cache.
  const other = codeCacheKey(Buffer.from("module.exports = 43;\n"));
  assert.equal(readCodeCache(file, other), null);
});

Deno.test("boot loader: a damaged or short cache file is not used", () => {
  const key = codeCacheKey(bundle);
  const file = encodeCodeCache(data, key);
  const flipped = Buffer.from(file);
  flipped[flipped.length - 5] ^= 0x10;
  assert.equal(readCodeCache(flipped, key), null, "a flipped data bit");
  const magic = Buffer.from(file);
  magic[0] = 0x41;
  assert.equal(readCodeCache(magic, key), null, "another magic");
  assert.equal(readCodeCache(file.subarray(0, 20), key), null, "shorter than the header");
  assert.equal(readCodeCache(file.subarray(0, file.length - 1), key), null, "truncated data");
});
