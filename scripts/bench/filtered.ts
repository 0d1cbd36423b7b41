/**
 * `deno task bench:filtered`: recall@10 and queries/s of filtered search, ours against
 * `hnswlib-node`'s `searchKnn(query, k, filter)` on the same data, index parameters and
 * filters, in the same run, at about 50%, 10%, 1% and 0.1% selectivity (see
 * lib/filtered_workload.ts), plus the unfiltered search of both.
 *
 * Data: the first `--n` GloVe-100 base vectors (default 100,000) and the 1,000 held-out
 * queries, with synthetic payload attributes. Exact filtered ground truth (top 10 by brute
 * force over the matching points) is cached under `.cache/bench/gt/`.
 *
 * Our side goes through one function, {@link oursSearch}. With `--through collection` (the
 * default) that is the product's path: a `Collection` holding every point with a JSON payload
 * (`{"kw10": "k3", "kw1000": "w123", "num": 4567}`), payload indexes on the three fields
 * (keyword, keyword, integer), and each query's filter as Qdrant-form JSON, parsed per query
 * (`parseFilter`) and planned by the collection (src/storage/filter_plan.ts) before
 * `HnswIndex.filteredSearch`. With `--through index`, a stand-in planner over the attribute
 * columns calls the index directly (the index's own ceiling, no payloads).
 *
 * @example
 * ```sh
 * deno task bench:filtered                       # n = 100,000, efs 16,32,64,128,256
 * deno task bench:filtered --n 20000 --no-hnswlib --efs 32,64
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { existsSync, mkdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HnswIndex, type PlannedFilter } from "../../src/index/hnsw.ts";
import { Collection, type Point } from "../../src/storage/collection.ts";
import { parsePayload } from "../../src/common/payload.ts";
import { parseFilter } from "../../src/common/filter.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { BATCH_MAX, VectorStore } from "../../src/index/vector_store.ts";
import { MaxHeap } from "../../src/index/heap.ts";
import { loadDataset } from "./lib/dataset.ts";
import { type Matrix, readIvecs, writeIvecs } from "./lib/fvecs.ts";
import {
  compile,
  type FilterCase,
  type FilterSpec,
  makeCases,
  makePayload,
  type Payload,
} from "./lib/filtered_workload.ts";
import { type FilteredRow, recallOf } from "./lib/filtered_rows.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    M: { type: "string", default: "16" },
    "ef-construction": { type: "string", default: "200" },
    efs: { type: "string", default: "16,32,64,128,256" },
    k: { type: "string", default: "10" },
    "payload-seed": { type: "string", default: "7" },
    "filter-seed": { type: "string", default: "11" },
    "no-hnswlib": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    /** Overrides HnswIndex.filterExactMax / filterOneHopMin (for tuning the plan thresholds). */
    "exact-max": { type: "string" },
    "one-hop-min": { type: "string" },
    "cache-dir": { type: "string", default: join(root, ".cache", "bench") },
    through: { type: "string", default: "collection" },
  },
});

function int(name: string, v: string | undefined): number {
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) {
    throw new RangeError(`--${name} "${v}" must be a positive integer`);
  }
  return x;
}

const log = (s: string) => console.error(s);
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const cacheDir = args["cache-dir"]!;
mkdirSync(cacheDir, { recursive: true });
const M = int("M", args.M);
const efConstruction = int("ef-construction", args["ef-construction"]);
const k = int("k", args.k);
const efs = args.efs!.split(",").map((s) => int("efs", s));
const payloadSeed = int("payload-seed", args["payload-seed"]);
const filterSeed = int("filter-seed", args["filter-seed"]);
const ds = loadDataset({ cacheDir, n: int("n", args.n) });
const base = ds.base, queries = ds.queries;
log(
  `bench:filtered (through ${args.through}): ${ds.name}: ${base.n} base vectors, ${queries.n} queries, dim ${base.dim}, ` +
    `metric ${ds.metric}, M=${M}, ef_construction=${efConstruction}, k=${k}; load ${load()}`,
);
const payload = makePayload(base.n, payloadSeed);
const cases = makeCases(queries.n, filterSeed);

// ---- exact filtered ground truth -------------------------------------------------------------

