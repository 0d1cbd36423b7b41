/**
 * Cluster benchmark (a script, not a test): the figures the cluster issue asks for, on real
 * processes over loopback gRPC with GloVe-100 (cosine).
 *
 * 1. Load: three storage nodes and a router (RF=2, quorum, free loopback ports, a temporary
 *    data directory); the collection is created and the first `--n` base vectors, written to
 *    a temporary .fvecs file, are loaded with the real CLI (`client collections create`,
 *    `client load`) through the router. Reported: the CLI's own points/s and the benchmark's
 *    wall clock around the CLI process (Deno start-up included).
 * 2. Recall@k through the router against exact search over the same `--n` vectors (ground
 *    truth by brute force with our WASM kernels, `groundTruth`), for each `--efs`.
 * 3. Throughput: queries/s and p50/p99 latency at each `--clients` level (each client its own
 *    channel, one request at a time), through the router and, for comparison, against ONE
 *    standalone node holding all `--n` points (created and loaded the same way; its load rate
 *    and recall are reported too). ef is `--ef`, or by default the smallest of `--efs` whose
 *    recall through the router is at least 0.95 (the largest when none is).
 * 4. Node failure: after checking that the shard placement (harness/placement.ts, the
 *    collection's layout as the router reports it) predicts where points land, a writer (Puts of new ids at quorum) and a
 *    searcher run through the router; one node is SIGKILLed mid-run and restarted later; then
 *    hint queues are waited out and every acknowledged write is looked up on each of its
 *    owners directly (must be 0 missing). See lib/cluster_kill.ts.
 *
 * Every server of the cluster also serves HTTP on a free port, and the throughput phase scrapes
 * `/metrics` of the router and the first node every second while the searches run; the report
 * shows the last scrape's request, latency, WAL, index, search and fan-out series (non-zero).
 *
 * `--batch` defaults to 100, not the CLI's 1,000: through the router each owner gets one
 * PutBatch per batch under the router's node timeout (2 s by default), and with
 * ef_construction 200 on a loaded 2-core machine ~670 inserts per node per batch, four batches
 * in flight, exceed it (DEADLINE_EXCEEDED from the nodes, UNAVAILABLE "Only 0 of 2 owners
 * acknowledged" to the CLI, which then stops).
 *
 * Every process is stopped at the end, also on error and on Ctrl-C; the directory is removed.
 *
 * ```sh
 * npx --yes deno@2.9.6 task build:asm        # once: the WASM kernels for the ground truth
 * npx --yes deno@2.9.6 run -A scripts/bench/bench_cluster.ts                   # full run
 * npx --yes deno@2.9.6 run -A scripts/bench/bench_cluster.ts --n 20000 --queries 200 \
 *   --throughput-queries 500 --kill-run-s 20                              # a quick one
 * ```
 *
 * | flag                   | default        | meaning                                          |
 * | ---------------------- | -------------- | ------------------------------------------------ |
 * | `--n`                  | 100000         | base vectors loaded (the first n)                |
 * | `--queries`            | 1000           | queries for recall (the first q)                 |
 * | `--efs`                | 64,128,256     | ef values of the recall sweep                    |
 * | `--ef`                 | (see 3.)       | ef of the throughput and failure phases          |
 * | `--k`                  | 10             | neighbours per search                            |
 * | `--clients`            | 1,16           | concurrency levels of the throughput phase       |
 * | `--throughput-queries` | 2000           | timed searches per level (queries cycle)         |
 * | `--warmup`             | 25             | untimed searches per client before each level    |
 * | `--batch`              | 100            | `client load --batch` (see below)                |
 * | `--load-concurrency`   | 4              | `client load --concurrency` (the CLI's default)  |
 * | `--m`                  | 16             | HNSW m of the collection                         |
 * | `--ef-construction`    | 200            | HNSW ef_construction                             |
 * | `--node-timeout-ms`    | 2000           | the router's `--node-timeout-ms`                 |
 * | `--kill-at-s`          | 10             | failure phase: SIGKILL this long after its start |
 * | `--restart-after-s`    | 7              | … restart the node this long after the kill      |
 * | `--kill-run-s`         | 30             | … the run lasts at least this long …             |
 * | `--after-ready-s`      | 10             | … and this long after the node is back           |
 * | `--no-single`          |                | skip the single-node comparison                  |
 * | `--no-kill`            |                | skip the failure phase                           |
 * | `--json`               |                | one JSON object on stdout instead of the table   |
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { freePort } from "../../harness/ports.ts";
import { type ChildProc, ProcGroup, REPO_ROOT, type RunResult } from "../../harness/process.ts";
import {
  NODE_ENTRY,
  nodeFlags,
  ROUTER_ENTRY,
  type RouterFlags,
  routerFlags,
  runCli,
  spawnServer,
} from "../../harness/servers.ts";
import { groundTruth } from "./lib/dataset.ts";
import { type Matrix, readFvecs, writeFvecs } from "./lib/fvecs.ts";
import {
  measureRecall,
  measureThroughput,
  row,
  type SearchSpec,
  type ThroughputResult,
} from "./lib/cluster_search.ts";
import { placementOf } from "../../harness/placement.ts";
import { ApiClient } from "../../src/api/client.ts";
import { checkRing, type KillResult, type RingCheck, runKill } from "./lib/cluster_kill.ts";

// ----- Flags -----

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    queries: { type: "string", default: "1000" },
    efs: { type: "string", default: "64,128,256" },
    ef: { type: "string" },
    k: { type: "string", default: "10" },
    clients: { type: "string", default: "1,16" },
    "throughput-queries": { type: "string", default: "2000" },
    warmup: { type: "string", default: "25" },
    batch: { type: "string", default: "100" },
    "load-concurrency": { type: "string", default: "4" },
    m: { type: "string", default: "16" },
    "ef-construction": { type: "string", default: "200" },
    "node-timeout-ms": { type: "string", default: "2000" },
    "kill-at-s": { type: "string", default: "10" },
    "restart-after-s": { type: "string", default: "7" },
    "kill-run-s": { type: "string", default: "30" },
    "after-ready-s": { type: "string", default: "10" },
    "no-single": { type: "boolean", default: false },
    "no-kill": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    base: { type: "string", default: join(REPO_ROOT, ".cache/bench/glove-100/base.fvecs") },
    "queries-file": {
      type: "string",
      default: join(REPO_ROOT, ".cache/bench/glove-100/queries.fvecs"),
    },
  },
  strict: true,
  allowPositionals: false,
});

function positive(name: string, text: string | undefined): number {
  const x = Number(text);
  if (text === undefined || text.trim() === "" || !Number.isInteger(x) || x <= 0) {
    throw new RangeError(`--${name} "${text}" must be a positive integer`);
  }
  return x;
}
function seconds(name: string, text: string | undefined): number {
  const x = Number(text);
  if (text === undefined || text.trim() === "" || !Number.isFinite(x) || x < 0) {
    throw new RangeError(`--${name} "${text}" must be a non-negative number of seconds`);
  }
  return x;
}
const list = (name: string, text: string) => text.split(",").map((s) => positive(name, s));

const N = positive("n", flags.n);
const Q = positive("queries", flags.queries);
const EFS = list("efs", flags.efs!);
const K = positive("k", flags.k);
const CLIENTS = list("clients", flags.clients!);
const THROUGHPUT_QUERIES = positive("throughput-queries", flags["throughput-queries"]);
const WARMUP = Number(flags.warmup);
const BATCH = positive("batch", flags.batch);
const LOAD_CONCURRENCY = positive("load-concurrency", flags["load-concurrency"]);
const M = positive("m", flags.m);
const EF_CONSTRUCTION = positive("ef-construction", flags["ef-construction"]);
const NODE_TIMEOUT_MS = positive("node-timeout-ms", flags["node-timeout-ms"]);
const KILL_AT_MS = seconds("kill-at-s", flags["kill-at-s"]) * 1000;
const RESTART_AFTER_MS = seconds("restart-after-s", flags["restart-after-s"]) * 1000;
const KILL_RUN_MS = seconds("kill-run-s", flags["kill-run-s"]) * 1000;
const AFTER_READY_MS = seconds("after-ready-s", flags["after-ready-s"]) * 1000;
if (!Number.isInteger(WARMUP) || WARMUP < 0) {
  throw new RangeError(`--warmup "${flags.warmup}" must be a non-negative integer`);
}

const COLLECTION = "glove";
const METRIC = "cosine";
const NODES = 3;
const RF = 2;
const CONSISTENCY = "quorum";
const RECALL_TARGET = 0.95;
const RECALL_CONCURRENCY = 4;
const CALL_TIMEOUT_MS = 30_000;
const LOAD_TIMEOUT_MS = 600_000;
const READY_TIMEOUT_MS = 300_000;
/** Output lines kept per process. */
const LOG_LINES_KEPT = 300;
/** Grace period between SIGTERM and SIGKILL when stopping a process. */
const STOP_GRACE_MS = 10_000;
const DRAIN_TIMEOUT_MS = 180_000;
/** Ids of the failure phase's writes and of the ring probes, far above the loaded ones. */
const WRITE_ID_BASE = 10_000_000;
const PROBE_ID_BASE = 20_000_000;

