/**
 * A storage node's collections on a full disk, simulated with the IO fault hook of
 * io/fs_util.ts: refused writes, reads meanwhile, recovery without a restart, what a reopen
 * finds, and snapshots that fail and are retried.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskFullError, errnoError } from "../io/disk_full.ts";
import { setIoFaultHook } from "../io/fs_util.ts";
import type { CollectionConfig } from "./collection.ts";
import { NodeStore, type NodeStoreOptions } from "./node_store.ts";

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "vdb-disk-full-"));
}

function config(name: string): CollectionConfig {
  return { name, dimension: 4, metric: "l2", m: 8, ef_construction: 32 };
}

function vectorOf(id: number): number[] {
  return [id, id % 7, 1, -id / 4];
}

/** While `full.on`, every write (and sync) under `under` fails with ENOSPC after 9 bytes. */
function fillDisk(under: string, full: { on: boolean; calls: number }): void {
  setIoFaultHook((op, path) => {
    if (!full.on || !path.startsWith(under)) return null;
    full.calls++;
    return {
      error: errnoError("ENOSPC", op === "write" ? "write" : "fsync", path),
      after_bytes: 9,
    };
  });
}

function assertDiskFull(dir: string): (e: unknown) => true {
  return (e) => {
    assert.ok(e instanceof DiskFullError, `expected DiskFullError, got ${e}`);
    assert.equal(e.data_dir, dir);
    assert.ok(
      e.message.startsWith(`No space left on device in data directory ${dir}: `),
      e.message,
    );
    return true;
  };
}

async function withStore(
  fn: (dir: string, lines: string[]) => Promise<void>,
): Promise<void> {
  const dir = tempDir();
  const lines: string[] = [];
  try {
    await fn(dir, lines);
  } finally {
    setIoFaultHook(null);
    rmSync(dir, { recursive: true, force: true });
  }
}

Deno.test("node store disk full: writes refused, reads go on, writes resume, reopen holds exactly the acknowledged", async () => {
  await withStore(async (dir) => {
    const open = () => NodeStore.open(dir, { logger: () => {}, snapshot_every_ops: 1_000_000 });
    let store = await open();
    const c = await store.create(config("c"));
    const acked = new Set<number>();
    for (let id = 1; id <= 20; id++) {
      await c.put(id, vectorOf(id));
      acked.add(id);
    }
    const full = { on: true, calls: 0 };
    fillDisk(dir, full);
    const refused = [21, 22, 23, 24];
    await assert.rejects(() => c.put(21, vectorOf(21)), assertDiskFull(dir));
    await assert.rejects(
      () => c.putBatch([{ id: 22, vector: vectorOf(22) }, { id: 23, vector: vectorOf(23) }]),
      assertDiskFull(dir),
    );
    // Concurrent writes while full: all refused, none applied.
    const results = await Promise.allSettled([c.put(24, vectorOf(24)), c.delete(1)]);
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assertDiskFull(dir)((r as PromiseRejectedResult).reason);
    }
    await assert.rejects(() => store.create(config("d")), (e) => {
      assertDiskFull(dir)(e);
      assert.match((e as Error).message, /collection "d" not created/);
      return true;
    });
    assert.deepEqual(store.list().map((x) => x.name), ["c"]);

    // Reads and searches answer meanwhile, with nothing of the refused writes.
    assert.deepEqual(Array.from(c.get(1)!), vectorOf(1));
    for (const id of refused) assert.equal(c.getEntry(id).vector, null);
    const hits = c.search(vectorOf(24), 5);
    assert.equal(hits.length, 5);
    for (const h of hits) assert.ok(acked.has(h.id as number), `search found refused id ${h.id}`);

    // Space is freed: the next writes go through, no restart.
    full.on = false;
    for (let id = 30; id < 35; id++) {
      await c.put(id, vectorOf(id));
      acked.add(id);
    }
    await store.create(config("d"));
    assert.equal(c.lastSeq, 1 + 20 + 5, "refused writes used no sequence number");

    for (const snapshot of [false, true]) {
      await store.close({ snapshot });
      store = await open();
      const r = store.get("c");
      for (const id of acked) assert.deepEqual(Array.from(r.get(id)!), vectorOf(id), `id ${id}`);
      for (const id of refused) assert.equal(r.getEntry(id).version, 0, `refused id ${id}`);
      assert.equal(r.entryCount, acked.size);
    }
    await store.close();
  });
});