/** Top-k row numbers among the points each query's filter passes (-1 pads short rows). */
function filteredGroundTruth(c: FilterCase): Matrix<Int32Array> {
  const store = new VectorStore(base.dim, ds.metric);
  store.reserve(base.n);
  for (let i = 0; i < base.n; i++) {
    store.write(i, base.data.subarray(i * base.dim, (i + 1) * base.dim));
  }
  const out = new Int32Array(queries.n * k).fill(-1);
  const heap = new MaxHeap(k + 1);
  const match = new Uint32Array(base.n);
  for (let q = 0; q < queries.n; q++) {
    const test = compile(payload, c.specs[q]);
    let m = 0;
    for (let i = 0; i < base.n; i++) if (test(i)) match[m++] = i;
    store.setQuery(queries.data.subarray(q * queries.dim, (q + 1) * queries.dim));
    heap.clear();
    for (let start = 0; start < m; start += BATCH_MAX) {
      const len = Math.min(BATCH_MAX, m - start);
      store.u32.set(match.subarray(start, start + len), store.slotsIdx);
      store.distancesToSlots(store.queryPtr, len);
      for (let j = 0; j < len; j++) {
        const d = store.f32[store.outIdx + j];
        if (heap.size < k || d < heap.topKey()) {
          heap.push(d, match[start + j]);
          if (heap.size > k) heap.pop();
        }
      }
    }
    for (let i = heap.size - 1; i >= 0; i--) out[q * k + i] = heap.pop();
  }
  return { n: queries.n, dim: k, data: out };
}

const gtDir = join(cacheDir, "gt");
mkdirSync(gtDir, { recursive: true });
const gtPaths: Record<string, string> = {};
const gts: Record<string, Matrix<Int32Array>> = {};
for (const c of cases) {
  const slug = c.name.replace("%", "pct");
  const path = join(
    gtDir,
    `${ds.name}-${ds.metric}-filtered-${slug}-k${k}-p${payloadSeed}-f${filterSeed}.ivecs`,
  );
  if (!existsSync(path)) {
    log(`bench:filtered: computing exact filtered top-${k} for case ${c.name}`);
    writeIvecs(path, filteredGroundTruth(c));
  }
  gtPaths[c.name] = path;
  gts[c.name] = readIvecs(path);
}

// ---- the planner stand-in: payload indexes over the typed-array columns -----------------------

/** Sorted ids per value of a keyword column (what a keyword payload index holds). */
function postings(col: ArrayLike<number>, values: number): Uint32Array[] {
  const counts = new Uint32Array(values);
  for (let i = 0; i < col.length; i++) counts[col[i]]++;
  const lists = Array.from(counts, (c) => new Uint32Array(c));
  const fill = new Uint32Array(values);
  for (let i = 0; i < col.length; i++) lists[col[i]][fill[col[i]]++] = i;
  return lists;
}
const kw10Index = postings(payload.kw10, 10);
const kw1000Index = postings(payload.kw1000, 1000);
// A range index over num: ids ordered by value, and the values in that order.
const numOrder = Uint32Array.from({ length: base.n }, (_, i) => i).sort((a, b) =>
  payload.num[a] - payload.num[b]
);
const numSorted = Uint16Array.from(numOrder, (i) => payload.num[i]);

