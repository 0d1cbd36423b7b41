/**
 * Shards benchmark (a script, not a test): the search figures issue 14 asks for, on real
 * processes over loopback gRPC with the same GloVe-100 points (cosine) in these setups:
 *
 * | setup | processes                  | collection                    |
 * | ----- | -------------------------- | ----------------------------- |
 * | (a)   | one storage node           | all points (asked directly)   |
 * | (a′)  | one storage node + a router | 1 shard, replication factor 1 |
 * | (b)   | 3 nodes + a router         | 1 shard, replication factor 3 |
 * | (c)   | 3 nodes + a router         | 3 shards, replication factor 2 |
 *
 * For each setup, one after the other: its processes start, the collection is created
 * (`shard_number`, `replication_factor` in CreateCollection), the first `--n` base vectors are
 * loaded with the real CLI (`client load`), and ef is swept (`--efs`) until recall@10 over
 * `--queries` queries reaches `--recall` (0.95; the largest ef when none does). The setups stay
 * up, idle. Then the timed runs: `--clients` clients (each its own channel, one request at a
 * time) search one setup for `--seconds`, setup after setup, `--rounds` times in alternating
 * order (ABC CBA …), so that the shared machine's drift falls on every setup alike; a setup's
 * runs are summed. Reported per setup:
 *
 * | figure                | how                                                            |
 * | --------------------- | -------------------------------------------------------------- |
 * | queries/s             | answered searches ÷ wall seconds                               |
 * | CPU s per query       | utime + stime of every server process (and its children) from `/proc/<pid>/stat`, after − before, summed, ÷ queries |
 * | queries/s per core    | queries/s ÷ (CPU seconds used ÷ wall seconds)                  |
 * | CPU split             | the CPU ms/query above per process: the router, each node; and the clients' (this script's own process, left out of the sum) |
 * | shard searches/query  | Σ SearchResponse.shard_searches ÷ queries (the router's sum); and the router's `/metrics` delta of `vectordb_router_search_shard_searches_total` ÷ `vectordb_router_searches_total` |
 * | loadavg               | `Deno.loadavg()` before and after the timed run                |
 *
 * ```sh
 * deno run -A scripts/bench/shards_search.ts                           # n 100000, 30 s each
 * deno run -A scripts/bench/shards_search.ts --n 20000 --seconds 5 --queries 200   # quick
 * ```
 *
 * | flag          | default        | meaning                                              |
 * | ------------- | -------------- | ---------------------------------------------------- |
 * | `--n`         | 100000         | base vectors loaded (the first n)                    |
 * | `--queries`   | 500            | queries of the recall sweep (the first q)            |
 * | `--efs`       | 32,48,64,96,128,192,256 | ef values tried, in order, until the recall target |
 * | `--recall`    | 0.95           | recall@10 target                                     |
 * | `--clients`   | 16             | concurrent clients of the timed run                  |
 * | `--seconds`   | 30             | length of the timed run                              |
 * | `--setups`    | a,a1,b,c       | which setups to run (a, a1 = (a′), b, c)             |
 * | `--batch`     | 100            | `client load --batch`                                |
 * | `--json`      |                | one JSON object on stdout instead of the table       |
 * | `--runtime`   | bundle         | servers from the esbuild bundles (as `deno task server`), or `node` (tsx) |
 * | `--router-flags` | ""         | more router flags, space-separated (e.g. `--search-batch-max 0` to compare) |
 * | `--node-flags` | ""          | more storage node flags, space-separated (e.g. `--search-threads 1`) |
 * | `--cpu-prof`  |                | a directory: a V8 CPU profile of the router over its first timed run is written there (`<setup>-router.cpuprofile`); with `--compare-routers`, of build/js's router only. The setups stay up together and Node's inspector has one port: only the first setup's router is profiled (run `--setups` one at a time to profile each) |
 * | `--compare-routers` | ""       | more router bundles (comma-separated `.mjs` files, e.g. an older build: a copy of its `build/js` as `OTHER/build/js`, with `OTHER/proto`, so the file is `OTHER/build/js/router.mjs`, the path a router bundle checks to start): each setup with a router starts one more router per file on the same nodes, and the timed run is repeated for every router (one row each, `[router-N]`) |
 * | `--rounds`    | 1              | timed runs per setup (and per router with `--compare-routers`), summed; every setup is loaded first, then the runs alternate over all of them (ABC CBA …) |
 *
 * Every process is stopped at the end, also on error and on Ctrl-C; the directory is removed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { freePort } from "../../harness/ports.ts";
import { ChildProc, ProcGroup, REPO_ROOT } from "../../harness/process.ts";
import {
  buildBundles,
  NODE_ENTRY,
  nodeFlags,
  ROUTER_ENTRY,
  routerFlags,
  runCli,
  type Runtime,
  spawnServer,
} from "../../harness/servers.ts";
import { loadDataset } from "./lib/dataset.ts";
import { type Matrix, writeFvecs } from "./lib/fvecs.ts";
import { measureRecall, ownClient, row, type SearchSpec } from "./lib/cluster_search.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    queries: { type: "string", default: "500" },
    efs: { type: "string", default: "32,48,64,96,128,192,256" },
    recall: { type: "string", default: "0.95" },
    clients: { type: "string", default: "16" },
    seconds: { type: "string", default: "30" },
    setups: { type: "string", default: "a,a1,b,c" },
    batch: { type: "string", default: "100" },
    json: { type: "boolean", default: false },
    runtime: { type: "string", default: "bundle" },
    "cpu-prof": { type: "string" },
    "router-flags": { type: "string", default: "" },
    "node-flags": { type: "string", default: "" },
    "compare-routers": { type: "string", default: "" },
    rounds: { type: "string", default: "1" },
  },
  strict: true,
  allowPositionals: false,
});

function positive(name: string, text: string | undefined): number {
  const x = Number(text);
  if (text === undefined || !Number.isFinite(x) || x <= 0) {
    throw new RangeError(`--${name} "${text}" must be a positive number`);
  }
  return x;
}

const N = Math.floor(positive("n", flags.n));
const Q = Math.floor(positive("queries", flags.queries));
const EFS = flags.efs!.split(",").map((s) => Math.floor(positive("efs", s)));
const RECALL = positive("recall", flags.recall);
const CLIENTS = Math.floor(positive("clients", flags.clients));
const SECONDS = positive("seconds", flags.seconds);
const BATCH = Math.floor(positive("batch", flags.batch));
const ROUNDS = Math.floor(positive("rounds", flags.rounds));
/** `--node-flags` and `--router-flags`, split into arguments. */
const words = (text: string) => text.split(" ").filter((x) => x !== "");
const NODE_EXTRA = words(flags["node-flags"]!);
const ROUTER_EXTRA = words(flags["router-flags"]!);
/** Router bundles started beside build/js's on the same nodes (`--compare-routers`). */
const COMPARE_ROUTERS = flags["compare-routers"]!.split(",").map((x) => x.trim()).filter((x) =>
  x !== ""
);
for (const f of COMPARE_ROUTERS) {
  try {
    Deno.statSync(f);
  } catch {
    throw new RangeError(`--compare-routers file ${f} does not exist`);
  }
}
if (!["bundle", "node"].includes(flags.runtime!)) {
  throw new RangeError(`--runtime ${flags.runtime} must be bundle or node`);
}
/** Servers run as users run them (the esbuild bundles) unless `--runtime node` (tsx, sources). */
const RUNTIME = flags.runtime as Runtime;
if (RUNTIME === "bundle") buildBundles();
const K = 10;
const COLLECTION = "glove";
const CALL_TIMEOUT_MS = 30_000;
const READY_TIMEOUT_MS = 300_000;
const LOAD_TIMEOUT_MS = 1_800_000;

