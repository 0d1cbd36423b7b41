/**
 * `deno task rolling-restart`: what a rolling restart costs. Three storage nodes (`--nodes`)
 * that find each other by gossip and a router that follows them (RF 2, write consistency
 * quorum), real processes on free loopback ports with their data under a temporary directory.
 * After a preload (`--points`, seeded random vectors), a steady load runs through the router
 * for the whole restart: writers (Put, or PutBatch with `--batch` > 1; new ids and overwrites of
 * their own ids) and searchers, every acknowledged write recorded. Each node in turn gets
 * SIGTERM (a restart: it stops with its data kept, it does not leave), is waited for until it
 * exited, is started again on the same port and data directory, and is waited for until the
 * router sees it alive again (gossip `Members` and the router's `Stats`, answered by the new
 * process), its missed writes are delivered (the router's `hints_pending` for it back to 0) and
 * the router's placement is settled again; then the next node. At the end the load stops and
 * every acknowledged write is read back through the router (`Get`, vector compared) and on each
 * of its owners directly (the replicas of its shard: harness/placement.ts, with the layout the
 * router reports).
 *
 * The report (stdout; one JSON object with `--json`) gives: searches answered, partial and
 * failed (by status), writes acknowledged and failed (by status, and by phase of the restart),
 * writes lost (must be 0), copies missing on owners, the rebalancing the restarts caused (router
 * `points_copied`, `transfers_done`, `rebalances_done` deltas), hints delivered (router log
 * `replayed N hints`, and the highest `hints_pending` seen), each node's exit time (SIGTERM to
 * exit), time to READY, time until the router sees it alive, until its hints are delivered and
 * until the placement settles, and the load average at start and end. Every process output line
 * goes to a log file (`--log`, default a new temporary file, its path printed).
 *
 * Exit status 0 when nothing acknowledged was lost (router and owners), every read succeeded,
 * every search was answered in full, every node exited 0 and came back within the router's dead
 * grace (30 s); 1 otherwise; 2 for a bad flag. Failed writes do not fail the run: while a
 * stopped node is not yet declared dead (about 2-5 s), quorum writes to its ranges fail with
 * UNAVAILABLE (README, "Known limits"); they are reported.
 *
 * | flag                   | default        | meaning                                           |
 * | ---------------------- | -------------- | ------------------------------------------------- |
 * | `--seed`               | 1              | vectors, ids and queries                          |
 * | `--points`             | 20000          | points preloaded                                  |
 * | `--dimension`          | 32             | vector dimension                                  |
 * | `--write-rate`         | 100            | points written per second, all writers; 0 no cap  |
 * | `--writers`            | 4              | concurrent writers                                |
 * | `--batch`              | 1              | points per write (1: Put; more: PutBatch)         |
 * | `--searchers`          | 2              | concurrent searchers                              |
 * | `--pause-s`            | 5              | load before the first restart, between, after     |
 * | `--nodes`              | 3              | storage nodes                                     |
 * | `--replication-factor` | 2              | router's owners per point                         |
 * | `--consistency`        | quorum         | router's write consistency: one, quorum or all    |
 * | `--json`               | off            | the report as one JSON object                     |
 * | `--log`                | temporary file | every process's output lines                      |
 *
 * @example
 * ```sh
 * deno task rolling-restart
 * deno task rolling-restart --seed 7 --points 50000 --dimension 100 --write-rate 200 --json
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { TestCluster } from "../../harness/cluster.ts";
import { raceTimeout, StartError } from "../../harness/process.ts";
import { sleep, waitFor } from "../../harness/wait.ts";
import { type ApiClient, describeGrpcError, isServiceError } from "../../src/api/client.ts";
import type { StatsResponse } from "../../src/api/proto.ts";
import { placementOf } from "../../harness/placement.ts";
import { Prng } from "../../src/common/prng.ts";
import * as grpc from "@grpc/grpc-js";
import { forEachLimit } from "./lib/concurrency.ts";

const COLLECTION = "rolling";
/** The router's default `--dead-grace-s`: a node back within it moves no data. */
const DEAD_GRACE_MS = 30_000;
const STOP_WAIT_MS = 30_000;
const BACK_TIMEOUT_MS = 90_000;
const HINTS_TIMEOUT_MS = 60_000;
const SETTLE_TIMEOUT_MS = 120_000;
const PRELOAD_BATCH = 500;
const CHECK_CONCURRENCY = 32;
const SAMPLE_INTERVAL_MS = 250;