// ----- Logging and clean-up -----

const T0 = performance.now();
function log(message: string): void {
  const s = ((performance.now() - T0) / 1000).toFixed(1).padStart(6);
  console.error(`[${s} s] ${message}`);
}
const loads: { phase: string; loadavg: number[] }[] = [];
function noteLoad(phase: string): void {
  const l = Deno.loadavg();
  loads.push({ phase, loadavg: l });
  log(`load average ${l.map((x) => x.toFixed(2)).join(" ")} (${phase})`);
}

const dir = await Deno.makeTempDir({ prefix: "vectordb_bench_cluster_" });
/** Every process the benchmark started; stopped on success, on error and on Ctrl-C. */
const procs = new ProcGroup();
let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await procs.stopAll(STOP_GRACE_MS);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  })();
  return cleaning;
}
let interrupted = false;
function onSignal(): void {
  if (interrupted) return;
  interrupted = true;
  log("interrupted: stopping every process");
  cleanup().finally(() => Deno.exit(130));
}
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

// ----- Helpers -----

/** Runs the CLI with `--json`; its one JSON result line, or an error with its output. */
async function cliJson(
  args: string[],
): Promise<{ run: RunResult; result: Record<string, unknown> }> {
  const run = await runCli(["--json", "--timeout-ms", String(LOAD_TIMEOUT_MS), ...args], {
    group: procs,
  });
  const line = run.stdout.split("\n").find((l) => l.startsWith("{"));
  if (run.code !== 0 || line === undefined) {
    throw new Error(
      `client ${args.join(" ")} exited with ${run.code ?? run.signal}:\n${run.stdout}${run.stderr}`,
    );
  }
  return { run, result: JSON.parse(line) };
}

