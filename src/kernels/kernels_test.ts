import assert from "node:assert/strict";
import {
  createSharedMemory,
  instantiateKernels,
  instantiateSharedKernels,
  metricKernels,
  parseMetric,
} from "./kernels.ts";
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

Deno.test("kernels: q8_dot matches a scalar reference for n 0..300, unaligned, extreme values", () => {
  const k = instantiateKernels();
  const rng = new Rng(13);
  k.memory.grow(1);
  const base = Math.ceil(k.heap_base() / 16) * 16;
  for (let n = 0; n <= 300; n++) {
    const u8 = new Uint8Array(k.memory.buffer);
    const dv = new DataView(k.memory.buffer);
    // Weights at an even but not 16-aligned address, codes at an odd one.
    const pq = base + 2, pv = base + 2 * n + 2 + 17;
    let ref = 0;
    for (let i = 0; i < n; i++) {
      // Every few rows take the extremes: code 255 times weight -32768 / 32767.
      const extreme = n % 7 === 0;
      const c = extreme ? 255 : Math.floor(rng.next() * 256);
      const w = extreme ? (i % 2 === 0 ? -32768 : 32767) : Math.floor(rng.next() * 65536) - 32768;
      u8[pv + i] = c;
      dv.setInt16(pq + 2 * i, w, true);
      ref += c * w;
    }
    // The host keeps |sum| < 2^31; larger n at the extremes would overflow by design.
    if (Math.abs(ref) >= 2 ** 31) continue;
    assert.equal(k.q8_dot(pq, pv, n), ref, `q8_dot n ${n}`);
  }
});

Deno.test("kernels: q8_slots applies the affine map with the row's norm to every listed slot", () => {
  const k = instantiateKernels();
  const rng = new Rng(17);
  k.memory.grow(4);
  const dim = 48;
  const rowBytes = 64; // 48 code bytes, then the f32 norm at byte 48
  const q = Math.ceil(k.heap_base() / 16) * 16;
  const slotsPtr = q + dim * 2;
  const outPtr = slotsPtr + 64 * 4;
  const rows = outPtr + 64 * 4;
  const dv = new DataView(k.memory.buffer);
  const weights: number[] = [];
  for (let i = 0; i < dim; i++) {
    weights.push(Math.floor(rng.next() * 2001) - 1000);
    dv.setInt16(q + 2 * i, weights[i], true);
  }
  const sums: number[] = [], norms: number[] = [];
  for (let r = 0; r < 20; r++) {
    let s = 0;
    for (let i = 0; i < dim; i++) {
      const c = Math.floor(rng.next() * 256);
      dv.setUint8(rows + r * rowBytes + i, c);
      s += c * weights[i];
    }
    sums.push(s);
    norms.push(Math.fround(rng.next() * 10));
    dv.setFloat32(rows + r * rowBytes + dim, norms[r], true);
  }
  const slots = [19, 0, 7, 7, 3];
  slots.forEach((s, i) => dv.setUint32(slotsPtr + 4 * i, s, true));
  for (const [a, b, c] of [[1, -0.001, 0], [2.5, 0.5, 1]]) {
    k.q8_set(a, b, c, dim);
    k.q8_slots(q, rows, rowBytes, slotsPtr, slots.length, outPtr, dim);
    const out = new Float32Array(k.memory.buffer, outPtr, slots.length);
    slots.forEach((s, i) => {
      const want = a + b * sums[s] + c * norms[s];
      assert.ok(Math.abs(out[i] - want) <= 1e-5 * Math.max(1, Math.abs(want)), `slot ${s}`);
    });
  }
});

Deno.test("shared kernels: two instances over one shared memory see each other's data, also after growth", () => {
  const memory = createSharedMemory(2, 64);
  assert.equal(memory.buffer instanceof SharedArrayBuffer, true);
  const a = instantiateSharedKernels(memory);
  const b = instantiateSharedKernels(memory);
  const base = 4096;
  new Float32Array(memory.buffer).set([1, 2, 3, 0, 1, 2, 4, 0], base / 4);
  assert.equal(a.l2sq(base, base + 16, 4), 1);
  assert.equal(b.l2sq(base, base + 16, 4), 1);
  // Grow in place: old addresses keep their data; the new pages are usable by both.
  memory.grow(4);
  const far = 5 * 65536;
  new Float32Array(memory.buffer).set([3, 4, 0, 0], far / 4);
  assert.equal(b.l2sq(base, far, 4), (3 - 1) ** 2 + (4 - 2) ** 2 + 9);
  assert.equal(a.ip(far, far, 4), 1 - 25);
  assert.throws(() => createSharedMemory(2, 70000), RangeError);
});
