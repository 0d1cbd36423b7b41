import assert from "node:assert/strict";
import { fmix32, hashId, hashPointId, hashString, murmur3_32, PointIdError } from "./hash.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

function le32(id: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, id, true);
  return b;
}

Deno.test("murmur3_32 matches published MurmurHash3 x86_32 vectors", () => {
  const vectors: [Uint8Array, number, number][] = [
    [new Uint8Array(0), 0, 0],
    [new Uint8Array(0), 1, 0x514e28b7],
    [new Uint8Array(0), 0xffffffff, 0x81f16f39],
    [new Uint8Array([0, 0, 0, 0]), 0, 0x2362f9de],
    [new Uint8Array([0xff, 0xff, 0xff, 0xff]), 0, 0x76293b50],
    [new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0, 0xf55b516b],
    [new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0x5082edee, 0x2362f9de],
    [new Uint8Array([0x21, 0x43, 0x65]), 0, 0x7e4a8634],
    [new Uint8Array([0x21, 0x43]), 0, 0xa0f7b07a],
    [new Uint8Array([0x21]), 0, 0x72661cf4],
    [utf8("aaaa"), 0x9747b28c, 0x5a97808a],
    [utf8("aaa"), 0x9747b28c, 0x283e0130],
    [utf8("aa"), 0x9747b28c, 0x5d211726],
    [utf8("a"), 0x9747b28c, 0x7fa09ea6],
    [utf8("Hello, world!"), 0x9747b28c, 0x24884cba],
    [utf8("The quick brown fox jumps over the lazy dog"), 0x9747b28c, 0x2fa826cd],
    [utf8("The quick brown fox jumps over the lazy dog"), 0, 0x2e4ff723],
    [utf8("ππππππππ"), 0x9747b28c, 0xd58063c1],
    [utf8("test"), 0, 0xba6bd213],
    [utf8("abc"), 0, 0xb3dd93fa],
  ];
  for (const [bytes, seed, want] of vectors) {
    assert.equal(murmur3_32(bytes, seed), want, `bytes ${bytes.join(",")} seed ${seed}`);
  }
});

Deno.test("hashId is murmur3_32 of the little-endian bytes and is pinned", () => {
  const pinned: [number, number][] = [
    [0, 0x2362f9de],
    [1, 0xfbf1402a],
    [2, 0x40b23b7f],
    [42, 0xbc5b91e3],
    [100, 0x24c1d240],
    [123456789, 0xbf2126af],
    [0x87654321, 0xf55b516b],
    [0xffffffff, 0x76293b50],
  ];
  for (const [id, want] of pinned) {
    assert.equal(hashId(id), want, `hashId(${id})`);
    assert.equal(murmur3_32(le32(id)), want, `murmur3_32 of id ${id}`);
  }
  for (let id = 0; id < 5000; id += 7) assert.equal(hashId(id), murmur3_32(le32(id)));
});

Deno.test("hashString is pinned for member ids", () => {
  const pinned: [string, number][] = [
    ["", 0],
    ["node-1", 0x87e14464],
    ["node-2", 0x37da0346],
    ["node-1#0", 0x4122ee3e],
    ["10.0.0.1:50051", 0xdc170b04],
    ["héllo", 0xbc9fa068],
  ];
  for (const [s, want] of pinned) {
    assert.equal(hashString(s), want, `hashString(${JSON.stringify(s)})`);
    assert.equal(murmur3_32(utf8(s)), want);
  }
});

Deno.test("fmix32 returns uint32 and avalanches", () => {
  assert.equal(fmix32(0), 0);
  assert.ok(fmix32(1) >= 0 && fmix32(1) <= 0xffffffff);
  assert.notEqual(fmix32(1), fmix32(2));
});

Deno.test("hashId rejects ids that are not uint32", () => {
  for (const bad of [-1, 0x1_0000_0000, 1.5, NaN, Infinity]) {
    assert.throws(() => hashId(bad), PointIdError);
  }
  assert.throws(() => hashId(-1), /Point id -1 is not an integer between 0 and 4294967295/);
});

Deno.test("hashPointId keeps uint32 ids where hashId put them and hashes the bytes of others", () => {
  for (const id of [0, 1, 4095, 0xffff_ffff]) assert.equal(hashPointId(id), hashId(id));
  const big = 0x0102_0304_0506_0708n;
  const le = new Uint8Array([8, 7, 6, 5, 4, 3, 2, 1]);
  assert.equal(hashPointId(big), murmur3_32(le));
  assert.equal(hashPointId(2 ** 40), murmur3_32(new Uint8Array([0, 0, 0, 0, 0, 1, 0, 0])));
  assert.equal(hashPointId("doc-7"), murmur3_32(new TextEncoder().encode("doc-7"), 1));
  assert.notEqual(hashPointId("7"), hashPointId(7));
});
