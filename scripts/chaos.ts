/**
 * `deno task chaos`: a fault harness. Five storage nodes and a router (real processes on free
 * loopback ports) under continuous write and search load, while a seeded schedule kills
 * (SIGKILL) and restarts nodes and pauses them (SIGSTOP/SIGCONT), at most one fault at a time.
 * At the end every fault is healed, the router's hint queues drain, and every acknowledged
 * write is checked: each acknowledged put (not later deleted) must be readable with its exact
 * vector, each acknowledged delete must stay deleted. Prints a summary; exits non-zero on any
 * loss or when fewer than 99% of searches were answered in full.
 *
 * @example
 * ```sh
 * deno task chaos                                 # 5 minutes, seed from the clock
 * deno task chaos --seed 7 --duration-s 60        # replay a schedule
 * deno task chaos --gossip                        # router ring follows gossip (needs rebalancing)
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { Prng } from "../src/sim/prng.ts";
import { TestCluster, waitFor } from "../tests/helpers/cluster.ts";
import type { ApiClient } from "../src/api/client.ts";

const { values: args } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    seed: { type: "string" },
    "duration-s": { type: "string", default: "300" },
    nodes: { type: "string", default: "5" },
    "replication-factor": { type: "string", default: "2" },
    "fault-every-s": { type: "string", default: "8" },
    gossip: { type: "boolean", default: false },
    dim: { type: "string", default: "16" },
  },
});

const seed = args.seed !== undefined ? Number(args.seed) : Date.now() % 1_000_000_007;
const durationMs = Number(args["duration-s"]) * 1000;
const nodeCount = Number(args.nodes);
const rf = Number(args["replication-factor"]);
const faultEveryMs = Number(args["fault-every-s"]) * 1000;
const dim = Number(args.dim);
for (const [k, v] of Object.entries({ seed, durationMs, nodeCount, rf, faultEveryMs, dim })) {
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`--${k} ${v} must be a positive number`);
}
const rng = new Prng(seed);
const log = (m: string) => console.error(`${new Date().toISOString()} chaos ${m}`);
log(
  `seed ${seed} (replay with --seed ${seed}), ${nodeCount} nodes, RF ${rf}, ` +
    `${durationMs / 1000} s, a fault every ~${faultEveryMs / 1000} s, gossip ${args.gossip}`,
);

/** The vector of a put is a pure function of (id, version), so the check can recompute it. */
function vectorOf(id: number, version: number): number[] {
  const r = new Prng((id * 7919 + version * 104729 + 1) >>> 0);
  return Array.from({ length: dim }, () => Math.fround(r.float() * 2 - 1));
}

interface Counters {
  puts_ok: number;
  puts_failed: number;
  deletes_ok: number;
  deletes_failed: number;
  searches_full: number;
  searches_partial: number;
  searches_failed: number;
  faults: Record<string, number>;
}
const c: Counters = {
  puts_ok: 0,
  puts_failed: 0,
  deletes_ok: 0,
  deletes_failed: 0,
  searches_full: 0,
  searches_partial: 0,
  searches_failed: 0,
  faults: {},
};
/**
 * Per id, the acknowledged state: the version of the last acknowledged put, or -1 after an
 * acknowledged delete. Ids with an unacknowledged write in flight are "uncertain" and skipped
 * by the check (their outcome is legitimately either).
 */
const acked = new Map<number, number>();
const uncertain = new Set<number>();
/** Put attempts per id: every attempt gets a new version, so vectors never repeat. */
const attempts = new Map<number, number>();

const dir = await Deno.makeTempDir({ prefix: "vectordb_chaos_" });
const cluster = new TestCluster(dir, {
  nodes: nodeCount,
  replication_factor: rf,
  consistency: "quorum",
  node_timeout_ms: 2000,
  retry_interval_ms: 300,
  gossip: args.gossip,
});
let exitCode = 1;
let stopping = false;
const onSignal = () => {
  stopping = true;
};
Deno.addSignalListener("SIGINT", onSignal);

