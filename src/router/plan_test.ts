import assert from "node:assert/strict";
import { ownersIn, Placement } from "../cluster/placement.ts";
import type { PointId } from "../common/point_id.ts";
import {
  decideBatch,
  decideWrite,
  mergeSearchResults,
  newestRead,
  parseConsistency,
  PlanError,
  requiredAcks,
  ringNodes,
  searchCoverage,
  searchRetryTargets,
  searchTargets,
  splitBatch,
} from "./plan.ts";
import { splitIds } from "./points_batch.ts";

/** Four shards of RF 2 of collection "c"; `owners(id, rf)` as the hash ring's was called. */
const L = { shard_number: 4, replication_factor: 2 };
function placed(members: string[]) {
  const p = new Placement(members);
  return { p, owners: (id: PointId, _rf: number) => p.owners("c", L, id) };
}

Deno.test("requiredAcks: one, quorum and all", () => {
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => requiredAcks("one", n)), [1, 1, 1, 1, 1]);
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => requiredAcks("quorum", n)), [1, 2, 2, 3, 3]);
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => requiredAcks("all", n)), [1, 2, 3, 4, 5]);
  assert.equal(requiredAcks("one", 0), 1, "no owners can never succeed");
  assert.throws(() => requiredAcks("quorum", -1), PlanError);
  assert.throws(() => requiredAcks("most" as never, 3), /Consistency "most" is unknown/);
});

Deno.test("parseConsistency: default, valid and invalid levels", () => {
  assert.equal(parseConsistency(undefined), "quorum");
  assert.equal(parseConsistency(""), "quorum");
  assert.equal(parseConsistency("", "all"), "all");
  assert.equal(parseConsistency("one"), "one");
  assert.throws(() => parseConsistency("two"), /Consistency "two" must be one of/);
});

Deno.test("decideWrite counts distinct owner acknowledgements", () => {
  const owners = ["a", "b", "c"];
  assert.equal(decideWrite(owners, new Set(["a", "b"]), "quorum").ok, true);
  const d = decideWrite(owners, new Set(["a", "x"]), "quorum", "the put of id 7");
  assert.equal(d.ok, false);
  assert.equal(d.acked, 1);
  assert.equal(
    !d.ok && d.message,
    'Only 1 of 3 owners acknowledged the put of id 7; consistency "quorum" needs 2',
  );
  assert.equal(decideWrite(owners, new Set(["c"]), "one").ok, true);
  assert.equal(decideWrite(owners, new Set(["a", "b"]), "all").ok, false);
  assert.equal(decideWrite(owners, new Set(owners), "all").ok, true);
  assert.equal(decideWrite([], new Set(["a"]), "one").ok, false);
  // Duplicate owners count once.
  assert.equal(decideWrite(["a", "a"], new Set(["a"]), "all").owners, 1);
});

Deno.test("decideBatch needs every owner set to meet the level", () => {
  const sets = [["a", "b"], ["b", "c"], ["c", "a"]];
  assert.equal(decideBatch(sets, new Set(["a", "b", "c"]), "all").ok, true);
  const d = decideBatch(sets, new Set(["a", "b"]), "quorum");
  assert.equal(d.ok, false);
  assert.match(!d.ok ? d.message : "", /^Only 1 of 2 owners acknowledged points owned by b, c/);
  const one = decideBatch(sets, new Set(["a"]), "one");
  assert.equal(one.ok, false, "the set {b, c} has no acknowledgement");
  assert.equal(decideBatch(sets, new Set(["b", "a"]), "one").ok, true);
  assert.equal(decideBatch([], new Set(["a"]), "one").ok, false);
});

Deno.test("splitBatch gives each owner exactly its points, in request order", () => {
  const ring = placed(["n1", "n2", "n3"]);
  const points = Array.from({ length: 300 }, (_, i) => ({ id: i * 7919, vector: [i] }));
  points.push({ id: 0, vector: [-1] }); // a repeated id: the later point must come later
  const split = splitBatch(ring.p, "c", L, points);
  let total = 0;
  for (const [owner, list] of split.per_owner) {
    total += list.length;
    let last = -1;
    for (const p of list) {
      assert.ok(ring.owners(p.id, 2).includes(owner), `${owner} does not own ${p.id}`);
      const at = points.indexOf(p as (typeof points)[number]);
      assert.ok(at > last, "order is kept");
      last = at;
    }
  }
  assert.equal(total, points.length * 2, "every point goes to its two owners");
  const zeros = split.per_owner.get(ring.owners(0, 2)[0])!.filter((p) => p.id === 0);
  assert.deepEqual(zeros.map((p) => p.vector[0]), [0, -1]);
  const keys = new Set(split.owner_sets.map((s) => s.join(",")));
  assert.equal(keys.size, split.owner_sets.length, "owner sets are distinct");
  for (const p of points) assert.ok(keys.has(ring.owners(p.id, 2).join(",")));
});