/** A setup of the module comment's table. */
interface Setup {
  /** `--setups` key, also naming the setup's data directories. */
  key: string;
  name: string;
  nodes: number;
  router: boolean;
  shard_number: number;
  replication_factor: number;
}

const SETUPS: Record<string, Setup> = {
  a: {
    key: "a",
    name: "(a) one node",
    nodes: 1,
    router: false,
    shard_number: 1,
    replication_factor: 1,
  },
  a1: {
    key: "a1",
    name: "(a′) one node + router",
    nodes: 1,
    router: true,
    shard_number: 1,
    replication_factor: 1,
  },
  b: {
    key: "b",
    name: "(b) 3 nodes, 1 shard, RF 3",
    nodes: 3,
    router: true,
    shard_number: 1,
    replication_factor: 3,
  },
  c: {
    key: "c",
    name: "(c) 3 nodes, 3 shards, RF 2",
    nodes: 3,
    router: true,
    shard_number: 3,
    replication_factor: 2,
  },
};

const T0 = performance.now();
function log(message: string): void {
  console.error(`[${((performance.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${message}`);
}

const dir = await Deno.makeTempDir({ prefix: "vectordb_bench_shards_" });
const procs = new ProcGroup();
let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await procs.stopAll(10_000);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  })();
  return cleaning;
}
Deno.addSignalListener("SIGINT", () => {
  log("interrupted: stopping every process");
  cleanup().finally(() => Deno.exit(130));
});

