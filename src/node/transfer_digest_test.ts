import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { caller, rejectsWith, withNode } from "./handlers_testing.ts";
import { transferHandlers } from "./transfer_service.ts";
import { bucketOf, differingBuckets, DIGEST_BUCKETS } from "../common/digest.ts";
import { shardOf } from "../common/shard.ts";
import { tombstoneCutoffVersion } from "./tombstone_gc.ts";

const invalid = (p: Promise<unknown>, message: RegExp) =>
  rejectsWith(p, grpc.status.INVALID_ARGUMENT, message);

const points = (ids: number[]) => ids.map((id) => ({ id, vector: [id, 1] }));

Deno.test("Digest: per shard, equal on replicas with the same entries, buckets on request", async () => {
  await withNode("digest_a_", async (apiA, trA) => {
    await withNode("digest_b_", async (apiB, trB) => {
      const ids = Array.from({ length: 300 }, (_, i) => i * 13);
      for (const api of [apiA, apiB]) {
        await api("CreateCollection", { name: "c", dimension: 2, shard_number: 3 });
        await api("PutBatch", { collection: "c", points: points(ids), version: "100" });
        await api("Delete", { collection: "c", id: 13, version: "200" });
      }
      let total = 0;
      for (let shard = 0; shard < 3; shard++) {
        const a = await trA("Digest", { collection: "c", shard, with_buckets: false });
        const b = await trB("Digest", { collection: "c", shard, with_buckets: false });
        assert.deepEqual(a, b);
        assert.equal(a.root.length, 8);
        assert.equal(a.bucket_digests.length, 0);
        assert.equal(a.shard_number, 3);
        assert.equal(a.buckets, DIGEST_BUCKETS);
        assert.equal(a.entries, ids.filter((id) => shardOf(id, 3) === shard).length);
        total += a.entries;
      }
      assert.equal(total, 300);
      // One more write on B: its shard's root and exactly one bucket differ.
      await apiB("Put", { collection: "c", id: 1_000_001, vector: [0, 0], version: "300" });
      const s = shardOf(1_000_001, 3);
      const a = await trA("Digest", { collection: "c", shard: s, with_buckets: true });
      const b = await trB("Digest", { collection: "c", shard: s, with_buckets: true });
      assert.notDeepEqual(a.root, b.root);
      assert.equal(a.bucket_digests.length, DIGEST_BUCKETS * 8);
      assert.deepEqual(differingBuckets(a.bucket_digests, b.bucket_digests), [
        bucketOf(1_000_001),
      ]);
      await invalid(
        trA("Digest", { collection: "c", shard: 3 }),
        /shard 3 is not a shard of collection "c" \(shard_number 3/,
      );
      await invalid(trA("Digest", { collection: "c", shard: -1 }), /shard -1/);
      await rejectsWith(
        trA("Digest", { collection: "nope", shard: 0 }),
        grpc.status.NOT_FOUND,
        /nope/,
      );
    });
  });
});

Deno.test("BucketEntries: pages the entries of the given buckets of one shard, ascending", async () => {
  await withNode("bucket_entries_", async (api, tr) => {
    await api("CreateCollection", { name: "c", dimension: 2, shard_number: 2 });
    const ids = Array.from({ length: 2000 }, (_, i) => i);
    await api("PutBatch", { collection: "c", points: points(ids), version: "100" });
    await api("Delete", { collection: "c", id: 4, version: "200" });
    const shard = shardOf(4, 2);
    const buckets = [bucketOf(4), bucketOf(5), bucketOf(6), bucketOf(7)]
      .filter((b, i, all) => all.indexOf(b) === i);
    const want = ids.filter((id) => shardOf(id, 2) === shard && buckets.includes(bucketOf(id)));
    const seen: { id: string | number; deleted: boolean; version: number; vector: number[] }[] = [];
    let page = await tr("BucketEntries", {
      collection: "c",
      shard,
      buckets,
      from_start: true,
      limit: 2,
    });
    seen.push(...page.points);
    let pages = 1;
    while (!page.done) {
      page = await tr("BucketEntries", {
        collection: "c",
        shard,
        buckets,
        after_id: page.next_after_id,
        after_string_id: page.next_after_string_id,
        from_start: false,
        limit: 2,
      });
      seen.push(...page.points);
      pages++;
    }
    assert.ok(pages >= Math.ceil(want.length / 2));
    assert.deepEqual(seen.map((p) => Number(p.id)), want);
    const tomb = seen.find((p) => Number(p.id) === 4)!;
    assert.equal(tomb.deleted, true);
    assert.equal(tomb.version, 200);
    assert.deepEqual(tomb.vector, []);
    const live = seen.find((p) => Number(p.id) !== 4)!;
    assert.deepEqual(live.vector, [Number(live.id), 1]);

    // Keys only: no vectors; only listed ids (those in the buckets and held; repeats once).
    const keys = await tr("BucketEntries", {
      collection: "c",
      shard,
      buckets,
      from_start: true,
      limit: 4096,
      keys_only: true,
    });
    assert.deepEqual(keys.points.map((p: { id: number }) => Number(p.id)), want);
    assert.ok(keys.points.every((p: { vector: number[] }) => p.vector.length === 0));
    assert.ok(keys.points.every((p: { payload?: string }) => (p.payload ?? "") === ""));
    const listed = [want[1], want[0], 1_999_999, want[0]];
    const only = await tr("BucketEntries", {
      collection: "c",
      shard,
      buckets,
      from_start: true,
      limit: 4096,
      ids: listed,
    });
    assert.deepEqual(only.points.map((p: { id: number }) => Number(p.id)), [want[0], want[1]]);
    assert.ok(
      only.points.every((p: { vector: number[]; deleted: boolean }) =>
        p.deleted || p.vector.length === 2
      ),
    );

    const req = { collection: "c", shard, buckets: [1], from_start: true, limit: 10 };
    await invalid(
      tr("BucketEntries", { ...req, buckets: [] }),
      /buckets has 0 entries; it must have 1 to 1024/,
    );
    await invalid(
      tr("BucketEntries", { ...req, buckets: [1024] }),
      /buckets\[0\] 1024 must be between 0 and 1023/,
    );
    await invalid(
      tr("BucketEntries", { ...req, buckets: [3, 3] }),
      /buckets\[1\] 3 is listed twice/,
    );
    await invalid(tr("BucketEntries", { ...req, limit: 0 }), /limit 0 must be between 1 and 4096/);
    await invalid(tr("BucketEntries", { ...req, shard: 2 }), /shard 2 is not a shard/);
    await invalid(
      tr("BucketEntries", { ...req, ids: Array.from({ length: 4097 }, (_, i) => i) }),
      /4097/,
    );
  });
});

Deno.test("CopyBatch with a tombstone grace: a tombstone older than the grace is not stored", async () => {
  await withNode("copy_grace_", async (api, _tr, store) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    const now = Date.now();
    const grace = 3600_000;
    const tr = caller(
      transferHandlers(store, { closing: false }, {
        logger: () => {},
        clock: () => now,
        tombstone_grace_ms: grace,
      }),
    );
    const cutoff = tombstoneCutoffVersion(now, grace);
    const r = await tr("CopyBatch", {
      collection: "c",
      points: [
        { id: 1, version: cutoff - 1, deleted: true },
        { id: 2, version: cutoff + 1, deleted: true },
        { id: 3, version: cutoff - 1, deleted: false, vector: [1, 1] },
      ],
    });
    assert.deepEqual(r, { applied: 2, skipped: 1 });
    const c = store.get("c");
    assert.equal(c.getEntry(1).version, 0, "the expired tombstone was not stored");
    assert.equal(c.getEntry(2).deleted, true);
    assert.equal(c.getEntry(3).version, cutoff - 1, "live entries are copied whatever their age");
  });
});

