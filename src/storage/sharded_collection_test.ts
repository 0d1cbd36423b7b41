import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shardOf } from "../common/shard.ts";
import { parseFilter } from "../common/filter.ts";
import type { PointId } from "../common/point_id.ts";
import { NodeStore } from "./node_store.ts";
import { Collection } from "./collection.ts";
import {
  decodeLayout,
  encodeLayout,
  LAYOUT_FILE,
  LayoutFormatError,
  type ShardedCollection,
  type ShardedConfig,
  ShardListError,
  unitDir,
} from "./sharded_collection.ts";
import { Backups } from "./backups.ts";
import { stagedUnitDir } from "./unit_swap.ts";
import { snapshotName } from "./snapshot.ts";
import { copyFileSync, mkdirSync } from "node:fs";

const quiet = { logger: () => {} };

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "vdb-sharded-"));
}

function config(name: string, shard_number: number, replication_factor = 0): ShardedConfig {
  return {
    name,
    dimension: 3,
    metric: "l2",
    m: 8,
    ef_construction: 64,
    shard_number,
    replication_factor,
  };
}

/** Deterministic vector of point i. */
function vec(i: number): number[] {
  return [Math.sin(i), Math.cos(i * 0.7), (i % 17) / 17];
}

/** Ids of both kinds: uint32 integers, integers above 2^32 and strings. */
function ids(n: number): PointId[] {
  const out: PointId[] = [];
  for (let i = 0; i < n; i++) {
    out.push(i % 5 === 0 ? `doc-${i}` : i % 7 === 0 ? 2 ** 40 + i : i * 3);
  }
  return out;
}

/** Loads the same data (puts, payloads, deletes) into `c`. */
async function load(c: ShardedCollection, list: PointId[]): Promise<void> {
  const cut = Math.floor(list.length * 0.75);
  await c.putBatch(
    list.slice(0, cut).map((id, i) => ({
      id,
      vector: vec(i),
      payload: new TextEncoder().encode(JSON.stringify({ even: i % 2 === 0 })),
    })),
  );
  for (let i = cut; i < list.length; i++) await c.put(list[i], vec(i));
  await c.deleteBatch([list[3], list[10], list[cut + 1]]);
  await c.delete(list[20]);
}