// ----- CPU time from /proc -----

const CLK_TCK = 100; // Linux USER_HZ on every common kernel.

/** `pid` and its descendants (read from /proc/<pid>/task/<pid>/children). */
function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      const text = readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, "utf8").trim();
      for (const c of text.split(/\s+/)) if (c !== "") out.push(Number(c));
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}

/** CPU seconds (user + system) used so far by `pid` and (`tree`) its descendants. */
function cpuSeconds(pid: number, tree = true): number {
  let ticks = 0;
  for (const p of tree ? processTree(pid) : [pid]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      // Fields after the command (which may hold spaces) start after the last ')'.
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
    } catch {
      // Exited meanwhile.
    }
  }
  return ticks / CLK_TCK;
}

// ----- CPU profile of the router's timed run -----

/**
 * A V8 CPU profile of the Node process `pid`, started now: SIGUSR1 opens Node's inspector on
 * 127.0.0.1:9229 (one router at a time), then the Profiler domain runs over its WebSocket.
 * `stop` returns the profile (JSON text, the `.cpuprofile` format) and closes the socket. The
 * inspector stays open (closing it from a session sometimes took the process's servers down),
 * so while the setups are all up only the first router asked gets the port: the process behind
 * it is checked to be `pid`, and a profile is never another process's.
 */
