import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { NodeStore } from "../storage/node_store.ts";
import {
  absenceLimitMs,
  collectTombstones,
  decodeHeartbeat,
  discardStaleEntries,
  encodeHeartbeat,
  HEARTBEAT_FILE,
  readHeartbeat,
  TombstoneCollector,
  tombstoneCutoffVersion,
  writeHeartbeat,
} from "./tombstone_gc.ts";

const quiet = { logger: () => {} };

async function withStore(fn: (store: NodeStore, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tombstone_gc_" });
  const store = await NodeStore.open(dir, quiet);
  try {
    await fn(store, dir);
  } finally {
    await store.close({ snapshot: false });
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("heartbeat: round trip; damage is reported, not believed", async () => {
  assert.equal(decodeHeartbeat(encodeHeartbeat(1234.5)), 1234.5);
  const bad = encodeHeartbeat(99);
  bad[9] ^= 1;
  assert.match(String(decodeHeartbeat(bad)), /checksum/);
  assert.match(String(decodeHeartbeat(new Uint8Array(3))), /3 bytes/);
  const other = encodeHeartbeat(1);
  other[0] = 0;
  assert.match(String(decodeHeartbeat(other)), /magic/);
  const dir = await Deno.makeTempDir({ prefix: "heartbeat_" });
  try {
    const logs: string[] = [];
    assert.equal(readHeartbeat(dir, (m) => logs.push(m)), null);
    await writeHeartbeat(dir, 5000);
    assert.equal(readHeartbeat(dir, (m) => logs.push(m)), 5000);
    writeFileSync(join(dir, HEARTBEAT_FILE), bad);
    assert.equal(readHeartbeat(dir, (m) => logs.push(m)), null);
    assert.match(logs.join("\n"), /damaged: its checksum does not match/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("collectTombstones forgets tombstones older than the grace only, durably", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tombstone_gc_" });
  const store = await NodeStore.open(dir, quiet);
  try {
    const now = Date.now();
    const grace = 60_000;
    const c = await store.create({
      name: "c",
      dimension: 2,
      metric: "l2",
      m: 8,
      ef_construction: 32,
      shard_number: 2,
    });
    const old = tombstoneCutoffVersion(now, grace) - 5;
    await c.putBatch([{ id: 1, vector: [1, 1] }, { id: 2, vector: [2, 2] }], old - 100);
    await c.deleteBatch([1, 3, 4], old); // old tombstones (ids in both shards)
    await c.delete(2, old + 10_000_000); // a recent one
    assert.equal(c.stats().tombstones, 4);
    assert.equal(await collectTombstones(store, now, grace), 3);
    assert.equal(c.stats().tombstones, 1);
    assert.equal(c.getEntry(1).version, 0);
    assert.equal(c.getEntry(2).deleted, true);
    assert.equal(await collectTombstones(store, now, 0), 0, "grace 0 keeps tombstones");
    await store.close({ snapshot: false });
    const again = await NodeStore.open(dir, quiet);
    try {
      const d = again.get("c");
      assert.equal(d.stats().tombstones, 1, "the FORGET records replay");
      assert.equal(d.getEntry(1).version, 0);
    } finally {
      await again.close({ snapshot: false });
    }
  } finally {
    await store.close({ snapshot: false }).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("discardStaleEntries: a node away longer than the grace forgets its entries, keeps definitions", async () => {
  await withStore(async (store, dir) => {
    const logs: string[] = [];
    const log = (m: string) => logs.push(m);
    const c = await store.create({
      name: "c",
      dimension: 2,
      metric: "l2",
      m: 8,
      ef_construction: 32,
      shard_number: 3,
    });
    await c.createFieldIndex("color", "keyword");
    await c.putBatch(Array.from({ length: 5000 }, (_, i) => ({ id: i, vector: [i, 1] })), 0);
    await c.delete(7);
    const t0 = Date.now();
    // No heartbeat yet (a new or older data directory): trusted, and one is written.
    assert.equal(await discardStaleEntries(store, t0, 1000, log), 0);
    assert.equal(readHeartbeat(dir, log), t0);
    // Back within the grace less its margin (a quarter): kept.
    assert.equal(absenceLimitMs(1000), 750);
    assert.equal(await discardStaleEntries(store, t0 + 750, 1000, log), 0);
    assert.equal(c.count(), 4999);
    // Away less than the grace but more than the limit: deletes made just after it left are
    // collected elsewhere before an anti-entropy run could repair it, so it is discarded too.
    assert.equal(await discardStaleEntries(store, t0 + 750 + 751, 1000, log), 5000);
    assert.equal(c.count(), 0);
    assert.equal(c.entryCount, 0);
    assert.deepEqual(c.fieldIndexes().map((f) => f.field), ["color"]);
    assert.equal(c.shard_number, 3);
    assert.match(
      logs.join("\n"),
      /WARNING: this node last ran 1 s ago, longer than the tombstone grace less its margin \(1 s: 1 s/,
    );
    assert.equal(readHeartbeat(dir, log), t0 + 1501);
  });
});

Deno.test("TombstoneCollector: collects and beats at most once per interval", async () => {
  await withStore(async (store, dir) => {
    const c = await store.create({
      name: "c",
      dimension: 2,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    });
    const t = Date.now();
    await c.delete(1, tombstoneCutoffVersion(t, 1000) - 1);
    const gc = new TombstoneCollector(store, 1000, () => {}, 10_000);
    await gc.tick(t);
    assert.equal(gc.collected, 1);
    assert.equal(readHeartbeat(dir, () => {}), t);
    await gc.tick(t + 5000);
    assert.equal(readHeartbeat(dir, () => {}), t, "not yet due");
    await gc.tick(t + 10_000);
    assert.equal(readHeartbeat(dir, () => {}), t + 10_000);
  });
});

Deno.test("TombstoneCollector: a failing collection is logged and the heartbeat still beats", async () => {
  await withStore(async (store, dir) => {
    const c = await store.create({
      name: "c",
      dimension: 2,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    });
    const t = Date.now();
    await c.delete(1, tombstoneCutoffVersion(t, 1000) - 1);
    // A collection that keeps failing (a disk refusing FORGET records, say).
    c.units[0].forget = () => Promise.reject(new Error("disk full"));
    const logs: string[] = [];
    const gc = new TombstoneCollector(store, 1000, (m) => logs.push(m), 10_000);
    await gc.tick(t);
    assert.equal(readHeartbeat(dir, () => {}), t, "the heartbeat is written despite the error");
    assert.match(logs.join("\n"), /tombstone collection failed \(retried next tick\): disk full/);
    await gc.tick(t + 10_000);
    assert.equal(readHeartbeat(dir, () => {}), t + 10_000);
    assert.equal(gc.collected, 0);
  });
});
