// Distance kernels for the vector index, compiled to WebAssembly with 128-bit SIMD.
//
// Conventions shared with src/kernels/kernels.ts:
// - every pointer is a byte offset into this module's one linear memory;
// - vectors are f32; `dim` is the number of floats compared (any value >= 0; tails that are
//   not a multiple of the SIMD width are handled by a scalar loop);
// - "distances" are what the index orders by, smaller is closer:
//     l2sq    = sum (a_i - b_i)^2
//     ip      = 1 - sum a_i * b_i          (inner product as a distance, as hnswlib does)
//     cosine  = 1 - (a . b) / (|a| |b|)    (0 when either vector has zero norm: no direction)
// - the batch forms take a query, the base address and byte stride of a table of vectors, a
//   list of i32 slots (or a contiguous range) and write one f32 distance per slot to `out`.
//   One call computes a whole neighbour list, so the JS/WASM boundary is crossed once per
//   expanded node rather than once per distance.
//
// The module allocates nothing: the host owns the layout above `heap_base()`.

// ---- single-pair kernels ---------------------------------------------------------------

function dotRaw(a: usize, b: usize, dim: i32): f32 {
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  let acc2 = f32x4.splat(0);
  let acc3 = f32x4.splat(0);
  let i = 0;
  // Four independent accumulators hide the latency of the adds.
  for (; i + 16 <= dim; i += 16) {
    const o = <usize> i << 2;
    acc0 = f32x4.add(acc0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    acc1 = f32x4.add(acc1, f32x4.mul(v128.load(a + o, 16), v128.load(b + o, 16)));
    acc2 = f32x4.add(acc2, f32x4.mul(v128.load(a + o, 32), v128.load(b + o, 32)));
    acc3 = f32x4.add(acc3, f32x4.mul(v128.load(a + o, 48), v128.load(b + o, 48)));
  }
  for (; i + 4 <= dim; i += 4) {
    const o = <usize> i << 2;
    acc0 = f32x4.add(acc0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
  }
  const s = f32x4.add(f32x4.add(acc0, acc1), f32x4.add(acc2, acc3));
  let sum: f32 = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) +
    f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; i < dim; i++) {
    const o = <usize> i << 2;
    sum += load<f32>(a + o) * load<f32>(b + o);
  }
  return sum;
}

function l2sqRaw(a: usize, b: usize, dim: i32): f32 {
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  let acc2 = f32x4.splat(0);
  let acc3 = f32x4.splat(0);
  let i = 0;
  for (; i + 16 <= dim; i += 16) {
    const o = <usize> i << 2;
    const d0 = f32x4.sub(v128.load(a + o), v128.load(b + o));
    const d1 = f32x4.sub(v128.load(a + o, 16), v128.load(b + o, 16));
    const d2 = f32x4.sub(v128.load(a + o, 32), v128.load(b + o, 32));
    const d3 = f32x4.sub(v128.load(a + o, 48), v128.load(b + o, 48));
    acc0 = f32x4.add(acc0, f32x4.mul(d0, d0));
    acc1 = f32x4.add(acc1, f32x4.mul(d1, d1));
    acc2 = f32x4.add(acc2, f32x4.mul(d2, d2));
    acc3 = f32x4.add(acc3, f32x4.mul(d3, d3));
  }
  for (; i + 4 <= dim; i += 4) {
    const o = <usize> i << 2;
    const d = f32x4.sub(v128.load(a + o), v128.load(b + o));
    acc0 = f32x4.add(acc0, f32x4.mul(d, d));
  }
  const s = f32x4.add(f32x4.add(acc0, acc1), f32x4.add(acc2, acc3));
  let sum: f32 = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) +
    f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; i < dim; i++) {
    const o = <usize> i << 2;
    const d = load<f32>(a + o) - load<f32>(b + o);
    sum += d * d;
  }
  return sum;
}

