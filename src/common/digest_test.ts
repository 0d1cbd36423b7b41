import assert from "node:assert/strict";

import {
  bucketOf,
  differingBuckets,
  DIGEST_BUCKETS,
  entryHash,
  rootBytes,
  UnitDigest,
  utf8Scratch,
} from "./digest.ts";
import { shardOf } from "./shard.ts";

Deno.test("entryHash and bucketOf are pinned (members of a running cluster compare them)", () => {
  const out = new Uint32Array(2);
  assert.deepEqual(entryHash(7, 1024000, false, out), 677);
  assert.deepEqual([...out], [1090028955, 1253182346]);
  assert.deepEqual(entryHash(7, 1024000, true, out), 677);
  assert.deepEqual([...out], [2721217785, 2668378893]);
  assert.deepEqual(entryHash("doc-7", 5, false, out), 708);
  assert.deepEqual([...out], [3160704694, 980500814]);
  assert.deepEqual(entryHash(2n ** 60n, 2 ** 40 + 3, true, out), 544);
  assert.deepEqual([...out], [108249769, 2629976105]);
  assert.deepEqual(bucketOf("doc-7"), 708);
});

Deno.test("UnitDigest: same entries in any order give the same digest; removing restores", () => {
  const a = new UnitDigest();
  const b = new UnitDigest();
  for (let i = 0; i < 500; i++) a.add(i, 1000 + i, i % 7 === 0);
  for (let i = 499; i >= 0; i--) b.add(i, 1000 + i, i % 7 === 0);
  assert.deepEqual(a.root(), b.root());
  assert.deepEqual(a.bucketBytes(), b.bucketBytes());
  // A changed version: one bucket differs, and the root.
  b.remove(42, 1042, false);
  b.add(42, 2000, false);
  assert.notDeepEqual(rootBytes(a.root()), rootBytes(b.root()));
  assert.deepEqual(differingBuckets(a.bucketBytes(), b.bucketBytes()), [bucketOf(42)]);
  // Delete vs live at the same version differ too.
  const c = new UnitDigest();
  c.add(1, 5, false);
  const d = new UnitDigest();
  d.add(1, 5, true);
  assert.notDeepEqual(c.root(), d.root());
  // Undoing returns to the empty digest.
  c.remove(1, 5, false);
  assert.deepEqual(c.root(), { lo: 0, hi: 0, count: 0 });
  assert.deepEqual(differingBuckets(c.bucketBytes(), new UnitDigest().bucketBytes()), []);
});

Deno.test("bucketOf spreads one shard's ids over all buckets (independent of shardOf)", () => {
  const seen = new Set<number>();
  for (let i = 0; seen.size < DIGEST_BUCKETS && i < 200_000; i++) {
    if (shardOf(i, 4) === 0) seen.add(bucketOf(i));
  }
  assert.deepEqual(seen.size, DIGEST_BUCKETS);
});

Deno.test("differingBuckets: a list of the wrong length differs everywhere", () => {
  assert.deepEqual(
    differingBuckets(new Uint8Array(3), new UnitDigest().bucketBytes()).length,
    DIGEST_BUCKETS,
  );
  assert(
    differingBuckets(new UnitDigest().bucketBytes(), new UnitDigest().bucketBytes()).length === 0,
  );
});

Deno.test("utf8Scratch encodes as TextEncoder does (surrogate pairs, lone surrogates)", () => {
  const enc = new TextEncoder();
  for (const s of ["", "doc-7", "é", "€uro", "a😀b", "\ud800x", "x\udc00", "z".repeat(300)]) {
    assert.deepEqual([...utf8Scratch(s)], [...enc.encode(s)], JSON.stringify(s));
  }
});
