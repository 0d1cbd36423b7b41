/**
 * Ingest benchmark of one storage node (not a test): GloVe-100 vectors written through the gRPC
 * API into a fresh node.
 *
 * 1. `--clients` (64) concurrent clients, each on its own channel, doing single-point Puts for
 *    `--seconds` (20);
 * 2. PutBatch with `--batch` (1,000)-point batches, `--batch-concurrency` (4) at a time, for
 *    `--seconds`, into a second collection;
 * 3. for comparison, the index's own insert rate: an in-process HnswIndex (same parameters)
 *    built on the same number of vectors as phase 1 wrote.
 *
 * For each phase it prints points/s and fsyncs/s (WAL group commits). The node does not report
 * its sync count over gRPC, so the script counts `fdatasync`/`fsync` calls by running the node
 * under `strace -f --seccomp-bpf` (only those syscalls stop the process, so the cost is small);
 * `--no-strace` turns that off. If CollectionStats gains a `wal_syncs` field, that is used.
 *
 * ```sh
 * deno run -A scripts/bench/bench_ingest.ts [--seconds 20] [--clients 64] [--batch 1000]
 *   [--batch-concurrency 4] [--m 16] [--ef-construction 200] [--no-strace] [--json]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ApiClient } from "../../src/api/client.ts";
import { HnswIndex } from "../../src/index/hnsw.ts";
import { readFvecs } from "./lib/fvecs.ts";
import { NodeProcess } from "../../harness/node.ts";
import { REPO_ROOT } from "../../harness/process.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "20" },
    clients: { type: "string", default: "64" },
    batch: { type: "string", default: "1000" },
    "batch-concurrency": { type: "string", default: "4" },
    m: { type: "string", default: "16" },
    "ef-construction": { type: "string", default: "200" },
    base: { type: "string", default: join(REPO_ROOT, ".cache/bench/glove-100/base.fvecs") },
    "no-strace": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const batch = Number(values.batch);
const batchConcurrency = Number(values["batch-concurrency"]);
const M = Number(values.m);
const efConstruction = Number(values["ef-construction"]);
const METRIC = "cosine";

const log = (m: string) => {
  if (!values.json) console.error(m);
};

const base = readFvecs(values.base);
const dim = base.dim;
const vectorOf = (i: number): number[] =>
  Array.from(base.data.subarray((i % base.n) * dim, (i % base.n + 1) * dim));
log(`loaded ${base.n} x ${dim} from ${values.base}`);

const useStrace = !values["no-strace"] && hasStrace();
const traceFile = await Deno.makeTempFile({ prefix: "bench_ingest_", suffix: ".strace" });
const node = await NodeProcess.start({
  args: ["--snapshot-every-ops", "100000000", "--snapshot-every-s", "100000000"],
  command_prefix: useStrace
    ? ["strace", "-f", "--seccomp-bpf", "-ttt", "-e", "trace=fdatasync,fsync", "-o", traceFile]
    : [],
});

function hasStrace(): boolean {
  try {
    return new Deno.Command("strace", { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** fdatasync/fsync calls the node made between two wall-clock times (ms). */
