/**
 * `deno task bench`: recall, latency and build speed of our HNSW against native hnswlib
 * (npm `hnswlib-node`, run under Node) on the same data and parameters, in the same run.
 *
 * Data: GloVe-100 (341,479 words; 1,000 held out as queries) fetched on first use, or any
 * TEXMEX set with `--base B.fvecs --queries Q.fvecs [--gt G.ivecs] --metric l2|cosine|dot`.
 *
 * @example
 * ```sh
 * deno task bench                          # full GloVe-100, M=16, ef_construction=200
 * deno task bench --n 50000 --json         # first 50,000 base vectors, JSON rows
 * deno task bench --no-hnswlib --efs 50,100
 * deno task bench --quantization int8      # also int8 codes with exact re-ranking
 * deno task bench --dataset mnist --quantization int8 --rescore 2,4
 * deno task bench --quantization int8 --index-file .cache/glove.idx  # build once, then load
 * deno task bench --reorder none           # slots as inserted (default: as a snapshot load has them)
 * deno task bench --build-threads 1,2      # the graph built with 1, then 2 linking threads
 * ```
 *
 * | flag                | default    | meaning                                                   |
 * |---------------------|------------|-----------------------------------------------------------|
 * | `--n`               | all        | first n base vectors (ground truth recomputed and cached) |
 * | `--M`               | 16         | links per node above layer 0 (2M on layer 0)              |
 * | `--ef-construction` | 200        | candidate list while inserting                            |
 * | `--efs`             | 10,...,800 | ef values swept                                           |
 * | `--k`               | 10         | neighbours per query                                      |
 * | `--no-hnswlib`      | off        | ours only                                                 |
 * | `--json`            | off        | one JSON row per line on stdout                           |
 * | `--dataset`         | glove      | `glove` or `mnist` (or `--base/--queries/--gt/--metric`)  |
 * | `--quantization`    | none       | `int8`: also swept over int8 codes, once per `--rescore`  |
 * | `--rescore`         | 4          | int8 re-ranking factors                                   |
 * | `--index-file`      | none       | save the built graph there, or load it when it exists     |
 * | `--reorder`         | groups     | slot order after the build (`none`: as inserted)          |
 * | `--build-threads`   | none       | list (`1,2`): one build per value, each swept (below)     |
 * | `--batch`           | 1000       | points per batch of a build with more than one thread     |
 *
 * `--build-threads 1,2` builds a fresh graph for each value through the node's own insert path:
 * 1 inserts in order on this thread (a node with `--build-threads 1`); more place each `--batch`
 * of points on this thread and link it on a {@link GraphPool} of that many workers, batch after
 * batch, as a node applies PutBatches (storage/collection.ts). Each build prints its wall and
 * CPU seconds (the whole process, every thread; the inserts only: the pool's start and the slot
 * reorder are outside) with the load average, then the ef sweep of its graph (rows tagged
 * `b1`, `b2`; JSON rows carry `build_threads`). The summary lists every build beside
 * hnswlib-node's with recall@10 at ef 200 and the ratio to the 1-thread wall. hnswlib-node builds
 * on one thread: its `addPoint` is a synchronous call with no thread option. A probe of how much
 * two threads can do on the machine at that moment (pure-CPU loop) is printed first. Not with
 * `--index-file`, nor above 1 with `--quantization int8` (trained after the build here, an int8
 * index links in order until then).
 *
 * With `--quantization int8` the one graph is built once (the build walks the floats either
 * way, so it is the graph a quantized collection gets), swept over floats, then the quantizer
 * is trained from all base vectors (that time is added to the build) and the same ef values
 * are swept over the codes, once per `--rescore` factor.
 * @module
 */
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { BinaryReader, BinaryWriter, BufferSink } from "../../src/io/binary.ts";
import { spawnSync } from "node:child_process";
import { loadavg as osLoadavg } from "node:os";
import process from "node:process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HnswIndex } from "../../src/index/hnsw.ts";
import { GraphPool, MAX_POOL_THREADS } from "../../src/index/graph_pool.ts";
import { parseMetric } from "../../src/kernels/kernels.ts";
import { parseQuantization } from "../../src/index/quantizer.ts";
import { DEFAULT_REORDER, parseReorderKind } from "../../src/index/reorder.ts";
import { loadDataset } from "./lib/dataset.ts";
import { type Engine, type Row, sweep } from "./lib/sweep.ts";
import type { Matrix } from "./lib/fvecs.ts";
import { cpuScaling } from "./lib/cpu_scaling.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    base: { type: "string" },
    queries: { type: "string" },
    gt: { type: "string" },
    metric: { type: "string" },
    n: { type: "string" },
    M: { type: "string", default: "16" },
    "ef-construction": { type: "string", default: "200" },
    efs: { type: "string", default: "10,20,40,80,120,200,300,400,600,800" },
    k: { type: "string", default: "10" },
    "no-hnswlib": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    dataset: { type: "string" },
    quantization: { type: "string", default: "none" },
    rescore: { type: "string", default: "4" },
    "index-file": { type: "string" },
    reorder: { type: "string", default: DEFAULT_REORDER },
    "build-threads": { type: "string" },
    batch: { type: "string", default: "1000" },
    "cache-dir": { type: "string", default: join(root, ".cache", "bench") },
  },
});

