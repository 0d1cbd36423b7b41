import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection } from "./collection.ts";
import { CollectionExistsError, CollectionNotFoundError, NodeStore } from "./node_store.ts";
import { Rng } from "../testing/random.ts";
import { legacyPayload } from "../testing/legacy_records.ts";
import { HnswIndex } from "../index/hnsw.ts";
import { crc32 } from "../io/crc32.ts";
import { encodeRecord, RecordType } from "../common/records.ts";
import { SNAPSHOT_HEADER_BYTES, SNAPSHOT_TRAILER_BYTES, writeSnapshot } from "./snapshot.ts";
import { parseControl, Wal } from "../io/wal.ts";
import { rewriteSnapshotAsVersion } from "../testing/legacy_snapshot.ts";
import { withPooledCollection } from "./collection_testing.ts";

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
    assert.equal(store.get("docs").config.metric, "dot");
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
    assert.equal(store.get(undefined).count(), 20);
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

// ----------------------------------------------------------------------------- versions (LWW)

const small = { dimension: 2, metric: "l2" as const, m: 4, ef_construction: 16 };

/** A versioned write for the order-independence test. */
type Op =
  | { kind: "put"; id: number; version: number }
  | { kind: "delete"; id: number; version: number }
  | { kind: "copy"; entries: { id: number; version: number; deleted: boolean }[] }
  | { kind: "batch"; ids: number[]; version: number };

/** The vector written for `id` at `version` (distinct per pair, exact in float32). */
function vec(id: number, version: number): number[] {
  return [id, version];
}

async function run(c: Collection, op: Op): Promise<void> {
  switch (op.kind) {
    case "put":
      await c.put(op.id, vec(op.id, op.version), op.version);
      break;
    case "delete":
      await c.delete(op.id, op.version);
      break;
    case "copy":
      await c.copy(op.entries.map((e) => ({ ...e, vector: vec(e.id, e.version) })));
      break;
    case "batch":
      await c.putBatch(op.ids.map((id) => ({ id, vector: vec(id, op.version) })), op.version);
      break;
  }
}

/** Everything observable about the collection's entries. */
function state(c: Collection): unknown {
  return Array.from(c.knownIds()).map((id) => {
    const e = c.getEntry(id);
    return { id, version: e.version, deleted: e.deleted, vector: e.vector && Array.from(e.vector) };
  });
}