const { values: args } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    seed: { type: "string", default: "1" },
    points: { type: "string", default: "20000" },
    dimension: { type: "string", default: "32" },
    "write-rate": { type: "string", default: "100" },
    writers: { type: "string", default: "4" },
    batch: { type: "string", default: "1" },
    searchers: { type: "string", default: "2" },
    "pause-s": { type: "string", default: "5" },
    nodes: { type: "string", default: "3" },
    "replication-factor": { type: "string", default: "2" },
    consistency: { type: "string", default: "quorum" },
    json: { type: "boolean", default: false },
    log: { type: "string" },
  },
  strict: true,
});

function usage(message: string): never {
  console.error(`rolling-restart: ${message}`);
  Deno.exit(2);
}
function numberFlag(name: string, v: string | undefined, min: number, integer = true): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    usage(`--${name} "${v}" must be ${integer ? "an integer" : "a number"} of at least ${min}`);
  }
  return n;
}

const seed = numberFlag("seed", args.seed, 0);
if (seed >= 2 ** 32) usage(`--seed ${seed} must be below 2^32`);
const pointCount = numberFlag("points", args.points, 0);
const dim = numberFlag("dimension", args.dimension, 1);
const writeRate = numberFlag("write-rate", args["write-rate"], 0, false);
const writerCount = numberFlag("writers", args.writers, 0);
const batch = numberFlag("batch", args.batch, 1);
const searcherCount = numberFlag("searchers", args.searchers, 0);
const pauseMs = numberFlag("pause-s", args["pause-s"], 0, false) * 1000;
const nodeCount = numberFlag("nodes", args.nodes, 2);
const rf = numberFlag("replication-factor", args["replication-factor"], 1);
const consistency = args.consistency as "one" | "quorum" | "all";
if (!["one", "quorum", "all"].includes(consistency)) {
  usage(`--consistency "${consistency}" must be one, quorum or all`);
}
if (pointCount + 4_000_000 >= 2 ** 32) usage(`--points ${pointCount} is too large`);

const t_start = performance.now();
const log = (m: string) =>
  console.error(`${((performance.now() - t_start) / 1000).toFixed(1).padStart(6)}s rolling ${m}`);
const loadAvg = (): number[] =>
  Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);

// ----- the data: vectors are a pure function of (seed, id, attempt) -----

function vectorOf(id: number, attempt: number): number[] {
  const r = new Prng(
    (Math.imul(id + 1, 0x9e3779b1) ^ Math.imul(attempt + 1, 0x85ebca77) ^ seed) >>> 0,
  );
  return Array.from({ length: dim }, () => Math.fround(r.float() * 2 - 1));
}
function sameVector(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, j) => Math.abs(x - b[j]) < 1e-6);
}

/** Per id: the attempt of its last acknowledged put (the preload is attempt 0). */
const acked = new Map<number, number>();
/** Per id: attempts made after its last acknowledged one, unacknowledged (either may show). */
const unacked = new Map<number, number[]>();
/** Next attempt number per id. */
const attempts = new Map<number, number>();

// ----- counters -----

/** What the load is doing meanwhile: "steady", "n0 stopping", "n0 down", "n0 back (hints)"… */
let phase = "preload";
const statusName = (e: unknown) =>
  isServiceError(e) ? (grpc.status[e.code] ?? `STATUS_${e.code}`) : "CLIENT_ERROR";
const bump = (r: Record<string, number>, k: string, n = 1) => (r[k] = (r[k] ?? 0) + n);

const load = {
  writes_ok: 0,
  points_acked: 0,
  writes_failed: 0,
  points_failed: 0,
  writes_failed_by_status: {} as Record<string, number>,
  writes_failed_by_phase: {} as Record<string, number>,
  searches_ok: 0,
  searches_partial: 0,
  searches_failed: 0,
  searches_failed_by_status: {} as Record<string, number>,
  searches_failed_by_phase: {} as Record<string, number>,
  examples: [] as string[],
};
const writeLatencies: number[] = [];
/** `performance.now()` of every failed write. */
const writeFailedAt: number[] = [];
const searchLatencies: number[] = [];
const exampleKeys = new Set<string>();
/** Keeps the first failure of each kind in each phase, for the log. */
function example(what: string, e: unknown): void {
  const key = `${what.split(" ")[0]} ${phase}`;
  if (exampleKeys.has(key) || load.examples.length >= 24) return;
  exampleKeys.add(key);
  load.examples.push(`${phase}: ${what}: ${describeGrpcError(e)}`);
}
function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]);
}

