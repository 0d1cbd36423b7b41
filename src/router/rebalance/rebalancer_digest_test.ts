import assert from "node:assert/strict";
import { Placement } from "../../cluster/placement.ts";
import { type RebalanceHost, Rebalancer, type RingRef, type TransferPort } from "./rebalancer.ts";
import type { BucketPage, DigestEntry, DigestPort, ShardDigest } from "./digest_sync.ts";
import { bucketOf, rootBytes, UnitDigest } from "../../common/digest.ts";
import { compareIds, type PointId } from "../../common/point_id.ts";
import { shardOf } from "../../common/shard.ts";

const L = { shard_number: 3, replication_factor: 2 };
const C = "c";

/** A node of the fake cluster: per shard, entries last-writer-wins with a kept digest. */
class Node {
  readonly shards = Array.from({ length: 3 }, () => ({
    entries: new Map<PointId, DigestEntry>(),
    d: new UnitDigest(),
  }));
  scans = 0;
  digests = 0;

  write(e: DigestEntry): boolean {
    const s = this.shards[shardOf(e.id, 3)];
    const held = s.entries.get(e.id);
    if (held !== undefined && held.version >= e.version) return false;
    if (held !== undefined) s.d.remove(held.id, held.version, held.deleted);
    s.entries.set(e.id, e);
    s.d.add(e.id, e.version, e.deleted);
    return true;
  }

  all(): DigestEntry[] {
    return this.shards.flatMap((s) => [...s.entries.values()])
      .sort((a, b) => compareIds(a.id, b.id));
  }

  digestPort(): DigestPort {
    return {
      digest: (_c, shard, with_buckets): Promise<ShardDigest> => {
        this.digests++;
        const d = this.shards[shard].d;
        return Promise.resolve({
          root: rootBytes(d.root()),
          entries: d.count,
          bucket_digests: with_buckets ? d.bucketBytes() : new Uint8Array(0),
        });
      },
      bucketEntries: (_c, shard, buckets, after, limit, options = {}): Promise<BucketPage> => {
        const ids = [...this.shards[shard].entries.keys()].sort(compareIds)
          .filter((id) => after === null || compareIds(id, after) > 0)
          .filter((id) => options.ids === undefined || options.ids.includes(id));
        const out: DigestEntry[] = [];
        let i = 0;
        let last = after ?? 0;
        for (; i < ids.length && out.length < limit; i++) {
          last = ids[i];
          if (buckets.includes(bucketOf(ids[i]))) {
            const e = this.shards[shard].entries.get(ids[i])!;
            out.push(
              options.keys_only
                ? { id: e.id, version: e.version, deleted: e.deleted, vector: [] }
                : e,
            );
          }
        }
        return Promise.resolve({ entries: out, next_after: last, done: i >= ids.length });
      },
      copy: (_c, entries) => {
        let applied = 0;
        for (const e of entries) if (this.write(e)) applied++;
        return Promise.resolve({ applied, skipped: entries.length - applied });
      },
    };
  }