function lowerBound(a: Uint16Array, v: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Plans one filter as the collection's planner will: a single indexed clause becomes the id
 * list its index holds (a keyword value's postings, a union of them, or a range's ids, sorted);
 * anything else a predicate over the columns, selectivity left for the index to sample.
 */
function plan(p: Payload, spec: FilterSpec): PlannedFilter {
  if (spec.clauses.length === 1) {
    const c = spec.clauses[0];
    if (c.attr === "num") {
      const ids = numOrder.slice(lowerBound(numSorted, c.lo), lowerBound(numSorted, c.hi));
      return { ids: ids.sort() };
    }
    if (c.op === "in") {
      const lists = c.attr === "kw10" ? kw10Index : kw1000Index;
      if (c.values.length === 1) return { ids: lists[c.values[0]] };
      let total = 0;
      for (const v of c.values) total += lists[v].length;
      const ids = new Uint32Array(total);
      let o = 0;
      for (const v of c.values) {
        ids.set(lists[v], o);
        o += lists[v].length;
      }
      return { ids: ids.sort() };
    }
  }
  return { test: compile(p, spec) };
}

// ---- ours ----------------------------------------------------------------------------------------

const through = args.through!;
if (through !== "collection" && through !== "index") {
  throw new RangeError(`--through "${through}" must be collection or index`);
}

/** A spec as the Qdrant-form JSON filter a client would send. */
function specFilter(spec: FilterSpec): Record<string, unknown> {
  const must: unknown[] = [];
  const must_not: unknown[] = [];
  for (const c of spec.clauses) {
    if (c.attr === "num") {
      must.push({ key: "num", range: { gte: c.lo, lt: c.hi } });
      continue;
    }
    const prefix = c.attr === "kw10" ? "k" : "w";
    const values = c.values.map((v) => `${prefix}${v}`);
    const match = values.length === 1 ? { value: values[0] } : { any: values };
    (c.op === "in" ? must : must_not).push({ key: c.attr, match });
  }
  return must_not.length === 0 ? { must } : { must, must_not };
}

let collection: Collection | null = null;
const collectionDir = mkdtempSync(join(tmpdir(), "bench-filtered-"));
if (through === "collection") {
  collection = await Collection.create(join(collectionDir, "c"), {
    name: "bench",
    dimension: base.dim,
    metric: ds.metric,
    m: M,
    ef_construction: efConstruction,
  });
  await collection.createFieldIndex("kw10", "keyword");
  await collection.createFieldIndex("kw1000", "keyword");
  await collection.createFieldIndex("num", "integer");
  const t0 = performance.now();
  const BATCH = 5000;
  for (let start = 0; start < base.n; start += BATCH) {
    const points: Point[] = [];
    for (let i = start; i < Math.min(base.n, start + BATCH); i++) {
      const json = `{"kw10":"k${payload.kw10[i]}","kw1000":"w${payload.kw1000[i]}",` +
        `"num":${payload.num[i]}}`;
      points.push({
        id: i,
        vector: base.data.subarray(i * base.dim, (i + 1) * base.dim),
        payload: parsePayload(json, "payload"),
      });
    }
    await collection.putBatch(points);
  }
  log(
    `  collection built with payloads and 3 payload indexes in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );
}
const filterTexts = new Map<FilterSpec, string>();
for (const c of cases) {
  for (const sp of c.specs) filterTexts.set(sp, JSON.stringify(specFilter(sp)));
}

const index = collection !== null ? collection.index : new HnswIndex({
  dim: base.dim,
  metric: ds.metric,
  M,
  efConstruction,
  capacity: base.n,
});
if (args["exact-max"] !== undefined) index.filterExactMax = Number(args["exact-max"]);
if (args["one-hop-min"] !== undefined) index.filterOneHopMin = Number(args["one-hop-min"]);
if (collection === null) {
  const t0 = performance.now();
  const step = Math.max(1, Math.floor(base.n / 5));
  for (let i = 0; i < base.n; i++) {
    index.add(i, base.data.subarray(i * base.dim, (i + 1) * base.dim));
    if ((i + 1) % step === 0) {
      log(
        `  vectordb build ${i + 1}/${base.n} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
  }
}

/**
 * Our filtered search, the one place the benchmark calls into the database: plan the filter,
 * then search the index. `spec` null is the unfiltered search.
 */
export function oursSearch(
  query: Float32Array,
  kk: number,
  ef: number,
  spec: FilterSpec | null,
): number[] {
  let hits;
  if (collection !== null) {
    // The filter arrives as JSON text, as from a client; parsed and planned per query.
    hits = collection.search(
      query,
      kk,
      ef,
      spec === null ? null : parseFilter(filterTexts.get(spec)!, "filter"),
    );
  } else {
    hits = spec === null
      ? index.search(query, kk, { ef })
      : index.filteredSearch(query, kk, plan(payload, spec), { ef });
  }
  const ids = new Array<number>(hits.length);
  // The bench writes integer ids only.
  for (let i = 0; i < hits.length; i++) ids[i] = hits[i].id as number;
  return ids;
}

const rows: FilteredRow[] = [];
const emit = (row: FilteredRow) => {
  rows.push(row);
  if (args.json) console.log(JSON.stringify(row));
};
const qv = Array.from(
  { length: queries.n },
  (_, q) => queries.data.subarray(q * queries.dim, (q + 1) * queries.dim),
);
function runOurs(name: string, specs: (FilterSpec | null)[], gt: Matrix<Int32Array>): void {
  for (const ef of efs) {
    const e = Math.max(ef, k);
    for (let q = 0; q < Math.min(100, queries.n); q++) oursSearch(qv[q], k, e, specs[q]);
    const plans: Record<string, number> = {};
    const got: number[][] = new Array(queries.n);
    const t0 = performance.now();
    for (let q = 0; q < queries.n; q++) {
      got[q] = oursSearch(qv[q], k, e, specs[q]);
      if (specs[q] !== null) plans[index.lastFilterPlan] = (plans[index.lastFilterPlan] ?? 0) + 1;
    }
    const s = (performance.now() - t0) / 1000;
    emit({
      impl: "vectordb",
      case: name,
      ef,
      recall_at_10: recallOf(got, gt, k),
      qps: queries.n / s,
      plans,
    });
  }
}
log(`bench:filtered: ours, load ${load()}`);
runOurs("none", new Array(queries.n).fill(null), ds.gt);
for (const c of cases) runOurs(c.name, c.specs, gts[c.name]);
const loadOurs = load();

// ---- hnswlib-node under Node ---------------------------------------------------------------------

let loadTheirs = "n/a";
if (!args["no-hnswlib"]) {
  const dir = join(cacheDir, "hnswlib");
  if (!existsSync(join(dir, "node_modules", "hnswlib-node", "build", "Release", "addon.node"))) {
    log("bench:filtered: hnswlib-node is not installed; run `deno task bench` once to install it");
  } else {
    log(`bench:filtered: hnswlib-node under Node, load ${load()}`);
    const runnerCfg = {
      hnswlibDir: dir,
      basePath: ds.basePath,
      n: base.n,
      queriesPath: ds.queriesPath,
      unfilteredGtPath: ds.gtPath,
      gtPaths,
      metric: ds.metric,
      M,
      efConstruction,
      efs,
      k,
      payloadSeed,
      filterSeed,
    };
    const r = spawnSync(
      "/usr/bin/env",
      [
        "node",
        "--max-old-space-size=16384",
        "--import",
        join(root, "node_modules", "tsx", "dist", "esm", "index.mjs"),
        join(root, "scripts", "bench", "lib", "hnswlib_filtered_runner.ts"),
        JSON.stringify(runnerCfg),
      ],
      { stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 },
    );
    if (r.status !== 0) {
      log(`bench:filtered: hnswlib runner failed with status ${r.status}`);
    } else {
      for (const l of r.stdout.toString().trim().split("\n").filter(Boolean)) {
        emit(JSON.parse(l) as FilteredRow);
      }
    }
    loadTheirs = load();
  }
}

// ---- report ----------------------------------------------------------------------------------------

const cell = (r: FilteredRow | undefined) =>
  r === undefined ? "".padEnd(17) : `${r.recall_at_10.toFixed(4)} ${r.qps.toFixed(0).padStart(7)}`;
log(`\nrecall@10 and queries/s (load after ours: ${loadOurs}; after hnswlib: ${loadTheirs})`);
log(`  case    ef   vectordb (recall   qps)  hnswlib-node (recall   qps)  our plans`);
for (const name of ["none", ...cases.map((c) => c.name)]) {
  for (const ef of efs) {
    const a = rows.find((r) => r.impl === "vectordb" && r.case === name && r.ef === ef);
    const b = rows.find((r) => r.impl === "hnswlib-node" && r.case === name && r.ef === ef);
    const plans = a?.plans ? Object.entries(a.plans).map(([p, n]) => `${p}:${n}`).join(" ") : "";
    log(
      `  ${name.padEnd(6)} ${String(ef).padStart(4)}   ${cell(a)}            ${cell(b)}   ${plans}`,
    );
  }
}
/** Fastest row reaching `target` recall, or null. */
const best = (impl: string, name: string, target: number) =>
  rows.filter((r) => r.impl === impl && r.case === name && r.recall_at_10 >= target)
    .sort((x, y) => y.qps - x.qps)[0] ?? null;
log(`\nfastest setting with recall@10 >= 0.95 (queries/s @ ef):`);
const noneOurs = best("vectordb", "none", 0.95);
for (const name of ["none", ...cases.map((c) => c.name)]) {
  const a = best("vectordb", name, 0.95);
  const b = best("hnswlib-node", name, 0.95);
  const fmt = (r: FilteredRow | null) => r === null ? "n/a" : `${r.qps.toFixed(0)} @ ef ${r.ef}`;
  const vsNone = a && noneOurs ? ` (${(a.qps / noneOurs.qps).toFixed(2)} x our unfiltered)` : "";
  log(`  ${name.padEnd(6)} vectordb ${fmt(a)}${vsNone}; hnswlib-node ${fmt(b)}`);
}
log(`load average now: ${load()}`);
if (collection !== null) await collection.close({ snapshot: false });
rmSync(collectionDir, { recursive: true, force: true });
