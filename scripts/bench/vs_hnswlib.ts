/**
 * Our search against hnswlib-node's on the same data, interleaved ef by ef so that a busy
 * machine slows both alike (`deno task bench` runs one after the other, so a change of load
 * between them moves the ratio):
 *
 * ```sh
 * deno run -A scripts/bench/vs_hnswlib.ts --index-file .cache/glove.idx \
 *   [--efs 100,140,160,200,400,800] [--rescore 2,4,8] [--rounds 3] [--reorder groups|none]
 * ```
 *
 * F is a graph `deno task bench --quantization int8 --index-file F` saved; hnswlib's own
 * graph is `F.hnswlib` (as the bench saves it; built and saved here when absent), run under
 * Node by lib/hnswlib_server.ts with hnswlib-node from `<cache-dir>/hnswlib` (the bench
 * installs it there). Our graph is loaded, renumbered in locality order (as a snapshot load
 * gets it; `--reorder none` keeps the saved order), and searched over floats and over int8
 * codes at each rescore. Each round runs, per ef, all 1,000 queries on every engine in turn;
 * queries/s is the median over rounds, recall@10 that of every query. Prints one line per ef
 * and engine, then queries/s at recall@10 0.95 and 0.99 (linear between the two efs around
 * it) and the ratios to hnswlib-node, with the load average.
 * @module
 */
import { parseArgs } from "node:util";
import { existsSync, readFileSync } from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HnswIndex } from "../../src/index/hnsw.ts";
import { parseReorderKind } from "../../src/index/reorder.ts";
import { BinaryReader, BinaryWriter, BufferSink } from "../../src/io/binary.ts";
import { loadDataset } from "./lib/dataset.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    "index-file": { type: "string" },
    efs: { type: "string", default: "100,120,140,160,200,300,400,600,800" },
    rescore: { type: "string", default: "2,4,8" },
    rounds: { type: "string", default: "3" },
    reorder: { type: "string", default: "groups" },
    "no-float": { type: "boolean", default: false },
    "cache-dir": { type: "string", default: join(root, ".cache", "bench") },
  },
});
const file = args["index-file"];
if (file === undefined) throw new TypeError("--index-file is required (a graph bench.ts saved)");
const cacheDir = resolve(args["cache-dir"]!);
const hnswlibDir = join(cacheDir, "hnswlib");
if (!existsSync(join(hnswlibDir, "node_modules", "hnswlib-node"))) {
  throw new Error(`hnswlib-node is not installed in ${hnswlibDir} (deno task bench installs it)`);
}
const ds = loadDataset({ cacheDir });
const k = 10;
const efs = args.efs!.split(",").map(Number);
const rescores = args.rescore!.split(",").map(Number);
const load = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");

// ---- ours: one float and one int8 index, the same graph in the same order -------------------
const saved = new Uint8Array(readFileSync(file));
const float = HnswIndex.readFrom(new BinaryReader(saved));
if (float.count !== ds.base.n) throw new RangeError(`${file} holds ${float.count} points`);
float.trainQuantizer();
const sink = new BufferSink({ bytes_max: 2 ** 31 });
const w = new BinaryWriter(sink);
float.writeTo(w);
w.flush();
const int8 = HnswIndex.readFrom(new BinaryReader(sink.bytes()));
float.codes = null;
let reorderNote = "saved order";
if (args.reorder !== "none") {
  const kind = parseReorderKind(args.reorder!);
  const t0 = performance.now();
  const order = float.reorder(kind);
  int8.permuteSlots(order);
  reorderNote = `${kind} order (${(performance.now() - t0).toFixed(0)} ms for both)`;
}
const q = ds.queries;
const queries = Array.from({ length: q.n }, (_, i) => q.data.subarray(i * q.dim, (i + 1) * q.dim));
const truth = queries.map((_, i) => new Set(ds.gt.data.subarray(i * ds.gt.dim, i * ds.gt.dim + k)));

function ours(ix: HnswIndex, ef: number, rescore: number): { qps: number; recall: number } {
  let hits = 0;
  const t0 = performance.now();
  for (let i = 0; i < queries.length; i++) {
    const res = ix.search(queries[i], k, { ef, rescore });
    for (const h of res) if (truth[i].has(h.id)) hits++;
  }
  const s = (performance.now() - t0) / 1000;
  return { qps: queries.length / s, recall: hits / (queries.length * k) };
}

