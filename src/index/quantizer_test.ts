import assert from "node:assert/strict";
import {
  CodeStore,
  parseQuantization,
  ScalarQuantizer,
  UnknownQuantizationError,
} from "./quantizer.ts";
import { VectorStore } from "./vector_store.ts";
import { Rng } from "../testing/random.ts";

Deno.test("quantizer: encode/decode round trip is within half a step per dimension", () => {
  const rng = new Rng(3);
  const dim = 37, n = 500;
  const data = new Float32Array(n * dim);
  for (let i = 0; i < data.length; i++) data[i] = (rng.next() * 2 - 1) * (1 + (i % dim));
  const qz = ScalarQuantizer.train(data, n, dim, dim, 0);
  const codes = new Uint8Array(dim);
  const back = new Float32Array(dim);
  for (let p = 0; p < n; p++) {
    const norm = qz.encode(data, p * dim, codes, 0);
    qz.decode(codes, 0, back);
    let want = 0;
    for (let d = 0; d < dim; d++) {
      assert.ok(
        Math.abs(back[d] - data[p * dim + d]) <= qz.scale[d] / 2 + 1e-6,
        `point ${p} dim ${d}: ${back[d]} vs ${data[p * dim + d]}`,
      );
      want += back[d] * back[d];
    }
    assert.ok(Math.abs(norm - want) <= 1e-4 * want);
  }
  // With no clipping the extremes of each dimension map to codes 0 and 255.
  for (let d = 0; d < dim; d++) {
    let lo = Infinity, hi = -Infinity;
    for (let p = 0; p < n; p++) {
      lo = Math.min(lo, data[p * dim + d]);
      hi = Math.max(hi, data[p * dim + d]);
    }
    assert.equal(qz.lo[d], lo);
    assert.ok(Math.abs(qz.lo[d] + 255 * qz.scale[d] - hi) <= 1e-5 * Math.abs(hi) + 1e-6);
  }
});

Deno.test("quantizer: outliers are clipped out of the range, and values beyond it clip to 0/255", () => {
  const n = 1000;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = i / n; // 0 .. 0.999
  data[0] = -1000; // an outlier on each side
  data[1] = 1000;
  const qz = ScalarQuantizer.train(data, n, 1, 1, 0.01);
  assert.ok(qz.lo[0] > -1 && qz.lo[0] < 0.02, `lo ${qz.lo[0]}`);
  assert.ok(qz.lo[0] + 255 * qz.scale[0] < 1, `hi ${qz.lo[0] + 255 * qz.scale[0]}`);
  const c = new Uint8Array(1);
  qz.encode(new Float32Array([-1000]), 0, c, 0);
  assert.equal(c[0], 0);
  qz.encode(new Float32Array([1e9]), 0, c, 0);
  assert.equal(c[0], 255);
  // A constant dimension has scale 0 and decodes to its value.
  const flat = ScalarQuantizer.train(new Float32Array([2, 2, 2]), 3, 1, 1);
  assert.equal(flat.scale[0], 0);
  flat.encode(new Float32Array([5]), 0, c, 0);
  assert.equal(flat.decode(c, 0, new Float32Array(1))[0], 2);
  assert.throws(() => ScalarQuantizer.train(data, n, 1, 1, 0.5), /clip 0.5/);
  assert.throws(() => new ScalarQuantizer(new Float32Array([0]), new Float32Array([-1])), /range/);
});

Deno.test("quantizer: parseQuantization accepts none/int8 and quotes anything else", () => {
  assert.equal(parseQuantization(""), "none");
  assert.equal(parseQuantization("NONE"), "none");
  assert.equal(parseQuantization("Int8"), "int8");
  assert.throws(() => parseQuantization("int4"), UnknownQuantizationError);
  assert.throws(() => parseQuantization("binary"), /"binary"/);
});

for (const metric of ["l2", "cosine", "dot"] as const) {
  Deno.test(`quantizer: code distances track float distances (${metric}, dims 1..130)`, () => {
    const rng = new Rng(29);
    for (const dim of [1, 3, 16, 17, 100, 130]) {
      const n = 64;
      const fs = new VectorStore(dim, metric);
      fs.reserve(n);
      for (let s = 0; s < n; s++) fs.write(s, rng.vector(dim));
      const stored = new Float32Array(n * dim);
      for (let s = 0; s < n; s++) stored.set(fs.read(s), s * dim);
      const qz = ScalarQuantizer.train(stored, n, dim, dim, 0);
      const cs = new CodeStore(dim, metric, qz);
      cs.reserve(n);
      for (let s = 0; s < n; s++) cs.write(s, fs.f32, fs.ptr(s) >>> 2);
      const decoded = new Float32Array(dim);
      for (let t = 0; t < 5; t++) {
        fs.setQuery(rng.vector(dim));
        cs.setQuery(fs.f32, fs.queryIdx);
        for (let s = 0; s < n; s++) cs.u32[cs.slotsIdx + s] = s;
        cs.distancesToSlots(0, n);
        const q = fs.f32.subarray(fs.queryIdx, fs.queryIdx + dim);
        for (let s = 0; s < n; s++) {
          // Reference: the float distance to the decoded vector, computed in f64.
          qz.decode(cs.u8, cs.ptr(s), decoded);
          let ref = 0, mag = 0;
          for (let d = 0; d < dim; d++) {
            if (metric === "l2") ref += (q[d] - decoded[d]) ** 2;
            else ref += q[d] * decoded[d];
            mag += Math.abs(q[d]) * (Math.abs(decoded[d]) + Math.abs(q[d]));
          }
          if (metric !== "l2") ref = 1 - ref;
          const got = cs.f32[cs.outIdx + s];
          // Only the query weights' rounding (~2^-15 of the largest) separates the two.
          assert.ok(Math.abs(got - ref) <= 1e-3 * Math.max(1, mag), `${metric} dim ${dim}`);
          assert.ok(Math.abs(cs.distanceTo(0, s) - got) <= 1e-6 * Math.max(1, Math.abs(got)));
        }
      }
    }
  });
}

Deno.test("quantizer: code store rows survive growth and a copy through rows/loadRows", () => {
  const rng = new Rng(5);
  const dim = 100;
  const data = new Float32Array(3000 * dim);
  for (let i = 0; i < data.length; i++) data[i] = rng.next();
  const qz = ScalarQuantizer.train(data, 3000, dim, dim);
  const cs = new CodeStore(dim, "l2", qz);
  assert.equal(cs.rowBytes, 112);
  for (let s = 0; s < 3000; s++) {
    if (s >= cs.capacity) cs.reserve(Math.max(16, s * 2));
    cs.write(s, data, s * dim);
  }
  const first = cs.codes(0), last = cs.codes(2999);
  const other = new CodeStore(dim, "l2", qz);
  other.loadRows(cs.rows(3000), 3000);
  assert.deepEqual(other.codes(0), first);
  assert.deepEqual(other.codes(2999), last);
  assert.throws(() => other.loadRows(new Uint8Array(5), 1), /5 bytes/);
});
