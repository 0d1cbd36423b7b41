/**
 * Must-show of issue 14 (shards move as files): a fourth node joins a loaded three-node cluster
 * (gossip, RF 2, `--shards` shards) of `--n` GloVe-100 points while 4 search clients and 1
 * writer run. Reports the time from the 4th node's start until the router's placement is
 * settled on 4 nodes (from then on searches read the new node's shards), the bytes of shard
 * images moved (router Stats `shard_bytes_moved`), the points copied to catch up, the units the
 * nodes that lost shards emptied wholesale (`shard_drops_done`, `points_dropped`), failed
 * and partial searches, and lost writes (every acknowledged write checked through the router at
 * the end; deletes must stay deleted), with os.loadavg() beside. A benchmark script, not a test.
 *
 * Data: `.cache/bench/glove-100/base.fvecs` (scripts/bench/lib/dataset.ts `prepareGlove`
 * makes it). The load (PutBatch through the router) takes minutes at the default size.
 *
 * @example
 * ```sh
 * deno run -A scripts/bench/shard_join.ts                 # 340,000 points, 6 shards
 * deno run -A scripts/bench/shard_join.ts --n 20000
 * ```
 * @module
 */
import os from "node:os";
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { Prng } from "../../src/common/prng.ts";
import { TestCluster } from "../../harness/cluster.ts";
import { waitFor } from "../../harness/wait.ts";
import { ApiClient } from "../../src/api/client.ts";
import { readFvecs } from "./lib/fvecs.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "340000" },
    shards: { type: "string", default: "6" },
    batch: { type: "string", default: "1000" },
    searchers: { type: "string", default: "4" },
    "base": { type: "string", default: ".cache/bench/glove-100/base.fvecs" },
    "transfer-bytes-per-s": { type: "string", default: "134217728" },
    "settle-timeout-s": { type: "string", default: "1800" },
  },
});
const n = Number(args.n), batch = Number(args.batch), shards = Number(args.shards);
const log = (m: string) => console.error(`${new Date().toISOString()} shard_join ${m}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load = () => os.loadavg().map((x) => Number(x.toFixed(2)));

if (!existsSync(args.base!)) {
  log(`${args.base} is missing; run scripts/bench/bench.ts once (prepareGlove) to make it`);
  Deno.exit(2);
}
const base = readFvecs(args.base!);
if (base.n < n) {
  log(`${args.base} holds ${base.n} vectors, fewer than --n ${n}`);
  Deno.exit(2);
}
const dim = base.dim;
/** Row `i` of the base set (rows past n are what the writer puts). */
const row = (i: number) => Array.from(base.data.subarray(i * dim, (i + 1) * dim));

const dir = await Deno.makeTempDir({ prefix: "vectordb_shard_join_" });
const cluster = await TestCluster.create(dir, {
  nodes: 3,
  replication_factor: 2,
  consistency: "quorum",
  node_timeout_ms: 10_000,
  retry_interval_ms: 300,
  gossip: true,
  router_args: ["--transfer-bytes-per-s", args["transfer-bytes-per-s"]!],
});
let code = 1;
try {
  await cluster.startAll();
  const api = cluster.api(cluster.routerAddr, 60_000);
  await waitFor(
    async () => {
      const s = await api.call("Stats", {});
      return (s.nodes ?? []).filter((x) => x.error === "").length === 3;
    },
    "3 nodes on the router's ring",
    60_000,
  );
  await api.call("CreateCollection", {
    name: "join",
    dimension: dim,
    metric: "cosine",
    shard_number: shards,
  });

  // ---- load --------------------------------------------------------------------------------
  const t0 = performance.now();
  /** id -> base row of its last acknowledged put, -1 when deleted. */
  const acked = new Map<number, number>();
  let next = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    const c = new ApiClient(cluster.routerAddr, { timeout_ms: 300_000 });
    try {
      while (next < n) {
        const start = next;
        next = Math.min(n, next + batch);
        const points = [];
        for (let id = start; id < next; id++) points.push({ id, vector: row(id) });
        // A shared, loaded machine may time a batch out: it is sent again (same points; a put
        // is idempotent), a few times, before the run gives up.
        for (let attempt = 1;; attempt++) {
          try {
            await c.call("PutBatch", { points, collection: "join" });
            break;
          } catch (e) {
            if (attempt >= 5) throw e;
            log(`PutBatch of ids ${start}.. failed (${(e as Error).message}); again`);
            await sleep(2000 * attempt);
          }
        }
        for (let id = start; id < next; id++) acked.set(id, id);
      }
    } finally {
      c.close();
    }
  }));
  const loadS = (performance.now() - t0) / 1000;
  log(`loaded ${n} points in ${loadS.toFixed(1)} s; loadavg ${load()}`);
  await waitFor(async () => !(await api.call("Stats", {})).rebalancing, "settled", 600_000, 500);

  // ---- traffic during the join ------------------------------------------------------------
  const rng = new Prng(42);
  const uncertain = new Set<number>();
  const counts = { puts_ok: 0, puts_failed: 0, deletes_ok: 0, deletes_failed: 0 };
  const searches = { full: 0, partial: 0, failed: 0 };
  const errors: string[] = [];
  let running = true;
  const writer = (async () => {
    const c = new ApiClient(cluster.routerAddr, { timeout_ms: 10_000 });
    let fresh = n;
    try {
      while (running) {
        const roll = rng.float();
        const id = roll < 0.6 ? fresh++ : rng.nextInt(n);
        if (uncertain.has(id)) continue;
        uncertain.add(id);
        try {
          if (roll >= 0.9) {
            await c.call("Delete", { id, collection: "join" });
            acked.set(id, -1);
            counts.deletes_ok++;
          } else {
            const r = rng.nextInt(base.n);
            await c.call("Put", { id, vector: row(r), collection: "join" });
            acked.set(id, r);
            counts.puts_ok++;
          }
          uncertain.delete(id);
        } catch (e) {
          if (roll >= 0.9) counts.deletes_failed++;
          else counts.puts_failed++;
          errors.push((e as Error).message);
          await sleep(20);
        }
      }
    } finally {
      c.close();
    }
  })();
  const searcher = async (seed: number) => {
    const r = new Prng(seed);
    const c = new ApiClient(cluster.routerAddr, { timeout_ms: 10_000 });
    try {
      while (running) {
        try {
          const res = await c.call("Search", {
            vector: row(r.nextInt(base.n)),
            k: 10,
            collection: "join",
          });
          if (res.partial) searches.partial++;
          else searches.full++;
        } catch (e) {
          searches.failed++;
          errors.push((e as Error).message);
          await sleep(20);
        }
      }
    } finally {
      c.close();
    }
  };
  const searchers = Array.from({ length: Number(args.searchers) }, (_, i) => searcher(100 + i));

  await sleep(2000);
  const before = await api.call("Stats", {});
  const loadBefore = load();
  const tj = performance.now();
  const i4 = await cluster.addNode();
  log(`4th node ${cluster.nodeAddrs[i4]} started; waiting for the placement to settle`);
  let last = before;
  let peak = 0;
  await waitFor(
    async () => {
      last = await api.call("Stats", {});
      for (const m of last.shard_moves ?? []) {
        log(
          `  moving shard ${m.shard} ${m.source} -> ${m.target}: ${m.bytes_done}/${m.bytes_total}`,
        );
      }
      peak = Math.max(peak, last.shard_moves_active ?? 0);
      return Number(last.rebalances_done ?? 0) > Number(before.rebalances_done ?? 0) &&
        !last.rebalancing && (last.nodes ?? []).filter((x) => x.error === "").length === 4;
    },
    "the placement settles on 4 nodes",
    Number(args["settle-timeout-s"]) * 1000,
    250,
  );
  const settleS = (performance.now() - tj) / 1000;
  const loadDuring = load();
  log(`settled ${settleS.toFixed(1)} s after the 4th node started; loadavg ${loadDuring}`);
  await sleep(2000);
  running = false;
  await Promise.all([writer, ...searchers]);
  await waitFor(
    async () => {
      const s = await api.call("Stats", {});
      const pending = (s.nodes ?? []).reduce((x, nd) => x + Number(nd.hints_pending ?? 0), 0);
      return pending === 0 && !s.rebalancing;
    },
    "hints drain",
    120_000,
    500,
  );

  // ---- checks ------------------------------------------------------------------------------
  let lost = 0, resurrected = 0, checked = 0;
  const checker = new ApiClient(cluster.routerAddr, { timeout_ms: 30_000 });
  const ids = [...acked.keys()].filter((id) => !uncertain.has(id));
  for (let i = 0; i < ids.length; i += 256) {
    await Promise.all(
      ids.slice(i, i + 256).map(async (id) => {
        const r = acked.get(id)!;
        const g = await checker.call("Get", { id, collection: "join" });
        checked++;
        if (r === -1) {
          if (g.found) resurrected++;
          return;
        }
        // Cosine vectors are stored normalised: compare directions.
        const want = row(r);
        let dot = 0, a = 0, b = 0;
        for (let j = 0; j < dim; j++) {
          dot += want[j] * (g.vector[j] ?? 0);
          a += want[j] * want[j];
          b += (g.vector[j] ?? 0) ** 2;
        }
        if (!g.found || Math.abs(dot / Math.sqrt(a * b) - 1) > 1e-4) lost++;
      }),
    );
  }
  checker.close();
  const perNode: number[] = [];
  for (const addr of cluster.nodeAddrs) {
    const s = await cluster.api(addr).call("Stats", {});
    perNode.push(Number(s.collections.find((x) => x.name === "join")?.count ?? 0));
  }
  const end = await api.call("Stats", {});
  const summary = {
    n,
    dim,
    shards,
    replication_factor: 2,
    load_s: Number(loadS.toFixed(1)),
    time_to_serve_s: Number(settleS.toFixed(1)),
    shard_moves_done: Number(end.shard_moves_done ?? 0) - Number(before.shard_moves_done ?? 0),
    shard_moves_failed: Number(end.shard_moves_failed ?? 0) -
      Number(before.shard_moves_failed ?? 0),
    shard_moves_peak_at_once: peak,
    shard_bytes_moved: Number(end.shard_bytes_moved ?? 0) - Number(before.shard_bytes_moved ?? 0),
    catch_up_points_scanned: Number(end.points_scanned ?? 0) - Number(before.points_scanned ?? 0),
    catch_up_points_copied: Number(end.points_copied ?? 0) - Number(before.points_copied ?? 0),
    points_pruned: Number(end.points_pruned ?? 0) - Number(before.points_pruned ?? 0),
    // Losers' units emptied wholesale (ShardDrop) instead of pruned entry by entry.
    shard_drops_done: Number(end.shard_drops_done ?? 0) - Number(before.shard_drops_done ?? 0),
    shard_drops_refused: Number(end.shard_drops_refused ?? 0) -
      Number(before.shard_drops_refused ?? 0),
    points_dropped: Number(end.points_dropped ?? 0) - Number(before.points_dropped ?? 0),
    router_count: Number(end.collections.find((x) => x.name === "join")?.count ?? 0),
    per_node_points: perNode,
    ...counts,
    searches,
    acknowledged_checked: checked,
    acknowledged_lost: lost,
    deletes_resurrected: resurrected,
    loadavg_before_join: loadBefore,
    loadavg_at_settle: loadDuring,
    cpus: os.cpus().length,
    first_errors: errors.slice(0, 3),
  };
  console.log(JSON.stringify(summary, null, 2));
  code = lost === 0 && resurrected === 0 && searches.failed === 0 && summary.shard_moves_done > 0
    ? 0
    : 1;
  log(code === 0 ? "PASS" : "FAIL");
} catch (e) {
  log(`error: ${(e as Error).stack ?? e}`);
  console.error(cluster.log().split("\n").slice(-80).join("\n"));
} finally {
  if (Deno.env.get("JOIN_LOG")) await Deno.writeTextFile(Deno.env.get("JOIN_LOG")!, cluster.log());
  await cluster.stop();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
Deno.exit(code);
