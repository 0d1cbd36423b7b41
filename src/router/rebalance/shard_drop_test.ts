import assert from "node:assert/strict";
import type { BucketPage, DigestEntry, DigestPort } from "./digest_sync.ts";
import { bucketOf, rootBytes, UnitDigest } from "../../common/digest.ts";
import { compareIds, type PointId } from "../../common/point_id.ts";
import { DROP_RETRIES, type DropContext, type FileDrop, settleDrop } from "./file_phase.ts";
import {
  ShardDropUnsupportedError,
  type ShardFilePort,
  ShardRootChangedError,
} from "./shard_move.ts";

const C = "c";
const SHARD = 0;

/** One node's unit of the shard: entries last-writer-wins, with the digest kept. */
class Unit {
  readonly entries = new Map<PointId, DigestEntry>();
  readonly d = new UnitDigest();
  /** Runs before each ShardDrop is answered (a write racing the router). */
  beforeDrop: () => void = () => {};
  drops = 0;
  refusals = 0;

  constructor(readonly drop: "yes" | "unimplemented" = "yes") {}

  write(e: DigestEntry): boolean {
    const held = this.entries.get(e.id);
    if (held !== undefined && held.version >= e.version) return false;
    if (held !== undefined) this.d.remove(held.id, held.version, held.deleted);
    this.entries.set(e.id, e);
    this.d.add(e.id, e.version, e.deleted);
    return true;
  }

  digestPort(): DigestPort {
    return {
      digest: () =>
        Promise.resolve({
          root: rootBytes(this.d.root()),
          entries: this.d.count,
          bucket_digests: this.d.bucketBytes(),
        }),
      bucketEntries: (_c, _k, buckets, after, limit, options = {}): Promise<BucketPage> => {
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
          out.push(options.keys_only ? { ...e, vector: [] } : e);
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

  files(): ShardFilePort {
    const no = () => Promise.reject(new Error("not used"));
    return {
      openImage: no,
      readImage: no,
      closeImage: no,
      beginInstall: no,
      installChunk: no,
      commitInstall: no,
      dropShard: (_c, _k, root, entries) => {
        this.beforeDrop();
        if (this.drop === "unimplemented") {
          return Promise.reject(new ShardDropUnsupportedError("UNIMPLEMENTED"));
        }
        const now = rootBytes(this.d.root());
        if (this.d.count !== entries || now.some((b, i) => b !== root[i])) {
          this.refusals++;
          return Promise.reject(new ShardRootChangedError("FAILED_PRECONDITION: root differs"));
        }
        const n = this.entries.size;
        this.entries.clear();
        this.d.reset();
        this.drops++;
        return Promise.resolve(n);
      },
    };
  }
}

const put = (id: number, version: number): DigestEntry => ({
  id,
  version,
  deleted: false,
  vector: [id, version],
});

/** A loser "l" holding 300 entries, owners "a" and "b" synced with it; the drop to settle. */
async function world(drop: "yes" | "unimplemented" = "yes") {
  const nodes = new Map([["a", new Unit()], ["b", new Unit()], ["l", new Unit(drop)]]);
  for (let id = 1; id <= 300; id++) {
    for (const n of nodes.values()) n.write(put(id, 10));
  }
  const loser = nodes.get("l")!;
  const d = await loser.digestPort().digest(C, SHARD, false);
  const fd: FileDrop = {
    node: "l",
    collection: C,
    shard: SHARD,
    owners: ["a", "b"],
    root: d.root,
    entries: d.entries,
  };
  const logs: string[] = [];
  const ctx: DropContext = {
    files: (n) => nodes.get(n)?.files() ?? null,
    digest: (n) => nodes.get(n)?.digestPort() ?? null,
    page_points: 64,
    counted: () => {},
    check: () => {},
    isAbort: () => false,
    log: (m) => logs.push(m),
    describe: (e) => (e as Error).message,
  };
  return { nodes, loser, fd, ctx, logs };
}

Deno.test("settleDrop: the loser's unit is emptied when its root is still the one read", async () => {
  const { nodes, loser, fd, ctx } = await world();
  const r = await settleDrop(ctx, fd);
  assert.deepEqual(r, { dropped: 300, refused: 0, prune: null });
  assert.equal(loser.entries.size, 0);
  assert.equal(nodes.get("a")!.entries.size, 300);
});

Deno.test("settleDrop: a write reaching the loser after its root was read is synced to the owners before the unit goes", async () => {
  const { nodes, loser, fd, ctx, logs } = await world();
  let once = true;
  loser.beforeDrop = () => {
    if (!once) return;
    once = false;
    loser.write(put(1, 99)); // a newer value (e.g. a hint replayed late)
    loser.write(put(5000, 98)); // an id the owners never saw
  };
  const r = await settleDrop(ctx, fd);
  assert.equal(r.refused, 1);
  assert.equal(r.prune, null);
  assert.equal(r.dropped, 301);
  assert.equal(loser.entries.size, 0);
  for (const o of ["a", "b"]) {
    assert.equal(nodes.get(o)!.entries.get(1)!.version, 99, `${o} holds the late write`);
    assert.equal(nodes.get(o)!.entries.get(5000)!.version, 98, `${o} holds the late id`);
  }
  assert.match(logs.join("\n"), /kept shard 0 of "c" \(FAILED_PRECONDITION: root differs\)/);
});

Deno.test("settleDrop: a loser written before every try, or without ShardDrop, is pruned by keys listed before a sync", async () => {
  for (const mode of ["busy", "unimplemented"] as const) {
    const { nodes, loser, fd, ctx } = await world(mode === "busy" ? "yes" : "unimplemented");
    let v = 100;
    loser.beforeDrop = () => {
      loser.write(put(7000 + v, v));
      v++;
    };
    const r = await settleDrop(ctx, fd);
    assert.equal(r.dropped, 0);
    assert.equal(loser.drops, 0);
    assert.equal(r.refused, mode === "busy" ? DROP_RETRIES + 1 : 0);
    assert.ok(r.prune !== null);
    assert.equal(r.prune.node, "l");
    // Every listed (id, version) is on both owners at that version or newer: pruning loses
    // nothing.
    assert.equal(r.prune.ids.length, loser.entries.size);
    r.prune.ids.forEach((id, i) => {
      for (const o of ["a", "b"]) {
        const held = nodes.get(o)!.entries.get(id);
        assert.ok(held !== undefined && held.version >= r.prune!.versions[i], `${o} lacks ${id}`);
      }
    });
  }
});
