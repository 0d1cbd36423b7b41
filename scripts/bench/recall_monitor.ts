/**
 * Recall monitor benchmark (a script, not a test): the router's live recall figure
 * (src/router/recall_monitor.ts) beside an offline recall@k at the same ef, and what the
 * monitor costs in search queries/s, on GloVe-100 (cosine).
 *
 * One storage node holds the first `--n` base vectors (loaded through a router over HTTP).
 * Two routers front it, identical but for `--recall-sample-rate`: router A samples `--rate`
 * of its searches, router B none. Then:
 *
 * 1. Throughput, alternating A, B, A, B (`--rounds` each, `--seconds` long, `--clients`
 *    concurrent HTTP clients cycling through the `--queries` GloVe queries at `--ef`): queries/s
 *    per router, so drift in the machine's load hits both alike; and the CPU time the storage
 *    node and the round's router spent per search (/proc/PID/stat), which other jobs on a shared
 *    machine disturb far less than queries/s.
 * 2. Offline recall@k: every query once through router B, against the exact top-k by brute
 *    force (WASM kernels, scripts/bench/lib/dataset.ts `groundTruth`).
 * 3. The monitor's figure from router A's `GET /console/state` (the rolling mean over its last
 *    200 samples), with its sampling error (standard error of the mean over the window: the
 *    offline per-query recalls' standard deviation / sqrt(samples)).
 *
 * Prints a table and one JSON line. Every process is stopped at the end, also on error.
 *
 * ```sh
 * deno task build:asm
 * deno run -A scripts/bench/recall_monitor.ts --n 100000 --ef 24 --rate 0.05
 * ```
 *
 * | flag          | default | meaning                                                 |
 * | ------------- | ------- | ------------------------------------------------------- |
 * | `--n`         | 100000  | base vectors loaded (the first n)                       |
 * | `--queries`   | 1000    | GloVe queries used (cycled by the throughput phase)     |
 * | `--k`         | 10      | neighbours per search                                   |
 * | `--ef`        | 24      | ef of every search (low enough that recall is below 1)  |
 * | `--rate`      | 0.05    | router A's `--recall-sample-rate`                       |
 * | `--clients`   | 4       | concurrent clients in the throughput phase              |
 * | `--seconds`   | 15      | length of each throughput round                         |
 * | `--rounds`    | 2       | rounds per router (alternating)                         |
 * | `--cache`     | .cache/bench | where GloVe-100 is (or is prepared)                |
 * @module
 */
import { parseArgs } from "node:util";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../harness/ports.ts";
import { ProcGroup } from "../../harness/process.ts";
import {
  NODE_ENTRY,
  nodeFlags,
  ROUTER_ENTRY,
  routerFlags,
  spawnServer,
} from "../../harness/servers.ts";
import { groundTruth, prepareGlove } from "./lib/dataset.ts";
import { readFvecs } from "./lib/fvecs.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    queries: { type: "string", default: "1000" },
    k: { type: "string", default: "10" },
    ef: { type: "string", default: "24" },
    rate: { type: "string", default: "0.05" },
    clients: { type: "string", default: "4" },
    seconds: { type: "string", default: "15" },
    rounds: { type: "string", default: "2" },
    cache: { type: "string", default: ".cache/bench" },
  },
});
const N = Number(flags.n);
const Q = Number(flags.queries);
const K = Number(flags.k);
const EF = Number(flags.ef);
const RATE = Number(flags.rate);
const CLIENTS = Number(flags.clients);
const SECONDS = Number(flags.seconds);
const ROUNDS = Number(flags.rounds);

const files = prepareGlove(flags.cache!);
const base = readFvecs(files.base, N);
const queries = readFvecs(files.queries, Q);
const row = (m: typeof base, i: number) => Array.from(m.data.subarray(i * m.dim, (i + 1) * m.dim));

const group = new ProcGroup();
const dir = await mkdtemp(join(tmpdir(), "vdb-recall-bench-"));
/** CPU ms (user + system) process `pid` has used so far. */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime in 100 Hz ticks
}
const uptime = () =>
  new TextDecoder().decode(new Deno.Command("uptime").outputSync().stdout).trim();