Deno.test("CopyBatch with a tombstone grace: an expired tombstone still beats an older live entry", async () => {
  await withNode("copy_grace_older_", async (api, _tr, store) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    const now = Date.now();
    const grace = 3600_000;
    const tr = caller(
      transferHandlers(store, { closing: false }, {
        logger: () => {},
        clock: () => now,
        tombstone_grace_ms: grace,
      }),
    );
    const cutoff = tombstoneCutoffVersion(now, grace);
    // This replica missed the delete of 1 (still holds the put it beat); 2 it holds newer.
    await tr("CopyBatch", {
      collection: "c",
      points: [
        { id: 1, version: cutoff - 100, deleted: false, vector: [1, 1] },
        { id: 2, version: cutoff - 5, deleted: false, vector: [2, 2] },
        { id: 4, version: cutoff - 10, deleted: false, vector: [4, 4] },
      ],
    });
    const r = await tr("CopyBatch", {
      collection: "c",
      points: [
        { id: 1, version: cutoff - 10, deleted: true }, // beats the held put: applied
        { id: 2, version: cutoff - 10, deleted: true }, // older than the held put: refused
        { id: 3, version: cutoff - 10, deleted: true }, // nothing held: refused
        { id: 4, version: cutoff - 10, deleted: true }, // a put at its version: the delete wins
      ],
    });
    assert.deepEqual(r, { applied: 2, skipped: 2 });
    assert.equal(store.get("c").getEntry(4).deleted, true);
    const c = store.get("c");
    assert.equal(c.getEntry(1).deleted, true, "the missed delete applies, not refused");
    assert.equal(c.getEntry(1).version, cutoff - 10);
    assert.equal(c.count(), 1);
    assert.equal(c.getEntry(2).deleted, false);
    assert.equal(c.getEntry(3).version, 0);
  });
});

Deno.test("BucketEntries under writes: one gather of the buckets' ids serves every page of a paging", async () => {
  await withNode("bucket_gather_", async (api, tr, store) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    const ids = Array.from({ length: 3000 }, (_, i) => i);
    await api("PutBatch", { collection: "c", points: points(ids), version: "100" });
    const unit = store.get("c").units[0];
    const order = unit.sortedIds.bind(unit);
    let walks = 0; // how often a page asked for the unit's whole id order
    unit.sortedIds = () => {
      walks++;
      return order();
    };
    const buckets = [bucketOf(1), bucketOf(2), bucketOf(3)].filter((b, i, a) => a.indexOf(b) === i);
    const want = ids.filter((id) => buckets.includes(bucketOf(id)));
    const req = { collection: "c", shard: 0, buckets, limit: 1, keys_only: true };
    let page = await tr("BucketEntries", { ...req, from_start: true });
    const seen = [...page.points];
    let n = 0;
    while (!page.done) {
      // A write between pages (a new id in another bucket) changes the unit's id order.
      await api("Put", { collection: "c", id: 10_000 + n++, vector: [1, 1], version: "100" });
      page = await tr("BucketEntries", {
        ...req,
        after_id: page.next_after_id,
        after_string_id: page.next_after_string_id,
        from_start: false,
      });
      seen.push(...page.points);
    }
    assert.deepEqual(seen.map((p) => Number(p.id)), want);
    assert.ok(want.length >= 3);
    assert.equal(walks, 1, "the unit's ids were walked once, not once per page");
  });
});