/** Result of {@link createAndLoad}. */
interface LoadFigures {
  target: string;
  points: number;
  cli_elapsed_ms: number;
  cli_points_per_s: number;
  wall_ms: number;
  wall_points_per_s: number;
}

/** `client collections create` and `client load` against `addr`. */
async function createAndLoad(target: string, addr: string, file: string): Promise<LoadFigures> {
  await cliJson([
    "--addr",
    addr,
    "collections",
    "create",
    "--name",
    COLLECTION,
    "--dimension",
    String(dim),
    "--metric",
    METRIC,
    "--m",
    String(M),
    "--ef-construction",
    String(EF_CONSTRUCTION),
  ]);
  log(`${target}: collection "${COLLECTION}" created; loading ${N} points with client load`);
  const { run, result } = await cliJson([
    "--addr",
    addr,
    "load",
    "--file",
    file,
    "--collection",
    COLLECTION,
    "--batch",
    String(BATCH),
    "--concurrency",
    String(LOAD_CONCURRENCY),
  ]);
  const points = Number(result.points);
  if (points !== N) throw new Error(`client load into ${target} loaded ${points} of ${N} points`);
  const figures = {
    target,
    points,
    cli_elapsed_ms: Number(result.elapsed_ms),
    cli_points_per_s: Number(result.points_per_s),
    wall_ms: run.wall_ms,
    wall_points_per_s: points / (run.wall_ms / 1000),
  };
  log(
    `${target}: loaded ${points} points; CLI ${figures.cli_points_per_s} points/s ` +
      `(${(figures.cli_elapsed_ms / 1000).toFixed(1)} s), wall ${
        (run.wall_ms / 1000).toFixed(1)
      } s`,
  );
  return figures;
}

