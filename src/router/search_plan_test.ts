import assert from "node:assert/strict";
import { Placement } from "../cluster/placement.ts";
import {
  coverByHolders,
  groupByNode,
  hedgeDelayMs,
  nextReplica,
  planSearch,
  rankReplicas,
  type SearchPlanInput,
} from "./search_plan.ts";

const none = new Set<string>();
const flat = () => 0;

Deno.test("rankReplicas: up replicas in the tie band first, costlier ones next, down ones last", () => {
  const costs: Record<string, number> = { a: 10, b: 11, c: 40, d: 5 };
  const input: SearchPlanInput = {
    shards: [],
    down: new Set(["d"]),
    cost: (n) => costs[n],
    turn: 0,
  };
  // Best up is a (10): band 10 × 1.25 + 1 = 13.5 holds a and b; c after; d (down) last.
  assert.deepEqual(rankReplicas(["c", "d", "b", "a"], 0, input), ["a", "b", "c", "d"]);
  assert.deepEqual(rankReplicas(["c", "d", "b", "a"], 0, { ...input, turn: 1 }), [
    "b",
    "a",
    "c",
    "d",
  ]);
  assert.deepEqual(rankReplicas(["d"], 0, input), ["d"], "only down replicas: still asked");
  assert.deepEqual(rankReplicas([], 0, input), []);
  // Fewer of this query's shards already on a node wins inside the band.
  assert.deepEqual(rankReplicas(["a", "b"], 0, input, new Map([["a", 1]])), ["b", "a"]);
});

Deno.test("planSearch: one replica per shard, one request per node listing its shards", () => {
  const plan = planSearch({
    shards: [["a", "b"], ["b", "c"], ["c", "a"]],
    down: none,
    cost: flat,
    turn: 0,
  });
  const asked = plan.requests.flatMap((r) => r.shards).sort();
  assert.deepEqual(asked, [0, 1, 2], "every shard exactly once");
  assert.equal(plan.requests.length, 3, "equal nodes: the three shards spread over three nodes");
  for (const r of plan.requests) {
    for (const s of r.shards) assert.ok(plan.ranked[s][0] === r.node);
  }
  const one = planSearch({
    shards: [["a", "b", "c"], ["a", "b", "c"]],
    down: new Set(["b", "c"]),
    cost: flat,
    turn: 3,
  });
  assert.deepEqual(
    one.requests,
    [{ node: "a", shards: [0, 1] }],
    "the only node up gets both shards",
  );
  const holes = planSearch({ shards: [[], ["a"]], down: none, cost: flat, turn: 0 });
  assert.deepEqual(holes.requests, [{ node: "a", shards: [1] }]);
  assert.deepEqual(holes.ranked[0], []);
});

/** Shard searches per node over `searches` plans with equal costs. */
function spread(shards: readonly (readonly string[])[], searches: number): Map<string, number> {
  const per = new Map<string, number>();
  for (let t = 0; t < searches; t++) {
    for (const r of planSearch({ shards, down: none, cost: flat, turn: t }).requests) {
      per.set(r.node, (per.get(r.node) ?? 0) + r.shards.length);
    }
  }
  return per;
}

Deno.test("planSearch spreads equal replicas evenly: 1 shard RF 3, and 3 shards RF 2 on 3 nodes", () => {
  const nodes = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"];
  const p = new Placement(nodes);
  const rf3 = spread(p.shards("docs", { shard_number: 1, replication_factor: 3 }), 300);
  assert.deepEqual([...rf3.values()], [100, 100, 100], "each replica serves a third");
  // Three shards RF 2, each node holding two (what a balanced placement gives).
  const s3 = [["a", "b"], ["b", "c"], ["c", "a"]];
  const per = spread(s3, 300);
  assert.deepEqual([...per.keys()].sort(), ["a", "b", "c"]);
  assert.deepEqual([...per.values()], [300, 300, 300], "each node one shard search per query");
  // Whatever the placement, every holder serves, and the busiest node does no more than with
  // replicas picked uniformly at random (its shards' searches ÷ replicas), often less.
  const s4 = p.shards("docs", { shard_number: 4, replication_factor: 2 });
  const per4 = spread(s4, 400);
  assert.equal([...per4.values()].reduce((a, b) => a + b, 0), 1600);
  assert.equal(per4.size, new Set(s4.flat()).size);
  const uniform = Math.max(
    ...[...per4.keys()].map((n) => 400 * s4.filter((r) => r.includes(n)).length / 2),
  );
  assert.ok(Math.max(...per4.values()) <= uniform, `${[...per4.values()]} vs ${uniform}`);
});

Deno.test("planSearch follows cost: a slow replica is passed over while a fast one is in the band", () => {
  const costs: Record<string, number> = { a: 50, b: 5, c: 6 };
  const per = new Map<string, number>();
  for (let t = 0; t < 30; t++) {
    const plan = planSearch({
      shards: [["a", "b", "c"]],
      down: none,
      cost: (n) => costs[n],
      turn: t,
    });
    for (const r of plan.requests) per.set(r.node, (per.get(r.node) ?? 0) + 1);
  }
  assert.equal(per.get("a"), undefined);
  assert.equal(per.get("b"), 15);
  assert.equal(per.get("c"), 15);
});

