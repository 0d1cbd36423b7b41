/**
 * The hnswlib side of `deno task bench`: runs under Node (through tsx), because the native
 * addon `hnswlib-node` is a Node module. Installed on demand into `.cache/bench/hnswlib`.
 *
 * Usage: node tsx hnswlib_runner.ts CONFIG_JSON; prints one JSON row per ef on stdout.
 * @module
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { memoryUsage } from "node:process";
import { readFvecs, readIvecs } from "./fvecs.ts";
import { type Engine, sweep } from "./sweep.ts";

interface Config {
  hnswlibDir: string;
  dataset: string;
  basePath: string;
  n: number;
  queriesPath: string;
  gtPath: string;
  metric: "l2" | "cosine" | "dot";
  M: number;
  efConstruction: number;
  efs: number[];
  k: number;
  /** hnswlib's own index file: loaded when present (no build), else written after the build. */
  indexFile?: string;
}

const cfg = JSON.parse(process.argv[2]) as Config;
const require = createRequire(cfg.hnswlibDir + "/");
// deno-lint-ignore no-explicit-any
const { HierarchicalNSW } = require("hnswlib-node") as any;

const base = readFvecs(cfg.basePath, cfg.n);
const queries = readFvecs(cfg.queriesPath);
const gt = readIvecs(cfg.gtPath);
const space = cfg.metric === "dot" ? "ip" : cfg.metric;
// deno-lint-ignore no-explicit-any
let index: any;
let rssBefore = 0;

const engine: Engine = {
  impl: "hnswlib-node",
  build(b) {
    rssBefore = memoryUsage().rss;
    index = new HierarchicalNSW(space, b.dim);
    if (cfg.indexFile !== undefined && existsSync(cfg.indexFile)) {
      index.readIndexSync(cfg.indexFile);
      console.error(
        `  hnswlib-node: graph loaded from ${cfg.indexFile} (build_s is the load time)`,
      );
      return;
    }
    index.initIndex(b.n, cfg.M, cfg.efConstruction, 100);
    for (let i = 0; i < b.n; i++) {
      index.addPoint(Array.from(b.data.subarray(i * b.dim, (i + 1) * b.dim)), i);
    }
    if (cfg.indexFile !== undefined) index.writeIndexSync(cfg.indexFile);
  },
  prepareQueries(q) {
    const out: number[][] = [];
    for (let i = 0; i < q.n; i++) out.push(Array.from(q.data.subarray(i * q.dim, (i + 1) * q.dim)));
    return out;
  },
  setEf(ef) {
    index.setEf(ef);
  },
  search(q, k) {
    return index.searchKnn(q as number[], k).neighbors;
  },
  bytesPerVector(n) {
    // Resident memory the build added: an upper bound on what the index holds.
    return Math.max(0, memoryUsage().rss - rssBefore) / n;
  },
};

sweep(engine, base, queries, gt, {
  dataset: cfg.dataset,
  metric: cfg.metric,
  M: cfg.M,
  efConstruction: cfg.efConstruction,
  efs: cfg.efs,
  k: cfg.k,
}, (row) => console.log(JSON.stringify(row)));
