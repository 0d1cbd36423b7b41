import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection } from "./collection.ts";
import { Rng } from "../testing/random.ts";
import { GraphPool } from "../index/graph_pool.ts";
import { CapacityError } from "../index/vector_store.ts";
import { NodeStore } from "./node_store.ts";
import { shardOf } from "../common/shard.ts";

const quiet = { logger: () => {} };
const config = { name: "c", dimension: 4, metric: "l2" as const, m: 8, ef_construction: 32 };

/**
 * Lowers the index's slot limit (4 GiB of WASM memory for real; reaching it in a test would
 * take gigabytes) to `max`, above the 1024 slots an index starts with.
 */
function limitSlots(c: Collection, max: number): void {
  (c.index as unknown as { maxCapacity: number }).maxCapacity = max;
}

for (const build of [1, 2]) {
  Deno.test(`collection capacity (build threads ${build}): a write past the index's slot limit is refused before it is logged; what was applied stays findable`, async () => {
    const root = mkdtempSync(join(tmpdir(), "vdb-cap-"));
    const dir = join(root, "c");
    const pool = new GraphPool(2);
    try {
      const rng = new Rng(5);
      const threads = { pool, search: 1, build };
      let c = await Collection.create(dir, config, { ...quiet, threads });
      limitSlots(c, 1100);
      const points = (from: number, n: number) =>
        Array.from({ length: n }, (_, i) => ({ id: from + i, vector: rng.vector(4) }));
      const first = points(0, 1000);
      await c.putBatch(first);
      // Past the 1024 slots the index started with, up to its limit: room is left.
      const second = points(1000, 50);
      assert.equal((await c.putBatch(second)).applied, 50);
      const seq = c.stats().last_seq;
      await assert.rejects(
        c.putBatch(points(1050, 100)),
        (e: Error) =>
          e instanceof CapacityError && e.message.includes("1100") &&
          e.message.includes("1150"),
      );
      await assert.rejects(
        c.put(1, rng.vector(4)).then(() => c.putBatch(points(2000, 50))),
        CapacityError,
      );
      // The put replacing point 1 still fits (1051 slots of 1100); the batch after it did not.
      assert.equal(c.stats().last_seq, seq + 1, "the refused batches were not logged");
      assert.equal(c.stats().count, 1050);
      assert.equal(c.sortedIds().length, 1050, "no id without its vector");
      assert.equal(c.getEntry(1050).version, 0, "a refused point holds no version");
      for (const p of [...first, ...second].filter((_, i) => i % 50 === 7)) {
        assert.equal(c.search(p.vector, 1, 64)[0].id, p.id);
      }
      await c.close();
      c = await Collection.open(dir, { ...quiet, threads });
      assert.equal(c.stats().count, 1050, "a restart replays what was applied, no more");
      assert.equal(c.getEntry(1050).version, 0);
      await c.close();
    } finally {
      await pool.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
}

Deno.test("collection capacity: a sharded batch whose share passes one unit's slot limit is refused whole, no unit applies its share", async () => {
  const root = mkdtempSync(join(tmpdir(), "vdb-cap-"));
  try {
    const rng = new Rng(6);
    let store = await NodeStore.open(root, quiet);
    let c = await store.create({ ...config, shard_number: 3, replication_factor: 1 });
    limitSlots(c.units[1], 1100);
    const points = (ids: number[]) => ids.map((id) => ({ id, vector: rng.vector(4) }));
    const ofShard = (k: number, from: number, n: number) => {
      const out: number[] = [];
      for (let id = from; out.length < n; id++) if (shardOf(id, 3) === k) out.push(id);
      return out;
    };
    await c.putBatch(points(ofShard(1, 0, 1050)));
    const before = c.stats();
    // 60 points for each shard: unit 1 would need 1110 slots.
    const mixed = [...ofShard(0, 0, 60), ...ofShard(1, 100_000, 60), ...ofShard(2, 0, 60)];
    await assert.rejects(
      c.putBatch(points(mixed)),
      (e: Error) => e instanceof CapacityError && e.message.includes("1100"),
    );
    // The other units' shares would be under way still: the close waits for them.
    await store.close();
    store = await NodeStore.open(root, quiet);
    c = store.get("c");
    const after = c.stats();
    assert.equal(after.count, before.count, "no unit applied its share");
    assert.equal(after.last_seq, before.last_seq, "no unit logged its share");
    limitSlots(c.units[1], 1100);
    // Without unit 1's share the rest goes through.
    assert.equal(
      (await c.putBatch(points(mixed.filter((id) => shardOf(id, 3) !== 1)))).applied,
      120,
    );
    await store.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
