import assert from "node:assert/strict";
import { shardOf } from "./shard.ts";
import { hashPointId } from "./hash.ts";

Deno.test("shardOf: stable hash modulo the shard count, pinned values, all kinds of ids", () => {
  assert.equal(shardOf(123, 1), 0);
  for (const id of [0, 7, 4294967295, 4294967296, 2n ** 64n - 1n, "doc-7", "ключ"]) {
    for (const s of [2, 3, 16, 256]) {
      const k = shardOf(id, s);
      assert.ok(Number.isInteger(k) && k >= 0 && k < s, `${String(id)} in ${s}`);
      assert.equal(k, (hashPointId(id) >>> 0) % s);
    }
  }
  // Pinned: a change here moves stored points to the wrong shard.
  assert.deepEqual(
    [shardOf(1, 4), shardOf("doc-1", 4), shardOf(2n ** 40n, 4)],
    PINNED,
  );
  // Spread: 3 shards of 30,000 ids each get about a third.
  const counts = [0, 0, 0];
  for (let i = 0; i < 30_000; i++) counts[shardOf(i, 3)]++;
  for (const c of counts) assert.ok(c > 9_500 && c < 10_500, String(counts));
});

const PINNED = [2, 1, 2];