/** Starts a storage node (under Node through tsx, like production). */
function startNode(name: string, port: number, data_dir: string): ChildProc {
  const http = httpPorts.get(port);
  return spawnServer({
    name,
    entry: NODE_ENTRY,
    flags: nodeFlags({
      port,
      data_dir,
      extra: http === undefined ? [] : ["--http-port", String(http)],
    }),
    ready_timeout_ms: READY_TIMEOUT_MS,
    lines_kept: LOG_LINES_KEPT,
    group: procs,
  });
}

/** Starts the router with a static node list. */
function startRouter(name: string, f: RouterFlags): ChildProc {
  return spawnServer({
    name,
    entry: ROUTER_ENTRY,
    flags: routerFlags({
      ...f,
      extra: [...(f.extra ?? []), "--http-port", String(httpPorts.get(f.port) ?? 0)],
    }),
    ready_timeout_ms: READY_TIMEOUT_MS,
    lines_kept: LOG_LINES_KEPT,
    group: procs,
  });
}

async function startReady(p: ChildProc): Promise<ChildProc> {
  await p.ready;
  return p;
}

/** HTTP port (for /metrics) of each server, by its gRPC port; absent: HTTP off. */
const httpPorts = new Map<number, number>();
const SCRAPE_INTERVAL_MS = 1000;
/** The series the report shows: requests, latency, WAL, index, search, router fan-out. */
const SCRAPE_SHOWN = [
  /^vectordb_grpc_requests_total\{.*method="(Search|PutBatch)"/,
  /^vectordb_grpc_request_duration_seconds_(sum|count)\{.*method="Search"/,
  /^vectordb_wal_(appends|syncs|bytes)_total\b/,
  /^vectordb_wal_sync_duration_seconds_(sum|count)\b/,
  /^vectordb_index_(points|tombstones|memory_bytes)\{/,
  /^vectordb_search_(ef|candidates_visited)_(sum|count)\b/,
  /^vectordb_router_(searches|node_searches|search_partial)_total\b/,
  /^vectordb_hints_pending\b/,
  /^vectordb_gossip_members\b/,
];

/** What one target's last scrape under load showed. */
interface ScrapedMetrics {
  target: string;
  scrapes: number;
  bytes: number;
  /** The shown series with non-zero values. */
  lines: string[];
}

/** Scrapes each target every `interval_ms` until `stop()`, keeping each one's last answer. */
function scrapeWhile(
  targets: [string, string][],
  interval_ms: number,
): { stop(): Promise<ScrapedMetrics[]> } {
  const last = new Map<string, { text: string; scrapes: number }>();
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const [name, url] of targets) {
        try {
          const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
          const text = await res.text();
          if (res.ok) last.set(name, { text, scrapes: (last.get(name)?.scrapes ?? 0) + 1 });
        } catch (e) {
          log(`scrape of ${url} failed: ${(e as Error).message}`);
        }
      }
      await new Promise((r) => setTimeout(r, interval_ms));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return targets.map(([name]) => {
        const got = last.get(name);
        const lines = (got?.text ?? "").split("\n").filter((l) =>
          SCRAPE_SHOWN.some((re) => re.test(l)) && !/ 0$/.test(l)
        );
        return {
          target: name,
          scrapes: got?.scrapes ?? 0,
          bytes: got?.text.length ?? 0,
          lines,
        };
      });
    },
  };
}

// ----- The run -----