function int(name: string, v: string | undefined): number {
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) {
    throw new RangeError(`--${name} "${v}" must be a positive integer`);
  }
  return x;
}

const cacheDir = args["cache-dir"]!;
mkdirSync(cacheDir, { recursive: true });
const M = int("M", args.M);
const efConstruction = int("ef-construction", args["ef-construction"]);
const k = int("k", args.k);
const efs = args.efs!.split(",").map((s) => int("efs", s));
const ds = loadDataset({
  cacheDir,
  base: args.base,
  queries: args.queries,
  gt: args.gt,
  metric: args.metric ? parseMetric(args.metric) : undefined,
  n: args.n ? int("n", args.n) : undefined,
  dataset: args.dataset,
});
const quantization = parseQuantization(args.quantization!);
const rescores = args.rescore!.split(",").map((s) => int("rescore", s));
/** `--build-threads` values in order; null: the one build on this thread, as without the flag. */
const buildThreads = args["build-threads"] === undefined
  ? null
  : args["build-threads"].split(",").map((s) => {
    const t = int("build-threads", s);
    if (t > MAX_POOL_THREADS) {
      throw new RangeError(`--build-threads "${s}" must be at most ${MAX_POOL_THREADS}`);
    }
    return t;
  });
const batch = int("batch", args.batch);
if (buildThreads !== null && args["index-file"] !== undefined) {
  throw new RangeError(
    "--build-threads and --index-file exclude each other (a loaded graph is not built)",
  );
}
if (buildThreads !== null && quantization !== "none" && buildThreads.some((t) => t > 1)) {
  // The bench trains the quantizer after the build; until then an int8 index inserts in order
  // (HnswIndex.batchable), so more threads would silently build on one.
  throw new RangeError(
    `--build-threads "${args["build-threads"]}" above 1 needs --quantization none (an int8 ` +
      "index links in order until its quantizer trains, after the build here)",
  );
}
const loadavg = () => osLoadavg().map((x) => x.toFixed(2)).join(" ");
const log = (s: string) => console.error(s);
log(
  `bench: ${ds.name}: ${ds.base.n} base vectors, ${ds.queries.n} queries, dim ${ds.base.dim}, ` +
    `metric ${ds.metric}, M=${M}, ef_construction=${efConstruction}, k=${k}`,
);

const rows: Row[] = [];
const emit = (row: Row) => {
  rows.push(row);
  if (args.json) {
    const { mean_ms: _m, inserts_per_s: _i, ...rest } = row;
    console.log(
      JSON.stringify({ ...rest, mean_ms: row.mean_ms, inserts_per_s: row.inserts_per_s }),
    );
  } else {
    log(
      `  ${
        (row.build_threads === undefined ? row.impl : `${row.impl} b${row.build_threads}`)
          .padEnd(13)
      } ef=${String(row.ef).padStart(4)}  recall@10=${row.recall_at_10.toFixed(4)}  qps=${
        row.qps.toFixed(0).padStart(6)
      }  mean=${row.mean_ms.toFixed(3)}ms  p99=${row.p99_ms.toFixed(3)}ms`,
    );
  }
};
const cfg = { dataset: ds.name, metric: ds.metric, M, efConstruction, efs, k };

