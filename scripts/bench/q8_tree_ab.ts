/**
 * Int8 search of this tree against another checkout's (e.g. main), on one saved graph, in one
 * process, interleaved in 100-query blocks so that a busy machine slows both alike:
 *
 * ```sh
 * git -C . archive main | tar -x -C /tmp/base && cp -a build /tmp/base/  # then build:asm there
 * deno run -A scripts/bench/q8_tree_ab.ts --base /tmp/base --index-file .cache/glove.idx \
 *   [--efs 100,130,160] [--rescore 4] [--rounds 5]
 * ```
 *
 * Each tree loads the graph, renumbers it in the default (snapshot load) order, trains its
 * quantizer and sets the rescore factor. Prints per ef: recall@10, the median queries/s of the
 * rounds per tree (wall clock, and per second of this process's CPU time, which a busy machine
 * disturbs less), the paired median ratios, and whether every hit (ids and distances) of this
 * tree equals the base's; with the load average.
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadDataset } from "./lib/dataset.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    base: { type: "string" },
    /** The tree measured against the base (default: this one); the base again is an A/A test. */
    this: { type: "string" },
    "index-file": { type: "string" },
    efs: { type: "string", default: "100,130,160" },
    rescore: { type: "string", default: "4" },
    rounds: { type: "string", default: "5" },
    "cache-dir": { type: "string", default: join(root, ".cache", "bench") },
  },
});
const file = args["index-file"];
if (file === undefined || args.base === undefined) {
  throw new TypeError("--index-file and --base are required");
}
/** Milliseconds of CPU this process used: on a shared machine, the time the walk really ran. */
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const load = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
const ds = loadDataset({ cacheDir: args["cache-dir"]! });
const bytes = new Uint8Array(readFileSync(file));

interface Ix {
  search(q: Float32Array, k: number, o: { ef: number }): { id: number; distance: number }[];
  rescore: number;
}
async function open(dir: string): Promise<Ix> {
  const { HnswIndex } = await import(join(dir, "src/index/hnsw.ts"));
  const { BinaryReader } = await import(join(dir, "src/io/binary.ts"));
  const { DEFAULT_REORDER } = await import(join(dir, "src/index/reorder.ts"));
  const ix = HnswIndex.readFrom(new BinaryReader(bytes));
  ix.reorder(DEFAULT_REORDER);
  ix.trainQuantizer();
  ix.rescore = Number(args.rescore);
  return ix;
}
const engines: [string, Ix][] = [
  ["base", await open(resolve(args.base))],
  ["this", await open(resolve(args.this ?? root))],
];
const k = 10;
const q = ds.queries;
const queries = Array.from({ length: q.n }, (_, i) => q.data.subarray(i * q.dim, (i + 1) * q.dim));
const truth = queries.map((_, i) => new Set(ds.gt.data.subarray(i * ds.gt.dim, i * ds.gt.dim + k)));
console.log(`q8_tree_ab: ${ds.name}, rescore ${args.rescore}; load ${load()}`);
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const ef of args.efs!.split(",").map(Number)) {
  const rates: number[][] = engines.map(() => []);
  const cpuRates: number[][] = engines.map(() => []);
  const hits = engines.map(() => 0);
  let differ = 0;
  for (let r = 0; r < Number(args.rounds); r++) {
    const ms = engines.map(() => 0);
    const cms = engines.map(() => 0);
    for (let b = 0; b < q.n; b += 100) {
      const order = (b / 100 + r) % 2 === 0 ? [0, 1] : [1, 0];
      for (const e of order) {
        const ix = engines[e][1];
        const t0 = performance.now();
        const c0 = cpu();
        for (let i = b; i < Math.min(q.n, b + 100); i++) ix.search(queries[i], k, { ef });
        cms[e] += cpu() - c0;
        ms[e] += performance.now() - t0;
      }
    }
    engines.forEach((_, e) => {
      rates[e].push(q.n / (ms[e] / 1000));
      cpuRates[e].push(q.n / (cms[e] / 1000));
    });
  }
  for (let i = 0; i < q.n; i++) {
    const a = engines[0][1].search(queries[i], k, { ef });
    const b = engines[1][1].search(queries[i], k, { ef });
    if (
      a.length !== b.length ||
      a.some((h, j) => h.id !== b[j].id || h.distance !== b[j].distance)
    ) differ++;
    for (const h of a) if (truth[i].has(h.id)) hits[0]++;
    for (const h of b) if (truth[i].has(h.id)) hits[1]++;
  }
  const ratio = (r: number[][]) => median(r[1].map((x, i) => x / r[0][i])).toFixed(3);
  console.log(
    `  ef=${ef}: ` + engines.map(([n], e) =>
      `${n} recall ${(hits[e] / (q.n * k)).toFixed(4)} ${median(rates[e]).toFixed(0)} qps ` +
      `(per CPU second ${median(cpuRates[e]).toFixed(0)})`
    ).join("; ") + `; this/base ${ratio(rates)}x (CPU time ${ratio(cpuRates)}x); ` +
      `queries with other hits ${differ}; load ${load()}`,
  );
}
