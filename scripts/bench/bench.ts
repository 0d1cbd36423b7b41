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
 * ```
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
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HnswIndex } from "../../src/index/hnsw.ts";
import { parseMetric } from "../../src/kernels/kernels.ts";
import { parseQuantization } from "../../src/index/quantizer.ts";
import { DEFAULT_REORDER, parseReorderKind } from "../../src/index/reorder.ts";
import { loadDataset } from "./lib/dataset.ts";
import { type Engine, type Row, sweep } from "./lib/sweep.ts";

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
      `  ${row.impl.padEnd(13)} ef=${String(row.ef).padStart(4)}  recall@10=${
        row.recall_at_10.toFixed(4)
      }  qps=${row.qps.toFixed(0).padStart(6)}  mean=${row.mean_ms.toFixed(3)}ms  p99=${
        row.p99_ms.toFixed(3)
      }ms`,
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
    index = new HnswIndex({
      dim: b.dim,
      metric: ds.metric,
      M,
      efConstruction,
      capacity: b.n,
      quantization,
      // Trained after the build (below), so the float sweep runs first on the same graph.
      trainSize: b.n + 1,
    });
    const step = Math.max(1, Math.floor(b.n / 10));
    const t0 = performance.now();
    for (let i = 0; i < b.n; i++) {
      index.add(i, b.data.subarray(i * b.dim, (i + 1) * b.dim));
      if ((i + 1) % step === 0 && !args.json) {
        log(`  vectordb build ${i + 1}/${b.n} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      }
    }
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
sweep(ours, ds.base, ds.queries, ds.gt, cfg, emit);
const oursRows = rows.filter((r) => r.impl === "vectordb");
log(
  `  vectordb build ${oursRows[0].build_s.toFixed(1)} s (${oursRows[0].inserts_per_s.toFixed(0)} ` +
    `inserts/s), ${oursRows[0].bytes_per_vector!.toFixed(1)} bytes/vector ` +
    `(budget 1.3 x (4*dim + 8*M) = ${(1.3 * (4 * ds.base.dim + 8 * M)).toFixed(1)})`,
);

// ---- ours over int8 codes (same graph) -----------------------------------------------------
const int8Rows: Map<number, Row[]> = new Map();
if (quantization === "int8") {
  let trainS = 0;
  for (const rescore of rescores) {
    const impl = `vectordb-int8-r${rescore}`;
    const engine: Engine = {
      ...ours,
      impl,
      build() {
        if (index.codes === null) {
          const t0 = performance.now();
          index.trainQuantizer();
          trainS = (performance.now() - t0) / 1000;
        }
        index.rescore = rescore;
      },
    };
    const mine: Row[] = [];
    sweep(engine, ds.base, ds.queries, ds.gt, cfg, (row) => {
      // The build of a quantized index is the float build plus the training and encoding.
      const build_s = oursRows[0].build_s + trainS;
      const r = { ...row, build_s, inserts_per_s: ds.base.n / build_s };
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
    `  recall@10=${target.toFixed(2)}: vectordb ${a === null ? "n/a" : a.toFixed(0)} qps` +
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
