import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection } from "./collection.ts";
import { CollectionExistsError, CollectionNotFoundError, NodeStore } from "./node_store.ts";
import { Rng } from "../testing/random.ts";

const quiet = { logger: () => {} };

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "vdb-col-"));
}

Deno.test("collection: writes survive a restart by WAL replay, then by snapshot", async () => {
  const root = tempDir();
  const dir = join(root, "c");
  try {
    const rng = new Rng(1);
    const config = {
      name: "c",
      dimension: 8,
      metric: "cosine" as const,
      m: 8,
      ef_construction: 64,
    };
    let c = await Collection.create(dir, config, quiet);
    const data = Array.from({ length: 300 }, () => rng.vector(8));
    await Promise.all(data.slice(0, 200).map((v, id) => c.put(id, v)));
    await c.putBatch(data.slice(200).map((v, i) => ({ id: 200 + i, vector: v })));
    assert.equal((await c.delete(7)).deleted, true);
    assert.equal((await c.delete(7)).deleted, false);
    const queries = Array.from({ length: 20 }, () => rng.vector(8));
    const before = queries.map((q) => c.search(q, 5));
    const seq = c.lastSeq;
    await c.close();

    c = await Collection.open(dir, quiet);
    assert.equal(c.lastSeq, seq);
    assert.equal(c.index.count, 299);
    assert.equal(c.get(7), null);
    assert.deepEqual(queries.map((q) => c.search(q, 5)), before, "replayed index answers the same");
    await c.snapshot();
    assert.equal(c.stats().last_snapshot_seq, seq);
    await c.put(1000, rng.vector(8));
    await c.close();

    c = await Collection.open(dir, quiet);
    assert.equal(c.index.count, 300);
    assert.deepEqual(
      queries.map((q) => c.search(q, 5).filter((h) => h.id !== 1000).slice(0, 3)),
      before.map((b) => b.filter((h) => h.id !== 1000).slice(0, 3)),
    );
    assert.equal(c.config.name, "c", "the name comes from the directory");
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: a corrupt newest snapshot falls back to the previous one plus the WAL", async () => {
  const dir = tempDir();
  try {
    const rng = new Rng(2);
    let c = await Collection.create(dir, {
      name: "c",
      dimension: 4,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    }, quiet);
    for (let i = 0; i < 50; i++) await c.put(i, rng.vector(4));
    await c.snapshot();
    for (let i = 50; i < 100; i++) await c.put(i, rng.vector(4));
    await c.snapshot();
    for (let i = 100; i < 120; i++) await c.put(i, rng.vector(4));
    const q = rng.vector(4);
    const want = c.search(q, 10);
    await c.close();
    const snaps = readdirSync(join(dir, "snapshots")).sort();
    assert.equal(snaps.length, 2);
    const newest = join(dir, "snapshots", snaps[1]);
    const bytes = readFileSync(newest);
    bytes[bytes.length >> 1] ^= 0x40;
    writeFileSync(newest, bytes);
    const lines: string[] = [];
    c = await Collection.open(dir, { logger: (m) => lines.push(m) });
    assert.ok(lines.some((l) => l.includes(snaps[1])), `log names the bad snapshot: ${lines}`);
    assert.equal(c.index.count, 120);
    assert.deepEqual(c.search(q, 10), want);
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("node store: default collection on first put, named collections, drop, limits", async () => {
  const dir = tempDir();
  try {
    let store = await NodeStore.open(dir, quiet);
    const c = await store.getForWrite("", 3);
    await c.put(100, [0.1, 0.2, 0.3]);
    await c.put(101, [0.9, 0.8, 0.7]);
    assert.equal(store.get("").search([0.1, 0.2, 0.3], 1)[0].id, 100);
    assert.throws(() => store.get("nope"), CollectionNotFoundError);
    await assert.rejects(() => store.getForWrite("nope", 3), CollectionNotFoundError);
    await store.create({ name: "docs", dimension: 2, metric: "dot", m: 4, ef_construction: 16 });
    await assert.rejects(
      () => store.create({ name: "docs", dimension: 2, metric: "dot", m: 4, ef_construction: 16 }),
      CollectionExistsError,
    );
    await assert.rejects(
      () =>
        store.create({ name: "bad/name", dimension: 2, metric: "dot", m: 4, ef_construction: 16 }),
      /collection name "bad\/name"/,
    );
    await store.get("docs").put(1, [1, 0]);
    await store.close();

    store = await NodeStore.open(dir, quiet);
    assert.deepEqual(store.list().map((x) => x.name).sort(), ["default", "docs"]);
    assert.equal(store.get("docs").index.metric, "dot");
    assert.equal(store.get("default").search([0.9, 0.8, 0.7], 1)[0].id, 101);
    await store.drop("docs");
    assert.throws(() => store.get("docs"), CollectionNotFoundError);
    await store.close();
    store = await NodeStore.open(dir, quiet);
    assert.deepEqual(store.list().map((x) => x.name), ["default"]);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("node store: concurrent first puts create the default collection once", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, quiet);
    await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const c = await store.getForWrite(undefined, 2);
      await c.put(i, [i, 1]);
    }));
    assert.equal(store.get(undefined).index.count, 20);
    // 20 puts in far fewer syncs: group commit.
    const st = store.get(undefined).stats();
    assert.ok(st.wal.syncs < 20, `syncs ${st.wal.syncs}`);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("node store: tick snapshots after the configured number of writes", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, { ...quiet, snapshot_every_ops: 10 });
    const c = await store.getForWrite("", 2);
    for (let i = 0; i < 9; i++) await c.put(i, [i, 0]);
    await store.tick();
    assert.equal(c.stats().last_snapshot_seq, 0);
    await c.put(9, [9, 0]);
    await store.tick();
    assert.equal(c.stats().last_snapshot_seq, c.lastSeq);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("collection: applies keep WAL order while a large batch yields part-way", async () => {
  const root = tempDir();
  try {
    const c = await Collection.create(
      join(root, "c"),
      { name: "c", dimension: 4, metric: "l2", m: 8, ef_construction: 32 },
      quiet,
    );
    const batch = Array.from({ length: 1000 }, (_, id) => ({ id, vector: [id, 1, 1, 1] }));
    const a = c.putBatch(batch); // applies in slices, yielding to the event loop
    const b = c.put(5, [-5, -5, -5, -5]); // logged after the batch: must win
    const d = c.delete(999); // likewise
    const snap = c.snapshot(); // must see whole records only
    await Promise.all([a, b, d, snap]);
    assert.deepEqual(Array.from(c.get(5)!), [-5, -5, -5, -5]);
    assert.equal(c.get(999), null);
    assert.equal(c.index.count, 999);
    await c.close();
    const again = await Collection.open(join(root, "c"), quiet);
    assert.deepEqual(Array.from(again.get(5)!), [-5, -5, -5, -5]);
    assert.equal(again.index.count, 999);
    await again.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
