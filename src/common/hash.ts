/**
 * Stable 32-bit hashes that place points: on shards (src/cluster/placement.ts), and on the
 * consistent-hash ring of routers before shards (src/cluster/ring.ts).
 *
 * Both hashes are MurmurHash3 x86_32 (Austin Appleby's public-domain design) with seed 0:
 *
 * | function          | input bytes                                  | output  |
 * | ----------------- | -------------------------------------------- | ------- |
 * | `hashId(id)`      | the 4 little-endian bytes of the uint32 `id` | uint32  |
 * | `hashString(s)`   | the UTF-8 bytes of `s`                       | uint32  |
 * | `hashPointId(id)` | uint32 ids: as `hashId`; larger integers: the 8 little-endian bytes; | uint32 |
 * |                   | string ids: their UTF-8 bytes with seed 1 (0x00000001)               |        |
 * | `murmur3_32(b,s)` | `b`, seed `s`                                | uint32  |
 *
 * `hashId(id)` equals `murmur3_32` of those 4 bytes but runs without allocating.
 *
 * These values decide which members store which point. Changing them moves every point of
 * every running cluster to the wrong node, so hash_test.ts pins them to fixed test vectors
 * (including published MurmurHash3 vectors); never change the algorithm, the seed or the byte
 * order.
 *
 * @module
 */

import type { PointId } from "./point_id.ts";

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const UTF8 = new TextEncoder();

function scramble(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

function mixBlock(h: number, k: number): number {
  h ^= scramble(k);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3's 32-bit finalizer (avalanche step); returns a uint32. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3 x86_32 of `bytes` with `seed` (a uint32); returns a uint32. */
export function murmur3_32(bytes: Uint8Array, seed = 0): number {
  const n = bytes.length;
  const tail = n & ~3;
  let h = seed | 0;
  for (let i = 0; i < tail; i += 4) {
    const k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    h = mixBlock(h, k);
  }
  const rest = n & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= bytes[tail + 2] << 16;
    if (rest >= 2) k ^= bytes[tail + 1] << 8;
    k ^= bytes[tail];
    h ^= scramble(k);
  }
  h ^= n;
  return fmix32(h);
}

/** Thrown when a value to hash is not a uint32 point id. */
export class PointIdError extends RangeError {
  constructor(readonly id: unknown) {
    super(`Point id ${String(id)} is not an integer between 0 and 4294967295`);
    this.name = "PointIdError";
  }
}

/** Hash of a uint32 point id: MurmurHash3 x86_32, seed 0, of its 4 little-endian bytes. */
export function hashId(id: number): number {
  if (!(id >= 0 && id <= 0xffff_ffff && Number.isInteger(id))) throw new PointIdError(id);
  return fmix32(mixBlock(0, id | 0) ^ 4);
}

/**
 * Hash of any point id (src/common/point_id.ts) for the ring. A uint32 id hashes as `hashId`
 * did before 64-bit and string ids existed, so existing clusters keep every point where it is.
 * Integers above 2^32 - 1 hash their 8 little-endian bytes, strings their UTF-8 with seed 1.
 */
export function hashPointId(id: PointId): number {
  if (typeof id === "number" && id <= 0xffff_ffff) return hashId(id);
  if (typeof id === "string") return murmur3_32(UTF8.encode(id), 1);
  const v = BigInt(id);
  const lo = Number(v & 0xffff_ffffn) | 0;
  const hi = Number(v >> 32n) | 0;
  return fmix32(mixBlock(mixBlock(0, lo), hi) ^ 8);
}

/** Hash of a string (member ids, virtual node keys): MurmurHash3 x86_32, seed 0, of its UTF-8. */
export function hashString(s: string): number {
  return murmur3_32(UTF8.encode(s), 0);
}