  transferPort(): TransferPort {
    return {
      scan: (_c, after, from_start, limit) => {
        this.scans++;
        const all = this.all().filter((e) => from_start || compareIds(e.id, after) > 0);
        const page = all.slice(0, limit);
        return Promise.resolve({
          entries: page,
          next_after: page.length > 0 ? page[page.length - 1].id : after,
          done: page.length === all.length,
        });
      },
      copy: (_c, entries) => {
        let applied = 0;
        for (const e of entries) if (this.write(e)) applied++;
        return Promise.resolve({ applied, skipped: entries.length - applied });
      },
      prune: () => Promise.resolve(0),
    };
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
}

function setup(withDigests: boolean) {
  const names = ["a", "b", "c"];
  const ring: RingRef = { nodes: names, placement: new Placement(names) };
  const nodes = new Map(names.map((n) => [n, new Node()]));
  for (let id = 0; id < 600; id++) {
    for (const o of ring.placement.owners(C, L, id)) {
      nodes.get(o)!.write({ id, version: 100, deleted: false, vector: [id, 1] });
    }
  }
  const logs: string[] = [];
  const h: RebalanceHost = {
    log: (m) => logs.push(m),
    transfer: (a) => nodes.get(a)?.transferPort() ?? null,
    ...(withDigests ? { digest: (a: string) => nodes.get(a)?.digestPort() ?? null } : {}),
    collections: () => Promise.resolve([C]),
    layout: () => Promise.resolve(L),
    current: () => ring,
    drainOlderWrites: () => Promise.resolve(true),
    node_timeout_ms: 1000,
  };
  return { ring, nodes, h, logs };
}

/** Whether `rb` reported the placement unsettled each time a run scanned a node of `h`. */
function rebalancingAtScans(h: RebalanceHost, rb: Rebalancer): boolean[] {
  const seen: boolean[] = [];
  const plain = h.transfer;
  h.transfer = (a) => {
    const port = plain(a)!;
    return { ...port, scan: (...args) => (seen.push(rb.stats.rebalancing), port.scan(...args)) };
  };
  return seen;
}

Deno.test("rebalancer: a periodic anti-entropy run goes by digests: no scan when unchanged", async () => {
  const { ring, nodes, h, logs } = setup(true);
  const rb = new Rebalancer(h, { delay_ms: 1 });
  rb.changed(ring);
  rb.antiEntropy();
  await until(() => rb.stats.rebalances_done === 1, "the anti-entropy run settles");
  for (const n of nodes.values()) assert.equal(n.scans, 0, "nothing scanned");
  assert.equal(rb.digest_runs, 1);
  assert.match(logs.join("\n"), /anti-entropy by digests over 3 shard replica sets .*3 equal/);
  // A replica that missed writes: repaired by the next run, still without a scan.
  const id = 7;
  const [first] = ring.placement.owners(C, L, id);
  nodes.get(first)!.write({ id, version: 500, deleted: true, vector: [] });
  rb.antiEntropy();
  await until(() => rb.stats.rebalances_done === 2, "the second run settles");
  for (const n of nodes.values()) assert.equal(n.scans, 0, "nothing scanned");
  const s = shardOf(id, 3);
  for (const o of ring.placement.replicas(C, L, s)) {
    assert.equal(nodes.get(o)!.shards[s].entries.get(id)!.deleted, true);
  }
  assert.ok(rb.stats.points_copied >= 1);
  await rb.stop();
});

Deno.test("rebalancer: without digest ports, or when digests fail, the run scans", async () => {
  const plain = setup(false);
  const rb = new Rebalancer(plain.h, { delay_ms: 1 });
  rb.changed(plain.ring);
  rb.antiEntropy();
  await until(() => rb.stats.rebalances_done === 1, "the run settles");
  assert.equal(rb.digest_runs, 0);
  for (const n of plain.nodes.values()) assert.ok(n.scans > 0);
  await rb.stop();

  const failing = setup(true);
  failing.h.digest = (a) => {
    if (a === "b") return null; // no channel: the digest run cannot finish
    return failing.nodes.get(a)!.digestPort();
  };
  const rb2 = new Rebalancer(failing.h, { delay_ms: 1 });
  rb2.changed(failing.ring);
  rb2.antiEntropy();
  await until(() => rb2.stats.rebalances_done === 1, "the run settles");
  assert.equal(rb2.digest_runs, 1);
  assert.match(failing.logs.join("\n"), /still differ: scanning/);
  for (const n of failing.nodes.values()) assert.ok(n.scans > 0, "fell back to the full scan");
  await rb2.stop();
});

Deno.test("rebalancer: an anti-entropy run with scan finds entries off their replicas", async () => {
  const { ring, nodes, h } = setup(true);
  // An entry on the one node that is not a replica of its shard (as a restore into a changed
  // ring leaves them): digests, comparing a shard's replicas, cannot see it.
  const id = 601;
  const owners = ring.placement.owners(C, L, id);
  const stray = ring.nodes.find((n) => !owners.includes(n))!;
  nodes.get(stray)!.write({ id, version: 900, deleted: false, vector: [1, 2] });
  const held = () => owners.filter((o) => nodes.get(o)!.shards[shardOf(id, 3)].entries.has(id));
  const rb = new Rebalancer(h, { delay_ms: 1 });
  rb.changed(ring);
  rb.antiEntropy();
  await until(() => rb.stats.rebalances_done === 1, "the digest run settles");
  assert.equal(rb.digest_runs, 1);
  assert.deepEqual(held(), [], "digests did not see the stray");
  rb.antiEntropy({ scan: true });
  await until(() => rb.stats.rebalances_done === 2, "the scan run settles");
  assert.equal(rb.digest_runs, 1, "no digests");
  assert.ok(nodes.get(stray)!.scans > 0, "the stray's node was scanned");
  assert.deepEqual(held(), owners, "the entry reached both replicas");
  await rb.stop();
});

Deno.test("rebalancer: a scan asked during a digest run is owed: settled is not reported before it", async () => {
  const { ring, nodes, h } = setup(true);
  // Digest calls wait on a gate, so the scan is asked while the digest run is under way.
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const plainDigest = h.digest!;
  h.digest = (a) => {
    const port = plainDigest(a)!;
    return { ...port, digest: async (...args) => (await gate, port.digest(...args)) };
  };
  const rb = new Rebalancer(h, { delay_ms: 1 });
  const seen = rebalancingAtScans(h, rb);
  rb.changed(ring);
  rb.antiEntropy();
  await new Promise((r) => setTimeout(r, 20));
  rb.antiEntropy({ scan: true });
  open();
  await until(() => rb.stats.rebalances_done === 2, "the digest run, then the scan, settle");
  assert.equal(rb.digest_runs, 1);
  assert.ok(seen.length > 0 && [...nodes.values()].every((n) => n.scans > 0), "scanned");
  assert.deepEqual(new Set(seen), new Set([true]), "rebalancing reported throughout the scan");
  assert.equal(rb.stats.rebalancing, false);
  await rb.stop();
});

Deno.test("rebalancer: a scan asked while a run lists collections is owed past that run", async () => {
  const { ring, nodes, h } = setup(true);
  // The run's listing is taken before the restore made the collection (it lists none) and
  // answers after the restore asked for its scan: that run cannot have scanned what was restored,
  // so the placement must not read as settled until a later run has.
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let listed = 0;
  h.collections = async () => {
    if (listed++ > 0) return [C];
    await gate;
    return [];
  };
  const rb = new Rebalancer(h, { delay_ms: 1 });
  const seen = rebalancingAtScans(h, rb);
  const id = 601;
  const owners = ring.placement.owners(C, L, id);
  const stray = ring.nodes.find((n) => !owners.includes(n))!;
  const held = () => owners.filter((o) => nodes.get(o)!.shards[shardOf(id, 3)].entries.has(id));
  rb.changed(ring);
  rb.antiEntropy();
  await until(() => listed === 1, "the run lists collections");
  nodes.get(stray)!.write({ id, version: 900, deleted: false, vector: [1, 2] });
  rb.antiEntropy({ scan: true });
  open();
  await until(() => listed === 2 && !rb.stats.rebalancing, "the scan run settles");
  assert.ok(nodes.get(stray)!.scans > 0, "the stray's node was scanned");
  assert.deepEqual(held(), owners, "the restored entry reached both replicas");
  assert.deepEqual(new Set(seen), new Set([true]), "rebalancing reported throughout the scan");
  await rb.stop();
});

Deno.test("rebalancer: antiEntropy says whether a run will come (none before a ring, or after stop)", async () => {
  const { ring, h } = setup(true);
  const rb = new Rebalancer(h, { delay_ms: 1 });
  assert.equal(rb.antiEntropy({ scan: true }), false, "no ring seen yet");
  assert.equal(rb.stats.rebalancing, false);
  rb.changed(ring);
  assert.equal(rb.antiEntropy({ scan: true }), true);
  await until(() => rb.stats.rebalances_done === 1, "the run settles");
  await rb.stop();
  assert.equal(rb.antiEntropy(), false, "stopped");
});
