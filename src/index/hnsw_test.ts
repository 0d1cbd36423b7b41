import assert from "node:assert/strict";
import { HnswIndex } from "./hnsw.ts";
import type { Metric } from "../kernels/kernels.ts";
import { Rng } from "../testing/random.ts";

function build(metric: Metric, n: number, dim: number, seed: number) {
  const rng = new Rng(seed);
  const index = new HnswIndex({ dim, metric, M: 16, efConstruction: 200 });
  const data: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const v = rng.vector(dim);
    data.push(v);
    index.add(i, v);
  }
  return { index, data, rng };
}

function recall(index: HnswIndex, queries: Float32Array[], k: number, ef: number): number {
  let hits = 0;
  for (const q of queries) {
    const exact = new Set(index.exactSearch(q, k).map((h) => h.id));
    for (const h of index.search(q, k, { ef })) if (exact.has(h.id)) hits++;
  }
  return hits / (queries.length * k);
}

for (const metric of ["l2", "cosine", "dot"] as const) {
  Deno.test(`hnsw: recall@10 >= 0.95 at ef=64 on 2,000 x 32 random vectors (${metric})`, () => {
    const { index, rng } = build(metric, 2000, 32, 17);
    const queries = Array.from({ length: 200 }, () => rng.vector(32));
    const r = recall(index, queries, 10, 64);
    assert.ok(r >= 0.95, `recall ${r}`);
  });
}

Deno.test("hnsw: exact search agrees with a plain scalar brute force", () => {
  const { index, data, rng } = build("l2", 500, 9, 5);
  const q = rng.vector(9);
  const want = data.map((v, id) => ({
    id,
    d: Math.sqrt(v.reduce((s, x, i) => s + (x - q[i]) ** 2, 0)),
  }))
    .sort((a, b) => a.d - b.d).slice(0, 5);
  const got = index.exactSearch(q, 5);
  assert.deepEqual(got.map((h) => h.id), want.map((w) => w.id));
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(got[i].distance - want[i].d) < 1e-5);
});

Deno.test("hnsw: upsert replaces the vector, keeps the count, and search follows", () => {
  const index = new HnswIndex({ dim: 3, metric: "l2" });
  index.add(100, [0.1, 0.2, 0.3]);
  index.add(101, [0.9, 0.8, 0.7]);
  assert.equal(index.search([0.1, 0.2, 0.3], 1)[0].id, 100);
  index.add(100, [5, 5, 5]);
  assert.equal(index.count, 2);
  assert.deepEqual(Array.from(index.get(100)!), [5, 5, 5]);
  const hits = index.search([0.1, 0.2, 0.3], 2);
  assert.deepEqual(hits.map((h) => h.id), [101, 100]);
  assert.equal(hits.filter((h) => h.id === 100).length, 1, "the old vector of 100 is gone");
  assert.ok(Math.abs(index.search([5, 5, 5], 1)[0].distance) < 1e-6);
});

Deno.test("hnsw: deleted ids never appear again; get and count follow", () => {
  const { index, data } = build("cosine", 1000, 16, 9);
  const deleted = new Set<number>();
  for (let id = 0; id < 1000; id += 3) {
    assert.equal(index.delete(id), true);
    deleted.add(id);
  }
  assert.equal(index.delete(0), false, "a second delete finds nothing");
  assert.equal(index.delete(123456), false);
  assert.equal(index.count, 1000 - deleted.size);
  assert.equal(index.get(3), null);
  assert.equal(index.has(3), false);
  assert.ok(index.get(4) !== null);
  for (let q = 0; q < 1000; q += 7) {
    for (const h of index.search(data[q], 20, { ef: 64 })) {
      assert.ok(!deleted.has(h.id), `id ${h.id}`);
    }
    for (const h of index.exactSearch(data[q], 20)) assert.ok(!deleted.has(h.id));
    for (const h of index.search(data[q], 5, { filter: (id) => id % 2 === 0 })) {
      assert.ok(!deleted.has(h.id) && h.id % 2 === 0);
    }
  }
  // A live point is still found as its own nearest neighbour: the graph stays navigable.
  let found = 0;
  for (let id = 1; id < 1000; id += 3) if (index.search(data[id], 1)[0].id === id) found++;
  assert.ok(found >= 0.98 * 333, `found ${found} of 333`);
});