function cosineRaw(a: usize, b: usize, dim: i32): f32 {
  let ab = f32x4.splat(0);
  let aa = f32x4.splat(0);
  let bb = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= dim; i += 4) {
    const o = <usize> i << 2;
    const va = v128.load(a + o);
    const vb = v128.load(b + o);
    ab = f32x4.add(ab, f32x4.mul(va, vb));
    aa = f32x4.add(aa, f32x4.mul(va, va));
    bb = f32x4.add(bb, f32x4.mul(vb, vb));
  }
  let sab: f32 = f32x4.extract_lane(ab, 0) + f32x4.extract_lane(ab, 1) +
    f32x4.extract_lane(ab, 2) + f32x4.extract_lane(ab, 3);
  let saa: f32 = f32x4.extract_lane(aa, 0) + f32x4.extract_lane(aa, 1) +
    f32x4.extract_lane(aa, 2) + f32x4.extract_lane(aa, 3);
  let sbb: f32 = f32x4.extract_lane(bb, 0) + f32x4.extract_lane(bb, 1) +
    f32x4.extract_lane(bb, 2) + f32x4.extract_lane(bb, 3);
  for (; i < dim; i++) {
    const o = <usize> i << 2;
    const x = load<f32>(a + o);
    const y = load<f32>(b + o);
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  const denom = Mathf.sqrt(saa * sbb);
  if (denom == 0) return 1;
  return 1 - sab / denom;
}

export function l2sq(a: usize, b: usize, dim: i32): f32 {
  return l2sqRaw(a, b, dim);
}

export function dot(a: usize, b: usize, dim: i32): f32 {
  return dotRaw(a, b, dim);
}

export function ip(a: usize, b: usize, dim: i32): f32 {
  return 1 - dotRaw(a, b, dim);
}

export function cosine(a: usize, b: usize, dim: i32): f32 {
  return cosineRaw(a, b, dim);
}

// ---- batch kernels over a list of slots -----------------------------------------------

// WebAssembly has no prefetch instruction, and a graph walk reads vectors at random addresses,
// so each distance would otherwise wait for its own cache misses one after another. Before
// computing, the batch kernels touch every cache line of every vector in the batch: the loads
// are independent, so the core keeps many misses in flight at once (memory-level
// parallelism), and the distance loop then reads from L1/L2. The xor of the touched words goes
// to a global so the optimiser cannot drop the loads.
let touchSink: u32 = 0;

function touchSlots(base: usize, stride: usize, slots: usize, n: i32): void {
  touchRows(base, stride, stride, slots, n);
}

/** {@link touchSlots} of the first `bytes` of each row only (the part the kernel reads). */
function touchRows(base: usize, stride: usize, bytes: usize, slots: usize, n: i32): void {
  let x: u32 = 0;
  for (let i = 0; i < n; i++) {
    const v = base + <usize> load<u32>(slots + (<usize> i << 2)) * stride;
    for (let o: usize = 0; o < bytes; o += 64) x ^= load<u32>(v + o);
  }
  touchSink ^= x;
}

export function l2sq_slots(
  q: usize,
  base: usize,
  stride: usize,
  slots: usize,
  n: i32,
  out: usize,
  dim: i32,
): void {
  touchSlots(base, stride, slots, n);
  for (let i = 0; i < n; i++) {
    const v = base + <usize> load<u32>(slots + (<usize> i << 2)) * stride;
    store<f32>(out + (<usize> i << 2), l2sqRaw(q, v, dim));
  }
}

export function ip_slots(
  q: usize,
  base: usize,
  stride: usize,
  slots: usize,
  n: i32,
  out: usize,
  dim: i32,
): void {
  touchSlots(base, stride, slots, n);
  for (let i = 0; i < n; i++) {
    const v = base + <usize> load<u32>(slots + (<usize> i << 2)) * stride;
    store<f32>(out + (<usize> i << 2), 1 - dotRaw(q, v, dim));
  }
}

export function cosine_slots(
  q: usize,
  base: usize,
  stride: usize,
  slots: usize,
  n: i32,
  out: usize,
  dim: i32,
): void {
  touchSlots(base, stride, slots, n);
  for (let i = 0; i < n; i++) {
    const v = base + <usize> load<u32>(slots + (<usize> i << 2)) * stride;
    store<f32>(out + (<usize> i << 2), cosineRaw(q, v, dim));
  }
}

// ---- batch kernels over a contiguous range of slots (exact search, ground truth) -------