try {
  await Promise.all(cluster.nodePorts.map((_, i) => cluster.startNode(i)));
  await cluster.startRouter();
  const api = cluster.api(cluster.routerAddr, 5000);
  if (args.gossip) {
    await waitFor(
      async () => {
        const m = await api.call("Members", {});
        return m.members.filter((x) => !x.is_router && x.state === "alive").length === nodeCount;
      },
      "gossip converges",
      30_000,
    );
  }
  // With gossip the router's ring fills a moment after the views converge: retry.
  await waitFor(
    async () => {
      await api.call("CreateCollection", { name: "chaos", dimension: dim, metric: "l2" });
      return true;
    },
    "collection created on every node",
    30_000,
  );
  log("cluster up; load starts");

  const end = Date.now() + durationMs;
  const running = () => !stopping && Date.now() < end;

  const writer = async (w: number, client: ApiClient): Promise<void> => {
    let next = w * 1_000_000;
    while (running()) {
      const roll = rng.float();
      if (roll < 0.1 && acked.size > 0) {
        // Delete an id this writer owns (ids are partitioned per writer: no concurrent writes
        // to one id, whose order across replicas would be undefined).
        const id = w * 1_000_000 + rng.nextInt(Math.max(1, next - w * 1_000_000));
        if (!acked.has(id) || uncertain.has(id)) continue;
        uncertain.add(id);
        try {
          await client.call("Delete", { id, collection: "chaos" });
          acked.set(id, -1);
          uncertain.delete(id);
          c.deletes_ok++;
        } catch {
          c.deletes_failed++; // stays uncertain
          await sleep(50);
        }
      } else {
        const overwrite = roll < 0.2 && next > w * 1_000_000;
        const id = overwrite ? w * 1_000_000 + rng.nextInt(next - w * 1_000_000) : next++;
        if (uncertain.has(id)) continue;
        const version = (attempts.get(id) ?? 0) + 1;
        attempts.set(id, version);
        uncertain.add(id);
        try {
          await client.call("Put", { id, vector: vectorOf(id, version), collection: "chaos" });
          acked.set(id, version);
          uncertain.delete(id);
          c.puts_ok++;
        } catch (e) {
          c.puts_failed++; // stays uncertain
          if (c.puts_failed <= 3) log(`put ${id} failed: ${(e as Error).message}`);
          await sleep(50); // no hot loop while the cluster refuses writes
        }
      }
    }
  };

  const searcher = async (client: ApiClient): Promise<void> => {
    while (running()) {
      const q = vectorOf(rng.nextInt(1 << 30), 0);
      try {
        const r = await client.call("Search", { vector: q, k: 10, collection: "chaos" });
        if (r.partial) c.searches_partial++;
        else c.searches_full++;
      } catch {
        c.searches_failed++;
        await sleep(50);
      }
    }
  };

  const faults = async (): Promise<void> => {
    while (running()) {
      await sleep(faultEveryMs / 2 + rng.nextInt(faultEveryMs));
      if (!running()) break;
      const i = rng.nextInt(nodeCount);
      const kind = rng.chance(0.5) ? "kill" : "pause";
      const hold = 2000 + rng.nextInt(6000);
      c.faults[kind] = (c.faults[kind] ?? 0) + 1;
      log(`fault ${kind} node ${i} for ${hold} ms`);
      if (kind === "kill") {
        await cluster.killNode(i, "SIGKILL");
        await sleep(hold);
        await cluster.startNode(i);
      } else {
        cluster.nodes[i]!.signal("SIGSTOP");
        await sleep(hold);
        cluster.nodes[i]!.signal("SIGCONT");
      }
      log(`healed node ${i}`);
    }
  };

  const clients = Array.from({ length: 6 }, () => cluster.api(cluster.routerAddr, 5000));
  await Promise.all([
    writer(0, clients[0]),
    writer(1, clients[1]),
    writer(2, clients[2]),
    searcher(clients[3]),
    searcher(clients[4]),
    faults(),
  ]);

  log("load stopped; waiting for hints to drain");
  await waitFor(
    async () => {
      const s = await api.call("Stats", {});
      const pending = (s.nodes ?? []).reduce((n, x) => n + Number(x.hints_pending ?? 0), 0);
      // With gossip, also wait for the moves that follow membership changes to settle.
      return pending === 0 && !s.rebalancing;
    },
    "hint queues drain and rebalancing settles",
    120_000,
  );

  let lost = 0, resurrected = 0, checked = 0;
  const examples: string[] = [];
  for (const [id, version] of acked) {
    if (uncertain.has(id)) continue;
    checked++;
    const g = await api.call("Get", { id, collection: "chaos" });
    if (version === -1) {
      if (g.found) {
        resurrected++;
        if (examples.length < 5) examples.push(`id ${id} was deleted but is readable`);
      }
    } else {
      const want = vectorOf(id, version);
      const ok = g.found && g.vector.length === dim &&
        g.vector.every((x, j) => Math.abs(x - want[j]) < 1e-6);
      if (!ok) {
        lost++;
        if (examples.length < 5) {
          examples.push(`id ${id} v${version}: ${g.found ? "other vector" : "not found"}`);
        }
      }
    }
  }
  const searches = c.searches_full + c.searches_partial + c.searches_failed;
  const fullRatio = searches === 0 ? 0 : c.searches_full / searches;
  const faultCount = Object.values(c.faults).reduce((a, b) => a + b, 0);
  const summary = {
    seed,
    duration_s: durationMs / 1000,
    gossip: args.gossip,
    fault_events: faultCount,
    ...c,
    acknowledged_checked: checked,
    uncertain: uncertain.size,
    acknowledged_lost: lost,
    deletes_resurrected: resurrected,
    searches_answered_in_full: Number(fullRatio.toFixed(5)),
  };
  console.log(JSON.stringify(summary, null, 2));
  for (const e of examples) log(e);
  exitCode = lost === 0 && resurrected === 0 && fullRatio >= 0.99 ? 0 : 1;
  log(exitCode === 0 ? "PASS" : `FAIL (replay with --seed ${seed})`);
} catch (e) {
  log(`error: ${(e as Error).stack ?? e}`);
  console.error(cluster.log().split("\n").slice(-60).join("\n"));
} finally {
  // Make sure nothing stays paused, then stop everything.
  for (const p of cluster.nodes) {
    try {
      p?.signal("SIGCONT");
    } catch { /* already gone */ }
  }
  await cluster.stop();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  Deno.removeSignalListener("SIGINT", onSignal);
}
Deno.exit(exitCode);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