Deno.test("nextReplica, groupByNode, hedgeDelayMs", () => {
  assert.equal(nextReplica(["a", "b", "c"], new Set(["a"]), new Set(["b"])), "c");
  assert.equal(nextReplica(["a", "b"], new Set(["a", "b"]), none), undefined);
  assert.deepEqual(groupByNode([[2, "b"], [0, "a"], [1, "b"]]), [
    { node: "a", shards: [0] },
    { node: "b", shards: [1, 2] },
  ]);
  assert.equal(hedgeDelayMs(0, 3, 100), Infinity, "0 turns hedging off");
  assert.equal(hedgeDelayMs(10, 3, 1), 10);
  assert.equal(hedgeDelayMs(10, 3, 20), 60);
});

Deno.test("coverByHolders: nodes that search all they hold; drops requests covered anyway, rotating", () => {
  const shards = [["a", "b"], ["b", "c"], ["c", "a"]];
  const requests = [{ node: "a", shards: [0] }, { node: "b", shards: [1] }, {
    node: "c",
    shards: [2],
  }];
  const kept = [0, 1, 2].map((t) => coverByHolders(requests, shards, t));
  assert.deepEqual(kept[0], [{ node: "a", shards: [0, 2] }, { node: "b", shards: [0, 1] }]);
  assert.deepEqual(kept[1], [{ node: "b", shards: [0, 1] }, { node: "c", shards: [1, 2] }]);
  assert.deepEqual(kept[2], [{ node: "a", shards: [0, 2] }, { node: "c", shards: [1, 2] }]);
  for (const k of kept) {
    assert.deepEqual([...new Set(k.flatMap((r) => r.shards))].sort(), [0, 1, 2], "all covered");
  }
  assert.deepEqual(coverByHolders([], shards, 5), []);
});

Deno.test("rankReplicas: batch affinity joins a busy or open replica within affinity_ratio of the best, never a slow, down or fallback one", () => {
  const costs: Record<string, number> = { a: 5, b: 10, c: 5 };
  const aff: Record<string, number> = { a: 0, b: 2, c: 1 };
  const input: SearchPlanInput = {
    shards: [],
    down: none,
    cost: (n) => costs[n],
    affinity: (n) => aff[n],
    turn: 0,
  };
  // Best 5: tie band ≤ 7.25 (a, c); with affinity ≤ 2 × 5 + 1 = 11 (b open, c busy).
  // Open first, then busy, then the idle one; whatever the rotation.
  for (let turn = 0; turn < 3; turn++) {
    assert.deepEqual(rankReplicas(["a", "b", "c"], 0, { ...input, turn }), ["b", "c", "a"]);
  }
  // Slower than the affinity margin: the open replica ranks by its cost, after the band.
  costs.b = 12;
  assert.deepEqual(rankReplicas(["a", "b", "c"], 0, input), ["c", "a", "b"]);
  // A smaller ratio narrows the margin (≤ 1.5 × 5 + 1 = 8.5).
  costs.b = 9;
  assert.deepEqual(rankReplicas(["a", "b", "c"], 0, { ...input, affinity_ratio: 1.5 }), [
    "c",
    "a",
    "b",
  ]);
  // Believed down: last, whatever its affinity.
  assert.deepEqual(rankReplicas(["a", "b", "c"], 0, { ...input, down: new Set(["b"]) }), [
    "c",
    "a",
    "b",
  ]);
  // No affinity given: the plain rotation of the tie band (a, c), b after it.
  const plain = { ...input, affinity: undefined };
  assert.deepEqual(rankReplicas(["a", "b", "c"], 0, plain), ["a", "c", "b"]);
  assert.deepEqual(rankReplicas(["a", "b", "c"], 0, { ...plain, turn: 1 }), ["c", "a", "b"]);
  // A replica the shard is leaving stays a fallback even with a batch open on it.
  costs.b = 5;
  assert.deepEqual(
    rankReplicas(["a", "b", "c"], 0, { ...input, preferred: [new Set(["a", "c"])] }),
    ["c", "a", "b"],
  );
  // Spreading a query's shards over nodes comes before affinity.
  assert.deepEqual(rankReplicas(["a", "b", "c"], 0, input, new Map([["b", 1]])), [
    "c",
    "a",
    "b",
  ]);
});

Deno.test("planSearch with affinity: each shard on the replica with a batch open, whatever the turn; shards still spread", () => {
  const aff: Record<string, number> = { a: 0, b: 2, c: 1, d: 2 };
  for (let turn = 0; turn < 6; turn++) {
    const plan = planSearch({
      shards: [["a", "b"], ["c", "d"], ["a", "c"]],
      down: none,
      cost: flat,
      affinity: (n) => aff[n],
      turn,
    });
    // Shard 2 has no open replica: the busy one (c), which carries none of this query's
    // shards yet; shards 0 and 1 join the open batches.
    assert.deepEqual(plan.requests, [
      { node: "b", shards: [0] },
      { node: "c", shards: [2] },
      { node: "d", shards: [1] },
    ], `turn ${turn}`);
  }
  // Two shards whose only open replica is the same node: the second goes to its other
  // replica, so the query's shards still run in parallel.
  const two = planSearch({
    shards: [["a", "b"], ["b", "c"]],
    down: none,
    cost: flat,
    affinity: (n) => (n === "b" ? 2 : 0),
    turn: 0,
  });
  assert.equal(two.requests.length, 2);
});
