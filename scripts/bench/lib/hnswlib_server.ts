/**
 * hnswlib-node kept loaded under Node for an interleaved comparison (scripts/bench/vs_hnswlib.ts):
 * loads the index file (building and saving it first when absent), prints `ready`, then for
 * each line `ef N` on stdin runs every query once at that ef and prints one JSON line
 * `{ ef, qps, recall }`. Ends when stdin closes.
 *
 * Usage: node tsx hnswlib_server.ts CONFIG_JSON (the fields of hnswlib_runner.ts's config,
 * `indexFile` required).
 * @module
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { readFvecs, readIvecs } from "./fvecs.ts";

interface Config {
  hnswlibDir: string;
  basePath: string;
  n: number;
  queriesPath: string;
  gtPath: string;
  metric: "l2" | "cosine" | "dot";
  M: number;
  efConstruction: number;
  k: number;
  indexFile: string;
}

const cfg = JSON.parse(process.argv[2]) as Config;
const require = createRequire(cfg.hnswlibDir + "/");
// deno-lint-ignore no-explicit-any
const { HierarchicalNSW } = require("hnswlib-node") as any;
const queries = readFvecs(cfg.queriesPath);
const gt = readIvecs(cfg.gtPath);
const index = new HierarchicalNSW(cfg.metric === "dot" ? "ip" : cfg.metric, queries.dim);
if (existsSync(cfg.indexFile)) {
  index.readIndexSync(cfg.indexFile);
} else {
  const base = readFvecs(cfg.basePath, cfg.n);
  index.initIndex(base.n, cfg.M, cfg.efConstruction, 100);
  for (let i = 0; i < base.n; i++) {
    index.addPoint(Array.from(base.data.subarray(i * base.dim, (i + 1) * base.dim)), i);
  }
  index.writeIndexSync(cfg.indexFile);
}
const qs: number[][] = [];
for (let i = 0; i < queries.n; i++) {
  qs.push(Array.from(queries.data.subarray(i * queries.dim, (i + 1) * queries.dim)));
}
const truth = qs.map((_, i) => new Set(gt.data.subarray(i * gt.dim, i * gt.dim + cfg.k)));
console.log("ready");
for await (const line of createInterface({ input: process.stdin })) {
  const m = /^ef (\d+)$/.exec(line.trim());
  if (m === null) continue;
  const ef = Number(m[1]);
  index.setEf(ef);
  let hits = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < qs.length; i++) {
    const ids = index.searchKnn(qs[i], cfg.k).neighbors as number[];
    for (const id of ids) if (truth[i].has(id)) hits++;
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ ef, qps: qs.length / s, recall: hits / (qs.length * cfg.k) }));
}
