import assert from "node:assert/strict";
import type { CollectionStats } from "../api/proto.ts";
import { Placement } from "../cluster/placement.ts";
import { logicalCounts, type NodeCollections } from "./logical_stats.ts";

const base = {
  dimension: 2,
  metric: "l2",
  memory_bytes: "0",
  wal_bytes: "0",
  last_snapshot_seq: "0",
  last_snapshot_time_ms: "0",
};

/** A node's CollectionStats of "c" from its per-shard live counts (undefined: shard absent). */
function held(name: string, counts: (number | undefined)[], sharded = true): CollectionStats {
  const shards = counts.flatMap((n, shard) =>
    n === undefined ? [] : [{
      shard,
      count: String(n),
      tombstones: String(Math.floor(n / 10)),
      last_seq: "0",
      last_snapshot_seq: "0",
      wal_bytes: "0",
    }]
  );
  const total = counts.reduce<number>((a, n) => a + (n ?? 0), 0);
  return {
    ...base,
    name,
    count: String(total),
    tombstones: String(shards.reduce((a, s) => a + Number(s.tombstones), 0)),
    ...(sharded ? { shards } : {}),
  };
}

/** What the scatter hands over: the sum over nodes, each replica counting. */
function summed(answers: NodeCollections[], name: string): CollectionStats {
  const all = answers.flatMap((a) => a.collections.filter((c) => c.name === name));
  return {
    ...all[0],
    count: String(all.reduce((a, c) => a + Number(c.count), 0)),
    tombstones: String(all.reduce((a, c) => a + Number(c.tombstones), 0)),
  };
}

Deno.test("logicalCounts: RF 2 counts each point once, from the shard's replicas; replica_count keeps the sum", () => {
  const nodes = ["a:1", "b:1", "c:1"];
  const p = new Placement(nodes);
  const layout = { shard_number: 4, replication_factor: 2 };
  // Shard k holds 1000 * (k + 1) points on each of its two replicas.
  const per = new Map<string, (number | undefined)[]>(nodes.map((n) => [n, [0, 0, 0, 0]]));
  for (let k = 0; k < 4; k++) {
    for (const n of p.replicas("c", layout, k)) per.get(n)![k] = 1000 * (k + 1);
  }
  const answers = nodes.map((n) => ({ address: n, collections: [held("c", per.get(n)!)] }));
  const sums = [summed(answers, "c")];
  assert.equal(sums[0].count, "20000");
  logicalCounts(sums, answers, () => layout, (c, l, k) => p.replicas(c, l, k));
  assert.equal(sums[0].count, "10000");
  assert.equal(sums[0].replica_count, "20000");
  assert.equal(sums[0].tombstones, "1000");
  // A lagging replica (it missed points) does not lower the figure: the largest counts.
  const lag = p.replicas("c", layout, 2)[1];
  per.get(lag)![2] = 2500;
  // A node that is not a replica of shard 0 still holding some of it (a move not pruned yet).
  const stray = nodes.find((n) => !p.replicas("c", layout, 0).includes(n))!;
  per.get(stray)![0] = 999;
  const again = nodes.map((n) => ({ address: n, collections: [held("c", per.get(n)!)] }));
  const s2 = [summed(again, "c")];
  logicalCounts(s2, again, () => layout, (c, l, k) => p.replicas(c, l, k));
  assert.equal(s2[0].count, "10000");
  // No replica of shard 1 answered: counted from whoever reported it.
  const gone = new Set(p.replicas("c", layout, 1));
  const partial = again.filter((a) => !gone.has(a.address));
  const s3 = [summed(partial, "c")];
  logicalCounts(s3, partial, () => layout, (c, l, k) => p.replicas(c, l, k));
  const expected = [0, 2, 3].reduce((a, k) => {
    const alive = p.replicas("c", layout, k).filter((n) => !gone.has(n));
    return a + Math.max(0, ...alive.map((n) => per.get(n)![k] ?? 0));
  }, 0);
  assert.equal(s3[0].count, String(expected));
});

Deno.test("logicalCounts: a 1-shard collection (no per-shard figures) counts the largest replica's total", () => {
  const p = new Placement(["a:1", "b:1", "c:1"]);
  const layout = { shard_number: 1, replication_factor: 2 };
  const owners = p.replicas("old", layout, 0);
  const answers = ["a:1", "b:1", "c:1"].map((n) => ({
    address: n,
    collections: [
      held("old", [owners.includes(n) ? (n === owners[0] ? 100_000 : 99_990) : 0], false),
    ],
  }));
  const sums = [summed(answers, "old")];
  logicalCounts(sums, answers, () => layout, (c, l, k) => p.replicas(c, l, k));
  assert.equal(sums[0].count, "100000");
  assert.equal(sums[0].replica_count, "199990");
});
