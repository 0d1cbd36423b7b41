/**
 * A fourth node joins a loaded three-node cluster (gossip, RF 2): how much it ends up owning,
 * how long the move takes, and whether any search failed or any acknowledged write was lost
 * while data moved. A benchmark script, not a test.
 *
 * Steps: start 3 nodes + a router that follow gossip; load `--n` points (random unit vectors of
 * `--dim`, PutBatch through the router); start a writer (new puts, overwrites, deletes) and a
 * searcher; start the 4th node; wait until the router has rebalanced; stop the load; wait for
 * hints and moves to settle; then check every acknowledged write through the router and count
 * each node's points directly.
 *
 * @example
 * ```sh
 * deno run -A scripts/bench/bench_join.ts                 # 100,000 points of dim 32
 * deno run -A scripts/bench/bench_join.ts --n 20000 --dim 16
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { Prng } from "../../src/common/prng.ts";
import { TestCluster } from "../../harness/cluster.ts";
import { waitFor } from "../../harness/wait.ts";
import { ApiClient } from "../../src/api/client.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    dim: { type: "string", default: "32" },
    batch: { type: "string", default: "500" },
    "settle-timeout-s": { type: "string", default: "600" },
  },
});
const n = Number(args.n), dim = Number(args.dim), batch = Number(args.batch);
const log = (m: string) => console.error(`${new Date().toISOString()} join ${m}`);

function vectorOf(id: number, version: number): number[] {
  const r = new Prng((id * 7919 + version * 104729 + 1) >>> 0);
  return Array.from({ length: dim }, () => Math.fround(r.float() * 2 - 1));
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dir = await Deno.makeTempDir({ prefix: "vectordb_join_" });
const cluster = await TestCluster.create(dir, {
  nodes: 3,
  replication_factor: 2,
  consistency: "quorum",
  node_timeout_ms: 5000,
  retry_interval_ms: 300,
  gossip: true,
});
let code = 1;
try {
  await cluster.startAll();
  const api = cluster.api(cluster.routerAddr, 60_000);
  await waitFor(
    async () => {
      await api.call("CreateCollection", { name: "join", dimension: dim, metric: "l2" });
      return true;
    },
    "collection created",
    30_000,
  );

  // ---- load --------------------------------------------------------------------------------
  const t0 = performance.now();
  const acked = new Map<number, number>(); // id -> version, -1 = deleted
  let next = 0;
  const loaders = Array.from({ length: 4 }, async () => {
    const c = new ApiClient(cluster.routerAddr, { timeout_ms: 120_000 });
    try {
      while (next < n) {
        const start = next;
        next = Math.min(n, next + batch);
        const points = [];
        for (let id = start; id < next; id++) points.push({ id, vector: vectorOf(id, 1) });
        await c.call("PutBatch", { points, collection: "join" });
        for (let id = start; id < next; id++) acked.set(id, 1);
      }
    } finally {
      c.close();
    }
  });
  await Promise.all(loaders);
  const loadS = (performance.now() - t0) / 1000;
  log(`loaded ${n} points in ${loadS.toFixed(1)} s (${(n / loadS).toFixed(0)} points/s)`);

  // ---- load during the join ----------------------------------------------------------------
  const rng = new Prng(42);
  const uncertain = new Set<number>();
  const attempts = new Map<number, number>();
  const counts = { puts_ok: 0, puts_failed: 0, deletes_ok: 0, deletes_failed: 0 };
  const searches = { full: 0, partial: 0, failed: 0 };
  let running = true;
  const writer = (async () => {
    const c = new ApiClient(cluster.routerAddr, { timeout_ms: 10_000 });
    let fresh = n;
    try {
      while (running) {
        const roll = rng.float();
        const id = roll < 0.7 ? fresh++ : rng.nextInt(n);
        if (uncertain.has(id)) continue;
        uncertain.add(id);
        try {
          if (roll >= 0.9) {
            await c.call("Delete", { id, collection: "join" });
            acked.set(id, -1);
            counts.deletes_ok++;
          } else {
            const v = (attempts.get(id) ?? 1) + 1;
            attempts.set(id, v);
            await c.call("Put", { id, vector: vectorOf(id, v), collection: "join" });
            acked.set(id, v);
            counts.puts_ok++;
          }
          uncertain.delete(id);
        } catch {
          if (roll >= 0.9) counts.deletes_failed++;
          else counts.puts_failed++;
          await sleep(20);
        }
      }
    } finally {
      c.close();
    }
  })();
  const searcher = (async () => {
    const c = new ApiClient(cluster.routerAddr, { timeout_ms: 10_000 });
    try {
      while (running) {
        try {
          const r = await c.call("Search", {
            vector: vectorOf(rng.nextInt(1 << 30), 0),
            k: 10,
            collection: "join",
          });
          if (r.partial) searches.partial++;
          else searches.full++;
        } catch {
          searches.failed++;
          await sleep(20);
        }
      }
    } finally {
      c.close();
    }
  })();

  await sleep(2000);
  const before = await api.call("Stats", {});
  const rebalancesBefore = Number(before.rebalances_done ?? 0);
  const tj = performance.now();
  const i4 = await cluster.addNode();
  log(`4th node ${cluster.nodeAddrs[i4]} started; waiting for the move to finish`);
  let copied = 0;
  await waitFor(
    async () => {
      const s = await api.call("Stats", {});
      copied = Number(s.points_copied ?? 0);
      return Number(s.rebalances_done ?? 0) > rebalancesBefore && !s.rebalancing;
    },
    "rebalancing after the join",
    Number(args["settle-timeout-s"]) * 1000,
    500,
  );
  const moveS = (performance.now() - tj) / 1000;
  log(`moved in ${moveS.toFixed(1)} s (${copied} points copied)`);
  await sleep(2000);
  running = false;
  await Promise.all([writer, searcher]);
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
  const checker = new ApiClient(cluster.routerAddr, { timeout_ms: 10_000 });
  const ids = [...acked.keys()].filter((id) => !uncertain.has(id));
  for (let i = 0; i < ids.length; i += 64) {
    await Promise.all(
      ids.slice(i, i + 64).map(async (id) => {
        const v = acked.get(id)!;
        const g = await checker.call("Get", { id, collection: "join" });
        checked++;
        if (v === -1) {
          if (g.found) resurrected++;
        } else {
          const want = vectorOf(id, v);
          if (!g.found || g.vector.some((x, j) => Math.abs(x - want[j]) > 1e-6)) lost++;
        }
      }),
    );
  }
  checker.close();
  const perNode: number[] = [];
  for (const addr of cluster.nodeAddrs) {
    const s = await cluster.api(addr).call("Stats", {});
    perNode.push(Number(s.collections.find((x) => x.name === "join")?.count ?? 0));
  }
  const total = perNode.reduce((a, b) => a + b, 0);
  const share = perNode[i4] / total;
  const summary = {
    n,
    dim,
    load_points_per_s: Math.round(n / loadS),
    move_s: Number(moveS.toFixed(1)),
    points_copied: copied,
    per_node_points: perNode,
    new_node_share_of_replicas: Number(share.toFixed(4)),
    share_deviation_from_quarter_pct: Number((100 * Math.abs(share - 0.25) / 0.25).toFixed(2)),
    ...counts,
    searches,
    acknowledged_checked: checked,
    acknowledged_lost: lost,
    deletes_resurrected: resurrected,
  };
  console.log(JSON.stringify(summary, null, 2));
  code = lost === 0 && resurrected === 0 && searches.failed === 0 &&
      Math.abs(share - 0.25) <= 0.05 * 0.25
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
