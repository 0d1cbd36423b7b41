/**
 * Where a search's time goes outside the index (not a test): the same queries, one at a time
 * from one client, against
 *
 * 1. the index alone: an in-process HnswIndex built from the same vectors with the same
 *    parameters (what a storage node holds);
 * 2. one storage node through gRPC (Search, `repeated float` vector);
 * 3. the router in front of that node (replication factor 1), through gRPC;
 * 4. the node again through SearchBatch of `--batch` queries (per query);
 * 5. with `--packed` (the default; `--no-packed` skips them) 2 and 3 again with the query as
 *    `vector_bytes` (packed little-endian float32) instead of `repeated float vector`.
 *
 * Beside each latency, the CPU time each server process spent per search (utime + stime from
 * `/proc/<pid>/stat` over the timed rounds, divided by the searches): on a loaded machine the
 * latencies include waiting for a core, the CPU times do not.
 *
 * For each: median and p99 latency per search in microseconds, and the medians' differences
 * (the cost of the request path: client encode, HTTP/2, decode, validation, scheduling, encode
 * back; then the router's hop). The client runs in this process (Deno), the servers under
 * Node 20 (tsx); everything on this machine, so report `uptime`'s load beside the figures.
 *
 * ```sh
 * deno run -A scripts/bench/request_overhead.ts [--n 20000] [--queries 1000] [--ef 64] [--k 10]
 *   [--rounds 3] [--batch 10] [--no-packed] [--packed-first] [--json]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { loadavg } from "node:os";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { HnswIndex } from "../../src/index/hnsw.ts";
import { readFvecs } from "./lib/fvecs.ts";
import { REPO_ROOT } from "../../harness/process.ts";
import { withCluster } from "../../harness/cluster.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    n: { type: "string", default: "20000" },
    queries: { type: "string", default: "1000" },
    ef: { type: "string", default: "64" },
    k: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    batch: { type: "string", default: "10" },
    base: { type: "string", default: join(REPO_ROOT, ".cache/bench/glove-100/base.fvecs") },
    "query-file": {
      type: "string",
      default: join(REPO_ROOT, ".cache/bench/glove-100/queries.fvecs"),
    },
    json: { type: "boolean", default: false },
    packed: { type: "boolean", default: true },
    "packed-first": { type: "boolean", default: false },
  },
  allowNegative: true,
  strict: true,
});
const log = (m: string) => {
  if (!values.json) console.error(m);
};
const n = Number(values.n);
const ef = Number(values.ef);
const k = Number(values.k);
const rounds = Number(values.rounds);
const batchSize = Number(values.batch);
const base = readFvecs(values.base, n);
const queries = readFvecs(values["query-file"], Number(values.queries));
const dim = base.dim;
const qv = Array.from(
  { length: queries.n },
  (_, i) => Array.from(queries.data.subarray(i * dim, (i + 1) * dim)),
);
/** Each query as `vector_bytes`: little-endian float32 (the byte order of every host we run). */
const qb = Array.from({ length: queries.n }, (_, i) => {
  const f = queries.data.slice(i * dim, (i + 1) * dim);
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
});
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");

/** Median and p99 of `us` (microseconds). */
function summary(us: number[]): { median_us: number; p99_us: number } {
  const s = [...us].sort((a, b) => a - b);
  return {
    median_us: Math.round(s[Math.floor(s.length / 2)]),
    p99_us: Math.round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]),
  };
}

/** Runs `one(i)` for every query, `rounds` times (the first round also warms up: dropped). */
async function timeEach(one: (i: number) => Promise<unknown> | unknown): Promise<number[]> {
  const out: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    for (let i = 0; i < qv.length; i++) {
      const t0 = performance.now();
      await one(i);
      if (r > 0) out.push((performance.now() - t0) * 1000);
    }
  }
  return out;
}

/** utime + stime of process `pid` in microseconds (Linux; NaN elsewhere). */
function cpuUs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat(5), in clock ticks of 10 ms (USER_HZ 100).
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return NaN;
  }
}

const result: Record<string, unknown> = { n, dim, queries: qv.length, ef, k, rounds };
result.load_at_start = load();

