import assert from "node:assert/strict";
import { HnswIndex } from "./hnsw.ts";
import type { Metric } from "../kernels/kernels.ts";
import { Rng } from "../testing/random.ts";
import { BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";

function build(metric: Metric, n: number, dim: number, seed: number, int8: boolean) {
  const rng = new Rng(seed);
  const index = new HnswIndex({
    dim,
    metric,
    M: 16,
    efConstruction: 200,
    quantization: int8 ? "int8" : "none",
    trainSize: 500,
  });
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

function image(index: HnswIndex): Uint8Array {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  index.writeTo(w);
  w.flush();
  return sink.bytes();
}

for (const metric of ["l2", "cosine", "dot"] as const) {
  Deno.test(`hnsw int8: recall@10 within 0.02 of float at ef=64 on 2,000 x 32 (${metric})`, () => {
    const f = build(metric, 2000, 32, 17, false);
    const q8 = build(metric, 2000, 32, 17, true);
    assert.notEqual(q8.index.codes, null, "trained after 500 points");
    const queries = Array.from({ length: 200 }, () => f.rng.vector(32));
    const rf = recall(f.index, queries, 10, 64);
    const rq = recall(q8.index, queries, 10, 64);
    assert.ok(rq >= rf - 0.02 && rq >= 0.93, `int8 recall ${rq}, float ${rf}`);
  });
}

Deno.test("hnsw int8: same graph as float, and the same hits with exact distances after rescore", () => {
  // The build walks the floats either way, so both graphs are the same; with a wide
  // re-ranking the int8 search returns the float search's ids and distances.
  const f = build("l2", 1500, 24, 23, false);
  const q8 = build("l2", 1500, 24, 23, true);
  let same = 0;
  for (let t = 0; t < 100; t++) {
    const q = f.rng.vector(24);
    const a = f.index.search(q, 10, { ef: 100 });
    const b = q8.index.search(q, 10, { ef: 100, rescore: 10 });
    if (JSON.stringify(a) === JSON.stringify(b)) same++;
    // Distances are exact floats, not approximations: each equals the float distance.
    for (const h of b) {
      const v = q8.index.get(h.id)!;
      let d = 0;
      for (let i = 0; i < 24; i++) d += (v[i] - q[i]) ** 2;
      assert.ok(Math.abs(h.distance - Math.sqrt(d)) <= 1e-5 * Math.max(1, h.distance));
    }
  }
  assert.ok(same >= 97, `identical results for ${same} / 100 queries`);
  // Each stored point is its own nearest neighbour.
  for (let id = 0; id < 1500; id += 37) {
    assert.equal(q8.index.search(q8.data[id], 1)[0].id, id);
  }
});

Deno.test("hnsw int8: points inserted before and after training are encoded; deletes and upserts follow", () => {
  const { index, data, rng } = build("cosine", 800, 16, 41, true);
  const codes = index.codes!;
  assert.ok(codes !== null);
  // Point 0 came before training (encoded then), point 799 after (encoded on insert).
  for (const id of [0, 799]) {
    const c = codes.codes(index.slotOf(id));
    assert.ok(c.some((x) => x !== 0), `id ${id} has codes`);
  }
  // An upsert re-encodes: the moved point is found at its new place.
  const moved = rng.vector(16);
  index.add(3, moved);
  assert.equal(index.search(moved, 1)[0].id, 3);
  for (let id = 0; id < 800; id += 2) index.delete(id);
  for (let t = 0; t < 20; t++) {
    for (const h of index.search(rng.vector(16), 10)) assert.equal(h.id % 2, 1, "deleted id");
  }
  // Filters apply to the int8 walk as to the float one.
  const hits = index.search(data[7], 5, { filter: (id) => id % 3 === 0 });
  assert.ok(hits.length === 5 && hits.every((h) => h.id % 3 === 0));
});

Deno.test("hnsw int8: the search before training uses floats; trainQuantizer trains on demand", () => {
  const index = new HnswIndex({ dim: 8, quantization: "int8", trainSize: 1000 });
  const rng = new Rng(2);
  for (let i = 0; i < 100; i++) index.add(i, rng.vector(8));
  assert.equal(index.codes, null);
  const q = rng.vector(8);
  const before = index.search(q, 5);
  index.trainQuantizer();
  assert.ok(index.codes !== null);
  assert.deepEqual(index.search(q, 5, { ef: 100, rescore: 20 }), before);
  assert.equal(index.codeBytesPerVector, 16);
  assert.throws(() => new HnswIndex({ dim: 8 }).trainQuantizer(), /no quantization/);
  assert.throws(() => new HnswIndex({ dim: 8, quantization: "int8" }).trainQuantizer(), /no live/);
  assert.throws(() => index.search(q, 5, { rescore: 0 }), /rescore 0/);
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new HnswIndex({ dim: 8, quantization: "int4" as any }),
    /quantization "int4"/,
  );
});

Deno.test("hnsw int8: image round trip keeps codes, ranges and results; float images stay version 1", () => {
  const { index, data, rng } = build("dot", 900, 20, 43, true);
  for (let id = 0; id < 900; id += 7) index.delete(id);
  const bytes = image(index);
  assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint32(4, true), 2);
  const copy = HnswIndex.readFrom(new BinaryReader(bytes));
  assert.equal(copy.quantization, "int8");
  assert.deepEqual(copy.params, index.params);
  assert.deepEqual(copy.codes!.quantizer.lo, index.codes!.quantizer.lo);
  assert.deepEqual(copy.codes!.codes(copy.slotOf(8)), index.codes!.codes(index.slotOf(8)));
  for (let t = 0; t < 30; t++) {
    const q = rng.vector(20);
    assert.deepEqual(copy.search(q, 10), index.search(q, 10));
  }
  copy.add(7, data[7]);
  index.add(7, data[7]);
  const q = rng.vector(20);
  assert.deepEqual(copy.search(q, 10), index.search(q, 10));
  // Not yet trained: the section says so, and training happens after the load.
  const small = new HnswIndex({ dim: 4, quantization: "int8", trainSize: 50, rescore: 7 });
  for (let i = 0; i < 10; i++) small.add(i, rng.vector(4));
  const s2 = HnswIndex.readFrom(new BinaryReader(image(small)));
  assert.equal(s2.codes, null);
  assert.equal(s2.rescore, 7);
  assert.equal(s2.trainSize, 50);
  for (let i = 10; i < 50; i++) s2.add(i, rng.vector(4));
  assert.notEqual(s2.codes, null);
  // A float index writes the version-1 image, byte for byte the format older builds wrote.
  const f = build("l2", 300, 8, 5, false);
  const fb = image(f.index);
  assert.equal(new DataView(fb.buffer, fb.byteOffset).getUint32(4, true), 1);
  const fc = HnswIndex.readFrom(new BinaryReader(fb));
  assert.equal(fc.quantization, "none");
  assert.equal(fc.codes, null);
  // A damaged quantization section is refused.
  const bad = bytes.slice();
  const codeAt = bad.length - (4 + 900 * 32) - 2 * (4 + 20 * 4) - 1 - 4 - 4 - 1;
  assert.equal(bad[codeAt], 1);
  bad[codeAt] = 9;
  assert.throws(() => HnswIndex.readFrom(new BinaryReader(bad)), /quantization code 9/);
});