export function l2sq_range(
  q: usize,
  base: usize,
  stride: usize,
  start: i32,
  n: i32,
  out: usize,
  dim: i32,
): void {
  let v = base + <usize> start * stride;
  for (let i = 0; i < n; i++) {
    store<f32>(out + (<usize> i << 2), l2sqRaw(q, v, dim));
    v += stride;
  }
}

export function ip_range(
  q: usize,
  base: usize,
  stride: usize,
  start: i32,
  n: i32,
  out: usize,
  dim: i32,
): void {
  let v = base + <usize> start * stride;
  for (let i = 0; i < n; i++) {
    store<f32>(out + (<usize> i << 2), 1 - dotRaw(q, v, dim));
    v += stride;
  }
}

export function cosine_range(
  q: usize,
  base: usize,
  stride: usize,
  start: i32,
  n: i32,
  out: usize,
  dim: i32,
): void {
  let v = base + <usize> start * stride;
  for (let i = 0; i < n; i++) {
    store<f32>(out + (<usize> i << 2), cosineRaw(q, v, dim));
    v += stride;
  }
}

// ---- int8 (scalar-quantized) kernels ---------------------------------------------------
//
// Codes are u8 (one byte per dimension, src/index/quantizer.ts); the query is a vector of i16
// weights, zero past the real dimension so that whatever bytes pad a code row (the row's f32
// norm may sit there) contribute nothing. Products are summed in i32 with
// i32x4.dot_i16x8_s; the host bounds the weights so no sum can overflow
// (dim * 255 * max|weight| < 2^31). `n` is the number of code bytes compared and a multiple
// of 16 on the hot path (the scalar tail serves any other n).
//
// The batch kernel turns the integer sum s of a row at v into a distance with the affine map
// set by q8_set: a + b * s + c * f32 at (v + normOff). For l2, c = 1 and the row's squared
// norm enters; for dot and cosine, c = 0.

let q8A: f32 = 0;
let q8B: f32 = 0;
let q8C: f32 = 0;
let q8NormOff: usize = 0;

// 32 code bytes per step into two independent accumulators (each adds the sum of two
// products, so the add chain is half as long), then a 16-byte step for the rest; the lanes are
// summed with two shuffles. Integer addition is exact in any order: every caller (the walk,
// the batch kernel, the pair kernel) gets the very same sum.
// @ts-ignore: decorator (AssemblyScript's; deno fmt would drop it, so it skips asm/)
@inline
function q8DotRaw(q: usize, v: usize, n: i32): i32 {
  let acc0 = i32x4.splat(0);
  let acc1 = i32x4.splat(0);
  let i = 0;
  for (; i + 32 <= n; i += 32) {
    const c0 = v128.load(v + <usize> i);
    const c1 = v128.load(v + <usize> i, 16);
    const qo = q + (<usize> i << 1);
    acc0 = i32x4.add(
      acc0,
      i32x4.add(
        i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(c0), v128.load(qo)),
        i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(c0), v128.load(qo, 16)),
      ),
    );
    acc1 = i32x4.add(
      acc1,
      i32x4.add(
        i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(c1), v128.load(qo, 32)),
        i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(c1), v128.load(qo, 48)),
      ),
    );
  }
  if (i + 16 <= n) {
    const c = v128.load(v + <usize> i);
    const qo = q + (<usize> i << 1);
    acc0 = i32x4.add(acc0, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(c), v128.load(qo)));
    acc1 = i32x4.add(acc1, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(c), v128.load(qo, 16)));
    i += 16;
  }
  let s = i32x4.add(acc0, acc1);
  s = i32x4.add(s, v128.shuffle<i32>(s, s, 2, 3, 0, 1));
  s = i32x4.add(s, v128.shuffle<i32>(s, s, 1, 0, 3, 2));
  let sum: i32 = i32x4.extract_lane(s, 0);
  for (; i < n; i++) {
    sum += <i32> load<u8>(v + <usize> i) * <i32> load<i16>(q + (<usize> i << 1));
  }
  return sum;
}

