/**
 * Digests of a shard replica's entries, for anti-entropy by digests (src/node/transfer_service.ts
 * `Digest` and `BucketEntries`, driven by src/router/rebalance/digest_sync.ts): replicas of a
 * shard compare a root digest, then, when roots differ, {@link DIGEST_BUCKETS} bucket digests,
 * and exchange only the entries of the buckets that differ. A run over an unchanged cluster
 * sends a few dozen bytes per replica; its cost grows with what differs, not with the data.
 *
 * An entry (live point or tombstone) contributes a 64-bit {@link entryHash} of (id, version,
 * deleted) to the bucket of its id ({@link bucketOf}); a bucket's digest is the XOR of its
 * entries' hashes, so a write updates it in O(1) (XOR out the old entry, XOR in the new one) and
 * two replicas holding the same entries hold the same digest whatever order writes came in.
 * The root is the XOR of every bucket and the entry count.
 *
 * | value            | definition                                                          |
 * |------------------|---------------------------------------------------------------------|
 * | `a`              | `hashPointId(id)` (src/common/hash.ts)                              |
 * | `b`              | uint32 ids: `fmix32(a ^ 0x2545f491)`; others: MurmurHash3 of the id |
 * |                  | bytes (UTF-8, or 8 little-endian bytes) with seed 0x2545f491        |
 * | bucket           | `fmix32(a ^ 0x5bd1e995) & (DIGEST_BUCKETS - 1)`: remixed, because     |
 * |                  | `shardOf` is `a % shard_number`, and a unit holds one residue class   |
 * | entry hash (lo)  | `fmix32` of `a`, version low 32 bits, version high bits, deleted    |
 * |                  | (1 or 0) chained by {@link mixStep} from seed 0x243f6a88            |
 * | entry hash (hi)  | the same over `b` from seed 0x85a308d3                              |
 * | bucket digest    | XOR of its entries' (lo, hi)                                         |
 * | root             | XOR of every bucket digest, and the entry count                     |
 *
 * On the wire a digest is 8 bytes: lo then hi, each u32 little-endian; a bucket list is
 * {@link DIGEST_BUCKETS} such digests in bucket order. These values are compared between
 * members of a running cluster: never change the hashes, the seeds or the bucket count without
 * a new wire field (digest_test.ts pins them).
 *
 * @module
 */
import { fmix32, hashPointId, murmur3_32 } from "./hash.ts";
import type { PointId } from "./point_id.ts";

/** Buckets per unit digest: a power of two; 8 KiB of bucket digests per replica on the wire. */
export const DIGEST_BUCKETS = 1024;
/** Bytes of one digest on the wire (lo, hi: u32 little-endian each). */
export const DIGEST_BYTES = 8;

const SEED_B = 0x2545f491;
const SEED_BUCKET = 0x5bd1e995;
const SEED_LO = 0x243f6a88;
const SEED_HI = 0x85a308d3;

/** One MurmurHash3-style block step (scramble `k`, fold into `h`). */
export function mixStep(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** The second, independent 32-bit hash of an id (`b` in the module table). */
function secondHash(id: PointId, a: number): number {
  if (typeof id === "number" && id <= 0xffff_ffff) return fmix32(a ^ SEED_B);
  if (typeof id === "string") return murmur3_32(utf8Scratch(id), SEED_B);
  const v = BigInt(id);
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, v, true);
  return murmur3_32(bytes, SEED_B);
}

let scratch = new Uint8Array(512);

/** The UTF-8 bytes of `s` in a kept buffer (valid until the next call); lone surrogates as U+FFFD. */
export function utf8Scratch(s: string): Uint8Array {
  if (scratch.length < s.length * 3) scratch = new Uint8Array(s.length * 3);
  const out = scratch;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
      continue;
    }
    if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6);
      out[n++] = 0x80 | (c & 63);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        out[n++] = 0xf0 | (c >> 18);
        out[n++] = 0x80 | ((c >> 12) & 63);
        out[n++] = 0x80 | ((c >> 6) & 63);
        out[n++] = 0x80 | (c & 63);
        continue;
      }
      c = 0xfffd;
    }
    out[n++] = 0xe0 | (c >> 12);
    out[n++] = 0x80 | ((c >> 6) & 63);
    out[n++] = 0x80 | (c & 63);
  }
  return out.subarray(0, n);
}

/** The digest bucket of `id` (a canonical PointId): 0 .. DIGEST_BUCKETS - 1. */
export function bucketOf(id: PointId): number {
  return fmix32(hashPointId(id) ^ SEED_BUCKET) & (DIGEST_BUCKETS - 1);
}

/** Where {@link entryHash} writes: [lo, hi]. */
export type HashOut = Uint32Array;

