import assert from "node:assert/strict";
import { Placement, PlacementError, shardOf, shardReplicas, shardScore } from "./placement.ts";

const nodes = (n: number) => Array.from({ length: n }, (_, i) => `127.0.0.1:${50051 + i}`);

Deno.test("placement: R distinct replicas per shard, highest scores first, same for any order", () => {
  const members = nodes(5);
  const p = new Placement(members);
  const q = new Placement([...members].reverse());
  const layout = { shard_number: 12, replication_factor: 3 };
  for (let s = 0; s < 12; s++) {
    const r = p.replicas("c", layout, s);
    assert.equal(r.length, 3);
    assert.equal(new Set(r).size, 3);
    assert.deepEqual(r, q.replicas("c", layout, s));
    const scores = r.map((m) => shardScore("c", s, m));
    for (let i = 1; i < scores.length; i++) assert.ok(scores[i - 1] >= scores[i]);
    // Every member left out scores no higher than the last replica.
    for (const m of members.filter((x) => !r.includes(x))) {
      assert.ok(shardScore("c", s, m) <= scores[2]);
    }
  }
  // Fewer members than R: all of them.
  assert.equal(new Placement(nodes(2)).replicas("c", layout, 0).length, 2);
  assert.deepEqual(new Placement([]).replicas("c", layout, 0), []);
  // owners() is the replicas of the point's shard, the same list object (cached).
  assert.equal(p.owners("c", layout, "doc-7"), p.replicas("c", layout, shardOf("doc-7", 12)));
});

Deno.test("placement: a join moves about R/(N+1) of the shard replicas, each to the newcomer", () => {
  const before = new Placement(nodes(4));
  const after = new Placement(nodes(5));
  const layout = { shard_number: 256, replication_factor: 2 };
  const moves = after.moves(before, "c", layout);
  for (const m of moves) {
    assert.deepEqual(m.gained, [nodes(5)[4]], `shard ${m.shard} gains only the newcomer`);
    assert.equal(m.lost.length, 1);
  }
  // Expected 256 * 2/5 ≈ 102 shards; allow the spread of a hash.
  assert.ok(moves.length > 70 && moves.length < 135, `${moves.length} shards moved`);
  // A leave: only the shards the leaver held change, each gaining one other member.
  const left = new Placement(nodes(5).filter((m) => m !== nodes(5)[1]));
  const gone = left.moves(after, "c", layout);
  assert.deepEqual(gone.map((m) => m.shard), after.shardsOf("c", layout, nodes(5)[1]));
  for (const m of gone) assert.deepEqual(m.lost, [nodes(5)[1]]);
});

Deno.test("placement: primaries spread over members and over collections", () => {
  const p = new Placement(nodes(3));
  const layout = { shard_number: 3, replication_factor: 2 };
  const primaries = new Map<string, number>();
  for (let c = 0; c < 60; c++) {
    for (const r of p.shards(`c${c}`, layout)) primaries.set(r[0], (primaries.get(r[0]) ?? 0) + 1);
  }
  // 180 primaries over 3 members: each gets a fair share.
  for (const m of nodes(3)) assert.ok((primaries.get(m) ?? 0) > 40, JSON.stringify([...primaries]));
});

Deno.test("placement: bad layouts and shards are PlacementErrors naming the value", () => {
  const p = new Placement(nodes(3));
  assert.throws(() => p.shards("c", { shard_number: 0, replication_factor: 1 }), /shard_number 0/);
  assert.throws(() => p.shards("c", { shard_number: 2, replication_factor: 65 }), /factor 65/);
  assert.throws(
    () => p.replicas("c", { shard_number: 2, replication_factor: 1 }, 2),
    (e) => e instanceof PlacementError && /shard 2 is outside 0..1/.test(e.message),
  );
  assert.deepEqual(shardReplicas("c", 0, ["b", "a"], 2).sort(), ["a", "b"]);
});
