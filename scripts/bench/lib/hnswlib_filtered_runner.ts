/**
 * The hnswlib side of `deno task bench:filtered`: runs under Node (through tsx) because
 * `hnswlib-node` is a native Node addon. Builds the same index (same data, M, ef_construction),
 * rebuilds the same payload and filters from the seeds, and runs every case with
 * `searchKnn(query, k, filter)` at each ef.
 *
 * Usage: node tsx hnswlib_filtered_runner.ts CONFIG_JSON; prints one JSON {@link FilteredRow}
 * per case and ef on stdout (case "none" is the unfiltered search).
 * @module
 */
import { createRequire } from "node:module";
import { hrtime } from "node:process";
import { readFvecs, readIvecs } from "./fvecs.ts";
import { compile, makeCases, makePayload } from "./filtered_workload.ts";
import { type FilteredRow, recallOf } from "./filtered_rows.ts";

interface Config {
  hnswlibDir: string;
  basePath: string;
  n: number;
  queriesPath: string;
  unfilteredGtPath: string;
  /** Case name -> ground-truth ivecs path. */
  gtPaths: Record<string, string>;
  metric: "l2" | "cosine" | "dot";
  M: number;
  efConstruction: number;
  efs: number[];
  k: number;
  payloadSeed: number;
  filterSeed: number;
}

const cfg = JSON.parse(process.argv[2]) as Config;
const require = createRequire(cfg.hnswlibDir + "/");
// deno-lint-ignore no-explicit-any
const { HierarchicalNSW } = require("hnswlib-node") as any;

const base = readFvecs(cfg.basePath, cfg.n);
const queries = readFvecs(cfg.queriesPath);
const space = cfg.metric === "dot" ? "ip" : cfg.metric;
const t0 = hrtime.bigint();
const index = new HierarchicalNSW(space, base.dim);
index.initIndex(base.n, cfg.M, cfg.efConstruction, 100);
for (let i = 0; i < base.n; i++) {
  index.addPoint(Array.from(base.data.subarray(i * base.dim, (i + 1) * base.dim)), i);
}
const buildS = Number(hrtime.bigint() - t0) / 1e9;
console.error(`  hnswlib-node build ${buildS.toFixed(1)} s`);
const qs: number[][] = [];
for (let i = 0; i < queries.n; i++) {
  qs.push(Array.from(queries.data.subarray(i * queries.dim, (i + 1) * queries.dim)));
}
const payload = makePayload(base.n, cfg.payloadSeed);
const cases = makeCases(queries.n, cfg.filterSeed);

function run(
  name: string,
  filters: (((id: number) => boolean) | undefined)[],
  gtPath: string,
): void {
  const gt = readIvecs(gtPath);
  for (const ef of cfg.efs) {
    index.setEf(Math.max(ef, cfg.k));
    const got: ArrayLike<number>[] = new Array(queries.n);
    const s0 = hrtime.bigint();
    for (let q = 0; q < queries.n; q++) {
      got[q] = index.searchKnn(qs[q], cfg.k, filters[q]).neighbors;
    }
    const s = Number(hrtime.bigint() - s0) / 1e9;
    const row: FilteredRow = {
      impl: "hnswlib-node",
      case: name,
      ef,
      recall_at_10: recallOf(got, gt, cfg.k),
      qps: queries.n / s,
    };
    console.log(JSON.stringify(row));
  }
}

run("none", new Array(queries.n).fill(undefined), cfg.unfilteredGtPath);
for (const c of cases) run(c.name, c.specs.map((s) => compile(payload, s)), cfg.gtPaths[c.name]);