// ---- ours ----------------------------------------------------------------------------------
let index!: HnswIndex;
/** Renumbers the slots as a snapshot load gets them (`--reorder none`: as inserted). */
function reorder(): void {
  if (args.reorder === "none") return;
  const t0 = performance.now();
  index.reorder(parseReorderKind(args.reorder!));
  log(`  vectordb: slots in ${args.reorder} order (${(performance.now() - t0).toFixed(0)} ms)`);
}
function newIndex(b: Matrix<Float32Array>): HnswIndex {
  return new HnswIndex({
    dim: b.dim,
    metric: ds.metric,
    M,
    efConstruction,
    capacity: b.n,
    quantization,
    // Trained after the build (below), so the float sweep runs first on the same graph.
    trainSize: b.n + 1,
  });
}
/** Progress every tenth of the build (text mode). */
function progress(b: Matrix<Float32Array>, done: number, t0: number, label: string): void {
  const step = Math.max(1, Math.floor(b.n / 10));
  if (!args.json && done % step === 0) {
    log(`  ${label} build ${done}/${b.n} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
}
/** Inserts every base vector in order on this thread: the node's path with one build thread. */
function insertInOrder(b: Matrix<Float32Array>, label: string): void {
  const t0 = performance.now();
  for (let i = 0; i < b.n; i++) {
    index.add(i, b.data.subarray(i * b.dim, (i + 1) * b.dim));
    progress(b, i + 1, t0, label);
  }
}
const ours: Engine = {
  impl: "vectordb",
  build(b) {
    const file = args["index-file"];
    if (file !== undefined && existsSync(file)) {
      // A graph saved by an earlier run with the same data and parameters: the build time
      // reported is then the load time (say so), the searches are the same.
      index = HnswIndex.readFrom(new BinaryReader(new Uint8Array(readFileSync(file))));
      if (index.count !== b.n || index.dim !== b.dim || index.M !== M) {
        throw new RangeError(`--index-file ${file} holds another index (${index.count} points)`);
      }
      log(`  vectordb: graph loaded from ${file} (build_s below is the load time)`);
      reorder();
      return;
    }
    index = newIndex(b);
    insertInOrder(b, "vectordb");
    if (file !== undefined) {
      const sink = new BufferSink({ bytes_max: 2 ** 31 });
      const w = new BinaryWriter(sink);
      index.writeTo(w);
      w.flush();
      writeFileSync(file, sink.bytes());
      log(`  vectordb: graph saved to ${file}`);
    }
    reorder();
  },
  prepareQueries(q) {
    const out: Float32Array[] = [];
    for (let i = 0; i < q.n; i++) out.push(q.data.subarray(i * q.dim, (i + 1) * q.dim));
    return out;
  },
  setEf(ef) {
    index.ef = ef;
  },
  search(q, kk) {
    const hits = index.search(q as Float32Array, kk);
    const ids = new Array<number>(hits.length);
    for (let i = 0; i < hits.length; i++) ids[i] = hits[i].id;
    return ids;
  },
  bytesPerVector(n) {
    return index.memoryBytes / n;
  },
};

/**
 * Starts `pool`'s workers and waits until `threads` of them have linked a batch, so the timed
 * build does not include loading the worker script (a running node's pool is loaded by then).
 */
async function warmPool(pool: GraphPool, threads: number, dim: number): Promise<void> {
  const n = 8 * threads;
  const tiny = new HnswIndex({ dim, metric: ds.metric, M, efConstruction, capacity: n });
  const ids = Array.from({ length: n }, (_, i) => i);
  const vectors = Array.from({ length: n * dim }, (_, i) => Math.sin(i + 1));
  await pool.addBatch(tiny, ids, vectors, threads);
  await pool.detach(tiny);
}

/**
 * `--build-threads`: builds the graph with `threads` linking threads through the node's own path
 * (storage/collection.ts for a PutBatch): one thread inserts in order on this thread (as a node
 * with `--build-threads 1`); more place each `--batch` of points here and link it on a
 * {@link GraphPool} of `threads` workers ({@link GraphPool.addBatch}), one batch after the other
 * (a node applies its PutBatches so). Wall and CPU seconds (the whole process, every thread) of
 * the inserts alone: the pool's start and the slot reorder after are outside them.
 */
async function buildWith(
  b: Matrix<Float32Array>,
  threads: number,
): Promise<{ wall_s: number; cpu_s: number }> {
  const label = `vectordb (${threads} build thread${threads === 1 ? "" : "s"})`;
  index = newIndex(b);
  const pool = threads > 1 ? new GraphPool(threads, { logger: log }) : null;
  try {
    if (pool !== null) await warmPool(pool, threads, b.dim);
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    if (pool === null) {
      insertInOrder(b, label);
    } else {
      const ids = new Int32Array(b.n);
      for (let i = 0; i < b.n; i++) ids[i] = i;
      const step = Math.max(batch, Math.floor(b.n / 10));
      for (let start = 0; start < b.n; start += batch) {
        const end = Math.min(b.n, start + batch);
        await pool.addBatch(
          index,
          ids.subarray(start, end),
          b.data.subarray(start * b.dim, end * b.dim),
          threads,
        );
        if (!args.json && (Math.floor(end / step) > Math.floor(start / step) || end === b.n)) {
          log(`  ${label} build ${end}/${b.n} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
        }
      }
      await pool.detach(index);
    }
    const wall_s = (performance.now() - t0) / 1000;
    const c1 = process.cpuUsage(c0);
    return { wall_s, cpu_s: (c1.user + c1.system) / 1e6 };
  } finally {
    await pool?.close();
  }
}