/** Sets the affine map of {@link q8_slots}: distance = a + b * sum + c * (f32 at row + normOff). */
export function q8_set(a: f32, b: f32, c: f32, normOff: usize): void {
  q8A = a;
  q8B = b;
  q8C = c;
  q8NormOff = normOff;
}

/** Integer dot product of `n` u8 codes at `v` with `n` i16 weights at `q`. */
export function q8_dot(q: usize, v: usize, n: i32): i32 {
  return q8DotRaw(q, v, n);
}

export function q8_slots(
  q: usize,
  base: usize,
  stride: usize,
  slots: usize,
  n: i32,
  out: usize,
  dim: i32,
): void {
  // Only the codes and the norm: a row may go on with mirrored links the score never reads.
  touchRows(base, stride, max<usize>(<usize> dim, q8NormOff + 4), slots, n);
  const a = q8A, b = q8B, c = q8C, no = q8NormOff;
  for (let i = 0; i < n; i++) {
    const v = base + <usize> load<u32>(slots + (<usize> i << 2)) * stride;
    const s = q8DotRaw(q, v, dim);
    store<f32>(out + (<usize> i << 2), a + b * <f32> s + c * load<f32>(v + no));
  }
}

// ---- layer-0 graph walk over int8 codes ------------------------------------------------
//
// The best-first search of HNSW layer 0 run entirely here, so a quantized search crosses the
// JS/WASM boundary once per query instead of once per expanded node, and keeps no JS heaps.
// The host mirrors the graph into this memory (src/index/quantizer.ts, CodeStore):
//
// | region   | per slot              | meaning                                            |
// |----------|-----------------------|----------------------------------------------------|
// | codes    | rowBytes              | code row (see q8_slots), distance via q8_set's map |
// | links    | linkRowBytes          | u32 count, then the layer-0 links                  |
// | flags    | 1 byte                | 0 live, else not a result (tombstones stay walked) |
// | visited  | 1 bit                 | set while a search has reached it; all clear between |
// |          |                       | searches (the walk clears the bits it set, from vlog) |
// | vlog     | 4 bytes (+1 + 2M)     | the slots whose visited bit this search set          |
// | cand     | 8 bytes (+1 entry)    | min-heap of (f32 distance, u32 slot) candidates    |
// | res      | 8 bytes (+1 entry)    | max-heap of the best ef results                    |
//
// Each slot enters the candidate heap at most once per search (its visited bit is set first),
// so capacity + 1 entries always suffice; the result heap never holds more than ef + 1.

let sCodes: usize = 0;
let sRow: usize = 0;
let sCodeBytes: i32 = 0;
let sLinks: usize = 0;
let sLinkRow: usize = 0;
let sFlags: usize = 0;
let sVisited: usize = 0;
let sCand: usize = 0;
let sRes: usize = 0;
let sSlots: usize = 0;
let sVlog: usize = 0;
let resSize: i32 = 0;
let walkSeen: i32 = 0;

/** Sets the regions q8_search0 works on (called again whenever the host moves them). */
export function q8_layout(
  codes: usize,
  rowBytes: usize,
  codeBytes: i32,
  links: usize,
  linkRowBytes: usize,
  flags: usize,
  visited: usize,
  cand: usize,
  res: usize,
  slots: usize,
  vlog: usize,
): void {
  sCodes = codes;
  sRow = rowBytes;
  sCodeBytes = codeBytes;
  sLinks = links;
  sLinkRow = linkRowBytes;
  sFlags = flags;
  sVisited = visited;
  sCand = cand;
  sRes = res;
  sSlots = slots;
  sVlog = vlog;
}

function hk(h: usize, i: i32): f32 {
  return load<f32>(h + (<usize> i << 3));
}
function hv(h: usize, i: i32): u32 {
  return load<u32>(h + (<usize> i << 3), 4);
}
function hset(h: usize, i: i32, k: f32, v: u32): void {
  store<f32>(h + (<usize> i << 3), k);
  store<u32>(h + (<usize> i << 3), v, 4);
}

/** Inserts (k, v) into the min-heap at h holding n entries. */
function minPush(h: usize, n: i32, k: f32, v: u32): void {
  let i = n;
  while (i > 0) {
    const p = (i - 1) >> 1;
    const pk = hk(h, p);
    if (pk <= k) break;
    hset(h, i, pk, hv(h, p));
    i = p;
  }
  hset(h, i, k, v);
}