// ---- theirs: hnswlib-node under Node, one request per ef ------------------------------------
const child = spawn("/usr/bin/env", [
  "node",
  "--max-old-space-size=16384",
  "--import",
  join(root, "node_modules", "tsx", "dist", "esm", "index.mjs"),
  join(root, "scripts", "bench", "lib", "hnswlib_server.ts"),
  JSON.stringify({
    hnswlibDir,
    basePath: ds.basePath,
    n: ds.base.n,
    queriesPath: ds.queriesPath,
    gtPath: ds.gtPath,
    metric: ds.metric,
    M: float.M,
    efConstruction: float.efConstruction,
    k,
    indexFile: `${file}.hnswlib`,
  }),
], { stdio: ["pipe", "pipe", "inherit"] });
const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
const next = async () => {
  const r = await lines.next();
  if (r.done) throw new Error("hnswlib server ended");
  return r.value as string;
};
try {
  if ((await next()) !== "ready") throw new Error("hnswlib server did not start");
  console.log(
    `vs_hnswlib: ${ds.name}, ${float.count} points, ours in ${reorderNote}; load ${load()}`,
  );
  const engines = [
    ...(args["no-float"] ? [] : ["float"]),
    ...rescores.map((r) => `int8-r${r}`),
    "hnswlib",
  ];
  const qps = new Map<string, number[][]>(engines.map((e) => [e, efs.map(() => [])]));
  const recall = new Map<string, number[]>(engines.map((e) => [e, efs.map(() => 0)]));
  for (let r = 0; r < Number(args.rounds); r++) {
    for (let ei = 0; ei < efs.length; ei++) {
      const ef = efs[ei];
      for (const e of engines) {
        let res: { qps: number; recall: number };
        if (e === "hnswlib") {
          child.stdin!.write(`ef ${ef}\n`);
          res = JSON.parse(await next());
        } else if (e === "float") {
          res = ours(float, ef, 1);
        } else {
          res = ours(int8, ef, Number(e.slice(6)));
        }
        qps.get(e)![ei].push(res.qps);
        recall.get(e)![ei] = res.recall;
      }
    }
    console.log(`  round ${r + 1} done; load ${load()}`);
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const rows = new Map<string, { ef: number; recall: number; qps: number }[]>();
  for (const e of engines) {
    const rs = efs.map((ef, i) => ({ ef, recall: recall.get(e)![i], qps: median(qps.get(e)![i]) }));
    rows.set(e, rs);
    for (const row of rs) {
      console.log(
        `  ${e.padEnd(8)} ef=${String(row.ef).padStart(4)} recall@10=${row.recall.toFixed(4)} ` +
          `qps=${row.qps.toFixed(0)}`,
      );
    }
  }
  // Recall at equal ef is the same to ±0.001 (one graph algorithm, the same parameters), so
  // the ratio at equal ef, paired within a round (adjacent blocks, alike load), is the least
  // noisy measure; the interpolation below follows the medians.
  for (let ei = 0; ei < efs.length; ei++) {
    const theirs = qps.get("hnswlib")![ei];
    const parts = engines.filter((e) => e !== "hnswlib").map((e) => {
      const mine = qps.get(e)![ei];
      return `${e} ${median(mine.map((x, r) => x / theirs[r])).toFixed(2)}x`;
    });
    console.log(
      `  ef=${efs[ei]} (hnswlib recall ${recall.get("hnswlib")![ei].toFixed(4)}): ` +
        `paired median ratio ${parts.join(", ")}`,
    );
  }
  /** Queries/s at a recall, linear between the two efs around it (null: not reached). */
  const at = (rs: { recall: number; qps: number }[], target: number): number | null => {
    const s = [...rs].sort((a, b) => a.recall - b.recall);
    for (let i = 0; i < s.length; i++) {
      if (s[i].recall < target) continue;
      if (i === 0) return s[0].qps;
      const a = s[i - 1], b = s[i];
      return a.qps + ((target - a.recall) / (b.recall - a.recall)) * (b.qps - a.qps);
    }
    return null;
  };
  for (const target of [0.95, 0.99]) {
    const theirs = at(rows.get("hnswlib")!, target);
    const parts = engines.map((e) => {
      const x = at(rows.get(e)!, target);
      if (x === null) return `${e} n/a`;
      return `${e} ${x.toFixed(0)}` +
        (e !== "hnswlib" && theirs !== null ? ` (${(x / theirs).toFixed(2)}x)` : "");
    });
    console.log(`  recall@10=${target}: ${parts.join(", ")} qps`);
  }
  console.log(
    `  bytes/vector: float ${float.store.strideBytes}, int8 code row ${int8.codeBytesPerVector}; ` +
      `load ${load()}; ${(spawnSync("uptime", [], { encoding: "utf8" }).stdout ?? "").trim()}`,
  );
} finally {
  child.stdin!.end();
  child.kill();
}