/** One `--build-threads` value's build and its sweep. */
interface ThreadBuild {
  threads: number;
  wall_s: number;
  cpu_s: number;
  load: string;
  rows: Row[];
}
const threadBuilds: ThreadBuild[] = [];
if (buildThreads === null) {
  sweep(ours, ds.base, ds.queries, ds.gt, cfg, emit);
} else {
  log(
    `bench: machine now: 2 threads do ${(await cpuScaling()).toFixed(2)}x the work of 1 ` +
      `(pure-CPU loop)  [load ${loadavg()}]`,
  );
  for (const threads of buildThreads) {
    const built = await buildWith(ds.base, threads);
    const load = loadavg();
    log(
      `  vectordb ${threads} build thread${threads === 1 ? "" : "s"}: ${
        built.wall_s.toFixed(1)
      } s wall, ${built.cpu_s.toFixed(1)} CPU s  [load ${load}]`,
    );
    reorder();
    const mine: Row[] = [];
    // The graph is built (above): the sweep only searches it; its rows carry the build figures.
    sweep({ ...ours, build() {} }, ds.base, ds.queries, ds.gt, cfg, (row) => {
      const r: Row = {
        ...row,
        build_s: built.wall_s,
        build_cpu_s: built.cpu_s,
        inserts_per_s: ds.base.n / built.wall_s,
        build_threads: threads,
      };
      mine.push(r);
      emit(r);
    });
    threadBuilds.push({ threads, ...built, load, rows: mine });
  }
}
// The first build's rows (the only one without --build-threads) stand for ours below.
const oursRows = threadBuilds.length > 0
  ? threadBuilds[0].rows
  : rows.filter((r) => r.impl === "vectordb");
log(
  `  vectordb build ${oursRows[0].build_s.toFixed(1)} s (${oursRows[0].inserts_per_s.toFixed(0)} ` +
    `inserts/s), ${oursRows[0].bytes_per_vector!.toFixed(1)} bytes/vector ` +
    `(budget 1.3 x (4*dim + 8*M) = ${(1.3 * (4 * ds.base.dim + 8 * M)).toFixed(1)})`,
);