Deno.test("mergeSearchResults dedupes replicas, keeps the nearer copy, orders ties by id", () => {
  const merged = mergeSearchResults(
    [
      [{ id: 5, distance: 0.5 }, { id: 1, distance: 1 }, { id: 9, distance: 2 }],
      [{ id: 5, distance: 0.4 }, { id: 3, distance: 1 }, { id: 7, distance: 3 }],
      [],
    ],
    4,
  );
  assert.deepEqual(merged, [
    { id: 5, distance: 0.4 },
    { id: 1, distance: 1 },
    { id: 3, distance: 1 },
    { id: 9, distance: 2 },
  ]);
  assert.deepEqual(mergeSearchResults([[{ id: 2, distance: 0 }]], 10), [{ id: 2, distance: 0 }]);
  assert.throws(() => mergeSearchResults([], 0), /k 0 must be a positive integer/);
  assert.throws(() => mergeSearchResults([[{ id: 1, distance: NaN }]], 1), /distance NaN/);
});

Deno.test("mergeSearchResults equals exact top-k over the union of random shards", () => {
  let seed = 12345;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let round = 0; round < 20; round++) {
    const all = Array.from({ length: 200 }, (_, id) => ({ id, distance: Math.floor(rand() * 50) }));
    const shards: { id: number; distance: number }[][] = [[], [], []];
    for (const r of all) {
      // Each result on one or two shards (replicas), each shard answers its own top 10.
      shards[Math.floor(rand() * 3)].push(r);
      if (rand() < 0.5) shards[Math.floor(rand() * 3)].push(r);
    }
    const k = 10;
    const answers = shards.map((s) =>
      [...new Map(s.map((r) => [r.id, r])).values()]
        .sort((a, b) => a.distance - b.distance || a.id - b.id).slice(0, k)
    );
    const exact = all.slice().sort((a, b) => a.distance - b.distance || a.id - b.id).slice(0, k);
    assert.deepEqual(mergeSearchResults(answers, k), exact);
  }
});

Deno.test("searchTargets asks up nodes, and down owners of otherwise uncovered shards", () => {
  const nodes = ["a", "b", "c"];
  const shards = [["a", "b"], ["b", "c"], ["a", "c"]];
  assert.deepEqual(searchTargets(nodes, shards, new Set()), ["a", "b", "c"]);
  assert.deepEqual(searchTargets(nodes, shards, new Set(["b"])), ["a", "c"]);
  // b and c down: shard {b, c} has nobody up, so both are asked anyway.
  assert.deepEqual(searchTargets(nodes, shards, new Set(["b", "c"])), ["a", "b", "c"]);
  assert.deepEqual(searchTargets(["a", "b"], [["a"], ["b"]], new Set(["a"])), ["a", "b"]);
});

Deno.test("searchRetryTargets asks unasked owners of uncovered shards only", () => {
  const nodes = ["a", "b", "c"];
  const shards = [["a", "b"], ["b", "c"], ["a", "c"]];
  // a was believed down (not asked), b failed: shard {a, b} is uncovered; ask a.
  assert.deepEqual(searchRetryTargets(nodes, shards, new Set(["c"]), new Set(["b", "c"])), ["a"]);
  assert.deepEqual(searchRetryTargets(nodes, shards, new Set(["b", "c"]), new Set(["b", "c"])), []);
  assert.deepEqual(searchRetryTargets(nodes, shards, new Set(), new Set(nodes)), []);
});

Deno.test("searchCoverage: a shard is answered when any owner answered", () => {
  const shards = [["a", "b"], ["b", "c"], ["a", "c"]];
  assert.deepEqual(searchCoverage(shards, new Set(["a", "b", "c"])), {
    shards_answered: 3,
    shards_total: 3,
    partial: false,
  });
  assert.deepEqual(searchCoverage(shards, new Set(["a", "c"])), {
    shards_answered: 3,
    shards_total: 3,
    partial: false,
  });
  assert.deepEqual(searchCoverage(shards, new Set(["a"])), {
    shards_answered: 2,
    shards_total: 3,
    partial: true,
  });
  assert.deepEqual(searchCoverage(shards, new Set()), {
    shards_answered: 0,
    shards_total: 3,
    partial: true,
  });
});