Deno.test("hnsw: deleting and re-adding 10% keeps recall within 0.01 of a fresh build", () => {
  const n = 2000, dim = 32;
  const { index, data, rng } = build("l2", n, dim, 21);
  const queries = Array.from({ length: 200 }, () => rng.vector(dim));
  const fresh = build("l2", n, dim, 21).index;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < n / 10; i++) index.delete((i * 10 + round) % n);
    for (let i = 0; i < n / 10; i++) {
      const id = (i * 10 + round) % n;
      index.add(id, data[id]);
    }
  }
  assert.equal(index.count, n);
  const rFresh = recall(fresh, queries, 10, 32);
  const rChurned = recall(index, queries, 10, 32);
  assert.ok(rChurned >= rFresh - 0.01, `churned ${rChurned} vs fresh ${rFresh}`);
  // Compaction reclaimed the slots: churn did not grow the memory.
  assert.ok(
    index.memoryBytes <= fresh.memoryBytes * 1.05,
    `${index.memoryBytes} vs ${fresh.memoryBytes}`,
  );
});

Deno.test("hnsw: filtered search returns only allowed ids, by predicate or set", () => {
  const { index, data } = build("l2", 1000, 8, 4);
  const allow = new Set<number>([3, 50, 700, 999]);
  const hits = index.search(data[3], 4, { filter: allow, ef: 200 });
  assert.deepEqual(new Set(hits.map((h) => h.id)), allow);
  assert.equal(hits[0].id, 3);
  const even = index.search(data[5], 10, { filter: (id) => id % 2 === 0 });
  assert.equal(even.length, 10);
  assert.ok(even.every((h) => h.id % 2 === 0));
  assert.deepEqual(
    index.exactSearch(data[5], 3, { filter: allow }).map((h) => h.id).sort(),
    [...index.exactSearch(data[5], 3, { filter: allow }).map((h) => h.id)].sort(),
  );
});

Deno.test("hnsw: results are sorted nearest first and hold at most k", () => {
  const { index, rng } = build("dot", 300, 12, 8);
  const hits = index.search(rng.vector(12), 25, { ef: 50 });
  assert.equal(hits.length, 25);
  for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1].distance <= hits[i].distance);
  assert.equal(
    new HnswIndex({ dim: 2 }).search([1, 2], 3).length,
    0,
    "an empty index finds nothing",
  );
});

Deno.test("hnsw: bad input throws with the value named", () => {
  const index = new HnswIndex({ dim: 3 });
  index.add(1, [1, 2, 3]);
  assert.throws(() => index.add(2, [1, 2]), {
    name: "RangeError",
    message: /dimension 2; the index dimension is 3/,
  });
  assert.throws(() => index.add(2, [1, NaN, 3]), {
    name: "RangeError",
    message: /vector\[1\] is NaN/,
  });
  assert.throws(() => index.add(2, [1, 2, Infinity]), {
    name: "RangeError",
    message: /vector\[2\] is Infinity/,
  });
  assert.throws(() => index.add(2, []), { name: "RangeError", message: /vector is empty/ });
  assert.throws(() => index.add(-1, [1, 2, 3]), { name: "RangeError", message: /id -1/ });
  assert.throws(() => index.add(2 ** 32, [1, 2, 3]), {
    name: "RangeError",
    message: /id 4294967296/,
  });
  assert.throws(() => index.add(1.5, [1, 2, 3]), { name: "RangeError", message: /id 1.5/ });
  assert.throws(() => index.search([1, 2, 3], 0), { name: "RangeError", message: /k 0/ });
  assert.throws(() => index.search([1, 2, 3], -2), { name: "RangeError", message: /k -2/ });
  assert.throws(() => index.search([1, 2, 3], 10, { ef: 5 }), {
    name: "RangeError",
    message: /ef 5 must be at least k 10/,
  });
  assert.throws(() => index.search([1, 2], 1), {
    name: "RangeError",
    message: /query has dimension 2/,
  });
  assert.throws(() => index.search([1, 2, -Infinity], 1), {
    name: "RangeError",
    message: /query\[2\] is -Infinity/,
  });
  assert.throws(() => index.add(2, ["a", 2, 3] as unknown as number[]), {
    name: "TypeError",
    message: /vector\[0\] is not a number/,
  });
  assert.throws(() => new HnswIndex({ dim: 3, M: 1 }), { name: "RangeError", message: /M 1/ });
  assert.throws(() => new HnswIndex({ dim: 3, metric: "hamming" as Metric }), {
    name: "TypeError",
    message: /"hamming"/,
  });
  // Nothing was half-applied.
  assert.equal(index.count, 1);
});

