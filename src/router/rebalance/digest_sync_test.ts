import assert from "node:assert/strict";
import {
  type BucketPage,
  type DigestEntry,
  type DigestPort,
  digestRun,
  type ShardDigest,
  syncShard,
} from "./digest_sync.ts";
import { bucketOf, rootBytes, UnitDigest } from "../../common/digest.ts";
import { compareIds, type PointId } from "../../common/point_id.ts";
import { supersedes } from "../../common/version.ts";

/** A replica in memory, last-writer-wins by version (`supersedes`, as a node), with a kept digest; counts its calls. */
class FakeNode implements DigestPort {
  readonly entries = new Map<PointId, DigestEntry>();
  readonly d = new UnitDigest();
  calls = { digest: 0, buckets: 0, bucketEntries: 0, copy: 0 };
  down = false;
  keysSent = 0;
  fullSent = 0;

  write(e: DigestEntry): boolean {
    const held = this.entries.get(e.id);
    if (held !== undefined && !supersedes(e.version, e.deleted, held.version, held.deleted)) {
      return false;
    }
    if (held !== undefined) this.d.remove(held.id, held.version, held.deleted);
    this.entries.set(e.id, e);
    this.d.add(e.id, e.version, e.deleted);
    return true;
  }

  private check(): void {
    if (this.down) throw Object.assign(new Error("node down"), { code: 14 });
  }

  digest(_c: string, _s: number, with_buckets: boolean): Promise<ShardDigest> {
    this.check();
    this.calls.digest++;
    if (with_buckets) this.calls.buckets++;
    return Promise.resolve({
      root: rootBytes(this.d.root()),
      entries: this.d.count,
      bucket_digests: with_buckets ? this.d.bucketBytes() : new Uint8Array(0),
    });
  }

  bucketEntries(
    _c: string,
    _s: number,
    buckets: number[],
    after: PointId | null,
    limit: number,
    options: { keys_only?: boolean; ids?: PointId[] } = {},
  ): Promise<BucketPage> {
    this.check();
    this.calls.bucketEntries++;
    const ids = [...this.entries.keys()].sort(compareIds)
      .filter((id) => after === null || compareIds(id, after) > 0)
      .filter((id) => options.ids === undefined || options.ids.includes(id));
    const out: DigestEntry[] = [];
    let i = 0;
    let last = after ?? 0;
    for (; i < ids.length && out.length < limit; i++) {
      last = ids[i];
      if (!buckets.includes(bucketOf(ids[i]))) continue;
      const e = this.entries.get(ids[i])!;
      if (options.keys_only) this.keysSent++;
      else this.fullSent++;
      out.push(
        options.keys_only ? { id: e.id, version: e.version, deleted: e.deleted, vector: [] } : e,
      );
    }
    return Promise.resolve({ entries: out, next_after: last, done: i >= ids.length });
  }

  copy(_c: string, entries: DigestEntry[]): Promise<{ applied: number; skipped: number }> {
    this.check();
    this.calls.copy++;
    let applied = 0;
    for (const e of entries) if (this.write(e)) applied++;
    return Promise.resolve({ applied, skipped: entries.length - applied });
  }
}

const put = (id: PointId, version: number): DigestEntry => ({
  id,
  version,
  deleted: false,
  vector: [Number(typeof id === "string" ? id.length : id), version % 97],
  payload: "",
});
const tomb = (id: PointId, version: number): DigestEntry => ({
  id,
  version,
  deleted: true,
  vector: [],
});

function cluster(n: number, points: number): Map<string, FakeNode> {
  const nodes = new Map<string, FakeNode>();
  for (let k = 0; k < n; k++) {
    const node = new FakeNode();
    for (let i = 0; i < points; i++) node.write(put(i, 100 + i));
    node.write(put("doc-a", 7));
    nodes.set(`n${k}`, node);
  }
  return nodes;
}

const state = (n: FakeNode) =>
  [...n.entries.values()].sort((a, b) => compareIds(a.id, b.id))
    .map((e) => `${String(e.id)}:${e.version}:${e.deleted}`).join(",");

Deno.test("syncShard: equal replicas exchange only their roots", async () => {
  const nodes = cluster(3, 5000);
  const r = await syncShard((n) => nodes.get(n) ?? null, "c", 0, ["n0", "n1", "n2"]);
  assert.equal(r.equal, true);
  assert.equal(r.converged, true);
  assert.equal(r.entries_read, 0);
  assert.ok(r.bytes < 200, `${r.bytes} bytes`);
  for (const n of nodes.values()) {
    assert.deepEqual(n.calls, { digest: 1, buckets: 0, bucketEntries: 0, copy: 0 });
  }
});