Deno.test("sharded collection: writes land in their shard's unit directory; reads equal one shard's", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, quiet);
    const one = await store.create(config("one", 1));
    const three = await store.create(config("three", 3, 2));
    const list = ids(200);
    await load(one, list);
    await load(three, list);
    assert.equal(three.shard_number, 3);
    assert.equal(three.replication_factor, 2);
    assert.ok(existsSync(join(dir, "collections", "three", LAYOUT_FILE)));
    assert.ok(!existsSync(join(dir, "collections", "one", LAYOUT_FILE)), "1 shard: old layout");
    assert.ok(existsSync(join(dir, "collections", "one", "wal")));
    for (let k = 0; k < 3; k++) {
      assert.ok(existsSync(join(dir, "collections", "three", "shards", String(k), "wal")));
    }
    // Every id is held by exactly its shard's unit.
    for (const id of list) {
      const k = shardOf(id, 3);
      for (let u = 0; u < 3; u++) {
        const e = three.units[u].getEntry(id);
        assert.equal(e.vector !== null || e.deleted, u === k, `id ${id} in unit ${u}`);
      }
    }
    assert.ok(three.units.every((u) => u.count() > 0), "every shard got points");
    // Reads across units equal the 1-shard collection's.
    assert.equal(three.count(), one.count());
    const even = parseFilter('{"must":[{"key":"even","match":{"value":true}}]}');
    assert.equal(three.count(even), one.count(even));
    assert.deepEqual(three.matchingIds(even), one.matchingIds(even));
    assert.deepEqual(three.exactSearch([0, 1, 0], 7, even), one.exactSearch([0, 1, 0], 7, even));
    assert.deepEqual([...three.sortedIds()], [...one.sortedIds()]);
    assert.deepEqual([...three.knownIds()], [...one.knownIds()]);
    assert.deepEqual(three.matchingIds(null), one.matchingIds(null));
    for (const id of list) {
      // Versions are stamped by each collection's clock: the state is what must agree.
      const [a, b] = [three.getEntry(id), one.getEntry(id)];
      assert.deepEqual([a.vector, a.deleted, a.version > 0], [b.vector, b.deleted, b.version > 0]);
      assert.deepEqual(three.getPayload(id), one.getPayload(id));
    }
    const q = [0.2, 0.5, 0.1];
    const exact1 = one.exactSearch(q, 10);
    assert.deepEqual(three.exactSearch(q, 10), exact1);
    assert.equal(three.lastShardSearches, 3);
    assert.deepEqual(
      three.search(q, 10, 200).map((h) => h.id),
      exact1.map((h) => h.id),
      "small graphs with a large ef find the exact neighbours",
    );
    const s = three.stats();
    assert.equal(s.count, one.stats().count);
    assert.equal(s.tombstones, one.stats().tombstones);
    assert.equal(s.shards.length, 3);
    assert.equal(s.shards.reduce((n, x) => n + x.count, 0), s.count);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: `shards` restricts a search to those units", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, quiet);
    const c = await store.create(config("c", 4));
    const list = ids(120);
    await load(c, list);
    const q = [0.1, 0.9, 0.3];
    const hits = c.exactSearch(q, 500, null, [1, 3]);
    assert.equal(c.lastShardSearches, 2);
    assert.ok(hits.length > 0);
    for (const h of hits) assert.ok([1, 3].includes(shardOf(h.id, 4)), `hit ${h.id}`);
    assert.equal(hits.length, c.units[1].count() + c.units[3].count());
    assert.throws(() => c.search(q, 5, undefined, null, [4]), ShardListError);
    assert.throws(() => c.search(q, 5, undefined, null, [0, 0]), /shards\[1\] 0 is listed twice/);
    assert.throws(() => c.search(q, 5, undefined, null, [-1]), /shards\[0\] -1 is not a shard/);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: reopen after close and after an abandon keeps every acknowledged write", async () => {
  const dir = tempDir();
  try {
    let store = await NodeStore.open(dir, quiet);
    let c = await store.create(config("c", 3));
    const list = ids(90);
    await load(c, list);
    await c.createFieldIndex("even", "bool");
    const before = { ids: [...c.sortedIds()], count: c.count(), entries: c.entryCount };
    await store.close();
    store = await NodeStore.open(dir, quiet);
    c = store.get("c");
    assert.equal(c.shard_number, 3);
    assert.deepEqual([...c.sortedIds()], before.ids);
    assert.equal(c.count(), before.count);
    assert.deepEqual(c.units.map((u) => u.fieldIndexes().map((i) => i.field)), [
      ["even"],
      ["even"],
      ["even"],
    ]);
    // More writes, then abandon without closing (the WAL is all there is): a crash-like stop.
    await c.putBatch(list.slice(0, 30).map((id, i) => ({ id, vector: vec(i + 1000) })), 0);
    await c.deleteBatch(list.slice(30, 40));
    const after = { ids: [...c.sortedIds()], count: c.count() };
    const entries = list.map((id) => c.getEntry(id));
    // Release the lock as a dead process would (its units are never closed or snapshotted).
    // deno-lint-ignore no-explicit-any
    (store as any).lock.release();
    store = await NodeStore.open(dir, quiet);
    c = store.get("c");
    assert.deepEqual([...c.sortedIds()], after.ids);
    assert.equal(c.count(), after.count);
    assert.deepEqual(list.map((id) => c.getEntry(id)), entries);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: a damaged layout file is a clear error naming the file", async () => {
  const dir = tempDir();
  try {
    let store = await NodeStore.open(dir, quiet);
    await store.create(config("c", 2));
    await store.close();
    const file = join(dir, "collections", "c", LAYOUT_FILE);
    const bytes = readFileSync(file);
    bytes[bytes.length - 6] ^= 0xff;
    writeFileSync(file, bytes);
    await assert.rejects(
      NodeStore.open(dir, quiet),
      (e: Error) => e instanceof LayoutFormatError && e.message.includes(file),
    );
    writeFileSync(file, new Uint8Array([1, 2, 3]));
    await assert.rejects(NodeStore.open(dir, quiet), new RegExp(`${file}.*3 bytes`));
    // A good layout file again: it opens.
    writeFileSync(file, encodeLayout(config("c", 2)));
    store = await NodeStore.open(dir, quiet);
    assert.equal(store.get("c").shard_number, 2);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: layout file round trip, and refusals of bad values", () => {
  const c: ShardedConfig = { ...config("x", 7, 3), quantization: "int8", rescore: 5 };
  assert.deepEqual(decodeLayout(encodeLayout(c), "f"), c);
  const bad = encodeLayout(config("x", 7));
  bad[0] = 0;
  assert.throws(() => decodeLayout(bad, "the/file"), /the\/file.*magic/);
  assert.equal(unitDir("/d", 1, 0), "/d");
  assert.equal(unitDir("/d", 4, 2), join("/d", "shards", "2"));
});