async function startProfile(pid: number): Promise<{ stop: () => Promise<string> }> {
  Deno.kill(pid, "SIGUSR1");
  let url: string | undefined;
  for (let i = 0; i < 50 && url === undefined; i++) {
    try {
      const list = await (await fetch("http://127.0.0.1:9229/json/list")).json();
      url = list[0]?.webSocketDebuggerUrl;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (url === undefined) throw new Error(`no inspector on process ${pid}`);
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let id = 0;
  const waiting = new Map<number, (r: unknown) => void>();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    waiting.get(m.id)?.(m.result);
    waiting.delete(m.id);
  };
  const send = (method: string, params: unknown = {}) =>
    new Promise<unknown>((resolve) => {
      waiting.set(++id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  const owner = await send("Runtime.evaluate", { expression: "process.pid", returnByValue: true });
  if ((owner as { result?: { value?: unknown } })?.result?.value !== pid) {
    ws.close();
    throw new Error(`the inspector on 127.0.0.1:9229 is not process ${pid}'s`);
  }
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 200 });
  await send("Profiler.start");
  return {
    stop: async () => {
      const r = await send("Profiler.stop") as { profile: unknown };
      ws.close();
      return JSON.stringify(r.profile);
    },
  };
}

// ----- Metrics -----

async function scrape(url: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const text = await (await fetch(url, { signal: AbortSignal.timeout(5000) })).text();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line === "") continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

// ----- One setup -----

interface SetupResult {
  setup: string;
  ef: number;
  recall: number;
  sweep: { ef: number; recall: number }[];
  queries: number;
  errors: number;
  partial: number;
  wall_s: number;
  qps: number;
  cpu_s: number;
  cpu_s_per_query: number;
  cores_used: number;
  qps_per_core: number;
  shard_searches_per_query: number | null;
  metrics_shard_searches_per_query: number | null;
  /**
   * CPU ms per query of each process of the timed run: "router", "node-0", … (summed in
   * `cpu_s_per_query`), and "clients" (this script's process: the load, not in the sum).
   */
  cpu_ms_per_query_by_process: Record<string, number>;
  /** The router's hedged calls in the timed run (their late answers raise the metrics figure). */
  hedges: { sent: number; won: number; skipped: number };
  /** SearchBatch calls the router made in the timed run, and the node searches they carried. */
  batches: { calls: number; searches: number };
  loadavg_before: number[];
  loadavg_after: number[];
}

/** A setup started and loaded, its timed runs still to come (see {@link prepareSetup}). */
interface Prepared {
  setup: Setup;
  /** Names of the targets timed (its routers, or the node): `run(i)` times target i once. */
  targets: string[];
  run(target: number, profile: boolean): Promise<void>;
  /** The summed timed runs, one result per target. */
  results(): SetupResult[];
  stop(): Promise<void>;
}

/**
 * Starts setup `s`'s processes, loads the points and sweeps ef; the timed runs come later
 * (`run`), so the setups' runs can alternate while every setup stays loaded. On error the
 * processes are stopped.
 */
async function prepareSetup(s: Setup, baseFile: string, ds: {
  queries: Matrix<Float32Array>;
  gt: Matrix<Int32Array>;
}): Promise<Prepared> {
  const group: ChildProc[] = [];
  /** Names of `group`'s processes, in order (the CPU split). */
  const names: string[] = [];
  const nodePorts = await Promise.all(Array.from({ length: s.nodes }, () => freePort()));
  const nodeAddrs = nodePorts.map((p) => `127.0.0.1:${p}`);
  for (const [i, p] of nodePorts.entries()) {
    names.push(`node-${i}`);
    group.push(spawnServer({
      name: `node-${p}`,
      entry: NODE_ENTRY,
      flags: nodeFlags({
        port: p,
        data_dir: join(dir, `${s.key}-node-${i}`),
        extra: NODE_EXTRA,
      }),
      ready_timeout_ms: READY_TIMEOUT_MS,
      group: procs,
      runtime: RUNTIME,
    }));
  }
  let addr = nodeAddrs[0];
  /** The routers (build/js's, then `--compare-routers`' ones): each timed separately. */
  const routers: { name: string; addr: string; metricsUrl: string }[] = [];
  if (s.router) {
    for (const [j, bundle] of [null, ...COMPARE_ROUTERS].entries()) {
      const port = await freePort();
      const http = await freePort();
      const name = j === 0 ? "router" : `router-${j}`;
      names.push(name);
      const rflags = routerFlags({
        port,
        nodes: nodeAddrs,
        replication_factor: s.replication_factor,
        data_dir: join(dir, `${s.key}-${name}`),
        // Recall sampling would add exact searches to the measured CPU.
        extra: [
          "--http-port",
          String(http),
          "--recall-sample-rate",
          "0",
          ...ROUTER_EXTRA,
        ],
      });
      if (bundle === null) {
        group.push(spawnServer({
          name,
          entry: ROUTER_ENTRY,
          flags: rflags,
          ready_timeout_ms: READY_TIMEOUT_MS,
          group: procs,
          runtime: RUNTIME,
        }));
      } else {
        const p = new ChildProc({
          name,
          command: "node",
          args: [bundle, ...rflags],
          ready_timeout_ms: READY_TIMEOUT_MS,
        });
        procs.add(p);
        group.push(p);
        log(`${s.name}: ${name} runs ${bundle}`);
      }
      routers.push({
        name,
        addr: `127.0.0.1:${port}`,
        metricsUrl: `http://127.0.0.1:${http}/metrics`,
      });
    }
    addr = routers[0].addr;
  }
  const stop = () => Promise.all(group.map((p) => p.stop(10_000).catch(() => {}))).then(() => {});
  try {
    await Promise.all(group.map((p) => p.ready));
    log(`${s.name}: up (${group.length} processes)`);
    for (const r of routers.length > 0 ? routers : [{ addr }]) {
      const api = ownClient(r.addr, CALL_TIMEOUT_MS);
      try {
        if (s.router) {
          // A router reaches its nodes a moment after it listens: go on once all answer (else
          // the creation is hinted to the late ones and fails the quorum).
          const deadline = Date.now() + READY_TIMEOUT_MS;
          for (;;) {
            const st = await api.call("Stats", {});
            const up = (st.nodes ?? []).filter((n) => n.error === "").length;
            if (up === s.nodes) break;
            if (Date.now() > deadline) throw new Error(`only ${up} of ${s.nodes} nodes answer`);
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      } finally {
        api.close();
      }
    }
    const api = ownClient(addr, CALL_TIMEOUT_MS);
    try {
      await api.call("CreateCollection", {
        name: COLLECTION,
        dimension: ds.queries.dim,
        metric: "cosine",
        m: 16,
        ef_construction: 200,
        shard_number: s.shard_number,
        replication_factor: s.replication_factor,
      });
    } finally {
      api.close();
    }
    const t = performance.now();
    const load = await runCli([
      "--json",
      "--timeout-ms",
      String(LOAD_TIMEOUT_MS),
      "--addr",
      addr,
      "load",
      "--file",
      baseFile,
      "--collection",
      COLLECTION,
      "--batch",
      String(BATCH),
    ], { group: procs });
    if (load.code !== 0) throw new Error(`client load failed:\n${load.stdout}${load.stderr}`);
    log(`${s.name}: loaded ${N} points in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const sweep: { ef: number; recall: number }[] = [];
    for (const ef of EFS) {
      const spec: SearchSpec = { collection: COLLECTION, k: K, ef: Math.max(ef, K) };
      const r = await measureRecall(addr, ds.queries, ds.gt, spec, 4, CALL_TIMEOUT_MS);
      sweep.push({ ef, recall: r.recall });
      log(`${s.name}: ef ${ef} recall@${K} ${r.recall.toFixed(4)} (${r.partial} partial)`);
      if (r.recall >= RECALL) break;
    }
    const chosen = sweep.find((x) => x.recall >= RECALL) ?? sweep[sweep.length - 1];
    const spec: SearchSpec = { collection: COLLECTION, k: K, ef: Math.max(chosen.ef, K) };
    const vectors = Array.from({ length: ds.queries.n }, (_, i) => row(ds.queries, i));
    const pids = group.map((p) => p.pid!);
    if (pids.some((p) => p === undefined)) throw new Error(`${s.name}: a server has no pid`);

    /** What one router's timed runs add up to. */
    interface Tally {
      answered: number;
      errors: number;
      partial: number;
      shard_searches: number;
      wall_s: number;
      cpu_by: number[];
      self_s: number;
      metric: (name: string) => number;
      loadavg_before: number[] | null;
      loadavg_after: number[];
    }
    const timedRun = async (
      target: { name: string; addr: string; metricsUrl: string | null },
      tally: Tally,
      profile: boolean,
    ): Promise<void> => {
      const clients = Array.from(
        { length: CLIENTS },
        () => ownClient(target.addr, CALL_TIMEOUT_MS),
      );
      try {
        await Promise.all(clients.map(async (c, j) => {
          for (let i = 0; i < 10; i++) {
            await c.call("Search", { vector: vectors[(j * 10 + i) % vectors.length], ...spec });
          }
        }));
        const m0 = target.metricsUrl === null ? null : await scrape(target.metricsUrl);
        const prof = !profile || flags["cpu-prof"] === undefined || !s.router
          ? null
          : await startProfile(pids[names.indexOf(target.name)]).catch((e) => {
            log(`${s.name}: ${target.name} not profiled: ${(e as Error).message}`);
            return null;
          });
        tally.loadavg_before ??= Deno.loadavg();
        const cpu0 = pids.map((p) => cpuSeconds(p));
        const self0 = cpuSeconds(Deno.pid, false);
        const t0 = performance.now();
        const end = t0 + SECONDS * 1000;
        let next = 0;
        await Promise.all(clients.map(async (c) => {
          while (performance.now() < end) {
            const q = next++ % vectors.length;
            try {
              const res = await c.call("Search", { vector: vectors[q], ...spec });
              tally.answered++;
              if (res.partial) tally.partial++;
              tally.shard_searches += res.shard_searches ?? 0;
            } catch {
              tally.errors++;
            }
          }
        }));
        tally.wall_s += (performance.now() - t0) / 1000;
        pids.forEach((p, i) => tally.cpu_by[i] += cpuSeconds(p) - cpu0[i]);
        tally.self_s += cpuSeconds(Deno.pid, false) - self0;
        if (prof !== null) {
          const file = join(flags["cpu-prof"]!, `${s.key}-${target.name}.cpuprofile`);
          await Deno.mkdir(flags["cpu-prof"]!, { recursive: true });
          await Deno.writeTextFile(file, await prof.stop());
          log(`${s.name}: ${target.name} CPU profile of the timed run in ${file}`);
        }
        tally.loadavg_after = Deno.loadavg();
        if (m0 !== null) {
          const m1 = await scrape(target.metricsUrl!);
          const before = tally.metric;
          const d = (name: string) => (m1.get(name) ?? 0) - (m0.get(name) ?? 0);
          tally.metric = (name) => before(name) + d(name);
        }
      } finally {
        for (const c of clients) c.close();
      }
    };

    const targets = routers.length > 0
      ? routers
      : [{ name: "node-0", addr, metricsUrl: null as string | null }];
    const tallies = targets.map((): Tally => ({
      answered: 0,
      errors: 0,
      partial: 0,
      shard_searches: 0,
      wall_s: 0,
      cpu_by: pids.map(() => 0),
      self_s: 0,
      metric: () => 0,
      loadavg_before: null,
      loadavg_after: [],
    }));
    const results = () =>
      targets.map((target, ti): SetupResult => {
        const t = tallies[ti];
        // The routers not asked in this one's runs were idle: left out of its sum.
        const counted = names.map((n) => !n.startsWith("router") || n === target.name);
        const cpu_s = t.cpu_by.reduce((a, x, i) => a + (counted[i] ? x : 0), 0);
        const per_query: Record<string, number> = {};
        const q = Math.max(1, t.answered);
        names.forEach((name, i) => {
          if (counted[i]) per_query[name] = (t.cpu_by[i] / q) * 1000;
        });
        per_query.clients = (t.self_s / q) * 1000;
        const d = t.metric;
        const searches = d("vectordb_router_searches_total");
        const qps = t.answered / t.wall_s;
        const cores = cpu_s / t.wall_s;
        return {
          setup: targets.length > 1 ? `${s.name} [${target.name}]` : s.name,
          ef: chosen.ef,
          recall: chosen.recall,
          sweep,
          queries: t.answered,
          errors: t.errors,
          partial: t.partial,
          wall_s: t.wall_s,
          qps,
          cpu_s,
          cpu_s_per_query: cpu_s / q,
          cores_used: cores,
          qps_per_core: cores > 0 ? qps / cores : NaN,
          // A single node answers shard_searches itself (1 per search, or 0 from older nodes).
          shard_searches_per_query: t.answered > 0 && t.shard_searches > 0
            ? t.shard_searches / t.answered
            : null,
          metrics_shard_searches_per_query: searches > 0
            ? d("vectordb_router_search_shard_searches_total") / searches
            : null,
          cpu_ms_per_query_by_process: per_query,
          hedges: {
            sent: d('vectordb_router_search_hedges_total{outcome="sent"}'),
            won: d('vectordb_router_search_hedges_total{outcome="won"}'),
            skipped: d('vectordb_router_search_hedges_total{outcome="skipped"}'),
          },
          batches: {
            calls: d("vectordb_router_search_batches_total"),
            searches: d('vectordb_router_search_batched_total{outcome="batched"}'),
          },
          loadavg_before: t.loadavg_before ?? [],
          loadavg_after: t.loadavg_after,
        };
      });
    return {
      setup: s,
      targets: targets.map((t) => t.name),
      run: (i, profile) => timedRun(targets[i], tallies[i], profile),
      results,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

// ----- Main -----

const results: SetupResult[] = [];
const prepared: Prepared[] = [];
try {
  const ds = loadDataset({ cacheDir: join(REPO_ROOT, ".cache/bench"), n: N });
  const queries: Matrix<Float32Array> = {
    n: Math.min(Q, ds.queries.n),
    dim: ds.queries.dim,
    data: ds.queries.data.subarray(0, Math.min(Q, ds.queries.n) * ds.queries.dim),
  };
  const gt: Matrix<Int32Array> = {
    n: queries.n,
    dim: ds.gt.dim,
    data: ds.gt.data.subarray(0, queries.n * ds.gt.dim),
  };
  const baseFile = join(dir, `glove-100-n${N}.fvecs`);
  writeFvecs(baseFile, ds.base);
  log(`${N} points (dimension ${ds.base.dim}), ${queries.n} queries; loadavg ${Deno.loadavg()}`);
  const chosen = flags.setups!.split(",").map((key) => {
    const s = SETUPS[key.trim()];
    if (s === undefined) {
      throw new RangeError(`--setups entry "${key}" must be one of ${Object.keys(SETUPS)}`);
    }
    return s;
  });
  // Every setup is started and loaded first; then the timed runs alternate over the setups (and
  // routers), ABC CBA …, so a drift of the shared machine falls on all of them alike.
  for (const s of chosen) prepared.push(await prepareSetup(s, baseFile, { queries, gt }));
  const runs = prepared.flatMap((p) => p.targets.map((_, i) => ({ p, i })));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? runs : [...runs].reverse();
    for (const { p, i } of order) {
      log(`${p.setup.name}: round ${round + 1} of ${ROUNDS}, ${p.targets[i]}`);
      // Node's inspector listens on one port (9229): only the first router can be profiled.
      await p.run(i, round === 0 && i === 0);
    }
  }
  for (const p of prepared) {
    for (const r of p.results()) {
      results.push(r);
      log(
        `${r.setup}: ef ${r.ef} recall ${r.recall.toFixed(3)}: ${r.qps.toFixed(0)} q/s, ` +
          `${(r.cpu_s_per_query * 1000).toFixed(2)} CPU ms/query, ${
            r.cores_used.toFixed(2)
          } cores, ` +
          `${r.qps_per_core.toFixed(0)} q/s per core, shard searches/query ` +
          `${r.shard_searches_per_query?.toFixed(2) ?? "-"} (metrics ` +
          `${r.metrics_shard_searches_per_query?.toFixed(2) ?? "-"}), hedges ${r.hedges.sent} ` +
          `sent ${r.hedges.won} won ${r.hedges.skipped} skipped, ${r.batches.calls} node SearchBatch calls carrying ` +
          `${r.batches.searches} searches, ${r.errors} errors, ` +
          `${r.partial} partial, CPU ms/query by process ${
            Object.entries(r.cpu_ms_per_query_by_process).map(([k, v]) => `${k} ${v.toFixed(2)}`)
              .join(", ")
          }, loadavg ${r.loadavg_before.map((x) => x.toFixed(2))} → ` +
          `${r.loadavg_after.map((x) => x.toFixed(2))}`,
      );
    }
  }
} finally {
  await Promise.all(prepared.map((p) => p.stop()));
  await cleanup();
}

if (flags.json) {
  console.log(JSON.stringify({ n: N, clients: CLIENTS, seconds: SECONDS, results }));
} else {
  const a = results.find((r) => r.setup.startsWith("(a)"));
  const a1 = results.find((r) => r.setup.startsWith("(a′)"));
  const vs = (r: SetupResult, base: SetupResult | undefined) =>
    base === undefined
      ? "- | -"
      : `${(r.qps_per_core / base.qps_per_core).toFixed(2)}x | ${
        (r.cpu_s_per_query / base.cpu_s_per_query).toFixed(2)
      }x`;
  console.log(
    "| setup | ef | recall@10 | queries/s | CPU ms/query | CPU ms/query by process | cores used | q/s per core | vs (a) per core | CPU/query vs (a) | vs (a′) per core | CPU/query vs (a′) | shard searches/query | hedges sent/won | loadavg (1 min) |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    const split = Object.entries(r.cpu_ms_per_query_by_process)
      .map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ");
    console.log(
      `| ${r.setup} | ${r.ef} | ${r.recall.toFixed(3)} | ${r.qps.toFixed(0)} | ` +
        `${(r.cpu_s_per_query * 1000).toFixed(2)} | ${split} | ${r.cores_used.toFixed(2)} | ` +
        `${r.qps_per_core.toFixed(0)} | ${vs(r, a)} | ${vs(r, a1)} | ` +
        `${r.shard_searches_per_query?.toFixed(2) ?? "-"} / ` +
        `${r.metrics_shard_searches_per_query?.toFixed(2) ?? "-"} | ` +
        `${r.hedges.sent}/${r.hedges.won} | ` +
        `${r.loadavg_before[0].toFixed(2)} → ${r.loadavg_after[0].toFixed(2)} |`,
    );
  }
}
