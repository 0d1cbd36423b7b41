import assert from "node:assert/strict";
import { readSet, routeEntry } from "./plan.ts";
import { Placement } from "../../cluster/placement.ts";

const IDS = Array.from({ length: 4000 }, (_, i) => i * 7919 + 3);
const C = "docs";
const L = { shard_number: 6, replication_factor: 2 };

Deno.test("routeEntry sends an entry to its shard's other replicas and prunes it from non-owners", () => {
  const to = new Placement(["a", "b", "c", "d"]);
  for (const id of IDS) {
    const owners = to.owners(C, L, id);
    assert.equal(owners.length, 2);
    for (const holder of ["a", "b", "c", "d"]) {
      const r = routeEntry(to, C, L, holder, id);
      assert.equal(r.prune, !owners.includes(holder));
      assert.deepEqual(r.targets, owners.filter((o) => o !== holder));
      assert.ok(!r.targets.includes(holder));
    }
  }
});

Deno.test("routeEntry from a node off the placement targets every owner", () => {
  const to = new Placement(["a", "b", "c"]);
  for (const id of IDS.slice(0, 200)) {
    const r = routeEntry(to, C, L, "gone", id);
    assert.equal(r.prune, true);
    assert.deepEqual(r.targets, to.owners(C, L, id));
  }
});

Deno.test("adding a node: whole shards move, mostly to the newcomer, each keeping a replica mostly", () => {
  const layout = { shard_number: 64, replication_factor: 2 };
  const from = new Placement(["a", "b", "c"]);
  const to = new Placement(["a", "b", "c", "d"]);
  let gained = 0;
  let moved = 0; // entries whose owner set changed at all
  let kept = 0; // of those, entries that keep one old owner (a copy source stays an owner)
  for (const id of IDS) {
    const before = from.owners(C, layout, id);
    const after = to.owners(C, layout, id);
    if (after.includes("d")) gained++;
    const same = after.filter((o) => before.includes(o)).length;
    if (same < 2) moved++;
    if (same === 1) kept++;
  }
  // About RF/N of the entries go to the newcomer (their shards, rather); the placement's load
  // bound moves a few more between old members (placement_test.ts bounds the total).
  assert.ok(gained > IDS.length * 0.3 && gained < IDS.length * 0.7, `gained ${gained}`);
  assert.ok(moved <= gained * 1.3, `moved ${moved}, gained ${gained}`);
  assert.ok(kept >= moved * 0.8, `kept ${kept} of ${moved}`);
});

Deno.test("readSet is the union of owners, current placement first, without repeats", () => {
  const p1 = new Placement(["a", "b", "c", "d"]);
  const p2 = new Placement(["a", "b", "c"]);
  const p3 = new Placement(["a", "b", "c", "e"]);
  for (const id of IDS.slice(0, 500)) {
    const set = readSet([p1, p2, p3], C, L, id);
    assert.deepEqual(set.slice(0, 2), p3.owners(C, L, id));
    assert.equal(new Set(set).size, set.length);
    const union = new Set([
      ...p1.owners(C, L, id),
      ...p2.owners(C, L, id),
      ...p3.owners(C, L, id),
    ]);
    assert.deepEqual(new Set(set), union);
  }
  assert.deepEqual(readSet([p2], C, L, 7), p2.owners(C, L, 7));
  // Another collection's shards are placed independently of this one's.
  const other = readSet([p2], "other", L, 7);
  assert.equal(other.length, 2);
});