Deno.test("collection: LWW: any order of the same versioned writes gives the same state", async () => {
  const root = tempDir();
  try {
    const rng = new Rng(11);
    const ops: Op[] = [];
    // Versions are unique per id, so the winner per id is well defined.
    let version = 1;
    for (let i = 0; i < 120; i++) {
      const id = rng.int(12);
      const r = rng.int(10);
      if (r < 4) ops.push({ kind: "put", id, version: version++ });
      else if (r < 6) ops.push({ kind: "delete", id, version: version++ });
      else if (r < 8) {
        ops.push({
          kind: "copy",
          entries: [id, (id + 5) % 12].map((x) => ({
            id: x,
            version: version++,
            deleted: rng.int(3) === 0,
          })),
        });
      } else ops.push({ kind: "batch", ids: [id, (id + 1) % 12], version: version++ });
    }
    // The expected state: per id, the write with the highest version.
    const want = new Map<number, { version: number; deleted: boolean }>();
    const note = (id: number, v: number, deleted: boolean) => {
      if ((want.get(id)?.version ?? 0) < v) want.set(id, { version: v, deleted });
    };
    for (const op of ops) {
      if (op.kind === "put") note(op.id, op.version, false);
      else if (op.kind === "delete") note(op.id, op.version, true);
      else if (op.kind === "batch") { for (const id of op.ids) note(id, op.version, false); }
      else for (const e of op.entries) note(e.id, e.version, e.deleted);
    }
    const expected = [...want.keys()].sort((a, b) => a - b).map((id) => {
      const w = want.get(id)!;
      return {
        id,
        version: w.version,
        deleted: w.deleted,
        vector: w.deleted ? null : vec(id, w.version),
      };
    });
    for (let trial = 0; trial < 5; trial++) {
      const order = [...ops];
      for (let i = order.length - 1; i > 0 && trial > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      const dir = join(root, `c${trial}`);
      const c = await Collection.create(dir, { name: "c", ...small }, quiet);
      // Sequential and concurrent (the WAL order is the call order either way).
      if (trial % 2 === 0) { for (const op of order) await run(c, op); }
      else await Promise.all(order.map((op) => run(c, op)));
      assert.deepEqual(state(c), expected, `trial ${trial}`);
      assert.equal(c.index.count, expected.filter((e) => !e.deleted).length);
      assert.equal(c.stats().tombstones, expected.filter((e) => e.deleted).length);
      await c.close();
      const again = await Collection.open(dir, quiet);
      assert.deepEqual(state(again), expected, `trial ${trial} after replay`);
      await again.close();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: a tombstone blocks older puts and copies; writes that lose are acknowledged", async () => {
  const root = tempDir();
  try {
    const c = await Collection.create(join(root, "c"), { name: "c", ...small }, quiet);
    assert.deepEqual(await c.put(1, [1, 1], 10), {
      seq: 2,
      version: 10,
      applied: true,
    });
    const d = await c.delete(1, 20);
    assert.deepEqual(d, { deleted: true, seq: 3, version: 20, applied: true });
    assert.deepEqual(c.getEntry(1), { vector: null, version: 20, deleted: true });
    // Older put, equal put: durable (new seqs) but not applied. An older copy is skipped before
    // it is logged (nothing new to make durable): the seq stays.
    assert.deepEqual(await c.put(1, [2, 2], 15), { seq: 4, version: 15, applied: false });
    assert.equal((await c.put(1, [2, 2], 20)).applied, false);
    assert.deepEqual(await c.copy([{ id: 1, version: 19, deleted: false, vector: [3, 3] }]), {
      applied: 0,
      skipped: 1,
      seq: 5,
    });
    assert.equal(c.get(1), null);
    // An older delete of a newer point does nothing either.
    await c.put(2, [2, 2], 50);
    assert.deepEqual(await c.delete(2, 40), {
      deleted: false,
      seq: 7,
      version: 40,
      applied: false,
    });
    assert.deepEqual(Array.from(c.get(2)!), [2, 2]);
    // A delete of an id never written leaves a tombstone that blocks an older copy.
    assert.deepEqual(await c.delete(3, 30), { deleted: false, seq: 8, version: 30, applied: true });
    const copied = await c.copy([
      { id: 3, version: 29, deleted: false, vector: [3, 3] },
      { id: 4, version: 29, deleted: false, vector: [4, 4] },
      { id: 5, version: 31, deleted: true },
    ]);
    assert.deepEqual([copied.applied, copied.skipped], [2, 1]);
    assert.equal(c.get(3), null);
    assert.deepEqual(Array.from(c.get(4)!), [4, 4]);
    assert.deepEqual(c.getEntry(5), { vector: null, version: 31, deleted: true });
    // A newer put revives a deleted id.
    assert.equal((await c.put(1, [9, 9], 21)).applied, true);
    assert.deepEqual(c.getEntry(1), {
      vector: new Float32Array([9, 9]),
      version: 21,
      deleted: false,
    });
    assert.deepEqual(Array.from(c.knownIds()), [1, 2, 3, 4, 5]);
    assert.deepEqual(c.getEntry(99), { vector: null, version: 0, deleted: false });
    assert.equal(c.stats().tombstones, 2);
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: forget removes entries held at or below the version, skips newer ones", async () => {
  const root = tempDir();
  try {
    const c = await Collection.create(join(root, "c"), { name: "c", ...small }, quiet);
    await c.put(1, [1, 1], 10);
    await c.put(2, [2, 2], 10);
    await c.delete(3, 10);
    await c.put(4, [4, 4], 10);
    const f = await c.forget([1, 2, 3, 4, 5], [10, 9, 11, 0, 100]);
    // 1: held 10 <= 10 -> forgotten; 2: held 10 > 9 -> skipped; 3: tombstone 10 <= 11 ->
    // forgotten; 4: 10 > 0 -> skipped; 5: absent -> skipped.
    assert.deepEqual([f.forgotten, f.skipped], [2, 3]);
    assert.deepEqual(Array.from(c.knownIds()), [2, 4]);
    assert.equal(c.get(1), null);
    assert.deepEqual(c.getEntry(3), { vector: null, version: 0, deleted: false }, "no tombstone");
    assert.equal(c.stats().tombstones, 0);
    assert.equal(c.index.count, 2);
    // Forgotten means unknown: an old copy applies again.
    assert.equal(
      (await c.copy([{ id: 3, version: 5, deleted: false, vector: [3, 3] }])).applied,
      1,
    );
    await assert.rejects(() => c.forget([1, 2], [1]), /2 ids come with 1 versions/);
    await assert.rejects(() => c.forget([1], [-1]), /versions\[0\] -1 must be an integer/);
    await c.close();
    const again = await Collection.open(join(root, "c"), quiet);
    assert.deepEqual(Array.from(again.knownIds()), [2, 3, 4]);
    assert.deepEqual(again.getEntry(3).version, 5);
    await again.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: restart by snapshot + WAL keeps versions and tombstones; clock observes them", async () => {
  const root = tempDir();
  const dir = join(root, "c");
  try {
    let now = 1_000;
    const options = { ...quiet, now_ms: () => now };
    let c = await Collection.create(dir, { name: "c", ...small }, options);
    const stamped = await c.put(1, [1, 1]);
    assert.equal(stamped.version, 1_024_000, "stamped by the clock");
    assert.equal((await c.put(2, [2, 2])).version, 1_024_001);
    await c.delete(3); // tombstone at 1_024_002
    const b = await c.putBatch([{ id: 4, vector: [4, 4] }, { id: 5, vector: [5, 5] }]);
    assert.equal(b.version, 1_024_003);
    await c.snapshot();
    await c.copy([{ id: 6, version: 5_000_000, deleted: true }]);
    await c.delete(1, 2_000_000);
    await c.put(7, [7, 7], 3_000_000);
    const before = state(c);
    assert.equal(c.stats().tombstones, 3);
    await c.close(); // no snapshot: the last three writes replay from the WAL

    now = 500; // the wall clock went back across the restart
    c = await Collection.open(dir, options);
    assert.deepEqual(state(c), before);
    assert.equal(c.stats().tombstones, 3);
    assert.equal(c.clock.last, 5_000_000, "replay and snapshot load observe every version");
    assert.equal((await c.put(6, [6, 6])).version, 5_000_001, "a direct write sorts after all");
    assert.equal(c.getEntry(6).deleted, false);
    await c.snapshot(); // now everything comes from one snapshot
    const after = state(c);
    await c.close();
    c = await Collection.open(dir, options);
    assert.deepEqual(state(c), after);
    assert.equal(c.clock.last, 5_000_001);
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: a batch keeps the last occurrence of a repeated id; versions validated", async () => {
  const root = tempDir();
  try {
    const c = await Collection.create(join(root, "c"), { name: "c", ...small }, quiet);
    const r = await c.putBatch([
      { id: 1, vector: [1, 0] },
      { id: 2, vector: [2, 0] },
      { id: 1, vector: [1, 1] },
    ], 7);
    assert.deepEqual([r.version, r.applied], [7, 2]);
    assert.deepEqual(Array.from(c.get(1)!), [1, 1]);
    await assert.rejects(() => c.put(1, [0, 0], 2 ** 53), /version 9007199254740992 must be/);
    await assert.rejects(() => c.delete(1, 1.5), /version 1.5 must be/);
    await assert.rejects(
      () => c.copy([{ id: 1, version: 0, deleted: true }]),
      /entries\[0\]\.version 0 must be an integer between 1/,
    );
    await assert.rejects(
      () => c.copy([{ id: 1, version: 3, deleted: false }]),
      /entries\[0\]\.vector is missing/,
    );
    await assert.rejects(
      () => c.copy([{ id: 1, version: 3, deleted: false, vector: [1] }]),
      /entries\[0\]\.vector/,
    );
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: legacy records replay as version 0; a v1 snapshot loads at version 0", async () => {
  const root = tempDir();
  try {
    // A log as the pre-version code wrote it: CREATE_COLLECTION, PUT, PUT_BATCH, DELETE.
    const dir = join(root, "old");
    const wal = await Wal.open(join(dir, "wal"), quiet);
    const create = encodeRecord({ kind: "create_collection", collection: "old", ...small });
    await wal.append(create.type, create.payload);
    await wal.append(
      RecordType.PUT,
      legacyPayload((w) => {
        w.u32(1);
        w.f32Array(new Float32Array([1, 1]));
      }),
    );
    await wal.append(
      RecordType.PUT_BATCH,
      legacyPayload((w) => {
        w.u32(2);
        w.u32Array(new Uint32Array([2, 3, 1]));
        w.f32Array(new Float32Array([2, 2, 3, 3, 1, 9]));
      }),
    );
    await wal.append(RecordType.DELETE, legacyPayload((w) => w.u32(3)));
    await wal.close();
    let c = await Collection.open(dir, quiet);
    assert.deepEqual(state(c), [
      { id: 1, version: 0, deleted: false, vector: [1, 9] },
      { id: 2, version: 0, deleted: false, vector: [2, 2] },
    ], "legacy records apply unconditionally; a legacy delete leaves no tombstone");
    // Any versioned write beats a legacy one.
    assert.equal((await c.copy([{ id: 2, version: 1, deleted: true }])).applied, 1);
    await c.close();
    c = await Collection.open(dir, quiet);
    assert.deepEqual(c.getEntry(2), { vector: null, version: 1, deleted: true });
    await c.close();

    // A version-1 snapshot (the index image alone), as the pre-version code wrote it.
    const snapDir = join(root, "snap");
    const index = new HnswIndex({ dim: 2, metric: "l2", M: 4, efConstruction: 16 });
    for (let id = 10; id < 20; id++) index.add(id, [id, 0]);
    index.delete(15);
    const written = await writeSnapshot(join(snapDir, "snapshots"), 40, (w) => index.writeTo(w));
    const bytes = new Uint8Array(readFileSync(written.path));
    const view = new DataView(bytes.buffer);
    view.setUint32(4, 1, true);
    const end = bytes.length - SNAPSHOT_TRAILER_BYTES;
    view.setUint32(
      end,
      crc32(
        bytes.subarray(0, SNAPSHOT_HEADER_BYTES),
        crc32(bytes.subarray(SNAPSHOT_HEADER_BYTES, end)),
      ),
      true,
    );
    writeFileSync(written.path, bytes);
    c = await Collection.open(snapDir, quiet);
    assert.equal(c.config.name, "snap");
    assert.deepEqual(Array.from(c.knownIds()), [10, 11, 12, 13, 14, 16, 17, 18, 19]);
    assert.deepEqual(c.getEntry(12), {
      vector: new Float32Array([12, 0]),
      version: 0,
      deleted: false,
    });
    assert.equal((await c.put(12, [0, 12], 1)).applied, true);
    await c.snapshot(); // written as version 2
    await c.close();
    c = await Collection.open(snapDir, quiet);
    assert.equal(c.getEntry(12).version, 1);
    assert.equal(c.getEntry(13).version, 0);
    assert.equal(c.knownIds().length, 9);
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

/** Byte offsets and seqs of the records of a WAL segment. */
function walRecords(bytes: Uint8Array): { offset: number; seq: number }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: { offset: number; seq: number }[] = [];
  for (let at = 20; at + 17 <= bytes.length; at += 17 + view.getUint32(at, true)) {
    out.push({ offset: at, seq: view.getUint32(at + 8, true) });
  }
  return out;
}

function walSegments(dir: string): string[] {
  return readdirSync(join(dir, "wal")).filter((n) => /^wal-\d{20}\.log$/.test(n)).sort();
}

Deno.test("collection: a damaged record the snapshot covers costs nothing, in either mode", async () => {
  const root = tempDir();
  const dir = join(root, "c");
  try {
    const rng = new Rng(5);
    const config = { name: "c", dimension: 4, metric: "l2" as const, m: 8, ef_construction: 32 };
    const c = await Collection.create(dir, config, quiet);
    const data = Array.from({ length: 70 }, () => rng.vector(4));
    for (let i = 0; i < 50; i++) await c.put(i, data[i]);
    await c.snapshot();
    const covered = c.stats().last_snapshot_seq;
    for (let i = 50; i < 70; i++) await c.put(i, data[i]);
    await c.close();
    const control = parseControl(new Uint8Array(readFileSync(join(dir, "wal", "CONTROL"))));
    assert.equal("snapshot_seq" in control && control.snapshot_seq, covered);
    const names = walSegments(dir);
    assert.equal(names.length, 1);
    const path = join(dir, "wal", names[0]);
    const bytes = readFileSync(path);
    const rec = walRecords(bytes).find((r) => r.seq === 20)!;
    assert.ok(rec.seq <= covered);
    bytes[rec.offset + 17 + 3] ^= 0x10;
    writeFileSync(path, bytes);
    for (const recovery of ["strict", "truncate"] as const) {
      const lines: string[] = [];
      const again = await Collection.open(dir, { logger: (m) => lines.push(m), recovery });
      assert.equal(again.index.count, 70, `${recovery}: every write present`);
      for (let i = 0; i < 70; i++) {
        assert.deepEqual(Array.from(again.get(i) ?? []), Array.from(data[i]));
      }
      // The covered records are walked header to header (wal.ts readAfterCovered): the
      // damaged payload is never read, so not even a log line.
      assert.ok(!lines.some((l) => l.includes(`byte offset ${rec.offset}`)), lines.join("\n"));
      await again.close();
    }
    assert.deepEqual(readFileSync(path), bytes, "nothing was cut");
    // Its header damaged too (the seq): the walk stops there, the segment is scanned whole, and
    // the damage, covered, is logged and skipped.
    bytes[rec.offset + 8] ^= 0x01;
    writeFileSync(path, bytes);
    for (const recovery of ["strict", "truncate"] as const) {
      const lines: string[] = [];
      const again = await Collection.open(dir, { logger: (m) => lines.push(m), recovery });
      assert.equal(again.index.count, 70, `${recovery}: every write present`);
      assert.ok(
        lines.some((l) => l.includes(`byte offset ${rec.offset}`) && l.includes("skipped")),
        lines.join("\n"),
      );
      await again.close();
    }
    assert.deepEqual(readFileSync(path), bytes, "nothing was cut");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: a missing newest WAL segment refuses to open, naming it", async () => {
  const root = tempDir();
  const dir = join(root, "c");
  try {
    const rng = new Rng(6);
    const config = { name: "c", dimension: 4, metric: "l2" as const, m: 8, ef_construction: 32 };
    const options = { ...quiet, segment_bytes_max: 1024 };
    const c = await Collection.create(dir, config, options);
    for (let i = 0; i < 60; i++) await c.put(i, rng.vector(4));
    await c.close();
    const names = walSegments(dir);
    assert.ok(names.length >= 3);
    const newest = join(dir, "wal", names.at(-1)!);
    rmSync(newest);
    await assert.rejects(
      () => Collection.open(dir, options),
      (e: unknown) =>
        e instanceof Error && e.message.includes(newest) && e.message.includes("is missing"),
    );
    // A directory from before CONTROL existed opens as it always did (and gets one).
    rmSync(join(dir, "wal", "CONTROL"));
    const old = await Collection.open(dir, options);
    assert.ok(old.index.count < 60);
    await old.close();
    assert.ok(readdirSync(join(dir, "wal")).includes("CONTROL"));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: at equal versions a delete beats a put, in any order, live, copied and replayed", async () => {
  const root = tempDir();
  try {
    const dir = join(root, "c");
    const c = await Collection.create(dir, { name: "c", ...small }, quiet);
    await c.put(1, [1, 1], 500);
    assert.equal((await c.delete(1, 500)).applied, true, "the delete beats the put");
    await c.put(1, [2, 2], 500);
    assert.equal(c.getEntry(1).deleted, true, "the put does not undo the delete");
    await c.delete(2, 600);
    await c.put(2, [2, 2], 600);
    assert.equal(c.getEntry(2).deleted, true);
    await c.put(3, [3, 3], 700);
    const r = await c.copy([
      { id: 3, version: 700, deleted: true },
      { id: 1, version: 500, deleted: false, vector: [5, 5] },
    ]);
    assert.deepEqual([r.applied, r.skipped], [1, 1]);
    assert.equal(c.getEntry(3).deleted, true, "a copied tombstone beats the put");
    assert.equal(c.count(), 0);
    await c.close({ snapshot: false });
    const d = await Collection.open(dir, quiet);
    try {
      for (const id of [1, 2, 3]) assert.equal(d.getEntry(id).deleted, true, `id ${id} replayed`);
      assert.equal(d.count(), 0);
    } finally {
      await d.close({ snapshot: false });
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: expiredTombstones walks the table only when a tombstone can be due", async () => {
  const root = tempDir();
  try {
    const dir = join(root, "c");
    const c = await Collection.create(dir, { name: "c", ...small }, quiet);
    await c.putBatch(Array.from({ length: 2000 }, (_, i) => ({ id: i, vector: [i, 1] })), 100);
    await c.delete(5, 1000);
    await c.delete(6, 3000);
    // Count the walks of the version table (a white-box spy on the table's iteration).
    const versions =
      (c as unknown as { table: { versions: { forEach: (...a: unknown[]) => void } } })
        .table.versions;
    const walk = versions.forEach.bind(versions);
    let walks = 0;
    versions.forEach = (...a: unknown[]) => {
      walks++;
      walk(...(a as Parameters<typeof walk>));
    };
    assert.deepEqual(c.expiredTombstones(1000, 10).ids, [], "none below 1000");
    assert.equal(walks, 0, "the bound (1000) says none is due: no walk");
    assert.deepEqual(c.expiredTombstones(2000, 10), { ids: [5], versions: [1000] });
    assert.equal(walks, 1);
    assert.deepEqual(c.expiredTombstones(2000, 10).ids, [5], "not yet forgotten: still due");
    assert.equal(walks, 2);
    await c.forget([5], [1000]);
    assert.deepEqual(c.expiredTombstones(2000, 10).ids, []);
    assert.equal(walks, 3, "one walk makes the bound exact again (3000)");
    assert.deepEqual(c.expiredTombstones(2500, 10).ids, []);
    assert.equal(walks, 3, "no walk while the cutoff is at or below 3000");
    await c.delete(7, 200); // an older delete (a copied tombstone, say) lowers the bound
    assert.deepEqual(c.expiredTombstones(2500, 10), { ids: [7], versions: [200] });
    assert.equal(walks, 4);
    await c.close({ snapshot: true });
    const d = await Collection.open(dir, quiet);
    try {
      assert.deepEqual(
        d.expiredTombstones(2500, 10),
        { ids: [7], versions: [200] },
        "the bound is rebuilt at load",
      );
      assert.deepEqual(d.expiredTombstones(4000, 10).ids.length, 2);
    } finally {
      await d.close({ snapshot: false });
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: reopened from its snapshot alone it answers the same (searches, ids, payloads, versions, digest)", async () => {
  const dir = tempDir();
  try {
    const rng = new Rng(9);
    const dim = 12;
    let c = await Collection.create(dir, {
      name: "c",
      dimension: dim,
      metric: "cosine",
      m: 8,
      ef_construction: 48,
    }, quiet);
    const enc = new TextEncoder();
    await c.putBatch(
      Array.from({ length: 600 }, (_, i) => ({
        id: i,
        vector: rng.vector(dim),
        payload: i % 3 === 0 ? enc.encode(`{"n":${i}}`) : null,
      })),
      1_000,
    );
    await c.put("doc-a", rng.vector(dim), 2_000, enc.encode(`{"s":"a"}`));
    await c.put(2n ** 60n, rng.vector(dim), 2_001);
    await c.put(5, rng.vector(dim), 2_002); // replaced: a new version and no payload
    await c.delete(7, 2_003); // a tombstone
    await c.delete("never-put", 2_004);
    const queries = Array.from({ length: 25 }, () => rng.vector(dim));
    const state = (x: Collection) => {
      const ids = x.knownIds();
      const entries = [];
      for (let i = 0; i < ids.length; i++) {
        const id = ids.at(i);
        const e = x.getEntry(id);
        entries.push({
          id: String(id),
          version: e.version,
          deleted: e.deleted,
          vector: e.vector === null ? null : Array.from(e.vector),
          payload: x.getPayload(id) === null ? null : Array.from(x.getPayload(id)!),
        });
      }
      return {
        entries,
        searches: queries.map((q) => x.search(q, 10)),
        digest: x.digestRoot(),
        buckets: Array.from(x.digestBuckets()),
        count: x.index.count,
        entryCount: x.entryCount,
      };
    };
    const before = state(c);
    await c.close({ snapshot: true });

    const lines: string[] = [];
    c = await Collection.open(dir, { logger: (m) => lines.push(m) });
    assert.ok(lines.some((l) => /snapshot at seq \d+, replayed 0 WAL records/.test(l)), `${lines}`);
    assert.deepEqual(state(c), before);
    // Writes while the digest is not rebuilt yet (it is rebuilt when first read) leave it equal
    // to one computed from the entries.
    await c.close();
    c = await Collection.open(dir, quiet);
    await c.put(8, rng.vector(dim), 3_000);
    await c.delete(9, 3_001);
    await c.forget([7], [2_003]);
    await c.copy([{ id: "doc-b", version: 3_002, deleted: false, vector: rng.vector(dim) }]);
    const after = c.digestRoot();
    await c.close({ snapshot: true });
    c = await Collection.open(dir, quiet);
    assert.deepEqual(c.digestRoot(), after);
    assert.equal(c.digestRoot().count, c.entryCount);
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("collection: a snapshot whose damage the consumer trips on is skipped as damaged, never allocated from", async () => {
  const dir = tempDir();
  try {
    const rng = new Rng(4);
    let c = await Collection.create(dir, {
      name: "c",
      dimension: 4,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    }, quiet);
    for (let i = 0; i < 80; i++) await c.put(i, rng.vector(4));
    const q = rng.vector(4);
    const want = c.search(q, 10);
    await c.close({ snapshot: true });
    const [name] = readdirSync(join(dir, "snapshots"));
    const path = join(dir, "snapshots", name);
    const good = readFileSync(path);
    // The index's slot count (offset 37 of the index image: after magic, version, dim, M,
    // metric, efConstruction, ef, compactRatio, rng; the image follows the bulk section, a u32
    // length and its bytes) made huge: refused before anything is allocated.
    const bad = new Uint8Array(good);
    const image = SNAPSHOT_HEADER_BYTES + 4 + good.readUInt32LE(SNAPSHOT_HEADER_BYTES);
    assert.equal(new DataView(bad.buffer).getUint32(image + 37, true), 80);
    new DataView(bad.buffer).setUint32(image + 37, 0x7fff_0000, true);
    writeFileSync(path, bad);
    const lines: string[] = [];
    c = await Collection.open(dir, { logger: (m) => lines.push(m) });
    assert.ok(
      lines.some((l) => l.includes(`Skipping snapshot ${path}: checksum mismatch`)),
      lines.join("\n"),
    );
    assert.equal(c.index.count, 80, "the WAL holds every write");
    assert.deepEqual(c.search(q, 10), want);
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("collection: a damaged snapshot that fails its checksum leaves the clock as the valid state sets it", async () => {
  const dir = tempDir();
  try {
    const rng = new Rng(9);
    const now_ms = () => 1_000_000;
    let c = await Collection.create(dir, {
      name: "c",
      dimension: 4,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    }, { ...quiet, now_ms });
    for (let i = 0; i < 20; i++) await c.put(i, rng.vector(4));
    await c.snapshot();
    // A version no other field holds, so its bytes in the newest snapshot are found below.
    const marked = 1_000_000 * 1024 + 777;
    await c.put(500, rng.vector(4), marked);
    await c.snapshot();
    await c.close();
    const snaps = readdirSync(join(dir, "snapshots")).sort();
    assert.equal(snaps.length, 2);
    const newest = join(dir, "snapshots", snaps[1]);
    const bytes = new Uint8Array(readFileSync(newest));
    const view = new DataView(bytes.buffer);
    let at = -1;
    for (let i = SNAPSHOT_HEADER_BYTES; i + 8 <= bytes.length - SNAPSHOT_TRAILER_BYTES; i++) {
      if (view.getUint32(i, true) === marked % 2 ** 32 && view.getUint32(i + 4, true) === 0) {
        at = i;
      }
    }
    assert.ok(at >= 0, "the version is in the snapshot");
    // Still a valid version (below 2^53), so the file parses; only the checksum fails.
    view.setUint32(at + 4, 0x1f_0000, true);
    writeFileSync(newest, bytes);
    const lines: string[] = [];
    c = await Collection.open(dir, { logger: (m) => lines.push(m), now_ms });
    assert.ok(lines.some((l) => l.includes(`${snaps[1]}: checksum mismatch`)), lines.join("\n"));
    assert.equal(c.getEntry(500).version, marked, "the WAL holds the write");
    assert.equal(c.clock.last, marked, "the clock observed nothing from the damaged file");
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("collection: a search of a closed collection does not attach its index to the worker pool again", async () => {
  await withPooledCollection({ dimension: 4, build: 1 }, async ({ c, pool, attached }) => {
    const rng = new Rng(11);
    for (let i = 0; i < 40; i++) await c.put(i, rng.vector(4));
    const q = rng.vector(4);
    const want = c.search(q, 5);
    // The first search starts the workers and, none having loaded yet, runs on this thread (a
    // restart's first search does not wait for a thread's start-up).
    assert.equal(pool.ready, false);
    assert.deepEqual((await c.searchAsync(q, 5)).hits.map((h) => h.id), want.map((h) => h.id));
    assert.equal(attached(), 0, "answered by the owner");
    // Searches go to the workers once one has loaded.
    await pool.whenReady();
    assert.equal(pool.ready, true);
    assert.deepEqual((await c.searchAsync(q, 5)).hits.map((h) => h.id), want.map((h) => h.id));
    assert.equal(attached(), 1, "answered by a worker");
    await c.close();
    assert.equal(attached(), 0, "close detaches the index");
    // A search that reaches a unit being swapped out (installUnit, dropUnit) after its close.
    assert.deepEqual((await c.searchAsync(q, 5)).hits.map((h) => h.id), want.map((h) => h.id));
    assert.equal(attached(), 0, "nothing detaches it again: it would stay attached for good");
  });
});

Deno.test("collection: a batch applied after its collection closed does not attach the index to the worker pool again", async () => {
  await withPooledCollection({ dimension: 8, build: 2 }, async ({ c, attached }) => {
    const rng = new Rng(12);
    await c.putBatch(Array.from({ length: 100 }, (_, i) => ({ id: i, vector: rng.vector(8) })));
    assert.equal(attached(), 1, "the batch was linked on the workers");
    // The batch's WAL append is under way when the close begins: the close waits for its apply
    // (linked on the workers), then detaches.
    const late = c.putBatch(
      Array.from({ length: 200 }, (_, i) => ({ id: 100 + i, vector: rng.vector(8) })),
    );
    await c.close();
    assert.equal((await late).applied, 200);
    assert.equal(c.index.count, 300);
    assert.equal(attached(), 0, "nothing detaches it again: it would stay attached for good");
  });
});

Deno.test("collection: a close while a delete's compaction waits for worker searches ends (both run)", async () => {
  await withPooledCollection({ dimension: 16, build: 1 }, async ({ c, pool }) => {
    const rng = new Rng(3);
    await c.putBatch(Array.from({ length: 2000 }, (_, i) => ({ id: i, vector: rng.vector(16) })));
    await pool.whenReady(); // the workers are up: the searches below run on them
    // 200 tombstones of 2,000 slots: the next delete passes the ratio (0.1) and compacts.
    for (let i = 0; i < 200; i++) await c.delete(i);
    const searches = Array.from({ length: 16 }, () => c.searchAsync(rng.vector(16), 5, 800));
    const deleted = c.delete(1999);
    await new Promise((r) => setTimeout(r, 0));
    const closed = c.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise((r) => timer = setTimeout(r, 10_000, "timed out"));
    const all = Promise.all([closed, deleted, ...searches]).then(() => "done");
    const outcome = await Promise.race([all, late]);
    clearTimeout(timer);
    assert.equal(outcome, "done", "the close, the delete and the searches all end");
    assert.equal(c.index.count, 1799);
  });
});

Deno.test("collection: close waits for the writes whose log append was under way (applied, then the index detached)", async () => {
  await withPooledCollection(
    { dimension: 8, build: 2 },
    async ({ c, threads, root, dir, attached }) => {
      const rng = new Rng(13);
      await c.putBatch(Array.from({ length: 100 }, (_, i) => ({ id: i, vector: rng.vector(8) })));
      // Logged but not applied when the close begins: a batch (linked on build workers), a put,
      // a delete.
      const late = [
        c.putBatch(
          Array.from({ length: 200 }, (_, i) => ({ id: 100 + i, vector: rng.vector(8) })),
        ),
        c.put(300, rng.vector(8)),
        c.delete(5),
      ];
      await c.close();
      // Everything the log holds is in the index once close resolves: a unit moved after its
      // close (installUnit) is reopened at the last applied record.
      assert.equal(c.index.count, 300);
      assert.equal(c.stats().last_seq, 5, "creation, two batches, a put, a delete");
      assert.equal(attached(), 0, "detached after the last apply");
      await Promise.all(late);
      assert.equal(attached(), 0);
      const moved = join(root, "moved");
      Deno.renameSync(dir, moved);
      const again = await Collection.reopenMoved(c, moved, { ...quiet, threads });
      assert.equal(again.index.count, 300);
      await again.putBatch(
        Array.from({ length: 50 }, (_, i) => ({ id: 400 + i, vector: rng.vector(8) })),
      );
      assert.equal(again.index.count, 350);
      assert.equal(attached(), 1, "the reopened unit links on the workers again");
      await again.close();
      assert.equal(attached(), 0);
    },
  );
});

Deno.test("collection: a point deleted while a worker search ran is left out and the answer still has k hits", async () => {
  await withPooledCollection({ dimension: 8, build: 1 }, async ({ c, pool }) => {
    const rng = new Rng(14);
    await c.putBatch(Array.from({ length: 300 }, (_, i) => ({ id: i, vector: rng.vector(8) })));
    await c.searchAsync(rng.vector(8), 5); // starts the workers
    await pool.whenReady(); // until then searches run on this thread
    for (let round = 0; round < 5; round++) {
      const q = rng.vector(8);
      const nearest = c.search(q, 1)[0].id as number;
      const p = c.searchAsync(q, 10);
      // The worker answers while this thread is held; its answer is read after the delete.
      const until = performance.now() + 200;
      while (performance.now() < until) { /* hold this thread */ }
      c.index.delete(nearest);
      const r = await p;
      const ids = r.hits.map((h) => h.id);
      assert.ok(!ids.includes(nearest), "the deleted point is left out");
      assert.equal(r.hits.length, 10, `round ${round}: ${r.hits.length} hits of 10`);
      assert.ok(ids.every((id) => c.index.has(id as number)), "only live points");
    }
    await c.close();
  });
});

/** `bytes` (a whole snapshot file) with its trailer's CRC made to match its contents again. */
function withFixedCrc(bytes: Uint8Array): Uint8Array {
  const end = bytes.length - SNAPSHOT_TRAILER_BYTES;
  const crc = crc32(bytes.subarray(0, SNAPSHOT_HEADER_BYTES), crc32(bytes.subarray(32, end)));
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(end, crc, true);
  return bytes;
}

Deno.test("collection: snapshot version 6 stores the id map and version table whole; version 5 still loads; an inconsistent stored table is refused", async () => {
  const dir = tempDir();
  try {
    const rng = new Rng(21);
    const dim = 8;
    let c = await Collection.create(dir, {
      name: "c",
      dimension: dim,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    }, quiet);
    await c.putBatch(Array.from({ length: 400 }, (_, i) => ({ id: i, vector: rng.vector(dim) })));
    await c.put("doc-a", rng.vector(dim));
    for (let i = 0; i < 40; i++) await c.delete(i * 7); // tombstones, slots freed or deleted
    await c.put(3, rng.vector(dim)); // an upsert
    const queries = Array.from({ length: 10 }, () => rng.vector(dim));
    const state = (x: Collection) => {
      const ids = x.knownIds();
      const entries = [];
      for (let i = 0; i < ids.length; i++) {
        const e = x.getEntry(ids.at(i));
        entries.push([String(ids.at(i)), e.version, e.deleted, e.vector && Array.from(e.vector)]);
      }
      return {
        entries,
        searches: queries.map((q) => x.search(q, 10)),
        digest: x.digestRoot(),
        count: x.index.count,
        tombstones: x.stats().tombstones,
      };
    };
    const before = state(c);
    await c.close({ snapshot: true });
    const [name] = readdirSync(join(dir, "snapshots")).filter((n) => n.endsWith(".snap"));
    const path = join(dir, "snapshots", name);
    const v6 = new Uint8Array(readFileSync(path));
    const view = new DataView(v6.buffer);
    assert.equal(view.getUint32(4, true), 6);

    // Loaded whole: the same state, and the open says it took the bulk section.
    const lines: string[] = [];
    c = await Collection.open(dir, { logger: (m) => lines.push(m) });
    assert.deepEqual(state(c), before);
    assert.ok(lines.some((l) => /replayed 0 WAL records/.test(l)), lines.join("\n"));
    // Still writable: ids, versions and the map work on after a load.
    const put = await c.put(1_000, rng.vector(dim));
    await c.delete(1);
    assert.equal(c.getEntry(1_000).version, put.version);
    assert.ok(put.version > Math.max(...before.entries.map((e) => Number(e[1]))));
    assert.equal(c.getEntry(1).deleted, true);
    assert.equal(c.index.count, before.count);
    await c.close();
    writeFileSync(path, v6);
    // Pretend the WAL after the snapshot never happened: the snapshot alone is the state.
    rmSync(join(dir, "wal"), { recursive: true, force: true });

    // The same file as version 5 wrote it (no bulk section): the same state.
    rewriteSnapshotAsVersion(path, 5, 0);
    assert.equal(readFileSync(path).length, v6.length - 4 - view.getUint32(32, true));
    c = await Collection.open(dir, quiet);
    assert.deepEqual(state(c), before);
    await c.close();

    // Checksum-valid files whose stored tables disagree with the rest are refused, naming what.
    // Layout of the bulk section (payload offset 0): u32 length, id map capacity, size, used,
    // keys (u32 count, then words), slots (u32 count, then words), then the version table.
    const cap = view.getUint32(32 + 4, true);
    assert.equal(view.getUint32(32 + 16, true), cap);
    const slotsAt = 32 + 20 + 4 * cap + 4;
    const live: number[] = [];
    for (let b = 0; b < cap && live.length < 2; b++) {
      if (view.getInt32(slotsAt + 4 * b, true) >= 0) live.push(b);
    }
    const swapped = v6.slice();
    const sv = new DataView(swapped.buffer);
    sv.setInt32(slotsAt + 4 * live[0], view.getInt32(slotsAt + 4 * live[1], true), true);
    sv.setInt32(slotsAt + 4 * live[1], view.getInt32(slotsAt + 4 * live[0], true), true);
    writeFileSync(path, withFixedCrc(swapped));
    await assert.rejects(() => Collection.open(dir, quiet), /Id map bucket \d+ maps id/);
    // A version table bucket state that is none of empty, full, removed: the section ends with
    // the states (u32 count, one byte per bucket).
    const bulkEnd = 32 + 4 + view.getUint32(32, true);
    const badState = v6.slice();
    badState[bulkEnd - 1] = 7;
    writeFileSync(path, withFixedCrc(badState));
    await assert.rejects(() => Collection.open(dir, quiet), /version table bucket \d+ has state 7/);
    // An id map whose count of used buckets leaves out its removed ones (with none empty, a
    // lookup of an absent id would never end).
    const idSize = view.getUint32(32 + 8, true);
    assert.ok(view.getUint32(32 + 12, true) > idSize, "the id map has removed buckets");
    const badUsed = v6.slice();
    new DataView(badUsed.buffer).setUint32(32 + 12, idSize, true);
    writeFileSync(path, withFixedCrc(badUsed));
    await assert.rejects(() => Collection.open(dir, quiet), /Id map holds .* removed/);
    // A version table whose live entry names an id the index does not hold (and so leaves one
    // of the index's points without a version): the version table follows the id map's slots,
    // as u32 capacity, size, used, keys (u32 count, words), versions (u32 count, f64 as two
    // words each), states (u32 count, one byte per bucket).
    const vtAt = slotsAt + 4 * cap;
    const vcap = view.getUint32(vtAt, true);
    const keysAt = vtAt + 16;
    const valsAt = keysAt + 4 * vcap + 4;
    const statesAt = valsAt + 8 * vcap + 4;
    let liveBucket = -1;
    for (let b = 0; b < vcap && liveBucket < 0; b++) {
      if (v6[statesAt + b] === 1 && view.getFloat64(valsAt + 8 * b, true) > 0) liveBucket = b;
    }
    const phantom = v6.slice();
    new DataView(phantom.buffer).setUint32(keysAt + 4 * liveBucket, 0x7fff_fff0, true);
    writeFileSync(path, withFixedCrc(phantom));
    await assert.rejects(
      () => Collection.open(dir, quiet),
      /version table bucket \d+: point 2147483632 is not found there/,
    );
    // A live entry and a tombstone that trade places (the counts still match): the tombstone's
    // point is taken for live though the index lacks it.
    let tombBucket = -1;
    for (let b = 0; b < vcap && tombBucket < 0; b++) {
      if (v6[statesAt + b] === 1 && view.getFloat64(valsAt + 8 * b, true) < 0) tombBucket = b;
    }
    const traded = v6.slice();
    const tv = new DataView(traded.buffer);
    for (const b of [liveBucket, tombBucket]) {
      tv.setFloat64(valsAt + 8 * b, -view.getFloat64(valsAt + 8 * b, true), true);
    }
    writeFileSync(path, withFixedCrc(traded));
    await assert.rejects(
      () => Collection.open(dir, quiet),
      /version table bucket \d+ holds point \d+ as (live, but the index lacks|a tombstone, but the index holds) it/,
    );
    // A section length past the payload, with capacities it would allow (2^28 buckets: 2 GiB
    // for the id map): refused by its length, before anything is allocated.
    const huge = v6.slice();
    const hv = new DataView(huge.buffer);
    hv.setUint32(32, 0xffff_fff0, true);
    hv.setUint32(32 + 4, 2 ** 28, true);
    writeFileSync(path, withFixedCrc(huge));
    await assert.rejects(
      () => Collection.open(dir, quiet),
      /Snapshot bulk section: its length 4294967280 passes the \d+ bytes left/,
    );
    // The same damage without the checksum fixed: skipped as damaged (nothing else to load).
    badState[bulkEnd - 1] = 9;
    writeFileSync(path, badState);
    const skipped: string[] = [];
    await assert.rejects(() => Collection.open(dir, { logger: (m) => skipped.push(m) }));
    assert.ok(skipped.some((l) => l.includes("checksum mismatch")), skipped.join("\n"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("collection: a version-6 snapshot of few live points and many tombstones (a small id map, a large version table) loads", async () => {
  const dir = tempDir();
  try {
    const rng = new Rng(22);
    let c = await Collection.create(dir, {
      name: "c",
      dimension: 4,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    }, quiet);
    await c.putBatch(Array.from({ length: 1000 }, (_, i) => ({ id: i, vector: rng.vector(4) })));
    await c.deleteBatch(Array.from({ length: 990 }, (_, i) => i + 10));
    await c.forget([10, 11], [c.getEntry(10).version, c.getEntry(11).version]); // removed buckets
    const q = rng.vector(4);
    const want = { hits: c.search(q, 5), entries: c.entryCount, root: c.digestRoot() };
    await c.close({ snapshot: true });
    rmSync(join(dir, "wal"), { recursive: true, force: true }); // the snapshot alone
    c = await Collection.open(dir, quiet);
    assert.deepEqual({ hits: c.search(q, 5), entries: c.entryCount, root: c.digestRoot() }, want);
    assert.equal(c.entryCount, 998);
    assert.equal(c.stats().tombstones, 988);
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
