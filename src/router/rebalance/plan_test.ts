import assert from "node:assert/strict";
import { readSet, routeEntry } from "./plan.ts";
import { HashRing } from "../../cluster/ring.ts";

const ring = (members: string[]) => new HashRing({ members, vnodes_per_member: 64 });
const IDS = Array.from({ length: 4000 }, (_, i) => i * 7919 + 3);

Deno.test("routeEntry sends an entry to its other owners and prunes it from non-owners", () => {
  const to = ring(["a", "b", "c", "d"]);
  for (const id of IDS) {
    const owners = to.owners(id, 2);
    for (const holder of ["a", "b", "c", "d"]) {
      const r = routeEntry(to, 2, holder, id);
      assert.equal(r.prune, !owners.includes(holder));
      assert.deepEqual(r.targets, owners.filter((o) => o !== holder));
      assert.ok(!r.targets.includes(holder));
    }
  }
});

Deno.test("routeEntry from a node off the ring targets every owner", () => {
  const to = ring(["a", "b", "c"]);
  for (const id of IDS.slice(0, 200)) {
    const r = routeEntry(to, 2, "gone", id);
    assert.equal(r.prune, true);
    assert.deepEqual(r.targets, to.owners(id, 2));
  }
});

Deno.test("adding a node: about RF/N of the entries gain it as an owner", () => {
  const from = ring(["a", "b", "c"]);
  const to = ring(["a", "b", "c", "d"]);
  let gained = 0;
  for (const id of IDS) {
    const before = from.owners(id, 2);
    const after = to.owners(id, 2);
    if (after.includes("d")) {
      gained++;
      // The new owner replaced exactly one old owner; the other kept it.
      assert.equal(after.filter((o) => before.includes(o)).length, 1);
    } else {
      assert.deepEqual(after, before);
    }
  }
  assert.ok(gained > IDS.length * 0.35 && gained < IDS.length * 0.65, `gained ${gained}`);
});

Deno.test("readSet is the union of owners, current ring first, without repeats", () => {
  const r1 = ring(["a", "b", "c", "d"]);
  const r2 = ring(["a", "b", "c"]);
  const r3 = ring(["a", "b", "c", "e"]);
  for (const id of IDS.slice(0, 500)) {
    const set = readSet([r1, r2, r3], 2, id);
    assert.deepEqual(set.slice(0, 2), r3.owners(id, 2));
    assert.equal(new Set(set).size, set.length);
    const union = new Set([...r1.owners(id, 2), ...r2.owners(id, 2), ...r3.owners(id, 2)]);
    assert.deepEqual(new Set(set), union);
  }
  assert.deepEqual(readSet([r2], 2, 7), r2.owners(7, 2));
});