let dim = 0;
const report: {
  config: Record<string, unknown>;
  ground_truth_s?: number;
  load: LoadFigures[];
  recall: { ef: number; router: number; router_partial: number; single?: number }[];
  throughput_ef?: number;
  metrics?: ScrapedMetrics[];
  throughput: (ThroughputResult & { target: string })[];
  ring_check?: RingCheck;
  kill?: KillResult;
  loadavg: { phase: string; loadavg: number[] }[];
} = {
  config: {
    dataset: "glove-100",
    n: N,
    queries: Q,
    k: K,
    metric: METRIC,
    m: M,
    ef_construction: EF_CONSTRUCTION,
    nodes: NODES,
    replication_factor: RF,
    consistency: CONSISTENCY,
    node_timeout_ms: NODE_TIMEOUT_MS,
    batch: BATCH,
    load_concurrency: LOAD_CONCURRENCY,
    efs: EFS,
    clients: CLIENTS,
    throughput_queries: THROUGHPUT_QUERIES,
    cpus: navigator.hardwareConcurrency,
  },
  load: [],
  recall: [],
  throughput: [],
  loadavg: loads,
};

let failed = false;
try {
  noteLoad("start");
  // Data: the first N base vectors (plus rows after them for the failure phase's writes).
  const all = readFvecs(flags.base!, N + 50_000);
  if (all.n < N) throw new RangeError(`--n ${N} exceeds the ${all.n} vectors of ${flags.base}`);
  dim = all.dim;
  const base: Matrix<Float32Array> = { n: N, dim, data: all.data.subarray(0, N * dim) };
  const queries = readFvecs(flags["queries-file"]!, Q);
  const baseFile = join(dir, `glove-100-n${N}.fvecs`);
  writeFvecs(baseFile, base);
  log(`wrote the first ${N} of ${flags.base} to ${baseFile}; ${queries.n} queries`);
  let t = performance.now();
  const gt = groundTruth(base, queries, METRIC, K);
  report.ground_truth_s = (performance.now() - t) / 1000;
  log(`exact top-${K} of ${queries.n} queries in ${report.ground_truth_s.toFixed(1)} s`);

  // 1. The cluster and the load through the router.
  const nodePorts = await Promise.all(Array.from({ length: NODES }, () => freePort()));
  const nodeAddrs = nodePorts.map((p) => `127.0.0.1:${p}`);
  const nodeDirs = nodePorts.map((p) => join(dir, `node-${p}`));
  const routerPort = await freePort();
  const routerAddr = `127.0.0.1:${routerPort}`;
  for (const p of [...nodePorts, routerPort]) httpPorts.set(p, await freePort());
  const nodes: ChildProc[] = await Promise.all(
    nodePorts.map((p, i) => startReady(startNode(`node-${p}`, p, nodeDirs[i]))),
  );
  const router = await startReady(startRouter("router", {
    port: routerPort,
    nodes: nodeAddrs,
    replication_factor: RF,
    consistency: CONSISTENCY,
    node_timeout_ms: NODE_TIMEOUT_MS,
    data_dir: join(dir, "router"),
  }));
  log(`cluster up: nodes ${nodeAddrs.join(", ")}, router ${routerAddr}`);
  noteLoad("before cluster load");
  report.load.push(await createAndLoad("router (3 nodes, RF=2)", routerAddr, baseFile));
  noteLoad("after cluster load");

  // 2. Recall through the router.
  for (const ef of EFS) {
    const spec: SearchSpec = { collection: COLLECTION, k: K, ef: Math.max(ef, K) };
    t = performance.now();
    const r = await measureRecall(
      routerAddr,
      queries,
      gt,
      spec,
      RECALL_CONCURRENCY,
      CALL_TIMEOUT_MS,
    );
    report.recall.push({ ef, router: r.recall, router_partial: r.partial });
    log(
      `router ef=${ef}: recall@${K} ${r.recall.toFixed(4)} (${r.partial} partial) in ${
        ((performance.now() - t) / 1000).toFixed(1)
      } s`,
    );
  }
  const EF = flags.ef !== undefined
    ? positive("ef", flags.ef)
    : (report.recall.find((r) => r.router >= RECALL_TARGET)?.ef ?? EFS[EFS.length - 1]);
  report.throughput_ef = EF;
  const spec: SearchSpec = { collection: COLLECTION, k: K, ef: Math.max(EF, K) };

  // 3. The single node, and throughput on both.
  let single: ChildProc | null = null;
  let singleAddr = "";
  if (!flags["no-single"]) {
    const port = await freePort();
    singleAddr = `127.0.0.1:${port}`;
    single = await startReady(startNode(`single-${port}`, port, join(dir, `single-${port}`)));
    noteLoad("before single-node load");
    report.load.push(await createAndLoad("single node", singleAddr, baseFile));
    noteLoad("after single-node load");
    for (const rec of report.recall) {
      const r = await measureRecall(
        singleAddr,
        queries,
        gt,
        { collection: COLLECTION, k: K, ef: Math.max(rec.ef, K) },
        RECALL_CONCURRENCY,
        CALL_TIMEOUT_MS,
      );
      rec.single = r.recall;
      log(`single node ef=${rec.ef}: recall@${K} ${r.recall.toFixed(4)}`);
    }
  }
  noteLoad("before throughput");
  // /metrics of the router and the first node, scraped every second while the searches run; the
  // last scrape taken under load is reported (issue 12: metrics read during a benchmark).
  const scrapeTargets: [string, string][] = [
    ["router", `http://127.0.0.1:${httpPorts.get(routerPort)}/metrics`],
    [`node-${nodePorts[0]}`, `http://127.0.0.1:${httpPorts.get(nodePorts[0])}/metrics`],
  ];
  const scraper = scrapeWhile(scrapeTargets, SCRAPE_INTERVAL_MS);
  for (const c of CLIENTS) {
    const targets: [string, string][] = [["router", routerAddr]];
    if (single !== null) targets.push(["single node", singleAddr]);
    for (const [name, addr] of targets) {
      const r = await measureThroughput(
        addr,
        queries,
        spec,
        c,
        THROUGHPUT_QUERIES,
        WARMUP,
        CALL_TIMEOUT_MS,
      );
      report.throughput.push({ target: name, ...r });
      log(
        `${name}, ${c} clients, ef=${EF}: ${r.qps.toFixed(0)} queries/s, p50 ${
          r.p50_ms.toFixed(2)
        } ms, p99 ${r.p99_ms.toFixed(2)} ms (${r.errors} errors, ${r.partial} partial)`,
      );
    }
  }
  const scraped = await scraper.stop();
  report.metrics = scraped;
  for (const m of scraped) {
    log(`/metrics of ${m.target} under load (scrape ${m.scrapes}, ${m.bytes} bytes):`);
    for (const line of m.lines) log(`  ${line}`);
  }
  noteLoad("after throughput");
  if (single !== null) {
    await single.stop();
    log("single node stopped");
  }

  // 4. Node failure.
  if (!flags["no-kill"]) {
    const routerApi = new ApiClient(routerAddr, { timeout_ms: CALL_TIMEOUT_MS });
    const ring = await placementOf(routerApi, COLLECTION, nodeAddrs, RF).finally(() =>
      routerApi.close()
    );
    report.ring_check = await checkRing({
      router: routerAddr,
      nodes: nodeAddrs,
      ring,
      replication_factor: RF,
      collection: COLLECTION,
      probe_vector: row(all, N % all.n),
      probe_id_base: PROBE_ID_BASE,
      probes: 5,
      loaded_n: N,
      sample: 45,
      timeout_ms: CALL_TIMEOUT_MS,
    });
    const rc = report.ring_check;
    log(
      `ring check: ${rc.matching} of ${rc.probes + rc.sampled_loaded} ids held exactly by ` +
        `their computed owners` + (rc.mismatches.length ? `; ${rc.mismatches.join("; ")}` : ""),
    );
    if (rc.mismatches.length > 0) {
      throw new Error("The computed owners do not match where the router put the points");
    }
    noteLoad("before failure phase");
    const victim = 1;
    report.kill = await runKill({
      router: routerAddr,
      nodes: nodeAddrs,
      ring,
      replication_factor: RF,
      consistency: CONSISTENCY,
      victim,
      collection: COLLECTION,
      cosine: METRIC === "cosine",
      spec,
      queries,
      source: all,
      source_start: N,
      write_id_base: WRITE_ID_BASE,
      loaded_n: N,
      kill_at_ms: KILL_AT_MS,
      restart_after_ms: RESTART_AFTER_MS,
      run_ms: KILL_RUN_MS,
      after_ready_ms: AFTER_READY_MS,
      node_timeout_ms: NODE_TIMEOUT_MS,
      call_timeout_ms: CALL_TIMEOUT_MS,
      drain_timeout_ms: DRAIN_TIMEOUT_MS,
      kill: async (i) => {
        nodes[i].signal("SIGKILL");
        await nodes[i].done;
      },
      restart: async (i) => {
        nodes[i] = await startReady(
          startNode(`node-${nodePorts[i]}`, nodePorts[i], nodeDirs[i]),
        );
        const startup = nodes[i].lines.filter((l) => /opened|replay|snapshot|WAL|torn/i.test(l));
        log(`${nodeAddrs[i]} start-up log:\n${startup.slice(-10).join("\n")}`);
      },
      log,
    });
    noteLoad("after failure phase");
    const events = router.lines.filter((l) => /reachable|replayed|hint/i.test(l));
    log(
      `router log about the failure (${events.length} lines, last 40):\n` +
        events.slice(-40).join("\n"),
    );
  }
} catch (e) {
  failed = true;
  log(`FAILED: ${(e as Error).stack ?? e}`);
  console.error(`--- last lines of every process ---\n${procs.tails()}\n---`);
} finally {
  await cleanup();
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
}