log(`building the in-process index (${n} x ${dim})`);
const index = new HnswIndex({ dim, metric: "cosine", M: 16, efConstruction: 200 });
for (let i = 0; i < n; i++) index.add(i, base.data.subarray(i * dim, (i + 1) * dim));
const alone = await timeEach((i) => index.search(qv[i], k, { ef }));
result.index_alone = summary(alone);
log(`index alone: ${JSON.stringify(result.index_alone)}`);

await withCluster({ nodes: 1, replication_factor: 1 }, async (c) => {
  const node = c.api(c.nodeAddrs[0], 60_000);
  const router = c.api(c.routerAddr, 60_000);
  await router.call("CreateCollection", {
    name: "glove",
    dimension: dim,
    metric: "cosine",
    m: 16,
    ef_construction: 200,
  });
  for (let s = 0; s < n; s += 1000) {
    const points = [];
    for (let i = s; i < Math.min(n, s + 1000); i++) {
      points.push({ id: i, vector: Array.from(base.data.subarray(i * dim, (i + 1) * dim)) });
    }
    await node.call("PutBatch", { points, collection: "glove" });
  }
  log(`loaded ${n} points into the node`);
  const nodePid = c.procs.procs.find((p) => p.name.startsWith("node-"))?.pid;
  const routerPid = c.procs.procs.find((p) => p.name === "router")?.pid;
  // Loading leaves the node busy for a while (snapshots): wait until it idles (under 50 ms of
  // CPU a second, at most 60 s), or the first phase measured pays for it.
  for (let waited = 0; waited < 60; waited++) {
    const before = cpuUs(nodePid);
    await new Promise((r) => setTimeout(r, 1000));
    if (!(cpuUs(nodePid) - before > 50_000)) break;
  }
  /** Latency summary plus each server's CPU per search, of `one` over the timed rounds. */
  const measure = async (name: string, one: (i: number) => Promise<unknown>) => {
    const cpu0 = [cpuUs(nodePid), cpuUs(routerPid)];
    const us = await timeEach(one);
    // The warm-up round's CPU is in too: divide by every search made.
    const made = qv.length * (rounds + 1);
    result[name] = {
      ...summary(us),
      node_cpu_us: Math.round((cpuUs(nodePid) - cpu0[0]) / made),
      router_cpu_us: Math.round((cpuUs(routerPid) - cpu0[1]) / made),
    };
    log(`${name}: ${JSON.stringify(result[name])}`);
  };
  const plain = async () => {
    await measure(
      "node_grpc",
      (i) => node.call("Search", { vector: qv[i], k, ef, collection: "glove" }),
    );
    await measure(
      "router_grpc",
      (i) => router.call("Search", { vector: qv[i], k, ef, collection: "glove" }),
    );
  };
  const packed = async () => {
    await measure(
      "node_grpc_packed",
      (i) => node.call("Search", { vector: [], vector_bytes: qb[i], k, ef, collection: "glove" }),
    );
    await measure(
      "router_grpc_packed",
      (i) => router.call("Search", { vector: [], vector_bytes: qb[i], k, ef, collection: "glove" }),
    );
  };
  // The order matters on a busy machine (later phases run on warmer servers): --packed-first
  // swaps it, to check that a difference is the encoding's.
  if (!values.packed) await plain();
  else if (values["packed-first"]) await packed().then(plain);
  else await plain().then(packed);
  const perQuery: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    for (let i = 0; i + batchSize <= qv.length; i += batchSize) {
      const searches = qv.slice(i, i + batchSize).map((vector) => ({
        vector,
        k,
        ef,
        collection: "glove",
      }));
      const t0 = performance.now();
      await node.call("SearchBatch", { searches });
      if (r > 0) perQuery.push(((performance.now() - t0) * 1000) / batchSize);
    }
  }
  result.node_search_batch_per_query = summary(perQuery);
});
const med = (k: string) => (result[k] as { median_us: number }).median_us;
result.overhead_node_over_index_us = med("node_grpc") - med("index_alone");
result.overhead_router_over_node_us = med("router_grpc") - med("node_grpc");
if (values.packed) {
  result.overhead_node_packed_over_index_us = med("node_grpc_packed") - med("index_alone");
  result.overhead_router_packed_over_node_packed_us = med("router_grpc_packed") -
    med("node_grpc_packed");
}
result.load_at_end = load();
if (values.json) console.log(JSON.stringify(result));
else {
  for (const [key, v] of Object.entries(result)) {
    console.log(`${key.padEnd(32)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
}