// ----- the cluster -----

const dir = await Deno.makeTempDir({ prefix: "vectordb_rolling_" });
const logPath = args.log ??
  await Deno.makeTempFile({ prefix: "vectordb_rolling_", suffix: ".log" });
const logFile = await Deno.open(logPath, { write: true, create: true, truncate: true });
const encoder = new TextEncoder();
/** Router log: hints replayed per node address. */
const hintsReplayed = new Map<string, number>();
const cluster = await TestCluster.create(dir, {
  nodes: nodeCount,
  replication_factor: rf,
  consistency,
  gossip: true,
  // The router's production default, as before the test harness's default was raised: this
  // run measures how clients fare through restarts with the timeout operators get.
  node_timeout_ms: 2000,
  on_line: (name, line) => {
    const t = ((performance.now() - t_start) / 1000).toFixed(3);
    logFile.writeSync(encoder.encode(`${t} ${name} | ${line}\n`));
    if (name !== "router") return;
    const m = /replayed (\d+) hints to (\S+);/.exec(line);
    if (m !== null) hintsReplayed.set(m[2], (hintsReplayed.get(m[2]) ?? 0) + Number(m[1]));
  },
});
const nodeId = (i: number) => `n${i}`;

let stopping = false;
let signals = 0;
const onInt = () => {
  if (++signals > 1) Deno.exit(130); // the harness SIGKILLs every server it started on exit
  log("SIGINT: stopping (again to abort)");
  stopping = true;
};
Deno.addSignalListener("SIGINT", onInt);

/** Starts node i again on its port and data directory (a closing listener may hold the port). */
async function startNode(i: number): Promise<void> {
  for (let attempt = 0;; attempt++) {
    try {
      await cluster.startNode(i);
      return;
    } catch (e) {
      if (!(e instanceof StartError) || !/EADDRINUSE/.test(e.stderr) || attempt >= 20) throw e;
      await sleep(100);
    }
  }
}

// ----- router observations -----

const n = (v: string | number | undefined) => Number(v ?? 0);
interface Sample {
  stats: StatsResponse;
  states: Map<string, string>;
}
let ctl!: ApiClient;
async function sample(): Promise<Sample> {
  const [stats, members] = await Promise.all([
    ctl.call("Stats", {}),
    ctl.call("Members", {}),
  ]);
  const states = new Map<string, string>();
  for (const m of members.members) if (!m.is_router) states.set(m.address, m.state);
  return { stats, states };
}
/** Per restart, from the background sampler. */
interface Watch {
  addr: string;
  states_seen: Set<string>;
  hints_pending_max: number;
}
let watch: Watch | null = null;
let samplerRunning = false;
async function sampler(): Promise<void> {
  while (samplerRunning) {
    const w = watch;
    try {
      const s = await sample();
      if (w !== null) {
        w.states_seen.add(s.states.get(w.addr) ?? "absent");
        const me = (s.stats.nodes ?? []).find((x) => x.address === w.addr);
        w.hints_pending_max = Math.max(w.hints_pending_max, n(me?.hints_pending));
      }
    } catch {
      // The router answers Stats even when a node is down; a miss is only a missed sample.
    }
    await sleep(SAMPLE_INTERVAL_MS);
  }
}
const routerSettled = async (): Promise<boolean> => {
  const { stats, states } = await sample();
  const nodes = stats.nodes ?? [];
  const pending = nodes.reduce((k, x) => k + n(x.hints_pending), 0);
  const onRing = new Set(nodes.filter((x) => x.error === "").map((x) => x.address));
  return cluster.nodeAddrs.every((a) => onRing.has(a) && states.get(a) === "alive") &&
    pending === 0 && !stats.rebalancing;
};
const rebalanceFigures = (s: StatsResponse) => ({
  points_copied: n(s.points_copied),
  points_pruned: n(s.points_pruned),
  transfers_done: n(s.transfers_done),
  transfers_failed: n(s.transfers_failed),
  rebalances_done: n(s.rebalances_done),
});
type RebalanceFigures = ReturnType<typeof rebalanceFigures>;
const delta = (a: RebalanceFigures, b: RebalanceFigures): RebalanceFigures => ({
  points_copied: b.points_copied - a.points_copied,
  points_pruned: b.points_pruned - a.points_pruned,
  transfers_done: b.transfers_done - a.transfers_done,
  transfers_failed: b.transfers_failed - a.transfers_failed,
  rebalances_done: b.rebalances_done - a.rebalances_done,
});

// ----- the load -----