Deno.test("hnsw: the index grows past its reserved capacity and past WASM pages", () => {
  const index = new HnswIndex({ dim: 64, capacity: 10 });
  const rng = new Rng(2);
  const data: Float32Array[] = [];
  for (let i = 0; i < 3000; i++) {
    data.push(rng.vector(64));
    index.add(i * 3, data[i]);
  }
  assert.equal(index.count, 3000);
  for (let i = 0; i < 3000; i += 250) {
    assert.deepEqual(index.get(i * 3), data[i]);
    assert.equal(index.search(data[i], 1, { ef: 50 })[0].id, i * 3);
  }
});

Deno.test("hnsw: builds are reproducible for a seed", () => {
  const a = build("l2", 400, 8, 99).index;
  const b = build("l2", 400, 8, 99);
  const q = b.rng.vector(8);
  assert.deepEqual(a.search(q, 10), b.index.search(q, 10));
});

Deno.test("hnsw: serialisation round trip gives identical results, deletions included", async () => {
  const { BinaryReader, BinaryWriter, BufferSink } = await import("../io/binary.ts");
  const { index, data, rng } = build("cosine", 800, 24, 31);
  for (let id = 0; id < 800; id += 5) index.delete(id);
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  index.writeTo(w);
  w.flush();
  const copy = HnswIndex.readFrom(new BinaryReader(sink.bytes()));
  assert.equal(copy.count, index.count);
  assert.deepEqual(copy.params, index.params);
  for (let i = 0; i < 50; i++) {
    const q = rng.vector(24);
    assert.deepEqual(copy.search(q, 10), index.search(q, 10));
  }
  assert.equal(copy.get(5), null);
  assert.deepEqual(copy.get(6), index.get(6));
  // Both go on identically after the load (same level generator state, same free slots).
  copy.add(5, data[5]);
  index.add(5, data[5]);
  const q = rng.vector(24);
  assert.deepEqual(copy.search(q, 10), index.search(q, 10));
  // A damaged header is refused with a clear error.
  const bytes = sink.bytes();
  bytes[0] ^= 0xff;
  assert.throws(() => HnswIndex.readFrom(new BinaryReader(bytes)), /magic/);
});

/** Brute-force filtered k nearest: live, allowed ids by the index's own distances. */
function bruteFiltered(
  index: HnswIndex,
  data: Float32Array[],
  live: (id: number) => boolean,
  allow: (id: number) => boolean,
  q: Float32Array,
  k: number,
): number[] {
  // exactSearch reports every live point's distance with the same kernel; filter it here,
  // independently of the index's own filter handling.
  const all = index.exactSearch(q, data.length);
  return all.filter((h) => live(h.id) && allow(h.id)).slice(0, k).map((h) => h.id);
}

Deno.test("hnsw: filtered search at high ef equals a brute-force filtered search", () => {
  // compactRatio 1 keeps the tombstones in the graph, so the walk has to pass through them.
  const rng = new Rng(77);
  const n = 400, dim = 8;
  const index = new HnswIndex({ dim, metric: "l2", M: 8, efConstruction: 100, compactRatio: 1 });
  const data: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    data.push(rng.vector(dim));
    index.add(i, data[i]);
  }
  const deleted = new Set<number>();
  for (let i = 0; i < n; i += 4) {
    index.delete(i);
    deleted.add(i);
  }
  assert.equal(index.deletedCount, deleted.size, "no compaction ran");
  const live = (id: number) => !deleted.has(id);
  // A sparse filter (~7% of ids): most of the graph is rejected, so the walk only reaches the
  // allowed points by going through nodes that never enter the results.
  const sparse = new Set<number>();
  for (let i = 0; i < n; i++) if (rng.next() < 0.07) sparse.add(i);
  const filters: [string, (id: number) => boolean, Parameters<HnswIndex["search"]>[2]][] = [
    ["odd ids", (id) => id % 2 === 1, { ef: 1000, filter: (id: number) => id % 2 === 1 }],
    ["sparse set", (id) => sparse.has(id), { ef: 1000, filter: sparse }],
  ];
  for (const [name, allow, options] of filters) {
    for (let t = 0; t < 30; t++) {
      const q = rng.vector(dim);
      const got = index.search(q, 10, options);
      const want = bruteFiltered(index, data, live, allow, q, 10);
      assert.deepEqual(got.map((h) => h.id), want, `${name}, query ${t}`);
      for (const h of got) assert.ok(live(h.id) && allow(h.id), `${name}: id ${h.id}`);
    }
  }
  // The same at high ef without a filter: the unified loop still finds the exact answer.
  for (let t = 0; t < 30; t++) {
    const q = rng.vector(dim);
    const got = index.search(q, 10, { ef: 1000 }).map((h) => h.id);
    assert.deepEqual(got, bruteFiltered(index, data, live, () => true, q, 10));
  }
});

