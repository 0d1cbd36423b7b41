/**
 * Durable ingest and restart, one of our storage nodes beside a Chroma server, on the same
 * GloVe-100 vectors in the same run (not a test; not part of CI; takes minutes).
 *
 * For each system in turn (each alone on the machine while measured):
 * 1. **Ingest**: the first `--n` (100,000) base vectors, cosine, M 16, ef_construction 200,
 *    in batches of `--batch` (1,000) with `--concurrency` (4) batches in flight, each system
 *    durable as it is by default (ours: acknowledged after the WAL's fdatasync; Chroma:
 *    acknowledged once in its write-ahead log). The clock stops when the data is searchable:
 *    after the last acknowledgement, a search for each of the last 10 vectors written must find
 *    that vector first (polled every 20 ms).
 * 2. **Restart to first answered search**: stop the server (SIGTERM; both keep their data),
 *    start it again, time from the spawn to the first search that answers (polled every 10 ms);
 *    `--restarts` (3) times, median.
 *
 * Ours runs as `deno task server` does (the bundle of `deno task build:js`; `--runtime node`
 * for tsx). Chroma is the npm `chromadb` 3.5.0 client with its native server bindings
 * `chromadb-js-bindings-linux-x64-gnu` pinned to 1.0.5 (later ones need glibc 2.38; Debian 12
 * has 2.36), fetched on first use into `.cache/chroma` (ignored by git; not a dependency of
 * the project); its server starts with the bindings' `cli(["chroma", "run", "--path", DIR,
 * "--port", P])` under Node.
 *
 * ```sh
 * deno run -A scripts/bench/ingest_vs_chroma.ts [--n 100000] [--batch 1000] [--concurrency 4]
 *   [--restarts 3] [--runtime bundle|node] [--only ours|chroma] [--json]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "../../src/api/client.ts";
import { readFvecs } from "./lib/fvecs.ts";
import { NodeProcess } from "../../harness/node.ts";
import { ChildProc, REPO_ROOT } from "../../harness/process.ts";
import { freePort } from "../../harness/ports.ts";
import { buildBundles, type Runtime } from "../../harness/servers.ts";

const CHROMA_VERSION = "3.5.0";
const CHROMA_BINDINGS = "chromadb-js-bindings-linux-x64-gnu";
const CHROMA_BINDINGS_VERSION = "1.0.5";
const CHROMA_DIR = join(REPO_ROOT, ".cache", "chroma");
const COLLECTION = "glove100";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    batch: { type: "string", default: "1000" },
    concurrency: { type: "string", default: "4" },
    restarts: { type: "string", default: "3" },
    runtime: { type: "string", default: "bundle" },
    only: { type: "string" },
    base: { type: "string", default: join(REPO_ROOT, ".cache/bench/glove-100/base.fvecs") },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const log = (m: string) => {
  if (!values.json) console.error(m);
};
const n = Number(values.n);
const batch = Number(values.batch);
const concurrency = Number(values.concurrency);
const restarts = Number(values.restarts);
const base = readFvecs(values.base, n);
const dim = base.dim;
const vec = (i: number) => Array.from(base.data.subarray(i * dim, (i + 1) * dim));
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `batches` of the base, `concurrency` at a time, through `put(first, end)`. */
async function ingest(put: (first: number, end: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (;;) {
      const first = next;
      if (first >= n) return;
      next = Math.min(n, first + batch);
      await put(first, next);
    }
  }));
}

/** Polls until each of the last 10 vectors written is its own nearest neighbour. */
async function untilSearchable(nearest: (i: number) => Promise<string | null>): Promise<void> {
  for (let i = Math.max(0, n - 10); i < n; i++) {
    while ((await nearest(i)) !== String(i)) await sleep(20);
  }
}

/** Times spawn → first answered search. */
async function timeRestart(
  start: () => Promise<void>,
  search: () => Promise<boolean>,
): Promise<number> {
  const t0 = performance.now();
  await start();
  for (;;) {
    if (await search().catch(() => false)) return Math.round(performance.now() - t0);
    await sleep(10);
  }
}

// ------------------------------------------------------------------------------------ ours

async function ours(): Promise<Record<string, unknown>> {
  if (values.runtime === "bundle") buildBundles();
  const node = await NodeProcess.prepare({ runtime: values.runtime as Runtime });
  try {
    await node.start();
    const api = new ApiClient(node.address, { timeout_ms: 600_000 });
    await api.call("CreateCollection", {
      name: COLLECTION,
      dimension: dim,
      metric: "cosine",
      m: 16,
      ef_construction: 200,
    });
    const loadBefore = load();
    const t0 = performance.now();
    await ingest(async (first, end) => {
      const points = [];
      for (let i = first; i < end; i++) points.push({ id: i, vector: vec(i) });
      await api.call("PutBatch", { points, collection: COLLECTION });
    });
    const acked_s = (performance.now() - t0) / 1000;
    await untilSearchable(async (i) => {
      const r = await api.call("Search", { vector: vec(i), k: 1, collection: COLLECTION });
      return r.results.length > 0 ? String(r.results[0].id) : null;
    });
    const searchable_s = (performance.now() - t0) / 1000;
    api.close();
    const out: Record<string, unknown> = {
      acked_s: Number(acked_s.toFixed(2)),
      searchable_s: Number(searchable_s.toFixed(2)),
      points_per_s: Math.round(n / searchable_s),
      load_during_ingest: `${loadBefore} -> ${load()}`,
    };
    log(`ours: ${JSON.stringify(out)}`);
    const times: number[] = [];
    for (let r = 0; r < restarts; r++) {
      await node.stop(600_000);
      const probe = new ApiClient(node.address, { timeout_ms: 2_000 });
      try {
        times.push(
          await timeRestart(() => node.start(), async () => {
            const res = await probe.call("Search", {
              vector: vec(0),
              k: 10,
              collection: COLLECTION,
            });
            return res.results.length > 0;
          }),
        );
      } finally {
        probe.close();
      }
      log(`ours: restart ${r + 1}: ${times[r]} ms`);
    }
    out.restart_first_search_ms = times;
    out.restart_median_ms = median(times);
    return out;
  } finally {
    await node.close();
  }
}

