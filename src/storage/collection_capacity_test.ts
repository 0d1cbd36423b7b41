import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection } from "./collection.ts";
import { Rng } from "../testing/random.ts";
import { GraphPool } from "../index/graph_pool.ts";
import { CapacityError } from "../index/vector_store.ts";

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
