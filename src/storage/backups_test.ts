import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BackupBusyError,
  BackupCorruptError,
  BackupExistsError,
  BackupNameError,
  BackupNotFoundError,
  Backups,
} from "./backups.ts";
import type { Collection } from "./collection.ts";
import type { ShardedCollection } from "./sharded_collection.ts";
import { CollectionExistsError, CollectionNotFoundError, NodeStore } from "./node_store.ts";

const DIM = 4;

function vec(i: number, salt = 0): number[] {
  return [i, i * 0.5 + salt, Math.sin(i + salt), Math.cos(i)];
}

/** Every id 0..maxId: its vector (null when absent) and version. */
function state(
  c: Collection | ShardedCollection,
  maxId: number,
): Array<[number[] | null, number, boolean]> {
  const out: Array<[number[] | null, number, boolean]> = [];
  for (let id = 0; id <= maxId; id++) {
    const e = c.getEntry(id);
    out.push([e.vector === null ? null : Array.from(e.vector), e.version, e.deleted]);
  }
  return out;
}

Deno.test("backup, later writes and deletes, restore: the restored collection is the backup", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vdb-backup-"));
  try {
    let store = await NodeStore.open(dir, { logger: () => {} });
    const c = await store.create({
      name: "src",
      dimension: DIM,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    });
    await c.putBatch(Array.from({ length: 300 }, (_, i) => ({ id: i, vector: vec(i) })), 0);
    for (let i = 0; i < 20; i++) await c.delete(i * 7, 0);
    const atBackup = state(c, 400);
    const countAtBackup = c.count();
    const backups = new Backups(store);
    const made = await backups.create("src", "b1");
    assert.equal(made.manifest.points, countAtBackup);
    assert.equal(made.manifest.tombstones, 20);
    assert.equal(made.manifest.collection.dimension, DIM);
    assert.match(made.manifest.sha256, /^[0-9a-f]{64}$/);
    assert.ok(made.bytes > made.manifest.snapshot_bytes);

    // Later writes: new ids, overwrites, deletes.
    await c.putBatch(Array.from({ length: 100 }, (_, i) => ({ id: 300 + i, vector: vec(i) })), 0);
    for (let i = 0; i < 50; i++) await c.put(i * 3, vec(i, 9));
    for (let i = 100; i < 150; i++) await c.delete(i, 0);
    assert.notDeepEqual(state(c, 400), atBackup);

    const r = await backups.restore("b1", "dst");
    assert.equal(r.collection.name, "dst");
    assert.equal(r.collection.count(), countAtBackup);
    assert.deepEqual(state(r.collection, 400), atBackup);
    const q = vec(42, 0.1);
    assert.deepEqual(r.collection.search(q, 10, 64).map((h) => h.id).length, 10);

    // The restored collection takes writes, and everything survives a restart.
    await r.collection.put(1000, vec(1000));
    const expected = state(r.collection, 1000);
    await store.close({ snapshot: false });
    store = await NodeStore.open(dir, { logger: () => {} });
    assert.deepEqual(state(store.get("dst"), 1000), expected);
    const again = new Backups(store);
    assert.deepEqual(again.list().map((b) => [b.manifest.name, b.manifest.points]), [[
      "b1",
      countAtBackup,
    ]]);

    // Errors.
    await assert.rejects(() => again.create("src", "b1"), BackupExistsError);
    await assert.rejects(() => again.create("nope", "b2"), CollectionNotFoundError);
    await assert.rejects(() => again.create("src", "a/b"), BackupNameError);
    await assert.rejects(() => again.create("src", ""), /name "" must be 1 to 64/);
    await assert.rejects(() => again.restore("b1", "src"), CollectionExistsError);
    await assert.rejects(() => again.restore("b1", "dst"), CollectionExistsError);
    await assert.rejects(() => again.restore("missing", "x"), BackupNotFoundError);
    await assert.rejects(() => again.restore("b1", "bad name"), /collection "bad name"/);
    await assert.rejects(() => again.restore("..", "x"), /backup "\.\." must be/);

    // A damaged snapshot is refused before anything is created.
    const b1 = join(dir, "backups", "b1");
    const snap = readdirSync(b1).find((f) => f.endsWith(".snap"))!;
    const copy = join(dir, "backups", "b3");
    mkdirSync(copy);
    for (const f of readdirSync(b1)) {
      const bytes = Deno.readFileSync(join(b1, f));
      if (f === snap) bytes[100] ^= 0xff;
      writeFileSync(join(copy, f), bytes);
    }
    await assert.rejects(() => again.restore("b3", "x"), BackupCorruptError);
    assert.equal(existsSync(join(dir, "collections", "x")), false);
    assert.throws(() => store.get("x"), CollectionNotFoundError);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("an interrupted backup leaves no backup; start-up removes its temporary", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vdb-backup-"));
  try {
    mkdirSync(join(dir, "backups", ".partial-b-0123"), { recursive: true });
    writeFileSync(join(dir, "backups", ".partial-b-0123", "snapshot.snap"), "x");
    const lines: string[] = [];
    const store = await NodeStore.open(dir, { logger: (m) => lines.push(m) });
    assert.deepEqual(readdirSync(join(dir, "backups")), []);
    assert.ok(lines.some((l) => /backup was interrupted/.test(l)));
    assert.deepEqual(new Backups(store).list(), []);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("delete: the backup is gone at once, others stay; missing, busy and bad names refused", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vdb-backup-"));
  try {
    const store = await NodeStore.open(dir, { logger: () => {} });
    const c = await store.create({
      name: "src",
      dimension: DIM,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    });
    await c.putBatch(Array.from({ length: 50 }, (_, i) => ({ id: i, vector: vec(i) })), 0);
    const backups = new Backups(store);
    await backups.create("src", "b1");
    await backups.create("src", "b2");
    const deleted = await backups.delete("b1");
    assert.equal(deleted.manifest?.points, 50);
    assert.deepEqual(backups.list().map((b) => b.manifest.name), ["b2"]);
    assert.deepEqual(readdirSync(join(dir, "backups")), ["b2"]);
    await assert.rejects(() => backups.delete("b1"), BackupNotFoundError);
    await assert.rejects(() => backups.restore("b1", "x"), BackupNotFoundError);
    await assert.rejects(() => backups.delete("../b2"), BackupNameError);
    await assert.rejects(() => backups.delete(".partial-x"), /name "\.partial-x" must be/);
    // The name is free again.
    await backups.create("src", "b1");

    // A backup being restored is not deleted under it; one being deleted is not restored.
    const restoring = backups.restore("b2", "r2");
    await assert.rejects(() => backups.delete("b2"), BackupBusyError);
    await restoring;
    const deleting = backups.delete("b2");
    await assert.rejects(() => backups.restore("b2", "r3"), BackupBusyError);
    await deleting;
    assert.deepEqual(backups.list().map((b) => b.manifest.name), ["b1"]);

    // A damaged backup (no manifest) can be deleted too.
    mkdirSync(join(dir, "backups", "junk"));
    assert.deepEqual(await backups.delete("junk"), { manifest: null });
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("an interrupted delete leaves no backup of that name; start-up removes the tombstone", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vdb-backup-"));
  try {
    mkdirSync(join(dir, "backups", ".deleting-b1-0123"), { recursive: true });
    writeFileSync(join(dir, "backups", ".deleting-b1-0123", "manifest.json"), "{}");
    const store = await NodeStore.open(dir, { logger: () => {} });
    assert.deepEqual(readdirSync(join(dir, "backups")), []);
    const backups = new Backups(store);
    assert.deepEqual(backups.list(), []);
    await assert.rejects(() => backups.delete("b1"), BackupNotFoundError);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("a version 2 manifest with shard_number or replication_factor out of bounds is refused, naming field and value", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vdb-backup-"));
  try {
    const store = await NodeStore.open(dir, { logger: () => {} });
    try {
      await store.create({
        name: "src",
        dimension: DIM,
        metric: "l2",
        m: 8,
        ef_construction: 32,
        shard_number: 2,
      });
      const backups = new Backups(store);
      const made = await backups.create("src", "b1");
      assert.equal(made.manifest.version, 2);
      const file = join(dir, "backups", "b1", "manifest.json");
      const good = JSON.parse(Deno.readTextFileSync(file));
      const corrupt = (patch: Record<string, unknown>, message: RegExp) => {
        writeFileSync(file, JSON.stringify({ ...good, ...patch }));
        assert.throws(
          () => backups.manifest("b1"),
          (e: Error) => e instanceof BackupCorruptError && message.test(e.message),
        );
      };
      corrupt(
        { replication_factor: 1e9 },
        /replication_factor 1000000000 must be an integer from 0 to 64/,
      );
      corrupt({ replication_factor: 65 }, /replication_factor 65 must be/);
      corrupt({ replication_factor: "x".repeat(500) }, /replication_factor "x{39}\.\.\. must/);
      corrupt({ shard_number: 257 }, /shard_number 257 must be an integer from 1 to 256/);
      corrupt({ shard_number: 0 }, /shard_number 0 must be/);
      writeFileSync(file, JSON.stringify({ ...good, replication_factor: 64 }));
      assert.equal(backups.manifest("b1").replication_factor, 64, "the bound itself is valid");
    } finally {
      await store.close({ snapshot: false });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("a backup's manifest lists the payload indexes (a cluster restore makes them where it has no copy); a bad list is refused", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vdb-backup-"));
  try {
    const store = await NodeStore.open(dir, { logger: () => {} });
    try {
      for (const [name, shard_number] of [["one", 1], ["two", 2]] as const) {
        const c = await store.create({
          name,
          dimension: DIM,
          metric: "l2",
          m: 8,
          ef_construction: 32,
          shard_number,
        });
        await c.createFieldIndex("lang", "keyword");
        await c.createFieldIndex("n", "integer");
      }
      await store.create({ name: "bare", dimension: DIM, metric: "l2", m: 8, ef_construction: 32 });
      const backups = new Backups(store);
      for (const name of ["one", "two"]) {
        const made = await backups.create(name, `b-${name}`);
        const want = [{ field: "lang", type: "keyword" }, { field: "n", type: "integer" }];
        assert.deepEqual(made.manifest.collection.field_indexes, want, name);
        assert.deepEqual(backups.manifest(`b-${name}`).collection.field_indexes, want, name);
        const r = await backups.restore(`b-${name}`, `r-${name}`);
        assert.deepEqual(r.collection.fieldIndexes().map((f) => [f.field, f.type]), [
          ["lang", "keyword"],
          ["n", "integer"],
        ]);
      }
      // None: the manifest is as before (no key).
      const bare = await backups.create("bare", "b-bare");
      assert.equal("field_indexes" in bare.manifest.collection, false);
      const file = join(dir, "backups", "b-one", "manifest.json");
      const good = JSON.parse(Deno.readTextFileSync(file));
      for (const bad of [{}, [{ field: "x", type: "text" }], [{ field: 1, type: "keyword" }]]) {
        writeFileSync(
          file,
          JSON.stringify({ ...good, collection: { ...good.collection, field_indexes: bad } }),
        );
        assert.throws(
          () => backups.manifest("b-one"),
          (e: Error) =>
            e instanceof BackupCorruptError &&
            /collection\.field_indexes .* must be/.test(e.message),
        );
      }
    } finally {
      await store.close({ snapshot: false });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
