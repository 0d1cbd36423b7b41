import assert from "node:assert/strict";
import { HnswIndex } from "./hnsw.ts";
import { GraphPool } from "./graph_pool.ts";
import { randomVectors, row, searchOn } from "./graph_pool_testing.ts";

for (const metric of ["l2", "cosine", "dot"] as const) {
  Deno.test(`int8 worker searches equal owner searches before and after training, through deletes, upserts, compaction and growth (${metric})`, async () => {
    const pool = new GraphPool(2);
    try {
      const dim = 24, n = 3000;
      const data = randomVectors(n + 400, dim, 7);
      const queries = randomVectors(50, dim, 99);
      const t = new HnswIndex({
        dim,
        metric,
        M: 8,
        efConstruction: 64,
        quantization: "int8",
        trainSize: 500,
        capacity: 64,
      });
      t.deferCompaction = true;
      let checked = 0;
      const check = async (what: string, rescore?: number) => {
        for (let i = 0; i < 50; i++) {
          const q = row(queries, i, dim);
          const want = t.search(q, 10, { ef: 40, rescore });
          assert.equal(want.length, 10);
          assert.deepEqual(
            await searchOn(pool, t, q, 10, 40, rescore),
            want,
            `${metric} ${what} query ${i}`,
          );
          checked++;
        }
      };
      for (let i = 0; i < 300; i++) t.add(i, row(data, i, dim));
      assert.equal(t.codes, null);
      await check("before training");
      for (let i = 300; i < n; i++) t.add(i, row(data, i, dim));
      assert.ok(t.codes !== null, "trained");
      await check("trained");
      await check("trained, rescore 1", 1);
      await check("trained, rescore 7", 7);
      // Tombstones below the compaction ratio stay walked and are never returned.
      for (let i = 0; i < n; i += 40) t.delete(i);
      await check("deletes");
      // Upserts: an id's old point becomes a tombstone, the new one is encoded and linked.
      for (let i = 1; i < 400; i += 2) t.add(i, row(data, n + i, dim));
      await check("upserts");
      for (let i = 3; i < n; i += 4) t.delete(i);
      assert.ok(t.compactDue());
      assert.equal(await pool.compactIfDue(t), true);
      assert.equal(t.deletedCount, 0);
      await check("compacted");
      // Freed slots reused: their rows are rewritten before they are linked.
      for (let i = 3; i < 800; i += 4) t.add(i, row(data, i, dim));
      await check("slots reused");
      assert.equal(checked, 50 * 8);
    } finally {
      await pool.close();
    }
  });
}

Deno.test("int8 worker searches during owner inserts (training and growth meanwhile) return only inserted points at exact distances", async () => {
  const dim = 16, n = 4000;
  const data = randomVectors(n, dim, 11);
  const queries = randomVectors(40, dim, 12);
  const pool = new GraphPool(2);
  const t = new HnswIndex({
    dim,
    M: 6,
    efConstruction: 40,
    quantization: "int8",
    trainSize: 1000,
    capacity: 64,
  });
  try {
    t.add(0, row(data, 0, dim));
    const codesBytes = () => t.codes === null ? 0 : t.codes.memoryBytes;
    let added = 1;
    let bytesTrained = 0;
    while (added < n) {
      const pending = Array.from(
        { length: 40 },
        (_, i) => searchOn(pool, t, row(queries, i, dim), 5, 20),
      );
      for (let j = 0; j < 100 && added < n; j++, added++) t.add(added, row(data, added, dim));
      if (bytesTrained === 0) bytesTrained = codesBytes();
      const res = await Promise.all(pending);
      for (let i = 0; i < res.length; i++) {
        for (const h of res[i]) {
          assert.ok(Number.isInteger(h.id) && h.id >= 0 && h.id < added, `id ${h.id} (${added})`);
          const v = row(data, h.id, dim);
          const q = row(queries, i, dim);
          let s = 0;
          for (let j = 0; j < dim; j++) s += (v[j] - q[j]) ** 2;
          assert.ok(Math.abs(h.distance - Math.sqrt(s)) < 1e-4, `distance ${h.distance}`);
        }
      }
    }
    assert.ok(t.codes !== null);
    assert.ok(codesBytes() > bytesTrained, "the code memory grew after training");
    for (let i = 0; i < 40; i++) {
      const q = row(queries, i, dim);
      assert.deepEqual(await searchOn(pool, t, q, 5, 20), t.search(q, 5, { ef: 20 }));
    }
  } finally {
    await pool.close();
  }
});

Deno.test("int8 batches link on workers once trained: one thread builds add()'s graph and codes, two keep recall; worker searches equal owner searches", async () => {
  const pool = new GraphPool(2);
  try {
    const dim = 24, n = 4000;
    const data = randomVectors(n, dim, 31);
    const queries = randomVectors(50, dim, 32);
    const ids = Array.from({ length: n }, (_, i) => i);
    const opts = {
      dim,
      metric: "cosine" as const,
      M: 8,
      efConstruction: 64,
      quantization: "int8" as const,
      trainSize: 1000,
      rescore: 1,
    };
    const ref = new HnswIndex(opts);
    ref.deferCompaction = true;
    for (let i = 0; i < n; i++) ref.add(i, row(data, i, dim));
    const built = async (threads: number) => {
      const t = new HnswIndex(opts);
      for (let from = 0; from < n; from += 500) {
        // Untrained: in order on this thread; trained (from 1000 points on): placeBatch.
        assert.equal(t.batchable, from >= 1000, `batchable at ${from}`);
        await pool.addBatch(
          t,
          ids.slice(from, from + 500),
          data.subarray(from * dim, (from + 500) * dim),
          threads,
        );
      }
      return t;
    };
    const one = await built(1);
    const two = await built(2);
    let hitsTwo = 0;
    for (let i = 0; i < 50; i++) {
      const q = row(queries, i, dim);
      const want = ref.search(q, 10, { ef: 40 });
      assert.deepEqual(one.search(q, 10, { ef: 40 }), want, `one thread, query ${i}`);
      assert.deepEqual(await searchOn(pool, one, q, 10, 40), want, `one thread worker ${i}`);
      // Two threads: another graph, but its owner's and workers' searches agree.
      const got = two.search(q, 10, { ef: 40 });
      assert.deepEqual(await searchOn(pool, two, q, 10, 40), got, `two threads worker ${i}`);
      const exact = new Set(ref.exactSearch(q, 10).map((h) => h.id));
      for (const h of got) if (exact.has(h.id)) hitsTwo++;
    }
    let hitsOne = 0;
    for (let i = 0; i < 50; i++) {
      const q = row(queries, i, dim);
      const exact = new Set(ref.exactSearch(q, 10).map((h) => h.id));
      for (const h of ref.search(q, 10, { ef: 40 })) if (exact.has(h.id)) hitsOne++;
    }
    assert.ok(hitsTwo / 500 >= hitsOne / 500 - 0.03, `recall ${hitsTwo / 500} vs ${hitsOne / 500}`);
  } finally {
    await pool.close();
  }
});