Deno.test("hnsw: search results for a fixed seed are pinned (unfiltered and filtered)", () => {
  // A digest of the ids returned at a low ef, where the exact visiting order decides the
  // answer. Recorded before searchLayer and searchLayerFiltered became one loop; a change to
  // the walk that alters results shows up here. Update it only for a deliberate change.
  const { index, rng } = build("l2", 1500, 16, 123);
  for (let id = 0; id < 1500; id += 13) index.delete(id);
  // FNV-1a over the ids, one digest for unfiltered and one for filtered search.
  const digest = [0x811c9dc5, 0x811c9dc5];
  const mix = (which: number, id: number) => {
    digest[which] = Math.imul(digest[which] ^ id, 0x01000193) >>> 0;
  };
  for (let t = 0; t < 100; t++) {
    const q = rng.vector(16);
    for (const hit of index.search(q, 10, { ef: 12 })) mix(0, hit.id);
    for (const hit of index.search(q, 5, { ef: 8, filter: (id) => id % 3 === 0 })) mix(1, hit.id);
  }
  assert.deepEqual(digest.map((d) => d.toString(16)), ["ebc0db00", "5699d417"]);
});

/** Exact filtered top-k ids by a plain scan of exactSearch's full ranking. */
function exactFilteredIds(
  index: HnswIndex,
  q: Float32Array,
  k: number,
  allow: (id: number) => boolean,
) {
  return index.exactSearch(q, index.count).filter((h) => allow(h.id)).slice(0, k).map((h) => h.id);
}

Deno.test("hnsw filteredSearch: only matching live points, by id list or test, in every plan", () => {
  const { index, rng } = build("l2", 1200, 16, 5);
  for (let id = 0; id < 1200; id += 7) index.delete(id);
  const allow = (id: number) => id % 3 === 0;
  const ids = Uint32Array.from({ length: 400 }, (_, i) => i * 3);
  for (const exactMax of [0, 1 << 20, undefined]) {
    for (let t = 0; t < 20; t++) {
      const q = rng.vector(16);
      for (const filter of [{ ids }, { test: allow }, { test: allow, selectivity: 1 / 3 }]) {
        const hits = index.filteredSearch(q, 10, filter, { ef: 64, exactMax });
        assert.equal(hits.length, 10);
        for (const h of hits) {
          assert.ok(allow(h.id) && index.has(h.id), `id ${h.id} (plan ${index.lastFilterPlan})`);
        }
        for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1].distance <= hits[i].distance);
      }
    }
  }
});

Deno.test("hnsw filteredSearch: the exact plan equals exactSearch with the filter", () => {
  const { index, rng } = build("cosine", 1500, 16, 9);
  for (let id = 1; id < 1500; id += 10) index.delete(id);
  const ids = Uint32Array.from({ length: 150 }, (_, i) => i * 10 + 1 + (i % 2)); // half deleted
  const set = new Set(ids);
  for (let t = 0; t < 20; t++) {
    const q = rng.vector(16);
    const got = index.filteredSearch(q, 10, { ids, count: ids.length });
    assert.equal(index.lastFilterPlan, "exact");
    assert.deepEqual(got, index.exactSearch(q, 10, { filter: set }));
    const byTest = index.filteredSearch(q, 10, { test: (id) => set.has(id), selectivity: 0.05 });
    assert.equal(index.lastFilterPlan, "exact");
    assert.deepEqual(byTest, index.exactSearch(q, 10, { filter: set }));
  }
  // `count` limits the list; a repeated id is scored once.
  const q = rng.vector(16);
  const dup = Uint32Array.from([2, 2, 12, 12, 22, 99999]);
  assert.deepEqual(
    index.filteredSearch(q, 10, { ids: dup, count: 4 }).map((h) => h.id).sort((a, b) => a - b),
    [2, 12],
  );
});