// ---------------------------------------------------------------------------------- chroma

function ensureChroma(): void {
  if (existsSync(join(CHROMA_DIR, "node_modules", CHROMA_BINDINGS, "package.json"))) return;
  log(`chroma: installing chromadb@${CHROMA_VERSION} and its server bindings into ${CHROMA_DIR}`);
  const r = spawnSync("/usr/bin/env", [
    "npm",
    "install",
    "--no-audit",
    "--no-fund",
    "--no-save",
    "--prefix",
    CHROMA_DIR,
    `chromadb@${CHROMA_VERSION}`,
    `${CHROMA_BINDINGS}@${CHROMA_BINDINGS_VERSION}`,
  ], { stdio: "inherit" });
  if (r.status !== 0) throw new Error(`npm install of chromadb failed (${r.status})`);
}

/** A Chroma server process on `port` over `dir`. */
function startChroma(dir: string, port: number): ChildProc {
  const script = `require(${JSON.stringify(CHROMA_BINDINGS)}).cli(` +
    `["chroma", "run", "--path", ${JSON.stringify(dir)}, "--port", "${port}"])`;
  // Through env: Deno would rewrite a child named "node" into itself.
  return new ChildProc({
    name: "chroma",
    command: "/usr/bin/env",
    args: ["node", "-e", script],
    cwd: CHROMA_DIR,
    ready_prefix: null,
  });
}

async function heartbeat(port: number): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/api/v2/heartbeat`);
    await r.body?.cancel();
    return r.ok;
  } catch {
    return false;
  }
}

async function chroma(): Promise<Record<string, unknown>> {
  ensureChroma();
  const mod = await import(join(CHROMA_DIR, "node_modules", "chromadb", "dist", "chromadb.mjs"));
  const dir = mkdtempSync(join(tmpdir(), "chroma_bench_"));
  const port = await freePort();
  let proc = startChroma(dir, port);
  try {
    while (!(await heartbeat(port))) {
      if (proc.exited) throw new Error(`chroma exited: ${proc.tail()}`);
      await sleep(50);
    }
    const client = new mod.ChromaClient({ host: "127.0.0.1", port, ssl: false });
    const col = await client.getOrCreateCollection({
      name: COLLECTION,
      embeddingFunction: null,
      configuration: { hnsw: { space: "cosine", ef_construction: 200, max_neighbors: 16 } },
    });
    const loadBefore = load();
    const t0 = performance.now();
    await ingest(async (first, end) => {
      const ids: string[] = [];
      const embeddings: number[][] = [];
      for (let i = first; i < end; i++) {
        ids.push(String(i));
        embeddings.push(vec(i));
      }
      await col.add({ ids, embeddings });
    });
    const acked_s = (performance.now() - t0) / 1000;
    await untilSearchable(async (i) => {
      const r = await col.query({ queryEmbeddings: [vec(i)], nResults: 1 });
      return r.ids[0]?.[0] ?? null;
    });
    const searchable_s = (performance.now() - t0) / 1000;
    const out: Record<string, unknown> = {
      acked_s: Number(acked_s.toFixed(2)),
      searchable_s: Number(searchable_s.toFixed(2)),
      points_per_s: Math.round(n / searchable_s),
      count: await col.count(),
      load_during_ingest: `${loadBefore} -> ${load()}`,
    };
    log(`chroma: ${JSON.stringify(out)}`);
    const times: number[] = [];
    for (let r = 0; r < restarts; r++) {
      await proc.stop(60_000);
      times.push(
        await timeRestart(
          async () => {
            proc = startChroma(dir, port);
            await Promise.resolve();
          },
          async () => {
            const c = new mod.ChromaClient({ host: "127.0.0.1", port, ssl: false });
            const got = await c.getCollection({ name: COLLECTION, embeddingFunction: null });
            const res = await got.query({ queryEmbeddings: [vec(0)], nResults: 10 });
            return res.ids[0].length > 0;
          },
        ),
      );
      log(`chroma: restart ${r + 1}: ${times[r]} ms`);
    }
    out.restart_first_search_ms = times;
    out.restart_median_ms = median(times);
    return out;
  } finally {
    await proc.stop(60_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

const result: Record<string, unknown> = {
  points: n,
  dim,
  batch,
  concurrency,
  runtime: values.runtime,
  load_at_start: load(),
};
if (values.only !== "chroma") result.ours = await ours();
if (values.only !== "ours") result.chroma = await chroma();
const o = result.ours as { points_per_s: number } | undefined;
const c = result.chroma as { points_per_s: number } | undefined;
if (o && c) {
  result.ingest_ratio_ours_over_chroma = Number((o.points_per_s / c.points_per_s).toFixed(2));
}
result.load_at_end = load();
if (values.json) console.log(JSON.stringify(result));
else {
  for (const [k, v] of Object.entries(result)) {
    console.log(`${k.padEnd(32)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
}
