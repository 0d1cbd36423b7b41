import assert from "node:assert/strict";
import { RebalancePlan } from "./rebalance_plan.ts";
import { HashRing } from "./ring.ts";

const ring = (members: string[]) => new HashRing({ members, vnodes_per_member: 64 });
const IDS = Array.from({ length: 4000 }, (_, i) => i * 7919 + 3);

Deno.test("adding a node: only it gains points, each from one old owner still on the ring", () => {
  const from = ring(["a", "b", "c"]);
  const to = ring(["a", "b", "c", "d"]);
  const plan = new RebalancePlan({ from, to, replication_factor: 2 });
  let moved = 0;
  for (const id of IDS) {
    const gained = plan.gained(id);
    assert.ok(gained.length <= 1);
    if (gained.length === 1) {
      assert.equal(gained[0], "d");
      moved++;
    }
    const src = plan.source(id)!;
    assert.ok(from.owners(id, 2).includes(src));
    // Exactly one holder sends, and to exactly the gained owners.
    const senders = from.owners(id, 2).filter((h) => plan.route(id, h).targets.length > 0);
    assert.deepEqual(senders, gained.length > 0 ? [src] : []);
    for (const h of from.owners(id, 2)) {
      assert.equal(plan.route(id, h).prune, !to.owners(id, 2).includes(h));
    }
  }
  // About RF/N = 2/4 of the points gain the new owner.
  assert.ok(moved > IDS.length * 0.35 && moved < IDS.length * 0.65, `moved ${moved}`);
});

Deno.test("removing a node: each of its points is copied to one replacement, by a survivor", () => {
  const from = ring(["a", "b", "c", "d"]);
  const to = ring(["a", "b", "c"]);
  const plan = new RebalancePlan({ from, to, replication_factor: 2 });
  for (const id of IDS) {
    const lost = from.owners(id, 2).includes("d");
    const gained = plan.gained(id);
    assert.equal(gained.length, lost ? 1 : 0);
    if (!lost) continue;
    const src = plan.source(id)!;
    assert.notEqual(src, "d");
    assert.deepEqual(plan.route(id, src).targets, gained);
    // After the copy, the point is on all its new owners.
    const holders = new Set([...from.owners(id, 2).filter((h) => h !== "d"), ...gained]);
    for (const o of to.owners(id, 2)) assert.ok(holders.has(o));
  }
});

Deno.test("source rank: a node with pending hints is the source only when no other is left", () => {
  const from = ring(["a", "b", "c"]);
  const to = ring(["a", "b", "c", "d"]);
  const plan = new RebalancePlan({
    from,
    to,
    replication_factor: 2,
    source_rank: (n) => (n === "a" ? 1 : 0),
  });
  for (const id of IDS) {
    const olds = from.owners(id, 2);
    assert.equal(plan.source(id), olds.includes("a") ? olds.find((o) => o !== "a") : olds[0]);
  }
});

Deno.test("no old owner left (RF 1): every holder copies", () => {
  const from = ring(["a", "b"]);
  const to = ring(["a", "c"]);
  const plan = new RebalancePlan({ from, to, replication_factor: 1 });
  const id = IDS.find((i) => from.owners(i, 1)[0] === "b" && to.owners(i, 1)[0] === "c")!;
  assert.equal(plan.source(id), null);
  assert.deepEqual(plan.route(id, "a"), { targets: ["c"], replace: false, prune: true });
  assert.deepEqual(plan.route(id, "c"), { targets: [], replace: false, prune: false });
});

Deno.test("identical rings plan nothing; a bad replication factor is refused", () => {
  const plan = new RebalancePlan({
    from: ring(["a", "b"]),
    to: ring(["b", "a"]),
    replication_factor: 2,
  });
  assert.ok(plan.identical);
  for (const id of IDS.slice(0, 200)) {
    const r = plan.route(id, "a");
    assert.deepEqual([r.targets, r.prune], [[], false]);
  }
  assert.throws(
    () => new RebalancePlan({ from: ring(["a"]), to: ring(["a"]), replication_factor: 0 }),
    /Replication factor 0/,
  );
});

Deno.test("an interrupted move: only owners under every ring since the settled one are old", () => {
  // Settled on [a,b,c]; d joined, then a died before the first move finished.
  const settled = ring(["a", "b", "c"]);
  const mid = ring(["a", "b", "c", "d"]);
  const to = ring(["b", "c", "d"]);
  const plan = new RebalancePlan({ from: [settled, mid], to, replication_factor: 2 });
  let sawMissedWrites = 0;
  for (const id of IDS) {
    const old = plan.oldOwners(id);
    for (const o of old) {
      assert.ok(settled.owners(id, 2).includes(o) && mid.owners(id, 2).includes(o));
    }
    // A settled owner that lost the point under the intermediate ring may have missed writes
    // made then: if it owns the point again, it is a target (with a replacing copy).
    const gained = plan.gained(id);
    for (const o of to.owners(id, 2)) {
      if (settled.owners(id, 2).includes(o) && !mid.owners(id, 2).includes(o)) {
        assert.ok(gained.includes(o));
        sawMissedWrites++;
      }
    }
    const src = plan.source(id);
    if (src !== null) {
      const r = plan.route(id, src);
      assert.equal(r.replace, true);
      assert.deepEqual(r.targets, gained.filter((t) => t !== src));
    }
  }
  assert.ok(sawMissedWrites > 0);
});