/** Removes the top of the min-heap at h holding n entries. */
function minPop(h: usize, n: i32): void {
  const last = n - 1;
  const k = hk(h, last);
  const v = hv(h, last);
  let i = 0;
  while (true) {
    let c = 2 * i + 1;
    if (c >= last) break;
    if (c + 1 < last && hk(h, c + 1) < hk(h, c)) c++;
    const ck = hk(h, c);
    if (ck >= k) break;
    hset(h, i, ck, hv(h, c));
    i = c;
  }
  hset(h, i, k, v);
}

function maxPush(h: usize, n: i32, k: f32, v: u32): void {
  let i = n;
  while (i > 0) {
    const p = (i - 1) >> 1;
    const pk = hk(h, p);
    if (pk >= k) break;
    hset(h, i, pk, hv(h, p));
    i = p;
  }
  hset(h, i, k, v);
}

function maxPop(h: usize, n: i32): void {
  const last = n - 1;
  const k = hk(h, last);
  const v = hv(h, last);
  let i = 0;
  while (true) {
    let c = 2 * i + 1;
    if (c >= last) break;
    if (c + 1 < last && hk(h, c + 1) > hk(h, c)) c++;
    const ck = hk(h, c);
    if (ck <= k) break;
    hset(h, i, ck, hv(h, c));
    i = c;
  }
  hset(h, i, k, v);
}

function q8Dist(q: usize, slot: u32): f32 {
  const v = sCodes + <usize> slot * sRow;
  return q8A + q8B * <f32> q8DotRaw(q, v, sCodeBytes) + q8C * load<f32>(v + q8NormOff);
}

/**
 * Best-first search of layer 0 from slot `ep` with the query weights at `q` (q8_set already
 * called); leaves up to `ef` live results in the result heap and returns how many.
 *
 * The visited set is one bit per slot (42 KiB at 340K slots instead of a byte each: the ~4,500
 * tests of a query then mostly hit the L1/L2 caches instead of taking fill buffers from the
 * code rows the walk streams in). Every slot whose bit is set is logged, and the bits are
 * cleared from the log at the end, so a search costs no clearing in proportion to the capacity.
 */