Deno.test("hnsw int8: the WASM walk over the mirrored graph equals the JS walk, through deletes, compaction, upserts and a load", () => {
  const { index, data, rng } = build("l2", 1200, 16, 47, true);
  const check = (ix: HnswIndex, label: string) => {
    for (let t = 0; t < 40; t++) {
      const q = rng.vector(16);
      // A filter that passes everything takes the JS walk (same codes, same graph).
      const wasm = ix.search(q, 10, { ef: 40 });
      const js = ix.search(q, 10, { ef: 40, filter: () => true });
      assert.deepEqual(wasm, js, `${label}: query ${t}`);
    }
  };
  check(index, "fresh");
  // Tombstones (still walked, never returned), then past the compaction threshold.
  for (let id = 0; id < 60; id++) index.delete(id);
  check(index, "tombstones");
  for (let id = 60; id < 200; id++) index.delete(id);
  index.compact();
  assert.equal(index.deletedCount, 0, "compacted");
  check(index, "compacted");
  // Freed slots are reused by new points and upserts move existing ones.
  for (let id = 0; id < 150; id++) index.add(id, data[id]);
  for (let id = 500; id < 520; id++) index.add(id, rng.vector(16));
  check(index, "reused slots");
  const copy = HnswIndex.readFrom(new BinaryReader(image(index)));
  check(copy, "loaded");
  // Growth past the reserved capacity moves the mirrored regions.
  for (let id = 2000; id < 4000; id++) copy.add(id, rng.vector(16));
  check(copy, "grown");
});