Deno.test("hnsw filteredSearch: recall stays high where post-filtering would fail", () => {
  const n = 4000, dim = 16;
  const { index, rng } = build("l2", n, dim, 31);
  const attr = Uint32Array.from({ length: n }, () => rng.int(1000));
  const cases: [string, number, boolean][] = [["50%", 500, false], ["5%", 50, false], [
    "0.5%",
    5,
    true,
  ]];
  for (const [name, below, asIds] of cases) {
    const allow = (id: number) => attr[id] < below;
    const ids = Uint32Array.from({ length: n }, (_, i) => i).filter(allow);
    const filter = asIds ? { ids } : { test: allow };
    let hits = 0, postHits = 0, want = 0;
    for (let t = 0; t < 40; t++) {
      const q = rng.vector(dim);
      const truth = new Set(exactFilteredIds(index, q, 10, allow));
      want += truth.size;
      for (const h of index.filteredSearch(q, 10, filter, { ef: 64 })) if (truth.has(h.id)) hits++;
      // Plain post-filtering of an unfiltered search at the same ef, for contrast.
      for (const h of index.search(q, 64, { ef: 64 })) {
        if (allow(h.id) && truth.has(h.id)) postHits++;
      }
    }
    const recall = hits / want;
    assert.ok(recall >= 0.9, `${name}: recall ${recall} (plan ${index.lastFilterPlan})`);
    if (name === "0.5%") assert.ok(postHits / want < 0.5, `post-filtering: ${postHits / want}`);
  }
});

Deno.test("hnsw filteredSearch: the graph walks keep recall at 50% and 5% when forced", () => {
  const n = 4000, dim = 16;
  const { index, rng } = build("l2", n, dim, 47);
  for (const [below, plan] of [[500, "graph"], [50, "graph-2hop"]] as const) {
    const allow = (id: number) => (id * 2654435761 >>> 0) % 1000 < below;
    let hits = 0, want = 0;
    for (let t = 0; t < 40; t++) {
      const q = rng.vector(dim);
      const truth = new Set(exactFilteredIds(index, q, 10, allow));
      want += truth.size;
      const got = index.filteredSearch(q, 10, { test: allow }, { ef: 80, exactMax: 0 });
      assert.equal(index.lastFilterPlan, plan);
      for (const h of got) {
        assert.ok(allow(h.id));
        if (truth.has(h.id)) hits++;
      }
    }
    assert.ok(hits / want >= 0.9, `${plan}: recall ${hits / want}`);
  }
});

Deno.test("hnsw filteredSearch: empty matches, empty index, and bad filters", () => {
  const empty = new HnswIndex({ dim: 4 });
  assert.deepEqual(empty.filteredSearch([0, 0, 0, 1], 3, { test: () => true }), []);
  const { index, rng } = build("l2", 300, 4, 3);
  const q = rng.vector(4);
  assert.deepEqual(index.filteredSearch(q, 5, { ids: new Uint32Array(0) }), []);
  assert.equal(index.lastFilterPlan, "empty");
  assert.deepEqual(index.filteredSearch(q, 5, { ids: Uint32Array.of(5000, 6000) }), []);
  for (const exactMax of [0, undefined]) {
    assert.deepEqual(index.filteredSearch(q, 5, { test: () => false }, { exactMax }), []);
  }
  // Deleted points never come back, even when the filter names only them.
  for (const id of [10, 11, 12]) index.delete(id);
  assert.deepEqual(index.filteredSearch(q, 5, { ids: Uint32Array.of(10, 11, 12) }), []);
  assert.deepEqual(
    index.filteredSearch(q, 5, { test: (id) => id >= 10 && id <= 12 }, { exactMax: 0 }),
    [],
  );
  assert.equal(index.slotOf(10), -1);
  assert.ok(index.slotOf(13) >= 0);
  assert.throws(
    () => index.filteredSearch(q, 5, { test: () => true, selectivity: 2 }),
    /selectivity 2/,
  );
  assert.throws(
    () => index.filteredSearch(q, 5, { ids: Uint32Array.of(1), count: 3 }),
    /filter count 3/,
  );
  assert.throws(() => index.filteredSearch(q, 5, { test: () => true }, { ef: 2 }), /ef 2/);
});
