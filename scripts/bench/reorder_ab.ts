/**
 * Slot order against search speed on one saved graph, interleaved so that a busy machine slows
 * every layout alike: `deno run -A scripts/bench/reorder_ab.ts --index-file F [--kinds bfs,rcm]
 * [--engines float,int8] [--efs 60,80,120] [--rescore 2] [--rounds 5] [--block 50] [--shuffle]`. F is a graph
 * `deno task bench --quantization int8 --index-file F` saved (GloVe by default; `--dataset
 * mnist` for the digits).
 *
 * The quantizer is trained once on the graph as saved, and every layout is a copy of that
 * trained index renumbered by {@link HnswIndex.reorder} (so the codes are the same and only
 * the memory layout differs; the searches return the same hits). `--shuffle` first renumbers
 * the saved graph at random, for data whose insert order carries no locality (GloVe's does: its
 * words come in frequency order). Prints the time each order
 * takes to compute and apply, the time to write the image plain and in order, then per engine
 * and ef the recall@10 and the median queries/s of the rounds for each layout, with the load
 * average.
 * @module
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HnswIndex } from "../../src/index/hnsw.ts";
import { linkSpans, parseReorderKind } from "../../src/index/reorder.ts";
import { BinaryReader, BinaryWriter, BufferSink } from "../../src/io/binary.ts";
import { loadDataset } from "./lib/dataset.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    "index-file": { type: "string" },
    dataset: { type: "string" },
    kinds: { type: "string", default: "bfs,rcm,dfs,groups" },
    engines: { type: "string", default: "float,int8" },
    efs: { type: "string", default: "60,80,120,200" },
    rescore: { type: "string", default: "2" },
    rounds: { type: "string", default: "5" },
    block: { type: "string", default: "50" },
    shuffle: { type: "boolean", default: false },
    k: { type: "string", default: "10" },
    "cache-dir": { type: "string", default: join(root, ".cache", "bench") },
  },
});
const file = args["index-file"];
if (file === undefined) throw new TypeError("--index-file is required (a graph bench.ts saved)");
const ds = loadDataset({ cacheDir: args["cache-dir"]!, dataset: args.dataset });
const load = () => (spawnSync("uptime", [], { encoding: "utf8" }).stdout ?? "").trim();
const kinds = args.kinds!.split(",").filter(Boolean).map(parseReorderKind);
const engines = args.engines!.split(",").filter(Boolean);
const rescore = Number(args.rescore);

function image(ix: HnswIndex, order: Int32Array | null = null): Uint8Array {
  const sink = new BufferSink({ bytes_max: 2 ** 31 });
  const w = new BinaryWriter(sink);
  ix.writeTo(w, order);
  w.flush();
  return sink.bytes();
}
const read = (bytes: Uint8Array) => HnswIndex.readFrom(new BinaryReader(bytes));

let saved: Uint8Array = new Uint8Array(readFileSync(file));
let base = read(saved);
if (args.shuffle) {
  // A graph whose slots carry no locality at all (as when points arrive in random order):
  // the saved slots renumbered by a seeded random permutation.
  const order = Int32Array.from({ length: base.layer0().n }, (_, i) => i);
  let x = 12345;
  for (let i = order.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  saved = image(base, order);
  base = read(saved);
}
if (base.count !== ds.base.n) throw new RangeError(`${file} holds ${base.count} points`);
console.log(`reorder_ab: ${ds.name}, ${base.count} points; ${load()}`);
/** Distances in slots at which link locality is reported: a 4 KiB page of code rows, and more. */
const WINDOWS = [16, 256, 4096, 65536];
const ms = (t0: number) => (performance.now() - t0).toFixed(0);

// Layouts: name -> { float index, int8 index }, the same graph renumbered.
const layouts: { name: string; float: HnswIndex; int8: HnswIndex }[] = [];
{
  const t0 = performance.now();
  base.trainQuantizer();
  console.log(`  train+encode ${ms(t0)} ms`);
  const trained = image(base);
  const spans = linkSpans(base.layer0(), null, WINDOWS).map((x) => x.toFixed(3));
  console.log(
    `  ${args.shuffle ? "shuffled" : "insert"} order: links within ${WINDOWS.join("/")} slots ${
      spans.join("/")
    }`,
  );
  const baseName = args.shuffle ? "shuffled" : "insert";
  for (const name of [baseName, ...kinds]) {
    const float = read(saved);
    const int8 = read(trained);
    if (name !== baseName) {
      const kind = parseReorderKind(name);
      let t = performance.now();
      const order = float.localityOrder(kind);
      const orderMs = ms(t);
      t = performance.now();
      float.permuteSlots(order);
      const floatMs = ms(t);
      t = performance.now();
      int8.permuteSlots(order);
      const int8Ms = ms(t);
      t = performance.now();
      const plain = image(int8).length;
      const plainMs = ms(t);
      t = performance.now();
      const ordered = image(int8, order).length;
      const orderedMs = ms(t);
      const spans = linkSpans(base.layer0(), order, WINDOWS).map((x) => x.toFixed(3));
      console.log(
        `  ${name}: links within ${WINDOWS.join("/")} slots ${
          spans.join("/")
        }; order ${orderMs} ms; permute in place: float index ${floatMs} ms, int8 ` +
          `index ${int8Ms} ms; image ${plain} bytes plain ${plainMs} ms, ${ordered} bytes in ` +
          `order ${orderedMs} ms; ${load()}`,
      );
    }
    layouts.push({ name, float, int8 });
  }
}
for (const l of layouts) l.int8.rescore = rescore;

const k = Number(args.k);
const q = ds.queries;
const queries = Array.from({ length: q.n }, (_, i) => q.data.subarray(i * q.dim, (i + 1) * q.dim));
const truth = Array.from(
  { length: q.n },
  (_, i) => new Set(ds.gt.data.subarray(i * ds.gt.dim, i * ds.gt.dim + k)),
);
const block = Number(args.block);
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const engine of engines) {
  if (engine !== "float" && engine !== "int8") throw new RangeError(`engine ${engine}`);
  for (const ef of args.efs!.split(",").map(Number)) {
    const rates = layouts.map(() => [] as number[]);
    const hits = layouts.map(() => 0);
    for (let r = 0; r < Number(args.rounds); r++) {
      const spent = layouts.map(() => 0);
      for (let b = 0, turn = 0; b < q.n; b += block, turn++) {
        // Rotate which layout goes first in each block, so none always runs on a cold cache.
        for (let j = 0; j < layouts.length; j++) {
          const li = (j + turn) % layouts.length;
          const ix = layouts[li][engine];
          const t0 = performance.now();
          for (let i = b; i < Math.min(q.n, b + block); i++) {
            const res = ix.search(queries[i], k, { ef });
            if (r === 0) { for (const h of res) if (truth[i].has(h.id)) hits[li]++; }
          }
          spent[li] += performance.now() - t0;
        }
      }
      layouts.forEach((_, li) => rates[li].push(q.n / (spent[li] / 1000)));
    }
    const first = median(rates[0]);
    console.log(
      `  ${engine.padEnd(5)} ef=${String(ef).padStart(4)}` +
        (engine === "int8" ? ` r${rescore}` : "") + ": " +
        layouts.map((l, li) => {
          const qps = median(rates[li]);
          return `${l.name} recall ${(hits[li] / (q.n * k)).toFixed(4)} ${qps.toFixed(0)} qps` +
            (li === 0 ? "" : ` (${(qps / first).toFixed(2)}x)`);
        }).join("; "),
    );
  }
}
console.log(`  ${load()}`);
