import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection } from "./collection.ts";
import { parseFilter } from "../common/filter.ts";
import { parsePayload } from "../common/payload.ts";
import type { PointId } from "../common/point_id.ts";
import { rewriteSnapshotAsVersion } from "../testing/legacy_snapshot.ts";

const quiet = { logger: () => {} };
const config = { name: "ids", dimension: 2, metric: "l2" as const, m: 8, ef_construction: 32 };
const BIG = 2n ** 64n - 1n;
const ABOVE_53 = 2n ** 53n + 1n;

async function withCollection(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "coll-ids-"));
  try {
    await fn(join(dir, "c"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a test compares across reopenings: every id with its entry and payload. */
function state(c: Collection): unknown[] {
  return [...c.knownIds()].map((id) => {
    const e = c.getEntry(id);
    const p = c.getPayload(id);
    return [
      id,
      e.version,
      e.deleted,
      e.vector && Array.from(e.vector),
      p && new TextDecoder().decode(p),
    ];
  });
}

async function fill(c: Collection): Promise<void> {
  await c.put("doc-b", [1, 1], 0, parsePayload('{"k":"b"}', "payload"));
  await c.put(7, [7, 7]);
  await c.put(BIG, [9, 9]);
  await c.putBatch([
    { id: "doc-a", vector: [2, 2] },
    { id: ABOVE_53, vector: [3, 3], payload: parsePayload('{"k":"big"}', "payload") },
    { id: 3, vector: [3, 0] },
    { id: "é", vector: [4, 4] },
  ]);
  await c.delete("é");
  await c.copy([{ id: "copied", version: 5, deleted: false, vector: [5, 5] }]);
  await c.deleteBatch(["doc-b", 2 ** 40]);
}

Deno.test("string and 64-bit ids: put, get, delete, search, filters, listing order", async () => {
  await withCollection(async (dir) => {
    const c = await Collection.create(dir, config, quiet);
    await fill(c);
    assert.deepEqual([...c.knownIds()], [
      3,
      7,
      2 ** 40,
      ABOVE_53,
      BIG,
      "copied",
      "doc-a",
      "doc-b",
      "é",
    ]);
    assert.equal(c.count(), 6);
    assert.deepEqual(Array.from(c.get("doc-a")!), [2, 2]);
    assert.equal(c.get("doc-b"), null);
    assert.ok(c.getEntry("doc-b").deleted);
    assert.equal(c.get("nope"), null);
    assert.equal(c.get(5), null);
    assert.equal(new TextDecoder().decode(c.getPayload(ABOVE_53)!), '{"k":"big"}');
    assert.deepEqual(c.search([5, 5], 1).map((h) => h.id), ["copied"]);
    assert.deepEqual(c.search([9, 9], 1).map((h) => h.id), [BIG]);
    // has_id with strings, integers and ids that are not there.
    const f = parseFilter({ must: [{ has_id: ["doc-a", 7, "missing", 2 ** 40, 5] }] });
    assert.equal(c.count(f), 2);
    assert.deepEqual(c.search([0, 0], 10, undefined, f).map((h) => h.id).sort(), [7, "doc-a"]);
    assert.deepEqual(c.matchingIds(f), [7, "doc-a"]);
    const m = c.matcher(f);
    assert.ok(m("doc-a") && m(7) && !m("doc-b") && !m(3));
    // A cursor after any id.
    const list = c.sortedIds();
    assert.equal(list.at(list.upperBound(7)), 2 ** 40);
    assert.equal(list.at(list.upperBound(BIG)), "copied");
    assert.equal(list.at(list.upperBound("d")), "doc-a");
    assert.equal(list.upperBound("\uffff"), list.length);
    // "7" and 7 are different points.
    await c.put("7", [0, 1]);
    assert.deepEqual(Array.from(c.get(7)!), [7, 7]);
    assert.deepEqual(Array.from(c.get("7")!), [0, 1]);
    // Forget drops the mapping entirely.
    const before = c.keyTableSize;
    await c.forget(["7"], [Number.MAX_SAFE_INTEGER]);
    assert.equal(c.keyTableSize, before - 1);
    assert.equal(c.getEntry("7").version, 0);
    // Bad ids are refused and nothing is written.
    const seq = c.lastSeq;
    await assert.rejects(() => c.put("x".repeat(129), [1, 1]), /over 128 bytes/);
    await assert.rejects(() => c.put("\ud800", [1, 1]), /lone surrogate/);
    await assert.rejects(() => c.put(2n ** 64n, [1, 1]), RangeError);
    assert.equal(c.lastSeq, seq);
    await c.close();
  });
});

Deno.test("string ids survive WAL replay and a version-5 snapshot, with the same pids", async () => {
  await withCollection(async (dir) => {
    let c = await Collection.create(dir, config, quiet);
    await fill(c);
    const expected = state(c);
    await c.close();
    c = await Collection.open(dir, quiet); // WAL replay
    assert.deepEqual(state(c), expected);
    await c.snapshot();
    await c.put("ü", [6, 6]); // in the WAL after the snapshot
    await c.close();
    c = await Collection.open(dir, quiet); // snapshot + WAL
    assert.deepEqual(state(c), [...expected, [
      "ü",
      c.getEntry("ü").version,
      false,
      [6, 6],
      null,
    ]]);
    assert.deepEqual(c.search([6, 6], 1).map((h) => h.id), ["ü"]);
    await c.close();
  });
});

Deno.test("a uint32 id whose pid a string took still works, and old version-4 snapshots load", async () => {
  await withCollection(async (dir) => {
    let c = await Collection.create(dir, config, quiet);
    await c.put("s", [1, 1]); // takes the top allocated pid, 0xFFFF_FFFE
    await c.put(0xffff_fffe, [2, 2]); // displaced
    assert.deepEqual(Array.from(c.get(0xffff_fffe)!), [2, 2]);
    assert.deepEqual(Array.from(c.get("s")!), [1, 1]);
    assert.deepEqual([...c.knownIds()], [0xffff_fffe, "s"]);
    await c.close({ snapshot: true });
    c = await Collection.open(dir, quiet);
    assert.deepEqual(Array.from(c.get(0xffff_fffe)!), [2, 2]);
    assert.deepEqual(Array.from(c.get("s")!), [1, 1]);
    await c.close();
  });
  await withCollection(async (dir) => {
    let c = await Collection.create(dir, config, quiet);
    await c.put(1, [1, 1]);
    await c.put(2, [2, 2]);
    await c.close({ snapshot: true });
    const snaps = join(dir, "snapshots");
    const name = readdirSync(snaps).find((n) => n.endsWith(".snap"))!;
    rewriteSnapshotAsVersion(join(snaps, name), 4, 8); // an empty key table
    c = await Collection.open(dir, quiet);
    assert.deepEqual([...c.knownIds()], [1, 2] as PointId[]);
    await c.put("new", [3, 3]);
    await c.close();
    c = await Collection.open(dir, quiet);
    assert.deepEqual([...c.knownIds()], [1, 2, "new"]);
    await c.close();
  });
});

Deno.test("string and 64-bit ids: exactSearch answers ids and resolves has_id", async () => {
  await withCollection(async (dir) => {
    const c = await Collection.create(dir, config, quiet);
    await fill(c);
    // Live: 3 [3,0], 7 [7,7], ABOVE_53 [3,3], BIG [9,9], "doc-a" [2,2], "copied" [5,5].
    assert.deepEqual(c.exactSearch([2, 2], 3).map((h) => h.id), ["doc-a", ABOVE_53, 3]);
    const f = parseFilter(JSON.stringify({ must: [{ has_id: ["copied", 7, "absent"] }] }));
    assert.deepEqual(c.exactSearch([2, 2], 3, f).map((h) => h.id), ["copied", 7]);
    // The graph search agrees on these (tiny collection: exact either way).
    assert.deepEqual(c.search([2, 2], 3, 64, f).map((h) => h.id), ["copied", 7]);
    await c.close();
  });
});
