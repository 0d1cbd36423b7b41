/**
 * Memory per point with and without payloads (issue 10's must-show; not a test): builds two
 * collections in one process from the first `--n` GloVe-100 vectors (cosine), one without
 * payloads and one where every point carries a ~200-byte JSON payload (tenant, language, tags,
 * a text, a nested object), and reports for each: the collection's own accounting
 * (`stats().memory_bytes`: index + vectors + payload arena) and the process's measured growth
 * (V8 heap used and RSS after a full GC, around each build), per point. The payload column is
 * the canonical JSON bytes stored. The JS heap growth shows what is held outside the arenas
 * (per-id version table entries).
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc scripts/bench/payload_memory.ts [--n 100000] [--ef-construction 100]
 * ```
 * @module
 */
import { loadavg, tmpdir } from "node:os";
import { memoryUsage } from "node:process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Collection, type Point } from "../../src/storage/collection.ts";
import { parsePayload } from "../../src/common/payload.ts";
import { Prng } from "../../src/common/prng.ts";
import { readFvecs } from "./lib/fvecs.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    "ef-construction": { type: "string", default: "100" },
    base: { type: "string", default: ".cache/bench/glove-100/base.fvecs" },
    batch: { type: "string", default: "5000" },
  },
});
const N = Number(values.n);
const BATCH = Number(values.batch);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

/** A ~200-byte payload, a pure function of the id. */
function payloadOf(id: number): Uint8Array {
  const r = new Prng((id * 2654435761) >>> 0 || 1);
  const words = Array.from({ length: 6 }, () => r.nextInt(1 << 30).toString(36));
  return parsePayload(
    JSON.stringify({
      doc: `doc-${id}`,
      tenant: r.nextInt(1000),
      lang: ["en", "de", "fr", "ja"][r.nextInt(4)],
      tags: words.slice(0, 3),
      text: words.join(" "),
      meta: {
        year: 2000 + r.nextInt(25),
        score: r.nextInt(1_000_000) / 1000,
        ok: r.nextInt(2) === 1,
      },
    }),
    "payload",
  )!;
}

function measure(): { heap: number; rss: number } {
  gc!();
  gc!();
  const m = memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

const base = readFvecs(values.base, N);
const dim = base.dim;
console.log(`n ${N}, dim ${dim}; load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
const dir = mkdtempSync(join(tmpdir(), "payload-memory-"));
const rows: string[][] = [];
const kept: Collection[] = [];
try {
  for (const withPayload of [false, true]) {
    const before = measure();
    const c = await Collection.create(join(dir, withPayload ? "with" : "without"), {
      name: withPayload ? "with" : "without",
      dimension: dim,
      metric: "cosine",
      m: 16,
      ef_construction: Number(values["ef-construction"]),
    });
    let payloadBytes = 0;
    const t0 = performance.now();
    for (let start = 0; start < N; start += BATCH) {
      const points: Point[] = [];
      for (let i = start; i < Math.min(N, start + BATCH); i++) {
        const p = withPayload ? payloadOf(i) : null;
        if (p !== null) payloadBytes += p.length;
        points.push({ id: i, vector: base.data.subarray(i * dim, (i + 1) * dim), payload: p });
      }
      await c.putBatch(points);
    }
    const buildS = (performance.now() - t0) / 1000;
    const after = measure();
    const st = c.stats();
    kept.push(c); // keep it alive until both are measured
    rows.push([
      withPayload ? "with ~200 B payload" : "without payload",
      (payloadBytes / N).toFixed(0),
      (st.memory_bytes / N).toFixed(0),
      ((after.heap - before.heap) / N).toFixed(0),
      ((after.rss - before.rss) / N).toFixed(0),
      buildS.toFixed(1),
    ]);
    console.log(`built ${withPayload ? "with" : "without"} payloads in ${buildS.toFixed(1)} s`);
  }
  const header = [
    "collection",
    "payload B/pt",
    "memory_bytes/pt",
    "JS heap B/pt",
    "RSS B/pt",
    "build s",
  ];
  console.log(header.join(" | "));
  for (const r of rows) console.log(r.join(" | "));
  console.log(`load average after ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
} finally {
  for (const c of kept) await c.close({ snapshot: false });
  rmSync(dir, { recursive: true, force: true });
}
