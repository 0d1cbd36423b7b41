import assert from "node:assert/strict";
import { Catalog } from "./catalog.ts";

const base = { name: "c", dimension: 4, metric: "l2" as const, m: 16, ef_construction: 200 };

Deno.test("catalog: creation fills the layout from the ring and the default rf", () => {
  const c = new Catalog({ default_rf: 2 });
  const v = c.chooseForCreate(base, 3);
  assert.equal(v.shard_number, 3);
  assert.equal(v.replication_factor, 2);
  assert.deepEqual(c.get("c"), { shard_number: 3, replication_factor: 2 });
  // Given values win; an empty ring still makes one shard; a huge one is clamped.
  assert.equal(c.chooseForCreate({ ...base, name: "d", shard_number: 5 }, 3).shard_number, 5);
  assert.equal(c.chooseForCreate({ ...base, name: "e" }, 0).shard_number, 1);
  assert.equal(c.chooseForCreate({ ...base, name: "f" }, 1000).shard_number, 256);
  assert.deepEqual(c.names(), ["c", "d", "e", "f"]);
  c.drop("d");
  assert.equal(c.get("d"), undefined);
});

Deno.test("catalog: node reports, legacy collections and the bound", () => {
  const c = new Catalog({ default_rf: 3, collections_max: 2 });
  assert.ok(c.learn({ name: "old" }));
  assert.deepEqual(c.get("old"), { shard_number: 1, replication_factor: 3 });
  assert.ok(c.learn({ name: "new", shard_number: 4, replication_factor: 0 }));
  assert.deepEqual(c.get("new"), { shard_number: 4, replication_factor: 3 });
  assert.equal(c.learn({ name: "third", shard_number: 2 }), false, "full");
  assert.ok(c.learn({ name: "new", shard_number: 4, replication_factor: 2 }), "update in place");
  assert.deepEqual(c.get("new"), { shard_number: 4, replication_factor: 2 });
  // Out-of-range reports fall back instead of being believed.
  assert.deepEqual(c.layoutOf({ name: "x", shard_number: 9999, replication_factor: 99 }), {
    shard_number: 1,
    replication_factor: 3,
  });
  assert.deepEqual(c.legacy, { shard_number: 1, replication_factor: 3 });
});
