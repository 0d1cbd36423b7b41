/**
 * Anti-entropy benchmark (a script, not a test): what a run costs on an unchanged cluster by
 * digests (src/router/rebalance/digest_sync.ts) beside the full scan it replaces (the
 * rebalancer's run before digests: Scan every entry of every node, CopyBatch each to the other
 * replicas of its shard), then what a digest run costs with a few hundred diverged entries.
 *
 * Three storage nodes on loopback (no router: the script places the points itself with
 * src/cluster/placement.ts, as a router does, so the layout is exactly "3 shards, RF 2" whatever
 * the router of this checkout routes by). The collection is created on every node with
 * `shard_number` 3; each point is written (PutBatch, one explicit version per batch) to the two
 * replicas of its shard.
 *
 * | step               | what                                                              |
 * | ------------------ | ----------------------------------------------------------------- |
 * | full scan          | every node: Scan pages (512) to the end; each page's entries      |
 * |                    | CopyBatch-ed to the other replica of their shard (all skipped)    |
 * | digest, unchanged  | digestRun over the 3 shards: one root Digest per replica          |
 * | diverge            | `--diverge` entries written to one replica only: 2/3 puts (new    |
 * |                    | ids, or newer versions) on the primary, 1/3 deletes on the other  |
 * | digest, diverged   | digestRun: bucket digests, BucketEntries, CopyBatch               |
 * | digest, after      | digestRun again: equal roots everywhere                           |
 *
 * "entries read" is entries read in full (with vectors): every entry for the full scan, only
 * the puts some replica lacked for a digest run (which reads the keys of differing buckets
 * first). Bytes are request and reply payloads as digest_sync.ts counts them (`entryBytes`: id,
 * version, flag, vector at 4 bytes a value, payload; digests 8 bytes and 8 KiB of buckets), the
 * same measure for both paths, without gRPC framing. Time is wall time of the run;
 * `os.loadavg()` is printed before and after each step (the machine is shared).
 *
 * ```sh
 * deno run -A scripts/bench/anti_entropy.ts                 # 20,000 points of dimension 32
 * deno run -A scripts/bench/anti_entropy.ts --n 100000 --diverge 500 --json
 * ```
 *
 * | flag        | default | meaning                                  |
 * | ----------- | ------- | ---------------------------------------- |
 * | `--n`       | 20000   | points loaded                            |
 * | `--dim`     | 32      | their dimension (random vectors)         |
 * | `--diverge` | 300     | entries written to one replica only      |
 * | `--json`    |         | one JSON object on stdout                |
 *
 * Every process is stopped at the end, also on error; the directory is removed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import { TestCluster } from "../../harness/cluster.ts";
import { ApiClient } from "../../src/api/client.ts";
import { TransferClient } from "../../src/api/transfer.ts";
import { Placement, shardOf } from "../../src/cluster/placement.ts";
import { Rng } from "../../src/testing/random.ts";
import {
  type DigestEntry,
  digestRun,
  type DigestRunReport,
  entryBytes,
  transferDigestPort,
} from "../../src/router/rebalance/digest_sync.ts";
import { idToWire, type PointId } from "../../src/common/point_id.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "20000" },
    dim: { type: "string", default: "32" },
    diverge: { type: "string", default: "300" },
    json: { type: "boolean", default: false },
  },
  strict: true,
  allowPositionals: false,
});
const N = Number(flags.n);
const DIM = Number(flags.dim);
const DIVERGE = Number(flags.diverge);
const COLLECTION = "ae_bench";
const LAYOUT = { shard_number: 3, replication_factor: 2 };
const say = (m: string) => {
  if (!flags.json) console.log(m);
};
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");

/** A step's figures. */
interface Step {
  step: string;
  bytes: number;
  ms: number;
  entries_read: number;
  entries_copied: number;
  load_before: string;
  load_after: string;
}