function syncsBetween(fromMs: number, toMs: number): number | null {
  if (!useStrace || !existsSync(traceFile)) return null;
  let n = 0;
  for (const line of readFileSync(traceFile, "utf8").split("\n")) {
    const m = /^\d+\s+(\d+\.\d+)\s+(fdatasync|fsync)\(/.exec(line);
    if (m === null) continue;
    const t = Number(m[1]) * 1000;
    if (t >= fromMs && t <= toMs) n++;
  }
  return n;
}

async function walSyncs(api: ApiClient, collection: string): Promise<number | null> {
  const stats = await api.call("Stats", {});
  const c = stats.collections.find((x) => x.name === collection) as
    | (Record<string, unknown> & { name: string })
    | undefined;
  return c !== undefined && "wal_syncs" in c ? Number(c.wal_syncs) : null;
}

interface Phase {
  phase: string;
  points: number;
  seconds: number;
  points_per_s: number;
  fsyncs: number | null;
  fsyncs_per_s: number | null;
  points_per_fsync: number | null;
  fsync_source: string;
}

async function measure(
  name: string,
  collection: string,
  api: ApiClient,
  run: () => Promise<number>,
): Promise<Phase> {
  await api.call("CreateCollection", {
    name: collection,
    dimension: dim,
    metric: METRIC,
    m: M,
    ef_construction: efConstruction,
  });
  const syncsBefore = await walSyncs(api, collection);
  await new Promise((r) => setTimeout(r, 200)); // leave the creation's syncs out of the window
  const fromMs = Date.now();
  const t0 = performance.now();
  const points = await run();
  const elapsed = (performance.now() - t0) / 1000;
  const toMs = Date.now();
  await new Promise((r) => setTimeout(r, 300)); // let strace write its lines
  const syncsAfter = await walSyncs(api, collection);
  let fsyncs: number | null;
  let source: string;
  if (syncsBefore !== null && syncsAfter !== null) {
    fsyncs = syncsAfter - syncsBefore;
    source = "Stats wal_syncs";
  } else {
    fsyncs = syncsBetween(fromMs, toMs);
    source = fsyncs === null ? "unavailable" : "strace fdatasync+fsync";
  }
  const r: Phase = {
    phase: name,
    points,
    seconds: Number(elapsed.toFixed(2)),
    points_per_s: Math.round(points / elapsed),
    fsyncs,
    fsyncs_per_s: fsyncs === null ? null : Math.round(fsyncs / elapsed),
    points_per_fsync: fsyncs ? Number((points / fsyncs).toFixed(1)) : null,
    fsync_source: source,
  };
  log(
    `${name}: ${points} points in ${elapsed.toFixed(1)} s = ${r.points_per_s} points/s; ` +
      `${fsyncs ?? "?"} fsyncs = ${r.fsyncs_per_s ?? "?"}/s (${source})`,
  );
  return r;
}

const results: Record<string, unknown>[] = [];
const api = new ApiClient(node.address, { timeout_ms: 120_000 });
const channels: ApiClient[] = [];
try {
  // 1. Single-point Puts from many clients.
  for (let c = 0; c < clients; c++) {
    channels.push(
      new ApiClient(node.address, {
        timeout_ms: 60_000,
        client_options: { "grpc.use_local_subchannel_pool": 1 },
      }),
    );
  }
  let nextId = 0;
  const single = await measure("put (single points)", "ingest_put", api, async () => {
    const end = performance.now() + seconds * 1000;
    let done = 0;
    await Promise.all(channels.map(async (ch) => {
      while (performance.now() < end) {
        const id = nextId++;
        await ch.call("Put", { id, vector: vectorOf(id), collection: "ingest_put" });
        done++;
      }
    }));
    return done;
  });
  results.push({ ...single, clients });

  // 2. PutBatch.
  let nextBatch = 0;
  const batched = await measure(`put_batch (${batch} points)`, "ingest_batch", api, async () => {
    const end = performance.now() + seconds * 1000;
    let done = 0;
    await Promise.all(
      channels.slice(0, batchConcurrency).map(async (ch) => {
        while (performance.now() < end) {
          const first = nextBatch++ * batch;
          const points = Array.from({ length: batch }, (_, i) => ({
            id: first + i,
            vector: vectorOf(first + i),
          }));
          const res = await ch.call("PutBatch", { points, collection: "ingest_batch" });
          done += res.count;
        }
      }),
    );
    return done;
  });
  results.push({ ...batched, concurrency: batchConcurrency });
} finally {
  for (const ch of channels) ch.close();
  api.close();
  await node.close();
  try {
    Deno.removeSync(traceFile);
  } catch {
    // Never written.
  }
}

// 3. The index alone, in this process, on as many vectors as phase 1 wrote.
const n = Math.min(base.n, (results[0].points as number) || 1);
const index = new HnswIndex({ dim, metric: METRIC, M, efConstruction, capacity: n });
const t0 = performance.now();
for (let i = 0; i < n; i++) index.add(i, base.data.subarray(i * dim, (i + 1) * dim));
const indexS = (performance.now() - t0) / 1000;
results.push({
  phase: "HnswIndex.add in-process (no WAL, no gRPC)",
  points: n,
  seconds: Number(indexS.toFixed(2)),
  points_per_s: Math.round(n / indexS),
});
log(`index alone: ${n} points in ${indexS.toFixed(1)} s = ${Math.round(n / indexS)} points/s`);

if (values.json) { for (const r of results) console.log(JSON.stringify(r)); }
else console.table(results);