function pace(ratePerS: number): (points: number) => Promise<void> {
  let due = performance.now();
  return async (points: number) => {
    if (ratePerS <= 0) return;
    due = Math.max(due + (points * 1000) / ratePerS, performance.now() - 1000);
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
  };
}

async function writer(w: number, client: ApiClient, rng: Prng): Promise<void> {
  // Writers own disjoint ids (the preload's by id % writers, new ones from their own range), so
  // no two writes to one id are ever in flight together, and an id whose last attempt was not
  // acknowledged is never written again (its outcome stays either).
  const mine: number[] = [];
  for (let id = w; id < pointCount; id += writerCount) mine.push(id);
  let next = pointCount + 1_000_000 * w;
  const wait = pace(writeRate / writerCount);
  while (!stopping) {
    await wait(batch);
    const ids: number[] = [];
    while (ids.length < batch) {
      let id: number;
      if (rng.float() < 0.3 && mine.length > 0) {
        id = mine[rng.nextInt(mine.length)];
        if (unacked.has(id) || ids.includes(id)) continue;
      } else {
        id = next++;
      }
      ids.push(id);
    }
    const points = ids.map((id) => {
      const attempt = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, attempt);
      return { id, attempt, vector: vectorOf(id, attempt) };
    });
    const t0 = performance.now();
    try {
      if (batch === 1) {
        await client.call("Put", { id: ids[0], vector: points[0].vector, collection: COLLECTION });
      } else {
        await client.call("PutBatch", {
          points: points.map((p) => ({ id: p.id, vector: p.vector })),
          collection: COLLECTION,
        });
      }
      writeLatencies.push(performance.now() - t0);
      load.writes_ok++;
      load.points_acked += points.length;
      for (const p of points) {
        if (!acked.has(p.id)) mine.push(p.id);
        acked.set(p.id, p.attempt);
      }
    } catch (e) {
      load.writes_failed++;
      load.points_failed += points.length;
      writeFailedAt.push(performance.now());
      bump(load.writes_failed_by_status, statusName(e));
      bump(load.writes_failed_by_phase, phase);
      example(`write of ${points.length} point(s)`, e);
      for (const p of points) unacked.set(p.id, [...(unacked.get(p.id) ?? []), p.attempt]);
      await sleep(50); // no hot loop while writes fail
    }
  }
}

async function searcher(client: ApiClient, rng: Prng): Promise<void> {
  while (!stopping) {
    const vector = Array.from({ length: dim }, () => Math.fround(rng.float() * 2 - 1));
    const t0 = performance.now();
    try {
      const r = await client.call("Search", { vector, k: 10, collection: COLLECTION });
      searchLatencies.push(performance.now() - t0);
      if (r.partial) {
        load.searches_partial++;
        example("partial search", `${r.shards_answered}/${r.shards_total} shards answered`);
      } else load.searches_ok++;
    } catch (e) {
      load.searches_failed++;
      bump(load.searches_failed_by_status, statusName(e));
      bump(load.searches_failed_by_phase, phase);
      example("search", e);
      await sleep(50);
    }
  }
}

// ----- checks -----

interface Tally {
  reads: number;
  ok: number;
  superseded: number;
  lost: number;
  errors: number;
  examples: string[];
}
const newTally = (): Tally => ({
  reads: 0,
  ok: 0,
  superseded: 0,
  lost: 0,
  errors: 0,
  examples: [],
});

async function checkRead(client: ApiClient, id: number, t: Tally, where: string): Promise<void> {
  const want = acked.get(id)!;
  let last: unknown = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const g = await client.call("Get", { id, collection: COLLECTION });
      t.reads++;
      const got = g.found ? (g.vector ?? []) : [];
      if (g.found && sameVector(got, vectorOf(id, want))) {
        t.ok++;
      } else if (
        g.found && (unacked.get(id) ?? []).some((a) => a > want && sameVector(got, vectorOf(id, a)))
      ) {
        t.superseded++; // a later, unacknowledged attempt landed: not a loss
      } else {
        t.lost++;
        if (t.examples.length < 8) {
          t.examples.push(
            `${where}: id ${id}: acknowledged attempt ${want}, read ${
              g.found ? "another vector" : "nothing"
            } (version ${g.version ?? 0})`,
          );
        }
      }
      return;
    } catch (e) {
      last = e;
      await sleep(200);
    }
  }
  t.errors++;
  if (t.examples.length < 8) t.examples.push(`${where}: id ${id}: ${describeGrpcError(last)}`);
}