// ---- ours over int8 codes (same graph) -----------------------------------------------------
const int8Rows: Map<number, Row[]> = new Map();
if (quantization === "int8") {
  let trainS = 0;
  let trainCpuS = 0;
  for (const rescore of rescores) {
    const impl = `vectordb-int8-r${rescore}`;
    const engine: Engine = {
      ...ours,
      impl,
      build() {
        if (index.codes === null) {
          const t0 = performance.now();
          const c0 = process.cpuUsage();
          index.trainQuantizer();
          trainS = (performance.now() - t0) / 1000;
          const c1 = process.cpuUsage(c0);
          trainCpuS = (c1.user + c1.system) / 1e6;
        }
        index.rescore = rescore;
      },
    };
    const mine: Row[] = [];
    sweep(engine, ds.base, ds.queries, ds.gt, cfg, (row) => {
      // The build of a quantized index is the float build plus the training and encoding.
      const build_s = oursRows[0].build_s + trainS;
      const build_cpu_s = oursRows[0].build_cpu_s + trainCpuS;
      const r = { ...row, build_s, build_cpu_s, inserts_per_s: ds.base.n / build_s };
      mine.push(r);
      emit(r);
    });
    int8Rows.set(rescore, mine);
  }
  const floatBytes = index.store.strideBytes;
  const codeBytes = index.codeBytesPerVector;
  log(
    `  vectordb-int8 train+encode ${trainS.toFixed(2)} s; vector bytes: float ${floatBytes}, ` +
      `int8 code row ${codeBytes} (${(codeBytes / floatBytes).toFixed(3)}x); whole index ` +
      `${(index.memoryBytes / ds.base.n).toFixed(1)} bytes/vector with both`,
  );
}

// ---- hnswlib-node under Node ---------------------------------------------------------------
function ensureHnswlib(): string | null {
  const dir = join(cacheDir, "hnswlib");
  if (existsSync(join(dir, "node_modules", "hnswlib-node", "build", "Release", "addon.node"))) {
    return dir;
  }
  mkdirSync(dir, { recursive: true });
  // A package.json of its own, so npm does not walk up into the project's; the native
  // addon's build script must be allowed explicitly (npm 11 blocks install scripts).
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({
      name: "bench-hnswlib",
      private: true,
      allowScripts: { "hnswlib-node": true },
    }),
  );
  log("bench: installing hnswlib-node@3.0.0 (native build, bench only)");
  const r = spawnSync("/usr/bin/env", [
    "npm",
    "install",
    "--no-audit",
    "--no-fund",
    "hnswlib-node@3.0.0",
  ], {
    cwd: dir,
    stdio: ["ignore", "inherit", "inherit"],
  });
  return r.status === 0 ? dir : null;
}

let theirs: Row[] = [];
if (!args["no-hnswlib"]) {
  const dir = ensureHnswlib();
  if (dir === null) {
    log("bench: hnswlib-node could not be installed; skipping the comparison");
  } else {
    const runnerCfg = {
      hnswlibDir: dir,
      dataset: ds.name,
      basePath: ds.basePath,
      n: ds.base.n,
      queriesPath: ds.queriesPath,
      gtPath: ds.gtPath,
      metric: ds.metric,
      M,
      efConstruction,
      efs,
      k,
      indexFile: args["index-file"] === undefined ? undefined : `${args["index-file"]}.hnswlib`,
    };
    log("bench: running hnswlib-node under Node");
    const r = spawnSync(
      "/usr/bin/env",
      [
        "node",
        "--max-old-space-size=16384",
        "--import",
        join(root, "node_modules", "tsx", "dist", "esm", "index.mjs"),
        join(root, "scripts", "bench", "lib", "hnswlib_runner.ts"),
        JSON.stringify(runnerCfg),
      ],
      { stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 },
    );
    if (r.status !== 0) {
      log(`bench: hnswlib runner failed with status ${r.status}`);
    } else {
      theirs = r.stdout.toString().trim().split("\n").filter(Boolean).map((l: string) =>
        JSON.parse(l) as Row
      );
      for (const row of theirs) emit(row);
    }
  }
}

