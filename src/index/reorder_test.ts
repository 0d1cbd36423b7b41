import assert from "node:assert/strict";
import {
  checkPermutation,
  inversePermutation,
  isIdentity,
  localityOrder,
  permuteRows,
  REORDER_KINDS,
  type SlotGraph,
} from "./reorder.ts";
import { HnswIndex } from "./hnsw.ts";
import type { Metric } from "../kernels/kernels.ts";
import { Rng } from "../testing/random.ts";
import { BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";

/** A graph in the index's row layout from adjacency lists. */
function graph(adj: number[][], entry: number, free: number[] = []): SlotGraph {
  const rowWords = 1 + Math.max(1, ...adj.map((a) => a.length));
  const links = new Uint32Array(adj.length * rowWords);
  adj.forEach((a, s) => {
    links[s * rowWords] = a.length;
    a.forEach((t, j) => links[s * rowWords + 1 + j] = t);
  });
  return { n: adj.length, links, rowWords, entry, isFree: (s) => free.includes(s) };
}

Deno.test("reorder: bfs, dfs and rcm orders of a small graph; free slots last, unreached nodes kept", () => {
  // 0 -> 1, 2; 1 -> 3; 2 -> 4; 3, 4 -> nothing; 5 is free; 6 -> 0 is reached from nowhere.
  const g = graph([[1, 2], [3], [4], [], [], [], [0]], 0, [5]);
  assert.deepEqual(Array.from(localityOrder(g, "bfs")), [0, 1, 2, 3, 4, 6, 5]);
  assert.deepEqual(Array.from(localityOrder(g, "dfs")), [0, 1, 3, 2, 4, 6, 5]);
  // Degrees (out + in): 0:3, 1:2, 2:2, 3:1, 4:1, 6:1. RCM starts at the least-linked node (3,
  // then 4, then 6, whose walk reaches 0 and then 1 and 2 in degree order), then reverses.
  assert.deepEqual(Array.from(localityOrder(g, "rcm")), [2, 1, 0, 6, 4, 3, 5]);
  for (const kind of REORDER_KINDS) {
    const order = localityOrder(graph([], -1), kind);
    assert.equal(order.length, 0, kind);
  }
  assert.throws(() => localityOrder(g, "gorder" as "bfs"), /reorder kind "gorder"/);
});

Deno.test("reorder: permuteRows moves rows as a gather would; permutations are checked", () => {
  const rng = new Rng(3);
  const n = 500, width = 3, stride = 5, base = 7;
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const data = Float32Array.from({ length: base + n * stride }, () => rng.next());
  const want = data.slice();
  for (let i = 0; i < n; i++) {
    for (let w = 0; w < width; w++) {
      want[base + i * stride + w] = data[base + order[i] * stride + w];
    }
  }
  permuteRows(data, base, stride, width, order, new Uint8Array(n));
  assert.deepEqual(data, want);
  const inv = inversePermutation(order);
  for (let i = 0; i < n; i++) assert.equal(inv[order[i]], i);
  assert.throws(() => checkPermutation(Int32Array.from([0, 0]), 2), /repeated/);
  assert.throws(() => checkPermutation(Int32Array.from([0]), 2), /1 entries; the index has 2/);
});

function build(metric: Metric, n: number, dim: number, seed: number, int8: boolean) {
  const rng = new Rng(seed);
  const index = new HnswIndex({
    dim,
    metric,
    M: 8,
    efConstruction: 100,
    quantization: int8 ? "int8" : "none",
    trainSize: 400,
  });
  const data: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const v = rng.vector(dim);
    data.push(v);
    index.add(i, v);
  }
  return { index, data, rng };
}

function image(index: HnswIndex, order: Int32Array | null = null): Uint8Array {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  index.writeTo(w, order);
  w.flush();
  return sink.bytes();
}

const copyOf = (index: HnswIndex) => HnswIndex.readFrom(new BinaryReader(image(index)));

/** Mean distance in slots between a node and its layer-0 neighbours (the locality measure). */
function meanGap(index: HnswIndex, n: number): number {
  let sum = 0, count = 0;
  for (let id = 0; id < n; id++) {
    const s = index.slotOf(id);
    if (s < 0) continue;
    // Layer-0 neighbours found through the public search: a point's own links are private, so
    // use its 8 nearest points' slots, which the graph links to in the main.
    for (const h of index.search(index.get(id)!, 8, { ef: 16 })) {
      sum += Math.abs(index.slotOf(h.id) - s);
      count++;
    }
  }
  return sum / count;
}