// ----- main -----

interface RestartRecord {
  node: string;
  address: string;
  exit: string;
  exit_ms: number;
  /** SIGTERM to the new process's READY. */
  ready_ms: number;
  /** SIGTERM until the router sees it alive and on the ring again, answered by the new process. */
  back_ms: number;
  /** SIGTERM until the router's hints_pending for it is 0 again. */
  hints_delivered_ms: number;
  /** SIGTERM until the router's placement settled (no rebalancing, no hints, all on the ring). */
  settled_ms: number;
  /** Member states the router reported for it meanwhile (sampled every 250 ms). */
  router_saw: string[];
  hints_pending_max: number;
  hints_replayed: number;
  writes_failed: number;
  /** First and last failed write, ms after SIGTERM ([] when none failed). */
  writes_failed_window_ms: number[];
  searches_failed: number;
  rebalancing: RebalanceFigures;
}

const loadavg_start = loadAvg();
let exitCode = 1;
let report: Record<string, unknown> = {};
const tasks: Promise<void>[] = [];
try {
  log(
    `seed ${seed}, ${nodeCount} nodes, RF ${rf}, ${consistency}, ${pointCount} points of ` +
      `dimension ${dim}, ` +
      `${writerCount} writers at ${writeRate || "unlimited"} points/s (batch ${batch}), ` +
      `${searcherCount} searchers; load average ${loadavg_start.join(" ")}; log ${logPath}`,
  );
  await cluster.startAll();
  ctl = cluster.api(cluster.routerAddr, 5000);
  await waitFor(routerSettled, "the router sees every node alive on its ring", 60_000, 200);
  await waitFor(
    async () => {
      await ctl.call("CreateCollection", { name: COLLECTION, dimension: dim, metric: "l2" });
      return true;
    },
    "collection created",
    30_000,
    300,
  );
  log(`cluster up (router ${cluster.routerAddr}, nodes ${cluster.nodeAddrs.join(" ")})`);

  // Preload through the router, batches acknowledged (retried: a batch is an upsert).
  const t_pre = performance.now();
  const batches: number[] = [];
  for (let s = 0; s < pointCount; s += PRELOAD_BATCH) batches.push(s);
  const preClients = [0, 1, 2, 3].map(() => cluster.api(cluster.routerAddr, 30_000));
  let b = 0;
  await Promise.all(preClients.map(async (client) => {
    while (b < batches.length) {
      const start = batches[b++];
      const ids = Array.from(
        { length: Math.min(PRELOAD_BATCH, pointCount - start) },
        (_, k) => start + k,
      );
      const points = ids.map((id) => ({ id, vector: vectorOf(id, 0) }));
      await waitFor(
        async () => {
          await client.call("PutBatch", { points, collection: COLLECTION });
          return true;
        },
        `preload batch at ${start}`,
        60_000,
        500,
      );
      for (const id of ids) {
        acked.set(id, 0);
        attempts.set(id, 0);
      }
    }
  }));
  const preload_s = (performance.now() - t_pre) / 1000;
  log(`preloaded ${pointCount} points in ${preload_s.toFixed(1)} s`);
  await waitFor(routerSettled, "the cluster settles after the preload", SETTLE_TIMEOUT_MS, 250);

  // The load, through the router, for the whole restart.
  const root = new Prng(seed);
  phase = "steady";
  for (let w = 0; w < writerCount; w++) {
    tasks.push(writer(w, cluster.api(cluster.routerAddr, 5000), root.fork()));
  }
  for (let s = 0; s < searcherCount; s++) {
    tasks.push(searcher(cluster.api(cluster.routerAddr, 5000), root.fork()));
  }
  samplerRunning = true;
  const samplerDone = sampler();
  await sleep(pauseMs);

  const loadavg_before_restarts = loadAvg();
  const r0 = rebalanceFigures(await ctl.call("Stats", {}));
  const restarts: RestartRecord[] = [];
  const t_roll = performance.now();
  for (let i = 0; i < nodeCount && !stopping; i++) {
    const addr = cluster.nodeAddrs[i];
    const id = nodeId(i);
    const before = rebalanceFigures(await ctl.call("Stats", {}));
    const replayedBefore = hintsReplayed.get(addr) ?? 0;
    const wfAt0 = writeFailedAt.length;
    const wf0 = load.writes_failed, sf0 = load.searches_failed + load.searches_partial;
    const w: Watch = { addr, states_seen: new Set(), hints_pending_max: 0 };
    watch = w;
    const p = cluster.nodes[i]!;
    log(`${id} (${addr}): SIGTERM`);
    phase = `${id} stopping`;
    const t0 = performance.now();
    p.signal("SIGTERM");
    let status = await raceTimeout(p.done, STOP_WAIT_MS);
    if (status === "timeout") {
      log(`${id} still runs ${STOP_WAIT_MS} ms after SIGTERM; SIGKILL`);
      status = await p.kill();
    }
    const exit_ms = performance.now() - t0;
    const exit = status.signal !== null ? `signal ${status.signal}` : `exit ${status.code}`;
    log(`${id} exited (${exit}) ${exit_ms.toFixed(0)} ms after SIGTERM; starting it again`);
    phase = `${id} down`;
    await startNode(i);
    const ready_ms = performance.now() - t0;
    const startedAt = cluster.nodes[i]!.started_at;
    log(`${id} READY ${ready_ms.toFixed(0)} ms after SIGTERM`);
    phase = `${id} rejoining`;
    await waitFor(
      async () => {
        const { stats, states } = await sample();
        const me = (stats.nodes ?? []).find((x) => x.address === addr);
        // The new process answers (its uptime is younger than its spawn) and gossip says alive.
        return states.get(addr) === "alive" && me !== undefined && me.error === "" &&
          n(me.uptime_ms) <= performance.now() - startedAt + 1000;
      },
      `the router sees ${id} alive again`,
      BACK_TIMEOUT_MS,
      100,
    );
    const back_ms = performance.now() - t0;
    log(`${id} alive on the router's ring ${back_ms.toFixed(0)} ms after SIGTERM`);
    phase = `${id} back, hints`;
    await waitFor(
      async () => {
        const s = await ctl.call("Stats", {});
        const me = (s.nodes ?? []).find((x) => x.address === addr);
        return me !== undefined && me.error === "" && n(me.hints_pending) === 0;
      },
      `the router delivers ${id}'s hints`,
      HINTS_TIMEOUT_MS,
      100,
    );
    const hints_delivered_ms = performance.now() - t0;
    phase = `${id} back, settling`;
    await waitFor(
      routerSettled,
      `the cluster settles after ${id}'s restart`,
      SETTLE_TIMEOUT_MS,
      200,
    );
    const settled_ms = performance.now() - t0;
    watch = null;
    const after = rebalanceFigures(await ctl.call("Stats", {}));
    const rec: RestartRecord = {
      node: id,
      address: addr,
      exit,
      exit_ms: Math.round(exit_ms),
      ready_ms: Math.round(ready_ms),
      back_ms: Math.round(back_ms),
      hints_delivered_ms: Math.round(hints_delivered_ms),
      settled_ms: Math.round(settled_ms),
      router_saw: [...w.states_seen],
      hints_pending_max: w.hints_pending_max,
      hints_replayed: (hintsReplayed.get(addr) ?? 0) - replayedBefore,
      writes_failed: load.writes_failed - wf0,
      writes_failed_window_ms: writeFailedAt.length > wfAt0
        ? [writeFailedAt[wfAt0] - t0, writeFailedAt[writeFailedAt.length - 1] - t0].map(Math.round)
        : [],
      searches_failed: load.searches_failed + load.searches_partial - sf0,
      rebalancing: delta(before, after),
    };
    restarts.push(rec);
    log(
      `${id}: hints delivered at ${rec.hints_delivered_ms} ms, settled at ${rec.settled_ms} ms; ` +
        `router saw [${rec.router_saw.join(",")}], ${rec.hints_replayed} hints replayed ` +
        `(peak pending ${rec.hints_pending_max}), ${rec.rebalancing.points_copied} points ` +
        `copied, ` +
        `${rec.writes_failed} writes failed, ${rec.searches_failed} searches failed or partial`,
    );
    phase = "steady";
    await sleep(pauseMs);
  }
  const roll_s = (performance.now() - t_roll) / 1000;
  const r1 = rebalanceFigures(await ctl.call("Stats", {}));
  const loadavg_end_of_load = loadAvg();

  // Stop the load, settle, check.
  stopping = true;
  await Promise.all(tasks);
  samplerRunning = false;
  await samplerDone;
  phase = "check";
  log("load stopped; waiting for the cluster to settle");
  let settled = true;
  await waitFor(routerSettled, "the cluster settles", SETTLE_TIMEOUT_MS, 250).catch((e) => {
    settled = false;
    log(`WARNING ${(e as Error).message}; checking anyway`);
  });
  const r2 = rebalanceFigures(await ctl.call("Stats", {}));

  log(`checking ${acked.size} acknowledged points through the router and on their owners`);
  const t_check = performance.now();
  const ring = await placementOf(
    cluster.api(cluster.routerAddr, 10_000),
    COLLECTION,
    cluster.nodeAddrs,
    rf,
  );
  const checkers = Array.from(
    { length: 4 },
    () => cluster.api(cluster.routerAddr, 10_000),
  );
  const nodeClients = new Map(cluster.nodeAddrs.map((a) => [a, cluster.api(a, 10_000)]));
  const viaRouter = newTally();
  const onOwners = newTally();
  const ownerMisses: Record<string, number> = {};
  let k = 0;
  await forEachLimit([...acked.keys()], CHECK_CONCURRENCY, async (id) => {
    await checkRead(checkers[k++ % checkers.length], id, viaRouter, "router");
    for (const a of ring.owners(id)) {
      const lostBefore = onOwners.lost + onOwners.errors;
      await checkRead(nodeClients.get(a)!, id, onOwners, `owner ${a}`);
      if (onOwners.lost + onOwners.errors > lostBefore) bump(ownerMisses, a);
    }
  });
  const check_s = (performance.now() - t_check) / 1000;
  const counts: Record<string, number> = {};
  for (const s of (await ctl.call("Stats", {})).nodes ?? []) {
    counts[s.address] = n(s.collections.find((c) => c.name === COLLECTION)?.count);
  }

  const searches = load.searches_ok + load.searches_partial + load.searches_failed;
  const writes = load.writes_ok + load.writes_failed;
  const { examples: routerExamples, ...routerFigures } = viaRouter;
  const { examples: ownerExamples, ...ownerFigures } = onOwners;
  const backLate = restarts.filter((r) => r.back_ms > DEAD_GRACE_MS).map((r) => r.node);
  report = {
    seed,
    nodes: nodeCount,
    replication_factor: rf,
    consistency,
    points_preloaded: pointCount,
    dimension: dim,
    write_rate_points_per_s: writeRate,
    writers: writerCount,
    batch,
    searchers: searcherCount,
    preload_s: Number(preload_s.toFixed(1)),
    rolling_restart_s: Number(roll_s.toFixed(1)),
    load: {
      writes: writes,
      writes_ok: load.writes_ok,
      points_acknowledged: load.points_acked,
      writes_failed: load.writes_failed,
      points_failed: load.points_failed,
      writes_failed_by_status: load.writes_failed_by_status,
      writes_failed_by_phase: load.writes_failed_by_phase,
      write_ms_p50: percentile(writeLatencies, 0.5),
      write_ms_p99: percentile(writeLatencies, 0.99),
      write_ms_max: percentile(writeLatencies, 1),
      searches,
      searches_full: load.searches_ok,
      searches_partial: load.searches_partial,
      searches_failed: load.searches_failed,
      searches_failed_by_status: load.searches_failed_by_status,
      searches_failed_by_phase: load.searches_failed_by_phase,
      search_ms_p50: percentile(searchLatencies, 0.5),
      search_ms_p99: percentile(searchLatencies, 0.99),
      search_ms_max: percentile(searchLatencies, 1),
    },
    restarts,
    rebalancing_during_restarts: delta(r0, r1),
    rebalancing_after_load_until_settled: delta(r1, r2),
    hints_replayed_total: restarts.reduce((s, r) => s + r.hints_replayed, 0),
    settled,
    check: {
      points_checked: acked.size,
      uncertain_ids: unacked.size,
      check_s: Number(check_s.toFixed(1)),
      router: routerFigures,
      owners: ownerFigures,
      owner_misses_by_node: ownerMisses,
      writes_lost: viaRouter.lost,
      owner_copies_missing: onOwners.lost,
    },
    points_per_node: counts,
    nodes_back_after_grace: backLate,
    load_average: {
      cores: navigator.hardwareConcurrency,
      start: loadavg_start,
      before_restarts: loadavg_before_restarts,
      end_of_load: loadavg_end_of_load,
      end: loadAvg(),
    },
    log: logPath,
  };
  const ok = viaRouter.lost === 0 && viaRouter.errors === 0 && onOwners.lost === 0 &&
    onOwners.errors === 0 && load.searches_failed === 0 && load.searches_partial === 0 &&
    restarts.length === nodeCount && restarts.every((r) => r.exit === "exit 0") &&
    backLate.length === 0 && settled;
  exitCode = ok ? 0 : 1;
  for (const e of [...load.examples, ...routerExamples, ...ownerExamples]) log(e);
  if (args.json) console.log(JSON.stringify(report));
  else printReport(report, restarts);
  log(exitCode === 0 ? "PASS" : `FAIL (replay with --seed ${seed})`);
} catch (e) {
  log(`error: ${(e as Error).stack ?? e}`);
  console.error(cluster.log().split("\n").slice(-60).join("\n"));
} finally {
  stopping = true;
  samplerRunning = false;
  await Promise.allSettled(tasks);
  await cluster.stop(); // clients, then every process by pid: SIGTERM, SIGKILL after 5 s
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  logFile.close();
  Deno.removeSignalListener("SIGINT", onInt);
}
Deno.exit(exitCode);