Deno.test("sharded collection: drop removes every unit; the store counts logical collections", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, quiet);
    await store.create(config("c", 5));
    assert.equal(store.list().length, 1);
    await store.drop("c");
    assert.ok(!existsSync(join(dir, "collections", "c")));
    assert.equal(store.list().length, 0);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: tick snapshots each unit by its own writes", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, { ...quiet, snapshot_every_ops: 5 });
    const c = await store.create(config("c", 3));
    // Writes to one shard only: that unit snapshots, the others do not.
    const mine = ids(300).filter((id) => shardOf(id, 3) === 1).slice(0, 6);
    for (const id of mine) await c.put(id, [1, 2, 3]);
    await store.tick();
    const s = c.stats().shards;
    assert.ok(s[1].last_snapshot_seq > 0);
    assert.equal(s[0].last_snapshot_seq, 0);
    assert.equal(s[2].last_snapshot_seq, 0);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: a backup restores as the same sharded collection", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, quiet);
    const c = await store.create(config("c", 3, 2));
    const list = ids(80);
    await load(c, list);
    const backups = new Backups(store);
    const made = await backups.create("c", "b");
    assert.equal(made.manifest.version, 2);
    assert.equal(made.manifest.shards?.length, 3);
    assert.equal(made.manifest.points, c.count());
    const r = await backups.restore("b", "r");
    assert.equal(r.collection.shard_number, 3);
    assert.equal(r.collection.replication_factor, 2);
    assert.deepEqual([...r.collection.sortedIds()], [...c.sortedIds()]);
    for (const id of list) assert.deepEqual(r.collection.getEntry(id), c.getEntry(id));
    await store.close();
    // And it reopens as that.
    const again = await NodeStore.open(dir, quiet);
    assert.equal(again.get("r").shard_number, 3);
    assert.equal(again.get("r").count(), again.get("c").count());
    await again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Every file under `dir` with its bytes (relative path → content), for a byte-for-byte check. */
function files(dir: string, under = ""): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of Deno.readDirSync(join(dir, under))) {
    const rel = join(under, e.name);
    if (e.isDirectory) { for (const [k, v] of files(dir, rel)) out.set(k, v); }
    else out.set(rel, readFileSync(join(dir, rel)).toString("base64"));
  }
  return out;
}

