/**
 * Restart benchmark of one storage node (not a test; takes minutes): loads the GloVe-100 base
 * (340,479 x 100, cosine) into a fresh node with PutBatch, then measures the time from process
 * start to the first successful Search
 *
 * 1. after SIGKILL with no snapshot: full WAL replay (automatic snapshots are off during the
 *    load, so the log holds every point);
 * 2. after a graceful stop (SIGTERM writes a snapshot): snapshot load, nothing to replay
 *    (goal: at most 3 s).
 *
 * 3. then `--repeats` more snapshot starts each, alternating, of the same data directory under
 *    the two ways a node can start: Node 20 compiling the TypeScript through tsx, and Node 20
 *    running the bundle `deno task build:js` writes (what `deno task server` runs); medians.
 *
 * The same queries are searched before and after each restart; the results must be identical.
 *
 * ```sh
 * deno run -A scripts/bench/bench_restart.ts [--n 340479] [--batch 2000] [--concurrency 2]
 *   [--repeats 3] [--json]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { ApiClient, describeGrpcError } from "../../src/api/client.ts";
import type { SearchResult } from "../../src/api/proto.ts";
import { readFvecs } from "./lib/fvecs.ts";
import { NodeProcess } from "../../harness/node.ts";
import { REPO_ROOT } from "../../harness/process.ts";
import { buildBundles } from "../../harness/servers.ts";

const GOAL_SNAPSHOT_START_MS = 3000;
const COLLECTION = "glove";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string" },
    batch: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "2" },
    repeats: { type: "string", default: "3" },
    base: { type: "string", default: join(REPO_ROOT, ".cache/bench/glove-100/base.fvecs") },
    queries: { type: "string", default: join(REPO_ROOT, ".cache/bench/glove-100/queries.fvecs") },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const log = (m: string) => {
  if (!values.json) console.error(m);
};

const base = readFvecs(values.base, values.n === undefined ? Infinity : Number(values.n));
const queries = readFvecs(values.queries, 20);
const dim = base.dim;
const batch = Number(values.batch);
const concurrency = Number(values.concurrency);
const queryVectors = Array.from(
  { length: queries.n },
  (_, i) => Array.from(queries.data.subarray(i * dim, (i + 1) * dim)),
);

async function searchAll(api: ApiClient): Promise<SearchResult[][]> {
  const out: SearchResult[][] = [];
  for (const vector of queryVectors) {
    out.push((await api.call("Search", { vector, k: 10, collection: COLLECTION })).results);
  }
  return out;
}

/** Starts the node and polls Search until one succeeds; times from spawn. */
async function timedStart(node: NodeProcess): Promise<Record<string, number>> {
  const t0 = performance.now();
  await node.start();
  const api = new ApiClient(node.address, { timeout_ms: 60_000 });
  try {
    for (;;) {
      try {
        await api.call("Search", { vector: queryVectors[0], k: 10, collection: COLLECTION });
        break;
      } catch (e) {
        log(`  search not yet: ${describeGrpcError(e)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  } finally {
    api.close();
  }
  const opened = /opened .* in (\d+) ms/.exec(node.stderr);
  return {
    ready_ms: Math.round(node.ready_ms),
    first_search_ms: Math.round(performance.now() - t0),
    store_open_ms: opened ? Number(opened[1]) : -1,
  };
}

const node = await NodeProcess.prepare({
  args: ["--snapshot-every-ops", "1000000000", "--snapshot-every-s", "1000000000"],
  ready_timeout_ms: 1_800_000,
});
const out: Record<string, unknown> = { points: base.n, dim };
let ok = true;
try {
  await node.start();
  let api = new ApiClient(node.address, { timeout_ms: 600_000 });
  await api.call("CreateCollection", { name: COLLECTION, dimension: dim, metric: "cosine" });
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (;;) {
      const first = next;
      if (first >= base.n) return;
      next = Math.min(base.n, first + batch);
      const points = [];
      for (let i = first; i < next; i++) {
        points.push({ id: i, vector: Array.from(base.data.subarray(i * dim, (i + 1) * dim)) });
      }
      await api.call("PutBatch", { points, collection: COLLECTION });
      if (Math.floor(next / 50_000) !== Math.floor(first / 50_000)) {
        log(`  loaded ${next} points, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      }
    }
  }));
  const loadS = (performance.now() - t0) / 1000;
  out.load_s = Number(loadS.toFixed(1));
  out.load_points_per_s = Math.round(base.n / loadS);
  const before = await searchAll(api);
  const stats = await api.call("Stats", {});
  out.wal_bytes = Number(stats.collections[0].wal_bytes);
  out.memory_bytes = Number(stats.collections[0].memory_bytes);
  api.close();
  log(`loaded ${base.n} points in ${loadS.toFixed(1)} s; WAL ${out.wal_bytes} bytes`);

  // 1. Full WAL replay.
  await node.kill();
  const replay = await timedStart(node);
  out.wal_replay = replay;
  log(`WAL replay start: ${JSON.stringify(replay)}`);
  api = new ApiClient(node.address, { timeout_ms: 600_000 });
  const afterReplay = await searchAll(api);
  out.replay_results_identical = JSON.stringify(afterReplay) === JSON.stringify(before);
  api.close();

  // 2. Graceful stop (snapshot), then start from the snapshot.
  const stopT0 = performance.now();
  await node.stop(1_800_000);
  out.graceful_stop_ms = Math.round(performance.now() - stopT0);
  const snap = await timedStart(node);
  out.snapshot = snap;
  log(`snapshot start: ${JSON.stringify(snap)}`);
  api = new ApiClient(node.address, { timeout_ms: 600_000 });
  const afterSnapshot = await searchAll(api);
  out.snapshot_results_identical = JSON.stringify(afterSnapshot) === JSON.stringify(before);
  api.close();
  out.snapshot_goal_met = snap.first_search_ms <= GOAL_SNAPSHOT_START_MS;

  // 3. tsx against the bundle, alternating on the same directory and port.
  buildBundles();
  const bundled = await NodeProcess.prepare({
    data_dir: node.data_dir,
    port: node.port,
    runtime: "bundle",
    args: ["--snapshot-every-ops", "1000000000", "--snapshot-every-s", "1000000000"],
    ready_timeout_ms: 1_800_000,
  });
  const times: Record<string, number[]> = { tsx: [], bundle: [] };
  let running: NodeProcess = node;
  for (let r = 0; r < Number(values.repeats); r++) {
    for (const [name, p] of [["tsx", node], ["bundle", bundled]] as const) {
      await running.stop(1_800_000);
      const t = await timedStart(p);
      times[name].push(t.first_search_ms);
      running = p;
      log(`  ${name} start ${r + 1}: ${JSON.stringify(t)}`);
    }
  }
  await running.stop(1_800_000);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  out.first_search_ms_tsx = times.tsx;
  out.first_search_ms_bundle = times.bundle;
  out.first_search_median_ms = { tsx: median(times.tsx), bundle: median(times.bundle) };
  ok = out.replay_results_identical === true && out.snapshot_results_identical === true;
  out.node_log = node.tail(6);
} catch (e) {
  ok = false;
  out.error = (e as Error).message;
  out.node_log = node.tail(20);
} finally {
  await node.close();
}
if (values.json) console.log(JSON.stringify(out));
else {
  for (const [k, v] of Object.entries(out)) {
    console.log(`${k.padEnd(28)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
}
Deno.exit(ok ? 0 : 1);