function failWindow(x: RestartRecord): string {
  return x.writes_failed_window_ms.length > 0 ? `(${x.writes_failed_window_ms.join("-")})` : "";
}

function printReport(r: Record<string, unknown>, restarts: RestartRecord[]): void {
  const l = r.load as Record<string, unknown>;
  const c = r.check as Record<string, unknown>;
  const la = r.load_average as Record<string, unknown>;
  const j = (x: unknown) => JSON.stringify(x);
  const lines = [
    `rolling restart of ${r.nodes} nodes (RF ${r.replication_factor}, ${r.consistency}), ` +
    `seed ${r.seed}, ` +
    `${r.points_preloaded} points of dimension ${r.dimension} preloaded in ${r.preload_s} s`,
    `load: ${r.writers} writers at ${r.write_rate_points_per_s || "unlimited"} points/s ` +
    `(batch ${r.batch}), ${r.searchers} searchers; restarts took ${r.rolling_restart_s} s`,
    "",
    "node  exit    exit_ms  ready_ms  back_ms  hints_ms  settled_ms  router_saw        " +
    "hints(peak)  copied  w_fail (window ms)   s_fail",
    ...restarts.map((x) =>
      `${x.node.padEnd(5)} ${x.exit.padEnd(7)} ${String(x.exit_ms).padStart(7)}  ` +
      `${String(x.ready_ms).padStart(8)}  ${String(x.back_ms).padStart(7)}  ` +
      `${String(x.hints_delivered_ms).padStart(8)}  ${String(x.settled_ms).padStart(10)}  ` +
      `${x.router_saw.join(",").padEnd(16)}  ` +
      `${`${x.hints_replayed}(${x.hints_pending_max})`.padStart(11)}  ` +
      `${String(x.rebalancing.points_copied).padStart(6)}  ` +
      `${String(x.writes_failed).padStart(6)} ${failWindow(x).padEnd(13)}  ` +
      `${String(x.searches_failed).padStart(6)}`
    ),
    "",
    `searches: ${l.searches} (${l.searches_full} full, ${l.searches_partial} partial, ` +
    `${l.searches_failed} failed ${j(l.searches_failed_by_status)}); ` +
    `p50 ${l.search_ms_p50} ms, p99 ${l.search_ms_p99} ms, max ${l.search_ms_max} ms`,
    `writes: ${l.writes} (${l.writes_ok} acknowledged = ${l.points_acknowledged} points; ` +
    `${l.writes_failed} failed ${j(l.writes_failed_by_status)}, by phase ` +
    `${j(l.writes_failed_by_phase)}); p50 ${l.write_ms_p50} ms, p99 ${l.write_ms_p99} ms, ` +
    `max ${l.write_ms_max} ms`,
    `hints replayed to the restarted nodes: ${r.hints_replayed_total}`,
    `rebalancing during the restarts: ${j(r.rebalancing_during_restarts)}`,
    `rebalancing after the load until settled: ${j(r.rebalancing_after_load_until_settled)}`,
    `check (${c.points_checked} acknowledged points, ${c.uncertain_ids} ids with an ` +
    `unacknowledged later attempt, ${c.check_s} s): router ${j(c.router)}; owners ` +
    `${j(c.owners)}`,
    `WRITES LOST: ${c.writes_lost}; owner copies missing: ${c.owner_copies_missing} ` +
    `${j(c.owner_misses_by_node)}`,
    `points per node: ${j(r.points_per_node)}; settled at the end: ${r.settled}`,
    `load average (${la.cores} cores): start ${j(la.start)}, before the restarts ` +
    `${j(la.before_restarts)}, end of load ${j(la.end_of_load)}, end ${j(la.end)}`,
    `process log: ${r.log}`,
  ];
  console.log(lines.join("\n"));
}