Deno.test("newestRead: the highest version wins, tombstones too; lower owners are stale", () => {
  const r = newestRead([
    { node: "a", version: 5, found: true },
    { node: "b", version: 9, found: false },
    { node: "c", version: 7, found: true },
  ], ["a", "b"]);
  assert.deepEqual(r, { index: 1, version: 9, stale: ["a"] });
  // Equal versions: nothing stale; a live legacy point (version 0) beats an absent one.
  assert.deepEqual(
    newestRead([{ node: "a", version: 0, found: false }, { node: "b", version: 0, found: true }], [
      "a",
      "b",
    ]),
    { index: 1, version: 0, stale: [] },
  );
  assert.deepEqual(newestRead([], ["a"]), { index: -1, version: 0, stale: [] });
  // A node that did not answer is not stale (nothing known of it).
  assert.deepEqual(newestRead([{ node: "b", version: 3, found: true }], ["a", "b"]).stale, []);
});

Deno.test("ringNodes: gossip ring addresses plus static nodes gossip never reported", () => {
  const stat = ["127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:1"];
  assert.deepEqual(ringNodes(stat, [], new Set()), ["127.0.0.1:1", "127.0.0.1:3"]);
  // Gossip knows 127.0.0.1:1 (alive), and 127.0.0.1:3 in some state off the ring (dead).
  const gossip = [
    { id: "node-b", address: "127.0.0.1:2" },
    { id: "node-a", address: "127.0.0.1:1" },
    { id: "node-c", address: "127.0.0.1:2" },
  ];
  assert.deepEqual(
    ringNodes(stat, gossip, new Set(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])),
    ["127.0.0.1:1", "127.0.0.1:2"],
  );
  // A partial view: 127.0.0.1:3 not reported yet stays on the ring.
  assert.deepEqual(
    ringNodes(stat, gossip, new Set(["127.0.0.1:1", "127.0.0.1:2"])),
    ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
  );
  assert.deepEqual(ringNodes([], [], new Set()), []);
});

Deno.test("mergeSearchResults: string and 64-bit ids dedupe by canonical id; ties by compareIds", () => {
  const big = (2n ** 63n).toString();
  const merged = mergeSearchResults(
    [
      [{ id: 0, string_id: "b", distance: 1 }, { id: big, distance: 1 }, { id: "9", distance: 1 }],
      [{ id: 0, string_id: "a", distance: 1 }, { id: big, string_id: "", distance: 0.5 }],
      [{ id: 9, distance: 2 }, { id: "0", string_id: "9", distance: 0.1 }],
    ],
    10,
  );
  assert.deepEqual(merged.map((r) => [r.id, r.string_id ?? "", r.distance]), [
    ["0", "9", 0.1],
    [big, "", 0.5],
    ["9", "", 1],
    [0, "a", 1],
    [0, "b", 1],
  ], 'the integer 9 sent as "9" and 9 is one point; the string "9" another');
  assert.equal(merged.length, 5);
});

Deno.test("splitBatch places string and 64-bit ids as the ring does", () => {
  const ring = placed(["a:1", "b:1", "c:1"]);
  const points = [
    { id: 0, string_id: "doc-1", vector: [1] },
    { id: "18446744073709551615", vector: [2] },
    { id: 7, vector: [3] },
  ];
  const split = splitBatch(ring.p, "c", L, points);
  const ids = ["doc-1", 18446744073709551615n, 7] as const;
  points.forEach((p, i) => {
    for (const o of ring.owners(ids[i], 2)) assert.ok(split.per_owner.get(o)!.includes(p));
  });
});

Deno.test("splitBatch and splitIds resolve the placement once per request, not per point", () => {
  let calls = 0;
  class Counting extends Placement {
    override shards(collection: string, layout: typeof L) {
      calls++;
      return super.shards(collection, layout);
    }
  }
  const p = new Counting(["n1", "n2", "n3"]);
  const points = Array.from({ length: 1000 }, (_, i) => ({ id: i, vector: [i] }));
  const split = splitBatch(p, "c", L, points);
  assert.equal(calls, 1);
  for (const [owner, list] of split.per_owner) {
    for (const pt of list) assert.ok(p.owners("c", L, pt.id).includes(owner));
  }
  calls = 0;
  splitIds(p, "c", L, points.map((pt) => pt.id));
  assert.equal(calls, 1);
  assert.deepEqual(ownersIn(p.shards("c", L), "doc-7"), p.owners("c", L, "doc-7"));
});
