/**
 * CRC-32 on the WAL path: the hand-written slicing-by-8 table code that `src/io/crc32.ts` held
 * until 2026-11 against `node:zlib`'s `crc32` (zlib's, in native code), on record sizes the WAL
 * sees: a small put (~0.5 KiB), a GloVe-100 point record, a 1,000-point PutBatch (~0.4 MiB) and
 * a 10,000-point one (~4 MiB). Checks the two agree on every buffer (and incrementally), then
 * prints MB/s of each and their ratio, measured interleaved in the same run, with the load
 * average. Runs under Deno (`deno run -A scripts/bench/crc32_bench.ts`) and Node
 * (`npx tsx scripts/bench/crc32_bench.ts`), the two runtimes our processes use.
 *
 * @module
 */
import { crc32 as zlibCrc32 } from "node:zlib";
import { loadavg } from "node:os";

const POLY = 0xEDB88320;
const T = (() => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 8; k++) {
      c = (c >>> 8) ^ t[c & 0xff];
      t[k * 256 + n] = c >>> 0;
    }
  }
  return t;
})();

/** The former src/io/crc32.ts loop (slicing-by-8), kept here only as the baseline. */
function tableCrc32(bytes: Uint8Array, seed = 0): number {
  const t = T;
  let c = ~seed;
  let i = 0;
  const n = bytes.length;
  const end8 = n - (n & 7);
  while (i < end8) {
    const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    const b = bytes[i + 4] | (bytes[i + 5] << 8) | (bytes[i + 6] << 16) | (bytes[i + 7] << 24);
    c = t[1792 + (a & 0xff)] ^ t[1536 + ((a >>> 8) & 0xff)] ^ t[1280 + ((a >>> 16) & 0xff)] ^
      t[1024 + (a >>> 24)] ^ t[768 + (b & 0xff)] ^ t[512 + ((b >>> 8) & 0xff)] ^
      t[256 + ((b >>> 16) & 0xff)] ^ t[b >>> 24];
    i += 8;
  }
  while (i < n) {
    c = (c >>> 8) ^ t[(c ^ bytes[i]) & 0xff];
    i++;
  }
  return ~c >>> 0;
}

const SIZES: [string, number][] = [
  ["small put (512 B)", 512],
  ["GloVe-100 put (440 B)", 440],
  ["PutBatch 1,000 x 100-d (0.4 MiB)", 1000 * 404],
  ["PutBatch 10,000 x 100-d (4 MiB)", 10_000 * 404],
];
const TOTAL_BYTES_PER_ROUND = 64 << 20;
const ROUNDS = 5;

let seed = 12345;
function fill(b: Uint8Array): void {
  for (let i = 0; i < b.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    b[i] = seed >>> 24;
  }
}

function time(f: (b: Uint8Array, s?: number) => number, buf: Uint8Array, reps: number): number {
  let sink = 0;
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) sink ^= f(buf, r & 1 ? sink >>> 0 : 0);
  const ms = performance.now() - t0;
  if (sink === 0.5) console.log(""); // keep the result alive
  return ms;
}

const runtime = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined" ? "deno" : "node";
console.log(`runtime ${runtime}; load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
for (const [name, size] of SIZES) {
  const buf = new Uint8Array(size);
  fill(buf);
  // Agreement, whole and split at an odd point (the incremental seed convention).
  const whole = tableCrc32(buf);
  const cut = Math.floor(size / 3) | 1;
  const inc = zlibCrc32(buf.subarray(cut), zlibCrc32(buf.subarray(0, cut)));
  if (zlibCrc32(buf) !== whole || inc !== whole) throw new Error(`CRC mismatch at ${name}`);
  const reps = Math.max(1, Math.floor(TOTAL_BYTES_PER_ROUND / size / 4));
  let tableMs = 0;
  let zlibMs = 0;
  time(tableCrc32, buf, reps); // warm-up
  time(zlibCrc32, buf, reps);
  for (let r = 0; r < ROUNDS; r++) {
    tableMs += time(tableCrc32, buf, reps);
    zlibMs += time(zlibCrc32, buf, reps);
  }
  const mb = (size * reps * ROUNDS) / 1e6;
  console.log(
    `${name.padEnd(34)} table ${(mb / (tableMs / 1000)).toFixed(0).padStart(6)} MB/s   ` +
      `zlib ${(mb / (zlibMs / 1000)).toFixed(0).padStart(6)} MB/s   zlib/table ${
        (tableMs / zlibMs).toFixed(2)
      }x`,
  );
}
console.log(`load average after ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
