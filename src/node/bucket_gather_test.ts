import assert from "node:assert/strict";
import {
  BucketGatherCache,
  GATHER_TTL_MS,
  gatherBuckets,
  GATHERS_MAX,
  type GatherSource,
} from "./bucket_gather.ts";
import { bucketOf, DIGEST_BUCKETS } from "../common/digest.ts";
import { IdList } from "../storage/collection.ts";
import type { PointId } from "../common/point_id.ts";

/** A unit with a fixed id order; counts the walks of it. */
function source(u32: number[], others: PointId[] = []): GatherSource & { walks: number } {
  const ids = new IdList(Uint32Array.from(u32), others);
  const s = {
    walks: 0,
    sortedIds: () => {
      s.walks++;
      return ids;
    },
  };
  return s;
}

function maskOf(buckets: number[]): Uint8Array {
  const m = new Uint8Array(DIGEST_BUCKETS);
  for (const b of buckets) m[b] = 1;
  return m;
}

Deno.test("gatherBuckets keeps the ids of the mask's buckets, in the unit's order", () => {
  const u32 = Array.from({ length: 5000 }, (_, i) => i * 3);
  const others: PointId[] = [2 ** 40, "a", "b", "zz"];
  const buckets = [bucketOf(3), bucketOf("b"), bucketOf(2 ** 40)];
  const got = gatherBuckets(source(u32, others), maskOf(buckets));
  const all: PointId[] = [...u32, ...others];
  assert.deepEqual([...got], all.filter((id) => buckets.includes(bucketOf(id))));
  assert.ok(got.u32.length > 0 && got.others.includes("b"));
});

Deno.test("BucketGatherCache: a paging gathers once; new pagings, other units, expiry and eviction do not reuse", () => {
  let now = 1_000;
  const cache = new BucketGatherCache(() => now);
  const unit = source(Array.from({ length: 1000 }, (_, i) => i));
  const mask = maskOf([bucketOf(1), bucketOf(2)]);
  const first = cache.idsFor("c/0", unit, mask, null)!;
  assert.equal(unit.walks, 1);
  assert.equal(cache.idsFor("c/0", unit, mask, first.at(0)), first, "continued: reused");
  assert.equal(unit.walks, 1);
  assert.equal(cache.idsFor("c/0", source([1]), mask, 5), null, "another unit");
  assert.equal(cache.idsFor("c/0", unit, maskOf([bucketOf(3)]), 5), null, "other buckets");
  cache.idsFor("c/0", unit, mask, null);
  assert.equal(unit.walks, 2, "a new paging gathers afresh (sees writes since)");
  now += GATHER_TTL_MS + 1;
  assert.equal(cache.idsFor("c/0", unit, mask, 5), null, "expired");
  cache.done("c/0", mask);
  assert.equal(cache.size, 0);
  for (let k = 0; k < GATHERS_MAX + 3; k++) cache.idsFor(`c/${k}`, unit, mask, null);
  assert.equal(cache.size, GATHERS_MAX, "bounded: the oldest go");
  assert.equal(cache.idsFor("c/0", unit, mask, 5), null, "evicted");
  assert.notEqual(cache.idsFor(`c/${GATHERS_MAX + 2}`, unit, mask, 5), null);
  assert.equal(cache.made, 1 + 1 + GATHERS_MAX + 3);
});