Deno.test("sharded collection: a data directory of the pre-shard layout opens unchanged as 1 shard", async () => {
  const dir = tempDir();
  try {
    // What earlier versions wrote: collections/<name>/ with wal/ and snapshots/, no layout file.
    const old = join(dir, "collections", "legacy");
    const made = await Collection.create(old, config("legacy", 1), quiet);
    for (let i = 0; i < 20; i++) await made.put(i, vec(i));
    await made.snapshot();
    for (let i = 20; i < 30; i++) await made.put(`s-${i}`, vec(i));
    await made.close();
    const before = files(old);
    const store = await NodeStore.open(dir, quiet);
    const c = store.get("legacy");
    assert.equal(c.shard_number, 1);
    assert.equal(c.replication_factor, 0);
    assert.equal(c.count(), 30);
    assert.deepEqual(c.getEntry("s-25").vector, Float32Array.from(vec(25)));
    await store.close({ snapshot: false });
    assert.ok(!existsSync(join(old, LAYOUT_FILE)));
    assert.deepEqual(files(old), before, "opening changed no file");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: a unit holding no record is made again; the others keep their data", async () => {
  const dir = tempDir();
  try {
    let store = await NodeStore.open(dir, quiet);
    const c = await store.create(config("c", 3));
    const list = ids(60);
    await load(c, list);
    const kept = [...c.units[0].sortedIds(), ...c.units[2].sortedIds()];
    await store.close({ snapshot: false });
    // Unit 1 loses its log and snapshots: as if its creation had never become durable.
    const unit = join(dir, "collections", "c", "shards", "1");
    rmSync(join(unit, "wal"), { recursive: true });
    rmSync(join(unit, "snapshots"), { recursive: true });
    const lines: string[] = [];
    store = await NodeStore.open(dir, { logger: (m) => lines.push(m) });
    const again = store.get("c");
    assert.ok(
      lines.some((l) => l.includes(unit) && /made it again, empty/.test(l)),
      lines.join("\n"),
    );
    assert.equal(again.units[1].entryCount, 0);
    assert.deepEqual([...again.units[0].sortedIds(), ...again.units[2].sortedIds()], kept);
    await again.put(list[0], vec(0));
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: dropUnit empties one unit wholesale only while its root is the expected one; survives reopen", async () => {
  const dir = tempDir();
  try {
    let store = await NodeStore.open(dir, quiet);
    let c = await store.create(config("c", 3));
    const list = ids(120);
    await load(c, list);
    await c.createFieldIndex("even", "bool");
    const k = 1;
    const others = [0, 2].map((j) => [...c.units[j].sortedIds()]);
    const expected = c.units[k].digestRoot();
    assert.ok(expected.count > 10);
    // A write after the root was read changes it: refused, nothing dropped, the write kept.
    const late = list.find((id) => shardOf(id, 3) === k)!;
    const w = await c.put(late, [7, 7, 7]);
    const refused = await c.dropUnit(k, expected);
    assert.equal(refused.dropped, 0);
    assert.deepEqual(refused.mismatch, c.units[k].digestRoot());
    assert.equal(c.getEntry(late).version, w.version);
    // With the current root: emptied (points and tombstones), indexes kept, others untouched.
    const now = c.units[k].digestRoot();
    const r = await c.dropUnit(k, now);
    assert.equal(r.mismatch, null);
    assert.equal(r.dropped, now.count);
    assert.equal(c.units[k].entryCount, 0);
    assert.deepEqual(c.units[k].digestRoot(), { lo: 0, hi: 0, count: 0 });
    assert.deepEqual(c.units[k].fieldIndexes().map((i) => i.field), ["even"]);
    assert.deepEqual([0, 2].map((j) => [...c.units[j].sortedIds()]), others);
    // The emptied unit takes writes, and no staged or old directory is left.
    await c.put(late, [1, 2, 3], 0);
    assert.equal(c.units[k].count(), 1);
    const shardsDir = join(dir, "collections", "c", "shards");
    assert.deepEqual(Deno.readDirSync(shardsDir).map((e) => e.name).toArray().sort(), [
      "0",
      "1",
      "2",
    ]);
    await store.close();
    store = await NodeStore.open(dir, quiet);
    c = store.get("c");
    assert.equal(c.units[k].entryCount, 1);
    assert.deepEqual(c.units[k].fieldIndexes().map((i) => i.field), ["even"]);
    assert.deepEqual([0, 2].map((j) => [...c.units[j].sortedIds()]), others);
    // A 1-shard collection is refused (its unit is the collection's directory).
    const one = await store.create(config("one", 1));
    await assert.rejects(one.dropUnit(0, { lo: 0, hi: 0, count: 0 }), /has one shard/);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("sharded collection: a write racing dropUnit is never lost (refused, or it lands in the empty unit)", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, quiet);
    const c = await store.create(config("c", 2));
    const list = ids(200);
    await load(c, list);
    const k = 0;
    const mine = list.filter((id) => shardOf(id, 2) === k);
    for (let round = 0; round < 6; round++) {
      const expected = c.units[k].digestRoot();
      const id = mine[round];
      // Started together: the write either lands before the check (the drop is refused) or
      // waits out the swap and lands in the empty unit.
      const [d, w] = await Promise.all([
        c.dropUnit(k, expected),
        round % 2 === 0 ? c.put(id, vec(round + 500)) : c.delete(id),
      ]);
      const e = c.getEntry(id);
      assert.equal(e.version, w.version, `round ${round}: the racing write is held`);
      assert.equal(e.deleted, round % 2 === 1);
      if (d.mismatch === null) assert.equal(c.units[k].entryCount, 1);
      else assert.ok(c.units[k].entryCount > 1);
    }
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** What {@link withUnitImage} hands its test. */
interface UnitImage {
  /** An empty temporary directory for the store under test (removed after). */
  dir: string;
  /** The source: collection "c" of 3 shards holding `list` (its store closed after). */
  from: ShardedCollection;
  list: PointId[];
  /** The unit whose image was taken. */
  k: number;
  /** Puts the image where `c.installUnit(k, staged)` takes it; returns `staged`. */
  stage: (c: ShardedCollection) => string;
}

/**
 * Runs `fn` with a backup image of unit 2 of a 3-shard collection "c" holding ids(150), taken
 * in a store of its own (the installUnit tests) after `beforeImage`; closes that store and
 * removes both directories after, even when `fn` throws.
 */
async function withUnitImage(
  fn: (t: UnitImage) => Promise<void>,
  beforeImage: (from: ShardedCollection) => Promise<unknown> = () => Promise.resolve(),
): Promise<void> {
  const dir = tempDir();
  const other = tempDir();
  try {
    const src = await NodeStore.open(other, quiet);
    try {
      const from = await src.create(config("c", 3));
      const list = ids(150);
      await load(from, list);
      await beforeImage(from);
      const k = 2;
      const made = await from.units[k].backupTo(join(other, "image"));
      const stage = (c: ShardedCollection) => {
        const staged = stagedUnitDir(unitDir(c.dir, 3, k), "t1");
        mkdirSync(join(staged, "snapshots"), { recursive: true });
        copyFileSync(made.path, join(staged, "snapshots", snapshotName(made.seq)));
        return staged;
      };
      await fn({ dir, from, list, k, stage });
    } finally {
      await src.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(other, { recursive: true, force: true });
  }
}

Deno.test("sharded collection: installUnit loads the image once; the installed unit takes writes that survive a reopen", async () => {
  await withUnitImage(async ({ dir, from, list, k, stage }) => {
    const logs: string[] = [];
    let store = await NodeStore.open(dir, { logger: (m: string) => logs.push(m) });
    let c = await store.create(config("c", 3));
    const staged = stage(c);
    logs.length = 0;
    await c.installUnit(k, staged);
    const loads = logs.filter((m) => /snapshot at seq/.test(m));
    assert.equal(loads.length, 1, `the image was loaded ${loads.length} times: ${loads}`);
    // Named as a unit opened from its directory is.
    assert.equal(c.units[k].name, String(k));
    const mine = list.filter((id) => shardOf(id, 3) === k);
    assert.deepEqual(mine.map((id) => c.getEntry(id)), mine.map((id) => from.getEntry(id)));
    // The unit in place logs to its own directory: a write after the install survives a reopen.
    const w = await c.put(mine[0], [5, 5, 5]);
    await store.close({ snapshot: false });
    store = await NodeStore.open(dir, quiet);
    c = store.get("c");
    assert.equal(c.getEntry(mine[0]).version, w.version);
    assert.deepEqual(
      mine.slice(1).map((id) => c.getEntry(id)),
      mine.slice(1).map((id) => from.getEntry(id)),
    );
    await store.close();
  });
});

Deno.test("sharded collection: installUnit keeps the collection's field indexes (created or dropped after the image was taken)", async () => {
  await withUnitImage(async ({ dir, from, list, k, stage }) => {
    let store = await NodeStore.open(dir, quiet);
    let c = await store.create(config("c", 3));
    await load(c, ids(30));
    // After the image: "even" created on the collection, "gone" never on this node.
    await c.createFieldIndex("even", "bool");
    const staged = stage(c);
    // One more while the install runs (the image loaded; the first merge reads the old unit).
    const old = c.units[k];
    const known = old.knownIds.bind(old);
    let started: Promise<unknown> | null = null;
    old.knownIds = () => {
      started ??= c.createFieldIndex("odd", "bool");
      return known();
    };
    await c.installUnit(k, staged);
    assert.ok(started !== null, "the install read the old unit");
    await started;
    const fields = () => c.units.map((u) => u.fieldIndexes().map((i) => `${i.field}:${i.type}`));
    const want = ["even:bool", "odd:bool"];
    assert.deepEqual(fields(), [want, want, want]);
    const even = parseFilter({ must: [{ key: "even", match: { value: true } }] });
    const mine = list.filter((id) => shardOf(id, 3) === k);
    assert.ok(mine.length > 10);
    assert.equal(c.units[k].count(even), from.units[k].count(even));
    await store.close({ snapshot: false });
    store = await NodeStore.open(dir, quiet);
    c = store.get("c");
    assert.deepEqual(fields(), [want, want, want], "the definitions are durable");
    await store.close();
  }, (from) => from.createFieldIndex("gone", "bool"));
});

Deno.test("sharded collection: a field index created or dropped while dropUnit runs reaches the emptied unit", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, quiet);
    const c = await store.create(config("c", 3));
    await load(c, ids(90));
    await c.createFieldIndex("gone", "bool");
    const k = 1;
    const fields = () => c.units.map((u) => u.fieldIndexes().map((i) => i.field));
    // (a) while the empty unit is made (after it copied the unit's indexes, before writes stop):
    // the unit's index list is read once for the copy, and the calls start right after it.
    let started: Promise<unknown>[] = [];
    const old = c.units[k];
    const list = old.fieldIndexes.bind(old);
    let calls = 0;
    old.fieldIndexes = () => {
      const out = list();
      if (calls++ === 0) {
        started = [c.createFieldIndex("even", "bool"), c.dropFieldIndex("gone")];
      }
      return out;
    };
    let r = await c.dropUnit(k, old.digestRoot());
    assert.equal(r.mismatch, null);
    const [made, dropped] = await Promise.all(started) as [
      { created: boolean },
      { dropped: boolean },
    ];
    assert.equal(made.created, true);
    assert.equal(dropped.dropped, true);
    assert.deepEqual(fields(), [["even"], ["even"], ["even"]]);
    // (b) while writes to the shard are stopped (the root is being compared).
    await load(c, ids(90));
    const unit = c.units[k];
    const root = unit.digestRoot.bind(unit);
    unit.digestRoot = () => {
      started = [c.createFieldIndex("odd", "bool")];
      return root();
    };
    r = await c.dropUnit(k, root());
    assert.equal(r.mismatch, null);
    await Promise.all(started);
    assert.deepEqual(fields(), [["even", "odd"], ["even", "odd"], ["even", "odd"]]);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
