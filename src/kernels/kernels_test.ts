import assert from "node:assert/strict";
import { instantiateKernels, metricKernels, parseMetric } from "./kernels.ts";
import { Rng } from "../testing/random.ts";

// Scalar references in f64. For the inner product the error is measured against the sum of
// |a_i b_i| (the scale of the terms), since cancellation can make the exact result ~0.
function refL2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s;
}
function refDot(a: Float32Array, b: Float32Array): { dot: number; scale: number } {
  let s = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    s += a[i] * b[i];
    scale += Math.abs(a[i] * b[i]);
  }
  return { dot: s, scale };
}
function refCos(a: Float32Array, b: Float32Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return 1 - ab / Math.sqrt(aa * bb);
}
const TOL = 1e-5;

Deno.test("kernels: every single-pair kernel matches a scalar reference for dims 1..1100", () => {
  const k = instantiateKernels();
  const rng = new Rng(7);
  const base = Math.ceil(k.heap_base() / 16) * 16;
  k.memory.grow(1);
  for (let dim = 1; dim <= 1100; dim++) {
    const f32 = new Float32Array(k.memory.buffer);
    const a = rng.vector(dim);
    const b = rng.vector(dim);
    // Unaligned second operand on purpose (offset by 4 bytes) to exercise v128 loads anywhere.
    const pa = base, pb = base + dim * 4 + 4;
    f32.set(a, pa / 4);
    f32.set(b, pb / 4);
    const l2 = refL2(a, b);
    assert.ok(Math.abs(k.l2sq(pa, pb, dim) - l2) <= TOL * l2, `l2sq dim ${dim}`);
    const { dot, scale } = refDot(a, b);
    assert.ok(Math.abs(k.dot(pa, pb, dim) - dot) <= TOL * scale, `dot dim ${dim}`);
    assert.ok(Math.abs(k.ip(pa, pb, dim) - (1 - dot)) <= TOL * Math.max(1, scale), `ip dim ${dim}`);
    assert.ok(Math.abs(k.cosine(pa, pb, dim) - refCos(a, b)) <= TOL, `cosine dim ${dim}`);
  }
});

Deno.test("kernels: batch forms over slots and ranges match the pair kernels", () => {
  const k = instantiateKernels();
  const rng = new Rng(11);
  k.memory.grow(64);
  for (const dim of [1, 3, 4, 5, 15, 16, 17, 31, 100, 128, 129, 1100]) {
    const n = 37;
    const stride = dim * 4;
    const q = Math.ceil(k.heap_base() / 16) * 16;
    const slots = q + stride;
    const out = slots + 4 * n;
    const vecs = out + 4 * n;
    const f32 = new Float32Array(k.memory.buffer);
    const u32 = new Uint32Array(k.memory.buffer);
    f32.set(rng.vector(dim), q / 4);
    for (let i = 0; i < n; i++) f32.set(rng.vector(dim), (vecs + i * stride) / 4);
    const order = Array.from({ length: n }, (_, i) => (i * 7) % n);
    for (let i = 0; i < n; i++) u32[slots / 4 + i] = order[i];
    for (const metric of ["l2", "cosine", "dot"] as const) {
      const mk = metricKernels(k, metric);
      mk.slots(q, vecs, stride, slots, n, out, dim);
      for (let i = 0; i < n; i++) {
        const want = mk.pair(q, vecs + order[i] * stride, dim);
        assert.equal(f32[out / 4 + i], Math.fround(want), `${metric} slots dim ${dim} i ${i}`);
      }
      mk.range(q, vecs, stride, 5, n - 5, out, dim);
      for (let i = 0; i < n - 5; i++) {
        const want = mk.pair(q, vecs + (5 + i) * stride, dim);
        assert.equal(f32[out / 4 + i], Math.fround(want), `${metric} range dim ${dim} i ${i}`);
      }
    }
    // The cosine batch kernel agrees with the scalar reference too.
    k.cosine_slots(q, vecs, stride, slots, n, out, dim);
    const qv = f32.slice(q / 4, q / 4 + dim);
    for (let i = 0; i < n; i++) {
      const v = f32.slice((vecs + order[i] * stride) / 4, (vecs + order[i] * stride) / 4 + dim);
      assert.ok(Math.abs(f32[out / 4 + i] - refCos(qv, v)) <= TOL, `cosine_slots dim ${dim}`);
    }
  }
});

Deno.test("kernels: normalize scales to unit length and reports the old norm", () => {
  const k = instantiateKernels();
  const p = Math.ceil(k.heap_base() / 16) * 16;
  const f32 = new Float32Array(k.memory.buffer);
  f32.set([3, 4, 0, 0, 0], p / 4);
  assert.equal(k.normalize(p, 5), 5);
  assert.deepEqual(Array.from(f32.slice(p / 4, p / 4 + 5)), [
    0.6000000238418579,
    0.800000011920929,
    0,
    0,
    0,
  ]);
  f32.set([0, 0, 0], p / 4);
  assert.equal(k.normalize(p, 3), 0);
  assert.equal(k.cosine(p, p, 3), 1, "zero vectors have no direction: distance 1");
});

Deno.test("kernels: parseMetric accepts aliases and quotes a bad name", () => {
  assert.equal(parseMetric("Euclidean"), "l2");
  assert.equal(parseMetric("ip"), "dot");
  assert.equal(parseMetric("cosine"), "cosine");
  assert.throws(() => parseMetric("hamming"), { name: "TypeError", message: /"hamming"/ });
});

Deno.test("kernels: each instance owns its own memory", () => {
  const a = instantiateKernels();
  const b = instantiateKernels();
  assert.notEqual(a.memory, b.memory);
});
