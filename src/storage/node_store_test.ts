import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Collection, type CollectionConfig, CollectionStateError } from "./collection.ts";
import { DirLockedError, NodeStore } from "./node_store.ts";
import { Wal } from "../io/wal.ts";
import { LOCK_FILE } from "../io/dir_lock.ts";

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "vdb-store-"));
}

function config(name: string): CollectionConfig {
  return { name, dimension: 2, metric: "l2", m: 4, ef_construction: 16 };
}

/** A data directory holding the collection "keep" with points 0..9, closed. */
async function withKeep(dir: string): Promise<void> {
  const store = await NodeStore.open(dir, { logger: () => {} });
  const c = await store.create(config("keep"));
  for (let i = 0; i < 10; i++) await c.put(i, [i, 1]);
  await store.close({ snapshot: false });
}

/** Opens `dir`, checks "keep" is whole and "half" absent, and that "half" can be created. */
async function assertRepaired(dir: string, lines: string[]): Promise<void> {
  const store = await NodeStore.open(dir, { logger: (m) => lines.push(m) });
  try {
    assert.deepEqual(store.list().map((c) => c.name), ["keep"], lines.join("\n"));
    assert.equal(store.get("keep").count(), 10);
    assert.deepEqual(Array.from(store.get("keep").get(7)!), [7, 1]);
    assert.ok(!existsSync(join(dir, "creating")), "temporaries are removed");
    assert.ok(!existsSync(join(dir, "collections", "half")), "the half-made one is removed");
    const half = await store.create(config("half"));
    await half.put(1, [1, 1]);
  } finally {
    await store.close({ snapshot: false });
  }
  const again = await NodeStore.open(dir, { logger: () => {} });
  assert.deepEqual(again.list().map((c) => c.name).sort(), ["half", "keep"]);
  assert.equal(again.get("half").count(), 1);
  await again.close({ snapshot: false });
}

/** A complete collection directory for "half", built aside (as a creation does). */
async function completeCollection(root: string): Promise<string> {
  const aside = join(root, "aside-half");
  const c = await Collection.create(aside, config("half"), { logger: () => {} });
  await c.close();
  return aside;
}

Deno.test("node store: a new collection leaves no temporary and survives a restart", async () => {
  const dir = tempDir();
  try {
    await withKeep(dir);
    assert.deepEqual(readdirSync(join(dir, "creating")), []);
    assert.deepEqual(readdirSync(join(dir, "collections")), ["keep"]);
    const store = await NodeStore.open(dir, { logger: () => {} });
    assert.equal(store.get("keep").count(), 10);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Each crash point of a creation, as the directory state it leaves behind.
const CRASH_POINTS: { name: string; make: (dir: string) => Promise<void> }[] = [
  {
    name: "a temporary with the whole collection, not yet renamed",
    make: async (dir) => {
      renameSync(await completeCollection(dir), join(dir, "creating", "half"));
    },
  },
  {
    name: "a temporary with only its snapshots directory",
    make: (dir) => {
      mkdirSync(join(dir, "creating", "half", "snapshots"), { recursive: true });
      return Promise.resolve();
    },
  },
  {
    name: "an empty collection directory (an earlier version's creation)",
    make: (dir) => {
      mkdirSync(join(dir, "collections", "half"));
      return Promise.resolve();
    },
  },
  {
    name: "a collection directory without a WAL",
    make: (dir) => {
      mkdirSync(join(dir, "collections", "half", "snapshots"), { recursive: true });
      return Promise.resolve();
    },
  },
  {
    name: "a collection directory whose WAL holds no record",
    make: async (dir) => {
      mkdirSync(join(dir, "collections", "half", "snapshots"), { recursive: true });
      const wal = await Wal.open(join(dir, "collections", "half", "wal"), { logger: () => {} });
      await wal.close();
    },
  },
  {
    name: "a collection directory whose creation record is torn",
    make: async (dir) => {
      const aside = await completeCollection(dir);
      const segments = readdirSync(join(aside, "wal")).filter((n) => n.startsWith("wal-"));
      assert.equal(segments.length, 1);
      const seg = join(aside, "wal", segments[0]);
      truncateSync(seg, statSync(seg).size - 3);
      renameSync(aside, join(dir, "collections", "half"));
    },
  },
];

for (const point of CRASH_POINTS) {
  Deno.test(`node store: start-up repairs a half-made collection: ${point.name}`, async () => {
    const dir = tempDir();
    try {
      await withKeep(dir);
      await point.make(dir);
      const lines: string[] = [];
      await assertRepaired(dir, lines);
      assert.ok(
        lines.some((l) => /half/.test(l) && /interrupted/.test(l)),
        `the repair is logged:\n${lines.join("\n")}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

Deno.test("node store: entries of collections/ that are not collections are ignored", async () => {
  const dir = tempDir();
  try {
    await withKeep(dir);
    writeFileSync(join(dir, "collections", "notes.txt"), "hello");
    writeFileSync(join(dir, "collections", "afile"), "not a directory");
    const lines: string[] = [];
    const store = await NodeStore.open(dir, { logger: (m) => lines.push(m) });
    assert.deepEqual(store.list().map((c) => c.name), ["keep"]);
    assert.equal(lines.filter((l) => l.startsWith("Ignored")).length, 2, lines.join("\n"));
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("node store: a bad snapshot without a log is kept (start refused)", async () => {
  const dir = tempDir();
  try {
    await withKeep(dir);
    const snaps = join(dir, "collections", "half", "snapshots");
    mkdirSync(snaps, { recursive: true });
    writeFileSync(join(snaps, `snapshot-${"5".padStart(20, "0")}.snap`), "garbage");
    await assert.rejects(
      () => NodeStore.open(dir, { logger: () => {} }),
      (e: unknown) => e instanceof CollectionStateError && /no valid snapshot/.test(e.message),
    );
    assert.ok(existsSync(snaps), "data that may matter is kept for the operator");
    assert.ok(!existsSync(join(dir, LOCK_FILE)), "a failed open releases the lock");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("node store: the data directory is locked while open", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, { logger: () => {} });
    await assert.rejects(
      () => NodeStore.open(dir, { logger: () => {} }),
      (e: unknown) =>
        e instanceof DirLockedError && e.holder.pid === process.pid &&
        e.message.includes(`locked by process ${process.pid}`),
    );
    await store.close();
    assert.ok(!existsSync(join(dir, LOCK_FILE)), "close releases the lock");
    const again = await NodeStore.open(dir, { logger: () => {} });
    await again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
