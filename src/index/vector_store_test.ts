import assert from "node:assert/strict";
import { CapacityError, VectorStore } from "./vector_store.ts";
import { Rng } from "../testing/random.ts";

Deno.test("vector store: growth past many pages keeps data and replaces stale views", () => {
  const dim = 100;
  const s = new VectorStore(dim, "l2");
  const rng = new Rng(3);
  const kept: Float32Array[] = [];
  let oldView = s.f32;
  let grows = 0;
  for (let slot = 0; slot < 3000; slot++) {
    s.reserve(slot + 1);
    if (s.f32 !== oldView) {
      grows++;
      // The old view was detached by memory.grow: it must not be the one the store hands out.
      assert.equal(oldView.byteLength, 0, "memory.grow detaches the previous buffer");
      oldView = s.f32;
    }
    assert.equal(s.f32.buffer, s.kernels.memory.buffer, "f32 view is over the live buffer");
    assert.equal(s.u32.buffer, s.kernels.memory.buffer, "u32 view is over the live buffer");
    const v = rng.vector(dim);
    kept.push(v);
    s.write(slot, v);
  }
  assert.ok(grows >= 4, `memory grew ${grows} times; the test needs several page growths`);
  assert.ok(s.memoryBytes > 3000 * dim * 4, "memory holds every vector");
  for (let slot = 0; slot < 3000; slot += 97) {
    assert.deepEqual(s.read(slot), kept[slot]);
  }
  // Kernels read the same data through the grown memory.
  let want = 0;
  for (let i = 0; i < dim; i++) want += (kept[5][i] - kept[2999][i]) ** 2;
  assert.ok(Math.abs(s.distanceBetween(5, 2999) - want) <= 1e-5 * want);
});

Deno.test("vector store: batch distances to slots land in the out buffer", () => {
  const s = new VectorStore(7, "l2");
  s.reserve(10);
  for (let i = 0; i < 10; i++) s.write(i, [i, 0, 0, 0, 0, 0, 0]);
  s.setQuery([0, 0, 0, 0, 0, 0, 0]);
  const slots = [9, 3, 0];
  slots.forEach((x, j) => (s.u32[s.slotsIdx + j] = x));
  s.distancesToSlots(s.queryPtr, 3);
  assert.deepEqual(Array.from(s.f32.slice(s.outIdx, s.outIdx + 3)), [81, 9, 0]);
});

Deno.test("vector store: cosine vectors are stored normalised; padding is zero", () => {
  const s = new VectorStore(3, "cosine");
  s.reserve(1);
  s.write(0, [3, 0, 4]);
  assert.deepEqual(Array.from(s.read(0)), [0.6000000238418579, 0, 0.800000011920929]);
  assert.equal(s.stride, 4);
  assert.equal(s.f32[(s.ptr(0) >>> 2) + 3], 0);
});

Deno.test("vector store: bad dimensions and slots are refused with the value named", () => {
  assert.throws(() => new VectorStore(0, "l2"), { name: "RangeError", message: /Dimension 0/ });
  const s = new VectorStore(4, "l2");
  assert.throws(() => s.write(s.capacity + 5, [1, 2, 3, 4]), /Slot \d+ is outside/);
  assert.throws(() => s.reserve(2 ** 31), CapacityError);
});