Deno.test("syncShard: diverged replicas converge by exchanging only the differing buckets", async () => {
  const nodes = cluster(3, 5000);
  const [a, b, c] = [nodes.get("n0")!, nodes.get("n1")!, nodes.get("n2")!];
  // a: newer versions of 10 points and 20 new points; b: a delete the others missed, a string
  // id; c: a tombstone older than its put (does not apply), and one point missing.
  for (let i = 0; i < 10; i++) a.write(put(i * 97, 10_000 + i));
  for (let i = 0; i < 20; i++) a.write(put(100_000 + i, 20_000));
  b.write(tomb(42, 30_000));
  b.write(put("doc-b", 30_001));
  c.write(tomb(43, 5));
  c.entries.delete(44);
  c.d.remove(44, 144, false);
  const r = await syncShard((n) => nodes.get(n) ?? null, "c", 0, ["n0", "n1", "n2"], {
    page_limit: 7,
  });
  assert.equal(r.equal, false);
  assert.equal(r.converged, true, JSON.stringify(r));
  assert.deepEqual(r.failed, []);
  assert.equal(state(a), state(b));
  assert.equal(state(a), state(c));
  assert.equal(a.entries.get(42)!.deleted, true, "the delete won everywhere");
  assert.equal(c.entries.get(43)!.deleted, false, "the newer put beat the old tombstone");
  assert.ok(c.entries.has(44));
  // Work grows with the difference: at most ~33 differing buckets of ~5 entries each are read
  // (per group of equal digests), never the 5,000 entries.
  assert.ok(r.buckets_differing <= 34, `${r.buckets_differing} buckets`);
  assert.ok(r.entries_read < 600, `${r.entries_read} entries read`);
  // a's 30 entries to b and c, b's 2 to a and c, 44 to c (c's old tombstone of 43 never
  // applied: it held a newer put).
  assert.equal(r.entries_copied, 30 * 2 + 2 * 2 + 1);
  // Vectors travel only for puts some replica lacked (a's 30, doc-b, 44: one read each), never for the
  // entries of a differing bucket that every replica already held.
  assert.equal(r.entries_read, 32);
  const full = [a, b, c].reduce((n, x) => n + x.fullSent, 0);
  assert.equal(full, 32);
  // A second run finds nothing.
  const again = await syncShard((n) => nodes.get(n) ?? null, "c", 0, ["n0", "n1", "n2"]);
  assert.equal(again.equal, true);
});

Deno.test("syncShard: a failing replica is reported; the others still sync", async () => {
  const nodes = cluster(3, 1000);
  nodes.get("n0")!.write(put(5, 99_999));
  nodes.get("n2")!.down = true;
  const r = await syncShard((n) => nodes.get(n) ?? null, "c", 1, ["n0", "n1", "n2", "gone"]);
  assert.deepEqual(r.failed.map((f) => f.node).sort(), ["gone", "n2"]);
  assert.match(r.failed.find((f) => f.node === "n2")!.error, /node down/);
  assert.equal(r.converged, false, "not every replica answered");
  assert.equal(nodes.get("n1")!.entries.get(5)!.version, 99_999);
});

Deno.test("digestRun: sums its shards' reports", async () => {
  const s0 = cluster(2, 300);
  const s1 = cluster(2, 300);
  s1.get("n1")!.write(put(7, 50_000));
  const ports = (n: string) => {
    const [shard, node] = n.split("/");
    return (shard === "0" ? s0 : s1).get(node) ?? null;
  };
  const run = await digestRun(ports, [
    { collection: "c", shard: 0, replicas: ["0/n0", "0/n1"] },
    { collection: "c", shard: 1, replicas: ["1/n0", "1/n1"] },
  ]);
  assert.equal(run.shards, 2);
  assert.equal(run.shards_equal, 1);
  assert.equal(run.shards_converged, 2);
  assert.equal(run.buckets_differing, 1);
  assert.equal(run.entries_copied, 1);
  assert.equal(run.reports[1].entries_copied, 1);
});

Deno.test("syncShard: one id at one version, a put here and a delete there: the delete wins everywhere", async () => {
  const nodes = cluster(3, 200);
  const [a, b, c] = [nodes.get("n0")!, nodes.get("n1")!, nodes.get("n2")!];
  for (const n of [a, b, c]) n.write(put(5000, 900));
  b.write(tomb(5000, 900)); // equal version, other flag: a delete beats a put
  assert.equal(b.entries.get(5000)!.deleted, true);
  a.write(tomb(6000, 901)); // and the other way round: the put does not undo the delete
  for (const n of [b, c]) n.write(put(6000, 901));
  assert.equal(b.entries.get(6000)!.deleted, false);
  const get = (n: string) => nodes.get(n) ?? null;
  const r = await syncShard(get, "c", 0, ["n0", "n1", "n2"]);
  assert.equal(r.converged, true, JSON.stringify(r));
  for (const n of [a, b, c]) {
    assert.equal(n.entries.get(5000)!.deleted, true);
    assert.equal(n.entries.get(6000)!.deleted, true);
  }
  assert.equal(state(a), state(b));
  assert.equal(state(a), state(c));
  const again = await syncShard(get, "c", 0, ["n0", "n1", "n2"]);
  assert.equal(again.equal, true, "the next run finds the replicas equal");
});