export function q8_search0(q: usize, ep: u32, ef: i32): i32 {
  const cand = sCand;
  const res = sRes;
  const visited = sVisited;
  const flags = sFlags;
  const slots = sSlots;
  const vlog = sVlog;
  const codes = sCodes;
  const rowBytes = sRow;
  const codeBytes = sCodeBytes;
  const linkOff = sLinks - sCodes;
  const links = sLinks;
  const linkRow = sLinkRow;
  // The part of a row after the codes: the link row (or what of it a cache line holds).
  const span = sRow - linkOff;
  const qa = q8A, qb = q8B, qc = q8C, normOff = q8NormOff;
  store<u8>(visited + (<usize> ep >> 3), <u8> (<u32> 1 << (ep & 7)));
  store<u32>(vlog, ep);
  const epDist = q8Dist(q, ep);
  let candSize = 0;
  let rs = 0;
  minPush(cand, candSize++, epDist, ep);
  let bound: f32 = Infinity;
  if (load<u8>(flags + <usize> ep) == 0) {
    maxPush(res, rs++, epDist, ep);
    bound = epDist;
  }
  let seen = 1;
  while (candSize > 0) {
    if (hk(cand, 0) > bound && rs >= ef) break;
    const c = hv(cand, 0);
    minPop(cand, candSize);
    candSize--;
    // Touch the link row of the next candidate now (all of it: the row's rest after the
    // codes, up to three cache lines): its misses then overlap this expansion's distance work
    // instead of stalling the next one (there is no prefetch).
    if (candSize > 0) {
      const next = links + <usize> hv(cand, 0) * linkRow;
      let x = load<u32>(next + span - 4);
      for (let o: usize = 0; o < span; o += 64) x ^= load<u32>(next + o);
      touchSink ^= x;
    }
    const row = links + <usize> c * linkRow;
    const cnt = load<u32>(row);
    // Without a branch: about half the links are new, so a branch on the visited bit would
    // be mispredicted about every other time. Every link is written to the list and its bit
    // set; only a new one advances the list's end (a link listed twice counts once: the first
    // occurrence sets the bit before the second is tested). New slots go to the log too.
    let m = 0;
    const lg = vlog + (<usize> seen << 2);
    for (let j: u32 = 1; j <= cnt; j++) {
      const n = load<u32>(row + (<usize> j << 2));
      const p = visited + (<usize> n >> 3);
      const bit = <u32> 1 << (n & 7);
      const had = <u32> load<u8>(p);
      const fresh = <i32> ((had & bit) == 0);
      store<u8>(p, <u8> (had | bit));
      store<u32>(slots + (<usize> m << 2), n);
      store<u32>(lg + (<usize> m << 2), n);
      m += fresh;
    }
    if (m == 0) continue;
    seen += m;
    // Touch only the code part of each row: most scored nodes are never expanded, so their
    // links (the rest of the row) would be fetched for nothing; an expanded node's links
    // are touched one expansion ahead (above). Measured on GloVe-100 340K: 1.08x to 1.18x
    // queries/s against touching whole rows.
    touchRows(codes, rowBytes, linkOff, slots, m);
    for (let j = 0; j < m; j++) {
      const n = load<u32>(slots + (<usize> j << 2));
      const v = codes + <usize> n * rowBytes;
      // q8Dist with the globals held in locals (the same f32 operations in the same order).
      const d = qa + qb * <f32> q8DotRaw(q, v, codeBytes) + qc * load<f32>(v + normOff);
      if (rs < ef || d < bound) {
        // A node that goes to the top of the candidates is expanded next unless a later one
        // beats it (a quarter of the expansions, on GloVe, are of a node found by the one
        // before): touch its link row now, while the rest of this list is scored (its page is
        // already mapped, its codes just read), not when it is popped.
        if (candSize > 0 && d < hk(cand, 0)) {
          const nl = links + <usize> n * linkRow;
          let x = load<u32>(nl + span - 4);
          for (let o: usize = 0; o < span; o += 64) x ^= load<u32>(nl + o);
          touchSink ^= x;
        }
        minPush(cand, candSize++, d, n);
        if (load<u8>(flags + <usize> n) != 0) continue;
        maxPush(res, rs++, d, n);
        if (rs > ef) {
          maxPop(res, rs);
          rs--;
        }
        bound = hk(res, 0);
      }
    }
  }
  // Every slot reached is in the log (seen of them): clearing their bytes clears every bit set.
  for (let i = 0; i < seen; i++) {
    store<u8>(visited + (<usize> load<u32>(vlog + (<usize> i << 2)) >> 3), 0);
  }
  resSize = rs;
  walkSeen = seen;
  return rs;
}

/** Drops the worst results of the last q8_search0 until at most `r` remain; returns how many. */
export function q8_res_trim(r: i32): i32 {
  while (resSize > r) {
    maxPop(sRes, resSize);
    resSize--;
  }
  return resSize;
}

/** Nodes whose distance the last q8_search0 computed (for metrics). */
export function q8_seen(): i32 {
  return walkSeen;
}

// ---- helpers ---------------------------------------------------------------------------

/** Scales `dim` floats at `a` to unit length in place; returns the original norm. */
export function normalize(a: usize, dim: i32): f32 {
  const n2 = dotRaw(a, a, dim);
  const norm = Mathf.sqrt(n2);
  if (norm == 0) return 0;
  const inv = f32x4.splat(<f32> 1 / norm);
  let i = 0;
  for (; i + 4 <= dim; i += 4) {
    const o = <usize> i << 2;
    v128.store(a + o, f32x4.mul(v128.load(a + o), inv));
  }
  const s: f32 = <f32> 1 / norm;
  for (; i < dim; i++) {
    const o = <usize> i << 2;
    store<f32>(a + o, load<f32>(a + o) * s);
  }
  return norm;
}

/** First byte the host may use: everything below belongs to the module's static data. */
export function heap_base(): usize {
  return (__heap_base + 15) & ~(<usize> 15);
}