Deno.test("node store disk full: a failed snapshot is retried with a backoff, even with no new writes", async () => {
  await withStore(async (dir, lines) => {
    const options: NodeStoreOptions = {
      logger: (m) => lines.push(m),
      snapshot_every_ops: 5,
      snapshot_retry_ms: 1_000,
      snapshot_retry_max_ms: 3_000,
    };
    let store = await NodeStore.open(dir, options);
    const c = await store.create(config("c"));
    for (let id = 1; id <= 5; id++) await c.put(id, vectorOf(id));
    const snapshots = join(dir, "collections", "c", "snapshots");
    const full = { on: true, calls: 0 };
    fillDisk(snapshots, full);

    await store.tick(10_000);
    assert.equal(c.stats().last_snapshot_seq, 0);
    assert.deepEqual(store.snapshotRetryOf("c"), { failures: 1, at_ms: 11_000 });
    assert.deepEqual(readdirSync(snapshots), [], "the failed snapshot left no temporary file");
    assert.ok(lines.some((l) => /snapshot failed \(attempt 1\): No space left on device/.test(l)));
    // Writes still go through (the WAL is elsewhere).
    await c.put(6, vectorOf(6));

    const calls = full.calls;
    await store.tick(10_999);
    assert.equal(full.calls, calls, "no attempt before the backoff ends");
    await store.tick(11_000);
    assert.ok(full.calls > calls, "retried");
    assert.deepEqual(store.snapshotRetryOf("c"), { failures: 2, at_ms: 13_000 });
    await store.tick(13_000);
    assert.deepEqual(store.snapshotRetryOf("c"), { failures: 3, at_ms: 16_000 }, "capped");

    full.on = false;
    await store.tick(15_999);
    assert.equal(c.stats().last_snapshot_seq, 0);
    await store.tick(16_000);
    assert.equal(c.stats().last_snapshot_seq, c.lastSeq);
    assert.equal(store.snapshotRetryOf("c"), null);

    // A close whose snapshot fails still closes the log and releases the directory.
    await c.put(7, vectorOf(7));
    full.on = true;
    await store.close();
    assert.ok(lines.some((l) => /close failed: No space left on device/.test(l)));
    full.on = false;
    store = await NodeStore.open(dir, options);
    assert.deepEqual(Array.from(store.get("c").get(7)!), vectorOf(7));
    await store.close();
  });
});

Deno.test("node store: a start-up that replayed a long WAL snapshots at the first tick", async () => {
  await withStore(async (dir, lines) => {
    const options: NodeStoreOptions = { logger: (m) => lines.push(m), snapshot_every_ops: 20 };
    let store = await NodeStore.open(dir, options);
    const c = await store.create(config("c"));
    const short = await store.create(config("short"));
    for (let id = 1; id <= 25; id++) await c.put(id, vectorOf(id));
    for (let id = 1; id <= 3; id++) await short.put(id, vectorOf(id));
    await store.close({ snapshot: false });

    store = await NodeStore.open(dir, options);
    assert.equal(store.get("c").replayed, 26, "the creation record and 25 puts");
    assert.ok(lines.some((l) => /replayed 26 WAL records .*snapshot is due/.test(l)));
    await store.tick(1);
    assert.equal(store.get("c").stats().last_snapshot_seq, 26);
    assert.equal(store.get("short").stats().last_snapshot_seq, 0, "a short replay waits");
    await store.close({ snapshot: false });

    store = await NodeStore.open(dir, options);
    assert.equal(store.get("c").replayed, 0, "the next start loads the snapshot");
    assert.equal(store.get("c").entryCount, 25);
    await store.close();
  });
});