/**
 * The 64-bit hash of an entry into `out[0]` (lo) and `out[1]` (hi); returns its bucket. `id`
 * must be canonical (common/point_id.ts `canonicalId`): 5 and 5n are one id but hash apart.
 */
export function entryHash(id: PointId, version: number, deleted: boolean, out: HashOut): number {
  let a: number, b: number;
  if (typeof id === "string") {
    // hashPointId of a string is MurmurHash3 of its UTF-8 with seed 1: encode once for both,
    // in JS into a kept buffer (TextEncoder costs ~1 µs a call here: most of a write's digest).
    const bytes = utf8Scratch(id);
    a = murmur3_32(bytes, 1);
    b = murmur3_32(bytes, SEED_B);
  } else {
    a = hashPointId(id);
    b = secondHash(id, a);
  }
  const vlo = version >>> 0;
  const vhi = Math.floor(version / 0x1_0000_0000) >>> 0;
  const d = deleted ? 1 : 0;
  out[0] = fmix32(mixStep(mixStep(mixStep(mixStep(SEED_LO, a), vlo), vhi), d));
  out[1] = fmix32(mixStep(mixStep(mixStep(mixStep(SEED_HI, b), vlo), vhi), d));
  return fmix32(a ^ SEED_BUCKET) & (DIGEST_BUCKETS - 1);
}

/** A root digest: the XOR of every entry hash, and the entry count. */
export interface RootDigest {
  lo: number;
  hi: number;
  count: number;
}

/**
 * The digest of one unit's entries, kept current in O(1) per change: {@link add} when an entry
 * appears, {@link remove} when it goes (a changed entry is a remove then an add). Two typed
 * arrays of {@link DIGEST_BUCKETS} u32 (8 KiB); not persisted: after a snapshot load the
 * collection rebuilds it from the entries when it is first read (src/storage/collection.ts).
 */
export class UnitDigest {
  readonly lo = new Uint32Array(DIGEST_BUCKETS);
  readonly hi = new Uint32Array(DIGEST_BUCKETS);
  private rootLo = 0;
  private rootHi = 0;
  /** Entries held (live and tombstones). */
  count = 0;
  private readonly h = new Uint32Array(2);

  private toggle(id: PointId, version: number, deleted: boolean): void {
    const k = entryHash(id, version, deleted, this.h);
    this.lo[k] ^= this.h[0];
    this.hi[k] ^= this.h[1];
    this.rootLo = (this.rootLo ^ this.h[0]) >>> 0;
    this.rootHi = (this.rootHi ^ this.h[1]) >>> 0;
  }

  /** An entry appeared. */
  add(id: PointId, version: number, deleted: boolean): void {
    this.toggle(id, version, deleted);
    this.count++;
  }

  /** An entry went (forgotten, or replaced: then {@link add} its successor). */
  remove(id: PointId, version: number, deleted: boolean): void {
    this.toggle(id, version, deleted);
    this.count--;
  }

  /** Empties the digest (before a rebuild). */
  reset(): void {
    this.lo.fill(0);
    this.hi.fill(0);
    this.rootLo = 0;
    this.rootHi = 0;
    this.count = 0;
  }

  /** The root digest. */
  root(): RootDigest {
    return { lo: this.rootLo, hi: this.rootHi, count: this.count };
  }

  /** Every bucket's digest as on the wire ({@link DIGEST_BUCKETS} × 8 bytes). */
  bucketBytes(): Uint8Array {
    const out = new Uint8Array(DIGEST_BUCKETS * DIGEST_BYTES);
    const v = new DataView(out.buffer);
    for (let k = 0; k < DIGEST_BUCKETS; k++) {
      v.setUint32(k * 8, this.lo[k], true);
      v.setUint32(k * 8 + 4, this.hi[k], true);
    }
    return out;
  }
}

/** A root's 8 wire bytes (lo, hi). */
export function rootBytes(root: RootDigest): Uint8Array {
  const out = new Uint8Array(DIGEST_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, root.lo, true);
  v.setUint32(4, root.hi, true);
  return out;
}

/**
 * Buckets whose digests differ between two bucket lists (wire form); a list of the wrong
 * length differs everywhere.
 */
export function differingBuckets(a: Uint8Array, b: Uint8Array): number[] {
  const out: number[] = [];
  const n = DIGEST_BUCKETS * DIGEST_BYTES;
  if (a.length !== n || b.length !== n) {
    for (let k = 0; k < DIGEST_BUCKETS; k++) out.push(k);
    return out;
  }
  for (let k = 0; k < DIGEST_BUCKETS; k++) {
    for (let j = 0; j < DIGEST_BYTES; j++) {
      if (a[k * 8 + j] !== b[k * 8 + j]) {
        out.push(k);
        break;
      }
    }
  }
  return out;
}