async function call(port: number, method: string, path: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(answer)}`);
  return answer;
}

try {
  const nodePort = await freePort("127.0.0.1");
  const node = spawnServer({
    name: "node",
    entry: NODE_ENTRY,
    flags: nodeFlags({ port: nodePort, data_dir: join(dir, "node") }),
    group,
    ready_timeout_ms: 60_000,
  });
  await node.ready;
  const routers: { name: string; http: number; pid: number }[] = [];
  for (const [name, rate] of [["A", RATE], ["B", 0]] as const) {
    const port = await freePort("127.0.0.1");
    const http = await freePort("127.0.0.1");
    const p = spawnServer({
      name: `router-${name}`,
      entry: ROUTER_ENTRY,
      flags: routerFlags({
        port,
        data_dir: join(dir, `router-${name}`),
        nodes: [`127.0.0.1:${nodePort}`],
        replication_factor: 1,
        node_timeout_ms: 30_000,
        extra: ["--http-port", String(http), "--recall-sample-rate", String(rate)],
      }),
      group,
      ready_timeout_ms: 60_000,
    });
    await p.ready;
    routers.push({ name, http, pid: p.pid! });
  }
  const [A, B] = routers;

  console.error(`recall bench: loading ${N} GloVe vectors (cosine) through router B`);
  const t0 = performance.now();
  await call(B.http, "PUT", "/collections/glove", { dimension: base.dim, metric: "cosine" });
  const BATCH = 500;
  let next = 0;
  await Promise.all(Array.from({ length: 2 }, async () => {
    while (next < N) {
      const start = next;
      next += BATCH;
      const points = [];
      for (let i = start; i < Math.min(N, start + BATCH); i++) {
        points.push({ id: i, vector: row(base, i) });
      }
      await call(B.http, "PUT", "/collections/glove/points", { points });
    }
  }));
  const load_s = (performance.now() - t0) / 1000;
  console.error(`recall bench: loaded in ${load_s.toFixed(0)} s; exact top-${K} by brute force`);
  const gt = groundTruth(base, queries, "cosine", K);

  const search = (port: number, q: number) =>
    call(port, "POST", "/collections/glove/points/search", {
      vector: row(queries, q),
      k: K,
      ef: EF,
    });

  // 1. Throughput, alternating.
  const qps: Record<string, number[]> = { A: [], B: [] };
  const cpu = { A: { ms: 0, searches: 0 }, B: { ms: 0, searches: 0 } };
  const loads: string[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const router of [A, B]) {
      let done = 0;
      let q = 0;
      const cpu0 = cpuMs(node.pid!) + cpuMs(router.pid);
      const end = performance.now() + SECONDS * 1000;
      const start = performance.now();
      await Promise.all(Array.from({ length: CLIENTS }, async () => {
        while (performance.now() < end) {
          await search(router.http, q++ % Q);
          done++;
        }
      }));
      qps[router.name].push(done / ((performance.now() - start) / 1000));
      // The monitor's queue drains after the round: wait for it, so its work is counted.
      if (router === A) await new Promise((r) => setTimeout(r, 2000));
      const c = cpu[router.name as "A" | "B"];
      c.ms += cpuMs(node.pid!) + cpuMs(router.pid) - cpu0;
      c.searches += done;
      loads.push(`${router.name}${r}: ${uptime()}`);
      console.error(
        `recall bench: round ${r} router ${router.name}: ${
          qps[router.name].at(-1)!.toFixed(1)
        } q/s`,
      );
    }
  }

  // 2. Offline recall@k at the same ef, through router B (not sampled).
  const per: number[] = [];
  for (let q = 0; q < Q; q++) {
    const answer = await search(B.http, q);
    const got = new Set(answer.results.map((x: { id: number }) => x.id));
    let hit = 0;
    for (let j = 0; j < K; j++) if (got.has(gt.data[q * K + j])) hit++;
    per.push(hit / K);
  }
  const offline = per.reduce((a, b) => a + b, 0) / per.length;
  const sd = Math.sqrt(per.reduce((a, b) => a + (b - offline) ** 2, 0) / (per.length - 1));

  // 3. The monitor's figure (let it finish its queue first).
  await new Promise((r) => setTimeout(r, 3000));
  const state = await call(A.http, "GET", "/console/state");
  const fig = state.recall.collections.find((c: { collection: string }) =>
    c.collection === "glove"
  );
  const se = sd / Math.sqrt(fig.samples);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const result = {
    n: N,
    queries: Q,
    k: K,
    ef: EF,
    rate: RATE,
    clients: CLIENTS,
    load_s: Math.round(load_s),
    offline_recall: Number(offline.toFixed(4)),
    monitor_recall: Number(fig.recall.toFixed(4)),
    monitor_window: fig.samples,
    monitor_measured: state.recall.counts.measured,
    monitor_dropped: state.recall.counts.dropped,
    standard_error: Number(se.toFixed(4)),
    difference_in_se: Number(((fig.recall - offline) / se).toFixed(2)),
    qps_monitor_on: Number(mean(qps.A).toFixed(1)),
    qps_monitor_off: Number(mean(qps.B).toFixed(1)),
    qps_rounds: qps,
    cost_percent: Number((100 * (1 - mean(qps.A) / mean(qps.B))).toFixed(1)),
    cpu_ms_per_search_on: Number((cpu.A.ms / cpu.A.searches).toFixed(3)),
    cpu_ms_per_search_off: Number((cpu.B.ms / cpu.B.searches).toFixed(3)),
    cpu_cost_percent: Number(
      (100 * ((cpu.A.ms / cpu.A.searches) / (cpu.B.ms / cpu.B.searches) - 1)).toFixed(1),
    ),
    load_average: loads,
  };
  console.log(
    `recall@${K} at ef ${EF} on ${N} GloVe-100 points: offline ${result.offline_recall}, ` +
      `monitor ${result.monitor_recall} over ${fig.samples} samples (standard error ` +
      `${result.standard_error}; ${result.difference_in_se} SE apart)\n` +
      `search q/s (${CLIENTS} clients, HTTP): monitor on (rate ${RATE}) ` +
      `${result.qps_monitor_on}, off ${result.qps_monitor_off}: cost ${result.cost_percent}%\n` +
      `CPU ms per search (node + router): monitor on ${result.cpu_ms_per_search_on}, off ` +
      `${result.cpu_ms_per_search_off}: cost ${result.cpu_cost_percent}%`,
  );
  console.log(JSON.stringify(result));
} finally {
  await group.stopAll();
  await rm(dir, { recursive: true, force: true });
}