for (const metric of ["l2", "cosine", "dot"] as const) {
  for (const int8 of [false, true]) {
    const name = `${metric}${int8 ? " int8" : ""}`;
    Deno.test(`reorder: every kind keeps search results, tombstones, free slots and ids (${name})`, () => {
      const n = 1200, dim = 16;
      const { index, data, rng } = build(metric, n, dim, 11, int8);
      // Free slots (a compaction), then tombstones that stay (below the compaction threshold).
      for (let id = 0; id < 150; id++) index.delete(id);
      index.compact();
      for (let id = 150; id < 190; id++) index.delete(id);
      assert.ok(index.deletedCount === 40, "tombstones remain");
      const queries = Array.from({ length: 60 }, () => rng.vector(dim));
      const want = queries.map((q) => index.search(q, 10, { ef: 40 }));
      const wantFiltered = queries.map((q) => index.search(q, 5, { filter: (id) => id % 3 === 0 }));
      const wantExact = index.exactSearch(queries[0], 10);
      for (const kind of REORDER_KINDS) {
        const ix = copyOf(index);
        ix.reorder(kind);
        queries.forEach((q, i) => {
          assert.deepEqual(ix.search(q, 10, { ef: 40 }), want[i], `${kind}: query ${i}`);
          assert.deepEqual(ix.search(q, 5, { filter: (id) => id % 3 === 0 }), wantFiltered[i]);
        });
        assert.deepEqual(ix.exactSearch(queries[0], 10), wantExact);
        assert.equal(ix.count, index.count);
        assert.equal(ix.deletedCount, 40);
        for (let id = 0; id < n; id++) {
          assert.equal(ix.has(id), id >= 190, `${kind}: has(${id})`);
          if (id >= 190) assert.deepEqual(ix.get(id), index.get(id));
        }
        // The reordered index keeps working: inserts (into freed slots first), deletes, upserts.
        const fresh = rng.vector(dim);
        ix.add(100_000, fresh);
        assert.equal(ix.search(fresh, 1)[0].id, 100_000);
        ix.add(500, data[501]);
        assert.equal(ix.search(data[501], 2).some((h) => h.id === 500), true);
        assert.equal(ix.delete(700), true);
        assert.equal(ix.search(data[700], 10).some((h) => h.id === 700), false);
        // And it saves and loads like any other.
        const back = copyOf(ix);
        assert.deepEqual(back.search(queries[1], 10), ix.search(queries[1], 10));
      }
    });
  }
}

Deno.test("reorder: an image written in an order equals the index reordered in place, and loads the same graph", () => {
  for (const int8 of [false, true]) {
    const { index, rng } = build("l2", 900, 12, 5, int8);
    for (let id = 0; id < 120; id++) index.delete(id);
    index.compact();
    for (let id = 120; id < 140; id++) index.delete(id);
    const order = index.localityOrder("bfs");
    const ordered = image(index, order);
    const inPlace = copyOf(index);
    inPlace.permuteSlots(order);
    assert.deepEqual(ordered, image(inPlace), `int8 ${int8}`);
    const loaded = HnswIndex.readFrom(new BinaryReader(ordered));
    // Loaded in that order, the index computes the identity again: its next image is the same.
    assert.ok(isIdentity(loaded.localityOrder("bfs")), `int8 ${int8}: identity after a load`);
    assert.deepEqual(image(loaded, loaded.localityOrder("bfs")), ordered);
    for (const kind of ["dfs", "groups"] as const) {
      const again = HnswIndex.readFrom(new BinaryReader(image(index, index.localityOrder(kind))));
      assert.ok(isIdentity(again.localityOrder(kind)), `${kind}: identity after a load`);
    }
    for (let t = 0; t < 30; t++) {
      const q = rng.vector(12);
      assert.deepEqual(loaded.search(q, 10), index.search(q, 10));
    }
    assert.throws(() => image(index, order.subarray(1)), /entries; the index has 900 slots/);
  }
});

Deno.test("reorder: bfs puts graph neighbours nearer in slot order than insertion order does", () => {
  // Points on a few clusters inserted interleaved, so insertion order scatters neighbours.
  const rng = new Rng(9);
  const dim = 8, n = 2000;
  const centres = Array.from({ length: 20 }, () => rng.vector(dim));
  const index = new HnswIndex({ dim, metric: "l2", M: 8, efConstruction: 64 });
  for (let i = 0; i < n; i++) {
    const c = centres[i % 20];
    index.add(i, c.map((x) => x + 0.05 * (rng.next() - 0.5)));
  }
  const before = meanGap(index, n);
  index.reorder("bfs");
  const after = meanGap(index, n);
  assert.ok(after < before / 2, `mean neighbour gap ${after} after, ${before} before`);
});