// ---- comparison ----------------------------------------------------------------------------
/** Queries/s at a recall target, interpolated linearly between the two ef points around it. */
function qpsAt(rs: Row[], target: number): number | null {
  const s = [...rs].sort((a, b) => a.recall_at_10 - b.recall_at_10);
  for (let i = 0; i < s.length; i++) {
    if (s[i].recall_at_10 >= target) {
      if (i === 0) return s[0].qps;
      const a = s[i - 1], b = s[i];
      const t = (target - a.recall_at_10) / (b.recall_at_10 - a.recall_at_10);
      return a.qps + t * (b.qps - a.qps);
    }
  }
  return null;
}

log("\nsummary:");
const uptime = spawnSync("uptime", [], { encoding: "utf8" });
log(`  load: ${(uptime.stdout ?? "").trim()}`);
log(`  max recall@10 (vectordb): ${Math.max(...oursRows.map((r) => r.recall_at_10)).toFixed(4)}`);
for (const target of [0.9, 0.95, 0.99]) {
  const a = qpsAt(oursRows, target);
  const b = theirs.length ? qpsAt(theirs, target) : null;
  log(
    `  recall@10=${target.toFixed(2)}: vectordb${
      threadBuilds.length > 0 ? ` b${threadBuilds[0].threads}` : ""
    } ${a === null ? "n/a" : a.toFixed(0)} qps` +
      (theirs.length
        ? `, hnswlib-node ${b === null ? "n/a" : b.toFixed(0)} qps, ratio ${
          a !== null && b !== null ? (a / b).toFixed(2) : "n/a"
        }`
        : ""),
  );
  for (const [rescore, rs] of int8Rows) {
    const c = qpsAt(rs, target);
    log(
      `      int8 rescore ${rescore}: ${c === null ? "n/a" : c.toFixed(0)} qps` +
        (a !== null && c !== null ? `, ${(c / a).toFixed(2)}x float` : "") +
        (b !== null && c !== null ? `, ${(c / b).toFixed(2)}x hnswlib-node` : ""),
    );
  }
}
if (theirs.length) {
  log(
    `  build: vectordb ${oursRows[0].build_s.toFixed(1)} s, hnswlib-node ${
      theirs[0].build_s.toFixed(1)
    } s, ratio ${(oursRows[0].build_s / theirs[0].build_s).toFixed(2)}`,
  );
}
if (threadBuilds.length > 0) {
  /** Recall@10 at ef 200 of a build's rows (the must-show figure), when 200 was swept. */
  const at200 = (rs: Row[]) => {
    const r = rs.find((x) => x.ef === 200);
    return r === undefined ? "n/a (add 200 to --efs)" : r.recall_at_10.toFixed(4);
  };
  const one = threadBuilds.find((b) => b.threads === 1);
  log(
    `  build of ${ds.base.n} points (M ${M}, ef_construction ${efConstruction}), batches of ` +
      `${batch} for more than one thread; wall and CPU seconds of the inserts, recall@10 at ef 200:`,
  );
  for (const b of threadBuilds) {
    const ratio = one !== undefined && b !== one
      ? `, ${(b.wall_s / one.wall_s).toFixed(2)}x the 1-thread wall` +
        (b.threads === 2 ? " (goal <= 0.60x)" : "")
      : "";
    log(
      `    vectordb ${String(b.threads).padStart(2)} build thread${b.threads === 1 ? " " : "s"}: ${
        b.wall_s.toFixed(1).padStart(7)
      } s wall, ${b.cpu_s.toFixed(1).padStart(7)} CPU s, recall ${at200(b.rows)}${ratio}  ` +
        `[load after it ${b.load}]`,
    );
  }
  if (theirs.length) {
    log(
      `    hnswlib-node 1 thread   : ${theirs[0].build_s.toFixed(1).padStart(7)} s wall, ${
        (theirs[0].build_cpu_s ?? NaN).toFixed(1).padStart(7)
      } CPU s, recall ${at200(theirs)}  (single-threaded: hnswlib-node's addPoint is a ` +
        "synchronous call with no thread option)",
    );
  }
}