const dir = await Deno.makeTempDir({ prefix: "ae_bench_" });
const cluster = await TestCluster.create(dir, { nodes: 3, gossip: false });
const steps: Step[] = [];
try {
  await Promise.all(cluster.nodeAddrs.map((_, i) => cluster.startNode(i)));
  const nodes = cluster.nodeAddrs;
  const api = new Map(nodes.map((a) => [a, cluster.api(a, 60_000)]));
  const transfer = new Map(nodes.map((a) => [a, new TransferClient(a, 60_000)]));
  const placement = new Placement(nodes);
  const replicas = (shard: number) => placement.replicas(COLLECTION, LAYOUT, shard);
  for (const a of nodes) {
    await api.get(a)!.call("CreateCollection", {
      name: COLLECTION,
      dimension: DIM,
      shard_number: LAYOUT.shard_number,
      replication_factor: LAYOUT.replication_factor,
    });
  }
  // Load: batches of 1,000 per shard, each to both replicas with one version.
  const rng = new Rng(7);
  const vec = () => Array.from({ length: DIM }, () => rng.next() * 2 - 1);
  let version = Date.now() * 1024;
  const t0 = Date.now();
  const pending: { id: number; vector: number[] }[][] = [[], [], []];
  const flush = async (shard: number) => {
    const points = pending[shard];
    if (points.length === 0) return;
    pending[shard] = [];
    const v = String(++version);
    await Promise.all(
      replicas(shard).map((a) =>
        api.get(a)!.call("PutBatch", { collection: COLLECTION, points, version: v })
      ),
    );
  };
  for (let id = 0; id < N; id++) {
    const s = shardOf(id, LAYOUT.shard_number);
    pending[s].push({ id, vector: vec() });
    if (pending[s].length >= 1000) await flush(s);
  }
  for (let s = 0; s < LAYOUT.shard_number; s++) await flush(s);
  say(`loaded ${N} points of dimension ${DIM} in ${Date.now() - t0} ms (3 nodes, 3 shards, RF 2)`);

  const shards = Array.from({ length: LAYOUT.shard_number }, (_, shard) => ({
    collection: COLLECTION,
    shard,
    replicas: replicas(shard),
  }));
  const ports = new Map(nodes.map((a) => [a, transferDigestPort(transfer.get(a)!)]));
  const digestStep = async (name: string): Promise<DigestRunReport> => {
    const before = load();
    const t = performance.now();
    const r = await digestRun((a) => ports.get(a) ?? null, shards);
    steps.push({
      step: name,
      bytes: r.bytes,
      ms: performance.now() - t,
      entries_read: r.entries_read,
      entries_copied: r.entries_copied,
      load_before: before,
      load_after: load(),
    });
    if (r.failed.length > 0) throw new Error(`digest run failed: ${JSON.stringify(r.failed)}`);
    return r;
  };

  // The full scan (the rebalancer's anti-entropy before digests).
  {
    const before = load();
    const t = performance.now();
    let bytes = 0, read = 0, copied = 0;
    for (const a of nodes) {
      let after: PointId = 0;
      let from_start = true;
      for (;;) {
        const w = idToWire(after);
        bytes += 32;
        const page = await transfer.get(a)!.call("Scan", {
          collection: COLLECTION,
          after_id: w.id,
          after_string_id: w.string_id,
          from_start,
          limit: 512,
        });
        from_start = false;
        read += page.points.length;
        const per = new Map<string, DigestEntry[]>();
        for (const p of page.points) {
          bytes += entryBytes(p);
          for (const owner of replicas(shardOf(p.id, LAYOUT.shard_number))) {
            if (owner === a) continue;
            if (!per.has(owner)) per.set(owner, []);
            per.get(owner)!.push(p);
          }
        }
        for (const [owner, entries] of per) {
          for (const e of entries) bytes += entryBytes(e);
          bytes += 40;
          const r = await ports.get(owner)!.copy(COLLECTION, entries);
          copied += r.applied;
        }
        if (page.done) break;
        after = page.next_after;
      }
    }
    steps.push({
      step: "full scan, unchanged",
      bytes,
      ms: performance.now() - t,
      entries_read: read,
      entries_copied: copied,
      load_before: before,
      load_after: load(),
    });
  }
  const unchanged = await digestStep("digest, unchanged");
  if (unchanged.shards_equal !== LAYOUT.shard_number) {
    throw new Error(`an unchanged cluster's replicas disagree: ${JSON.stringify(unchanged)}`);
  }

  // Divergence: writes that reached one replica only.
  const puts = Math.round((DIVERGE * 2) / 3);
  for (let i = 0; i < DIVERGE; i++) {
    const id = i < puts
      ? (i % 2 === 0 ? N + i : Math.floor(rng.next() * N))
      : Math.floor(rng.next() * N);
    const [primary, other] = replicas(shardOf(id, LAYOUT.shard_number));
    const v = String(++version);
    if (i < puts) {
      await api.get(primary)!.call("Put", {
        collection: COLLECTION,
        id,
        vector: vec(),
        version: v,
      });
    } else {
      await api.get(other)!.call("Delete", { collection: COLLECTION, id, version: v });
    }
  }
  const diverged = await digestStep("digest, diverged");
  const after = await digestStep("digest, after repair");
  if (after.shards_equal !== LAYOUT.shard_number) {
    throw new Error(`replicas still disagree after a repair: ${JSON.stringify(after.reports)}`);
  }

  const result = {
    n: N,
    dim: DIM,
    diverge: DIVERGE,
    buckets_differing: diverged.buckets_differing,
    steps: steps.map((s) => ({ ...s, ms: Math.round(s.ms * 10) / 10 })),
  };
  if (flags.json) console.log(JSON.stringify(result));
  else {
    console.log(
      `\n| step | bytes | time ms | entries read | entries copied | loadavg before → after |`,
    );
    console.log(`| --- | ---: | ---: | ---: | ---: | --- |`);
    for (const s of result.steps) {
      console.log(
        `| ${s.step} | ${s.bytes.toLocaleString("en")} | ${s.ms} | ${s.entries_read} | ` +
          `${s.entries_copied} | ${s.load_before} → ${s.load_after} |`,
      );
    }
    console.log(
      `\n${diverged.buckets_differing} buckets differed after ${DIVERGE} diverged writes`,
    );
  }
  for (const t of transfer.values()) t.close();
  for (const a of api.values()) if (a instanceof ApiClient) a.close();
} finally {
  await cluster.stop();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
