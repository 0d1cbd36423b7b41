import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection } from "./collection.ts";
import { differingBuckets, UnitDigest } from "../common/digest.ts";
import { bucketOf } from "../common/digest.ts";

const quiet = { logger: () => {} };
const config = { name: "c", dimension: 2, metric: "l2" as const, m: 8, ef_construction: 32 };

async function withDirs(fn: (a: string, b: string) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "vdb-digest-"));
  try {
    await fn(join(root, "a"), join(root, "b"));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The digest computed from scratch over `c`'s entries, to compare with the kept one. */
function scratch(c: Collection): UnitDigest {
  const d = new UnitDigest();
  const ids = c.knownIds();
  for (let i = 0; i < ids.length; i++) {
    const e = c.getEntry(ids.at(i));
    d.add(ids.at(i), e.version, e.deleted);
  }
  return d;
}

Deno.test("collection digest: kept current by puts, deletes, copies and forgets; rebuilt at open", async () => {
  await withDirs(async (dirA) => {
    let c = await Collection.create(dirA, config, quiet);
    await c.putBatch(Array.from({ length: 200 }, (_, i) => ({ id: i, vector: [i, 1] })), 100);
    await c.put("doc-1", [1, 2], 101);
    await c.put(2n ** 60n, [1, 3], 102);
    await c.delete(5, 110);
    await c.delete(1000, 111); // a tombstone for an id never put
    await c.copy([
      { id: 6, version: 120, deleted: false, vector: [9, 9] },
      { id: 7, version: 50, deleted: true }, // older: skipped
      { id: 8, version: 121, deleted: true },
    ]);
    await c.forget([9, "doc-1"], [100, 101]);
    await c.put(10, [1, 1], 0); // a stamped version
    assert.deepEqual(c.digestRoot(), scratch(c).root());
    assert.equal(c.digestRoot().count, c.entryCount);
    const root = c.digestRoot();
    const buckets = c.digestBuckets();
    await c.close();
    // Replay only, then snapshot + replay.
    c = await Collection.open(dirA, quiet);
    assert.deepEqual(c.digestRoot(), root);
    await c.snapshot();
    await c.put(11, [1, 1], 200);
    await c.close();
    c = await Collection.open(dirA, quiet);
    assert.deepEqual(differingBuckets(c.digestBuckets(), buckets), [bucketOf(11)]);
    assert.deepEqual(c.digestRoot(), scratch(c).root());
    await c.close();
  });
});

Deno.test("collection digest: two replicas agree whatever order writes arrive; differ in one bucket", async () => {
  await withDirs(async (dirA, dirB) => {
    const a = await Collection.create(dirA, config, quiet);
    const b = await Collection.create(dirB, config, quiet);
    try {
      for (let i = 0; i < 100; i++) await a.put(i, [i, 0], 10 + i);
      await a.delete(3, 500);
      for (let i = 99; i >= 0; i--) await b.put(i, [i, 0], 10 + i);
      await b.copy([{ id: 3, version: 500, deleted: true }]);
      await b.put(3, [0, 0], 400); // older than the delete: loses
      assert.deepEqual(a.digestRoot(), b.digestRoot());
      await b.put(42, [4, 2], 600);
      assert.notDeepEqual(a.digestRoot(), b.digestRoot());
      assert.deepEqual(differingBuckets(a.digestBuckets(), b.digestBuckets()), [bucketOf(42)]);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

Deno.test("collection: expiredTombstones lists tombstones below the cutoff only", async () => {
  await withDirs(async (dirA) => {
    const c = await Collection.create(dirA, config, quiet);
    try {
      assert.deepEqual(c.expiredTombstones(1e9, 10), { ids: [], versions: [] });
      await c.putBatch([{ id: 1, vector: [1, 1] }, { id: 2, vector: [2, 2] }], 100);
      await c.delete(1, 150);
      await c.delete(3, 300);
      assert.deepEqual(c.expiredTombstones(200, 10), { ids: [1], versions: [150] });
      const all = c.expiredTombstones(1000, 10);
      assert.deepEqual(all.ids.slice().sort(), [1, 3]);
      assert.equal(c.expiredTombstones(1000, 1).ids.length, 1, "bounded by max");
    } finally {
      await c.close();
    }
  });
});
