/**
 * Float against int8 search on one saved graph, interleaved so that a busy machine slows both
 * alike: `deno run -A scripts/bench/int8_ab.ts --index-file F [--efs 80,120,200] [--rescore 4]
 * [--rounds 5]`. F is a graph `deno task bench --quantization int8 --index-file F` saved (GloVe
 * by default; `--dataset mnist` for the digits). Each round runs every query set once per
 * engine and ef, alternating float and int8 in 100-query blocks; prints recall@10 and the
 * median queries/s of the rounds per engine and ef, with the load average.
 * @module
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HnswIndex } from "../../src/index/hnsw.ts";
import { BinaryReader } from "../../src/io/binary.ts";
import { loadDataset } from "./lib/dataset.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    "index-file": { type: "string" },
    dataset: { type: "string" },
    efs: { type: "string", default: "80,120,200,400" },
    rescore: { type: "string", default: "4" },
    rounds: { type: "string", default: "5" },
    k: { type: "string", default: "10" },
    "cache-dir": { type: "string", default: join(root, ".cache", "bench") },
  },
});
const file = args["index-file"];
if (file === undefined) throw new TypeError("--index-file is required (a graph bench.ts saved)");
const ds = loadDataset({ cacheDir: args["cache-dir"]!, dataset: args.dataset });
const bytes = new Uint8Array(readFileSync(file));
const float = HnswIndex.readFrom(new BinaryReader(bytes));
const int8 = HnswIndex.readFrom(new BinaryReader(bytes));
if (float.count !== ds.base.n) throw new RangeError(`${file} holds ${float.count} points`);
int8.trainQuantizer();
int8.rescore = Number(args.rescore);
const k = Number(args.k);
const q = ds.queries;
const queries = Array.from({ length: q.n }, (_, i) => q.data.subarray(i * q.dim, (i + 1) * q.dim));
const truth = Array.from(
  { length: q.n },
  (_, i) => new Set(ds.gt.data.subarray(i * ds.gt.dim, i * ds.gt.dim + k)),
);
const load = () => (spawnSync("uptime", [], { encoding: "utf8" }).stdout ?? "").trim();
console.log(`int8_ab: ${ds.name}, ${ds.base.n} points, rescore ${int8.rescore}; ${load()}`);
for (const ef of args.efs!.split(",").map(Number)) {
  const rates: Record<string, number[]> = { float: [], int8: [] };
  const hits: Record<string, number> = { float: 0, int8: 0 };
  for (let r = 0; r < Number(args.rounds); r++) {
    const ns: Record<string, number> = { float: 0, int8: 0 };
    for (let b = 0; b < q.n; b += 100) {
      for (const [name, ix] of [["float", float], ["int8", int8]] as const) {
        const t0 = performance.now();
        for (let i = b; i < Math.min(q.n, b + 100); i++) {
          const res = ix.search(queries[i], k, { ef });
          if (r === 0) { for (const h of res) if (truth[i].has(h.id)) hits[name]++; }
        }
        ns[name] += performance.now() - t0;
      }
    }
    for (const name of ["float", "int8"]) rates[name].push(q.n / (ns[name] / 1000));
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const f = median(rates.float), i8 = median(rates.int8);
  console.log(
    `  ef=${ef}: float recall ${(hits.float / (q.n * k)).toFixed(4)} ${f.toFixed(0)} qps; ` +
      `int8 recall ${(hits.int8 / (q.n * k)).toFixed(4)} ${i8.toFixed(0)} qps; ` +
      `int8/float ${(i8 / f).toFixed(2)}`,
  );
}
console.log(`  ${load()}`);