// ----- Summary -----

function num(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return "-";
  return x.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    "  " + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

if (flags.json) {
  console.log(JSON.stringify({ ...report, failed }));
} else {
  const out: string[] = [];
  const c = report.config;
  out.push(
    `Cluster benchmark: GloVe-100 first ${num(N)} vectors, ${METRIC}, dimension ${dim}, ` +
      `M=${c.m}, ef_construction=${c.ef_construction}, k=${K}`,
    `${NODES} nodes + router, RF=${RF}, ${CONSISTENCY} writes, node timeout ${NODE_TIMEOUT_MS} ms; ` +
      `${navigator.hardwareConcurrency} CPUs shared by every process (and by other users)`,
    "",
    `Load (client load through the CLI, --batch ${BATCH}, --concurrency ${LOAD_CONCURRENCY})`,
    table(
      ["target", "points", "CLI points/s", "CLI s", "wall s", "wall points/s"],
      report.load.map((l) => [
        l.target,
        num(l.points),
        num(l.cli_points_per_s),
        num(l.cli_elapsed_ms / 1000, 1),
        num(l.wall_ms / 1000, 1),
        num(l.wall_points_per_s),
      ]),
    ),
    "",
    `Recall@${K} over ${num(Q)} queries vs exact ${METRIC} search (ground truth ${
      num(report.ground_truth_s ?? NaN, 1)
    } s)`,
    table(
      ["ef", "router", "partial", "single node"],
      report.recall.map((r) => [
        String(r.ef),
        r.router.toFixed(4),
        String(r.router_partial),
        r.single === undefined ? "-" : r.single.toFixed(4),
      ]),
    ),
    "",
    `Search throughput (ef=${report.throughput_ef ?? "-"}, k=${K}, ${
      num(THROUGHPUT_QUERIES)
    } timed searches per row, each client its own channel, one request at a time)`,
    table(
      ["target", "clients", "queries/s", "p50 ms", "p99 ms", "max ms", "errors", "partial"],
      report.throughput.map((r) => [
        r.target,
        String(r.clients),
        num(r.qps),
        num(r.p50_ms, 2),
        num(r.p99_ms, 2),
        num(r.max_ms, 1),
        String(r.errors),
        String(r.partial),
      ]),
    ),
  );
  if (report.ring_check) {
    const rc = report.ring_check;
    out.push(
      "",
      `Ring check: ${rc.matching}/${rc.probes + rc.sampled_loaded} ids (${rc.probes} new Puts, ` +
        `${rc.sampled_loaded} loaded) held exactly by the owners HashRing computes`,
    );
  }
  const k = report.kill;
  if (k) {
    const s = (ms: number) => `${num(ms / 1000, 1)} s`;
    const w = k.writes;
    const q = k.searches;
    const lat = (name: string, l: typeof q.before_kill) => [
      name,
      num(l.count),
      num(l.p50_ms, 2),
      num(l.p99_ms, 2),
      num(l.max_ms, 1),
    ];
    out.push(
      "",
      `Node failure: SIGKILL ${k.victim} at ${s(k.kill_ms)}, restarted at ${s(k.restart_ms)}, ` +
        `READY at ${s(k.ready_ms)} (${s(k.restart_to_ready_ms)} to start), run ended at ` +
        `${s(k.end_ms)}; hints drained ${s(k.drain_ms)} later (${k.hints_pending_after} left)`,
      table(["writes (one at a time, quorum)", "count"], [
        ["total", num(w.total)],
        ["acknowledged", num(w.acked)],
        [
          "failed (" + (Object.entries(w.failed_by_error).map(([e, n]) => `${e} ${n}`).join(", ") ||
            "none") +
          ")",
          num(w.failed),
        ],
        ["  of which before the kill", num(w.failed_before_kill)],
        ["  of which between the kill and READY", num(w.failed_kill_to_ready)],
        ["  of which after READY", num(w.failed_after_ready)],
        [
          "  last failure ends, after READY (s)",
          num((w.last_failure_ms - k.ready_ms) / 1000, 1),
        ],
        ["ACKNOWLEDGED WRITES MISSING FROM AN OWNER", num(w.acked_missing)],
        ["  (owner copies checked: acknowledged writes x RF)", num(w.acked_checked * RF)],
        ["unacknowledged, on all owners after drain", num(w.unacked_on_all_owners)],
        ["unacknowledged, on some owners", num(w.unacked_on_some_owners)],
        ["unacknowledged, on no owner", num(w.unacked_on_no_owner)],
        ["writes/s over the run", num(w.per_s, 1)],
      ]),
      table(["searches (one at a time)", "count"], [
        ["total", num(q.total)],
        ["failed", num(q.failed)],
        [
          `  within the node timeout (${NODE_TIMEOUT_MS} ms) of the kill`,
          num(q.failed_within_node_timeout_of_kill),
        ],
        ["  at other times", num(q.failed_other)],
        ["partial", num(q.partial)],
        ["searches/s over the run", num(q.per_s, 1)],
      ]),
      table(["search latency", "count", "p50 ms", "p99 ms", "max ms"], [
        lat("before the kill", q.before_kill),
        lat("kill to READY", q.while_down),
        lat("after READY", q.after_restart),
      ]),
      `  loaded points owned by ${k.victim} found on it after the restart: ` +
        `${k.loaded_on_victim_checked - k.loaded_on_victim_missing}/${k.loaded_on_victim_checked}`,
    );
    for (const e of w.missing_examples) out.push(`  missing: ${e}`);
    for (const e of w.failed_examples) out.push(`  failed write: ${e}`);
    for (const e of q.failed_examples) out.push(`  failed search: ${e}`);
    for (const e of q.partial_examples) out.push(`  partial search: ${e}`);
  }
  out.push(
    "",
    "Load average (1/5/15 min) at phase boundaries: " +
      loads.map((l) => `${l.phase} ${l.loadavg.map((x) => x.toFixed(2)).join("/")}`).join("; "),
    `Total ${num((performance.now() - T0) / 1000, 0)} s${
      failed ? "; THE RUN FAILED (see above)" : ""
    }`,
  );
  console.log(out.join("\n"));
}
Deno.exit(failed || (report.kill !== undefined && report.kill.writes.acked_missing > 0) ? 1 : 0);
