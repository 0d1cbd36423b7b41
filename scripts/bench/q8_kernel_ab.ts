/**
 * The int8 layer-0 walk of two kernel builds on one index, in one memory: `deno run -A
 * scripts/bench/q8_kernel_ab.ts --base-wasm OTHER/build/kernels_shared.wasm --index-file
 * .cache/glove.idx [--efs 140,160] [--rescore 4] [--rounds 9]`.
 *
 * The index is loaded once (renumbered in the default snapshot-load order, quantizer trained);
 * a second instance of the other build is made over the code store's own shared memory and
 * laid out alike, and each search runs with one instance's `q8_search0` (and the result calls
 * that go with it), alternating in 100-query blocks. So both builds walk the very same bytes,
 * with the same caches and page mappings: the ratio measures the code alone, which two
 * separately loaded indexes on a busy machine do not (their A/A ratio strays by 5% or more).
 * Prints per ef: recall@10, queries/s (wall clock and per second of this process's CPU time)
 * per build, the paired median ratios, and how many queries got other hits; with the load.
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HnswIndex } from "../../src/index/hnsw.ts";
import { BinaryReader } from "../../src/io/binary.ts";
import { DEFAULT_REORDER } from "../../src/index/reorder.ts";
import type { Kernels } from "../../src/kernels/kernels.ts";
import { loadDataset } from "./lib/dataset.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    "base-wasm": { type: "string" },
    "index-file": { type: "string" },
    efs: { type: "string", default: "140,160" },
    rescore: { type: "string", default: "4" },
    rounds: { type: "string", default: "9" },
    "cache-dir": { type: "string", default: join(root, ".cache", "bench") },
  },
});
const file = args["index-file"];
if (file === undefined || args["base-wasm"] === undefined) {
  throw new TypeError("--index-file and --base-wasm are required");
}
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const load = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
const ds = loadDataset({ cacheDir: args["cache-dir"]! });
const ix = HnswIndex.readFrom(new BinaryReader(new Uint8Array(readFileSync(file))));
ix.reorder(DEFAULT_REORDER);
ix.trainQuantizer();
ix.rescore = Number(args.rescore);
const codes = ix.codes!;
const own = codes.kernels;
const other = new WebAssembly.Instance(
  new WebAssembly.Module(readFileSync(args["base-wasm"]!)),
  { env: { memory: own.memory } },
).exports as unknown as Kernels;
// A build whose walk takes an epoch (visited bytes stamped 1..255, before the bitset) gets a
// byte per slot of its own above everything the store uses; a bitset build shares the store's
// bits and log (all clear between walks).
const epochStyle = other.q8_search0.length === 4;
let visited = codes.visitedPtr;
if (epochStyle) {
  visited = own.memory.buffer.byteLength;
  own.memory.grow(Math.ceil(codes.capacity / 65536) + 1);
}
const u8 = () => new Uint8Array(own.memory.buffer);
// deno-lint-ignore no-explicit-any
(other.q8_layout as any)(
  codes.codesPtr,
  codes.rowBytes,
  codes.codeBytes,
  codes.linksPtr,
  codes.rowBytes,
  codes.flagsPtr,
  visited,
  codes.candPtr,
  codes.resPtr,
  codes.slotsPtr,
  codes.vlogPtr,
);
let epoch = 0;
const otherWalk = epochStyle
  ? (q: number, ep: number, ef: number) => {
    if (epoch === 255) {
      u8().fill(0, visited, visited + codes.capacity);
      epoch = 0;
    }
    // deno-lint-ignore no-explicit-any
    return (other.q8_search0 as any)(q, ep, ef, ++epoch);
  }
  : other.q8_search0;
// The store calls its kernels through this object: the walk and its result calls are switched
// together (the result heap's size lives in the instance that walked); the query's map is set
// in both.
const k = own as unknown as Record<string, unknown>;
const walk = { own: own.q8_search0, trim: own.q8_res_trim, seen: own.q8_seen };
const ownSet = own.q8_set;
k.q8_set = (a: number, b: number, c: number, o: number) => {
  ownSet(a, b, c, o);
  other.q8_set(a, b, c, o);
};
function use(e: number): void {
  k.q8_search0 = e === 0 ? otherWalk : walk.own;
  k.q8_res_trim = e === 0 ? other.q8_res_trim : walk.trim;
  k.q8_seen = e === 0 ? other.q8_seen : walk.seen;
}
const names = ["base", "this"];
const kk = 10;
const q = ds.queries;
const queries = Array.from({ length: q.n }, (_, i) => q.data.subarray(i * q.dim, (i + 1) * q.dim));
const truth = queries.map((_, i) =>
  new Set(ds.gt.data.subarray(i * ds.gt.dim, i * ds.gt.dim + kk))
);
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`q8_kernel_ab: ${ds.name}, rescore ${args.rescore}; load ${load()}`);
for (const ef of args.efs!.split(",").map(Number)) {
  const wall: number[][] = [[], []];
  const cpuRate: number[][] = [[], []];
  for (let r = 0; r < Number(args.rounds); r++) {
    const ms = [0, 0], cms = [0, 0];
    for (let b = 0; b < q.n; b += 100) {
      for (const e of (b / 100 + r) % 2 === 0 ? [0, 1] : [1, 0]) {
        use(e);
        const t0 = performance.now();
        const c0 = cpu();
        for (let i = b; i < Math.min(q.n, b + 100); i++) ix.search(queries[i], kk, { ef });
        cms[e] += cpu() - c0;
        ms[e] += performance.now() - t0;
      }
    }
    for (const e of [0, 1]) {
      wall[e].push(q.n / (ms[e] / 1000));
      cpuRate[e].push(q.n / (cms[e] / 1000));
    }
  }
  const hits = [0, 0];
  let differ = 0;
  for (let i = 0; i < q.n; i++) {
    use(0);
    const a = ix.search(queries[i], kk, { ef });
    use(1);
    const b = ix.search(queries[i], kk, { ef });
    if (
      a.length !== b.length || a.some((h, j) => h.id !== b[j].id || h.distance !== b[j].distance)
    ) {
      differ++;
    }
    for (const h of a) if (truth[i].has(h.id)) hits[0]++;
    for (const h of b) if (truth[i].has(h.id)) hits[1]++;
  }
  const ratio = (x: number[][]) => median(x[1].map((v, i) => v / x[0][i])).toFixed(3);
  console.log(
    `  ef=${ef}: ` + names.map((n, e) =>
      `${n} recall ${(hits[e] / (q.n * kk)).toFixed(4)} ${median(wall[e]).toFixed(0)} qps ` +
      `(per CPU second ${median(cpuRate[e]).toFixed(0)})`
    ).join("; ") + `; this/base ${ratio(wall)}x (CPU time ${ratio(cpuRate)}x); ` +
      `queries with other hits ${differ}; load ${load()}`,
  );
}
