import assert from "node:assert/strict";
import { createLayout, SharedGraph, STATE_LIVE } from "./shared_graph.ts";
import { CapacityError } from "./vector_store.ts";
import { HnswIndex } from "./hnsw.ts";

Deno.test("createLayout bounds threads and the 4 GiB of a wasm32 memory, naming the values", () => {
  const o = { dim: 4, metric: "l2" as const, M: 4, efConstruction: 10, maxCapacity: 100 };
  assert.throws(() => createLayout({ ...o, threads: 0 }), /threads 0 must be/);
  assert.throws(() => createLayout({ ...o, threads: 65 }), /threads 65 must be/);
  assert.throws(
    () => createLayout({ ...o, dim: 1000, maxCapacity: 2_000_000, threads: 1 }),
    (e: Error) => e instanceof CapacityError && e.message.includes("maxCapacity 2000000"),
  );
  const l = createLayout({ ...o, threads: 2 });
  assert.equal(l.memory.buffer instanceof SharedArrayBuffer, true);
  assert.throws(() => new SharedGraph(l, 2), /thread 2 must be/);
});

Deno.test("a handle made before growth sees slots added after it (views refreshed on demand)", () => {
  const t = new HnswIndex({ dim: 4, capacity: 8 });
  const reader = new SharedGraph(t.layout, 2);
  const viewBefore = reader.states.length;
  for (let i = 0; i < 300; i++) t.add(i, [i, i % 7, 0, 1]);
  assert.ok(t.layout.states.byteLength > viewBefore, "the buffers grew");
  reader.setQuery([250, 5, 0, 1]);
  assert.equal(reader.search(3, 50), 3);
  assert.equal(reader.hits.ids[0], 250);
  assert.equal(reader.hits.distances[0], 0);
  assert.ok(reader.states.length > viewBefore, "the reader's views were refreshed");
  assert.equal(reader.states[t.slotOf(250)], STATE_LIVE);
  // Both handles share one memory: a vector the owner wrote is read by the reader's kernels.
  assert.equal(reader.kernels.l2sq(reader.ptr(3), t.graph.ptr(4), 4), 1 + 1);
});
