/**
 * The router's filtered reads and many-id RPCs, pure parts: the merge decides by the newest
 * entry's filter verdict, GetBatch answers merge newest-wins, DeleteBatch groups by owner and
 * hints as tombstones, and the request checks.
 */
import assert from "node:assert/strict";
import { Placement } from "../cluster/placement.ts";
import { filterJson, validateFilter, ValidationError } from "../api/validate.ts";
import { EntryMerge, type EntryPage, type MergedEntry } from "./points_read.ts";
import {
  deleteBatchOfRecord,
  deleteBatchRecord,
  mergeGetBatch,
  splitIds,
  toRecordIds,
} from "./points_batch.ts";
import { compareIds, type PointId } from "../common/point_id.ts";
import { deletedCount } from "./replication.ts";
import { mergeFieldIndexes } from "./scatter.ts";
import {
  validateCreateFieldIndexRequest,
  validateDeleteBatchRequest,
  validateDeleteByFilterRequest,
  validateDropFieldIndexRequest,
  validateGetBatchRequest,
} from "../api/points_read.ts";

/** Four shards of RF 2 of collection "c"; `owners(id, rf)` as the hash ring's was called. */
const L = { shard_number: 4, replication_factor: 2 };
function placed(members: string[]) {
  const p = new Placement(members);
  return { p, owners: (id: PointId, _rf: number) => p.owners("c", L, id) };
}

/** A page of `[id, version, deleted, matched, payload]` entries. */
function page(entries: [number, number, boolean, boolean, string][], done = true): EntryPage {
  return {
    ids: entries.map((e) => e[0]),
    versions: entries.map((e) => e[1]),
    deleted: entries.map((e) => e[2]),
    matched: entries.map((e) => e[3]),
    payloads: entries.filter((e) => !e[2]).map((e) => e[4]),
    vectors: [],
    dimension: 0,
    done,
  };
}

function drain(m: EntryMerge): MergedEntry[] {
  const out: MergedEntry[] = [];
  m.step((e) => {
    out.push({ ...e });
    return true;
  });
  return out;
}

Deno.test("EntryMerge: the newest entry's verdict decides; a stale matching replica never counts", () => {
  const m = new EntryMerge(["a", "b"], null);
  m.feed(
    "a",
    page([
      [1, 5, false, true, '{"c":"red"}'], // stale: matches
      [2, 5, false, true, '{"c":"red"}'], // stale: matches; b has a newer tombstone
      [3, 9, false, true, '{"c":"red"}'], // newest, matches
      [4, 2, false, false, '{"c":"blue"}'],
    ]),
  );
  m.feed(
    "b",
    page([
      [1, 7, false, false, '{"c":"blue"}'], // newer, does not match
      [2, 8, true, false, ""],
      [3, 4, false, false, '{"c":"blue"}'],
      [4, 6, false, true, '{"c":"red"}'], // newer, matches
    ]),
  );
  const out = drain(m);
  assert.deepEqual(
    out.map((e) => [e.id, e.version, e.deleted, e.matched, e.payload]),
    [
      [1, 7, false, false, '{"c":"blue"}'],
      [2, 8, true, false, ""],
      [3, 9, false, true, '{"c":"red"}'],
      [4, 6, false, true, '{"c":"red"}'],
    ],
  );
  assert.equal(out.filter((e) => !e.deleted && e.matched).length, 2);
});

Deno.test("EntryMerge: pages without matched flags match every live entry, never a tombstone", () => {
  const m = new EntryMerge(["a"], null);
  m.feed("a", {
    ids: [1, 2],
    versions: [1, 2],
    deleted: [false, true],
    vectors: [],
    dimension: 0,
    done: true,
  });
  assert.deepEqual(drain(m).map((e) => e.matched), [true, false]);
});

Deno.test("EntryMerge: refuses misaligned matched flags and payloads", () => {
  const m = new EntryMerge(["a"], null);
  const p = page([[1, 1, false, true, ""], [2, 1, true, false, ""]]);
  assert.throws(() => m.feed("a", { ...p, matched: [true] }), /1 matched flags for 2 ids/);
  assert.throws(() => m.feed("a", { ...p, payloads: ["", ""] }), /2 payloads for 1 live/);
});

Deno.test("mergeGetBatch: the newest version per id wins; stale owners are listed", () => {
  const rec = (id: number, version: number, found: boolean, payload = "") => ({
    id,
    found,
    vector: found ? [id] : [],
    payload,
    version: String(version),
    deleted: !found && version > 0,
  });
  const merged = mergeGetBatch([
    { node: "a", points: [rec(1, 3, true, '{"v":3}'), rec(2, 9, false)] },
    { node: "b", points: [rec(1, 5, true, '{"v":5}'), rec(2, 4, true)] },
  ], () => ["a", "b"]);
  assert.equal(merged.get(1)!.record.payload, '{"v":5}');
  assert.deepEqual(merged.get(1)!.stale, ["a"]);
  assert.equal(merged.get(2)!.record.found, false);
  assert.equal(merged.get(2)!.version, 9);
  assert.deepEqual(merged.get(2)!.stale, ["b"]);
});

Deno.test("splitIds: every id goes to each of its owners, in request order", () => {
  const ring = placed(["n1:1", "n2:1", "n3:1"]);
  const ids = Array.from({ length: 200 }, (_, i) => i * 7);
  const split = splitIds(ring.p, "c", L, ids);
  for (const id of ids) {
    const owners = ring.owners(id, 2);
    for (const o of owners) assert.ok(split.per_owner.get(o)!.includes(id), `${id} on ${o}`);
    assert.ok(split.owner_sets.some((s) => s.join() === owners.join()));
  }
  let total = 0;
  for (const list of split.per_owner.values()) {
    total += list.length;
    for (let i = 1; i < list.length; i++) {
      assert.ok(ids.indexOf(list[i - 1] as number) < ids.indexOf(list[i] as number));
    }
  }
  assert.equal(total, ids.length * 2);
});

/** Count-only answers (older nodes). */
function counts(entries: [string, number][]): Map<string, { deleted: number }> {
  return new Map(entries.map(([o, n]) => [o, { deleted: n }]));
}

Deno.test("deletedCount: replicas of one id count it once", () => {
  const per_owner = new Map([["a", [1, 2]], ["b", [1, 2, 3]], ["c", [3]]]);
  // b holds all three ids: its count alone; a and c overlap b.
  assert.equal(deletedCount(per_owner, counts([["a", 2], ["b", 3], ["c", 1]])), 3);
  // Without b, a and c are disjoint: summed.
  assert.equal(deletedCount(per_owner, counts([["a", 2], ["c", 1]])), 3);
});

Deno.test("deletedCount: per-id bytes count exactly where owner lists overlap in a ring", () => {
  // RF 2 over 3 nodes: every pair of owners shares an id, so counts alone cannot be summed
  // (the greedy fallback gives 2: the flaky CI failure of 2026-12-01).
  const per_owner = new Map<string, PointId[]>([
    ["a", ["doc-1", 5]],
    ["b", ["doc-1", 9, "nope"]],
    ["c", [5, 9]],
  ]);
  assert.equal(deletedCount(per_owner, counts([["a", 2], ["b", 2], ["c", 2]])), 2);
  // Wire order is integer ids first: a's bytes are [5, "doc-1"], b's [9, "doc-1", "nope"].
  const exact = new Map([
    ["a", { deleted: 2, removed: Uint8Array.from([1, 1]) }],
    ["b", { deleted: 2, removed: Uint8Array.from([1, 1, 0]) }],
    ["c", { deleted: 2, removed: Uint8Array.from([1, 1]) }],
  ]);
  assert.equal(deletedCount(per_owner, exact), 3);
  // A replica that missed the write (c never had 9) still lets the other count it once.
  exact.set("c", { deleted: 1, removed: Uint8Array.from([1, 0]) });
  assert.equal(deletedCount(per_owner, exact), 3);
  // Only b removed "doc-1"'s live copy, and a saw nothing: the bytes say which ids.
  exact.set("a", { deleted: 1, removed: Uint8Array.from([1, 0]) });
  exact.set("b", { deleted: 1, removed: Uint8Array.from([0, 1, 0]) });
  exact.set("c", { deleted: 0, removed: Uint8Array.from([0, 0]) });
  assert.equal(deletedCount(per_owner, exact), 2);
});

Deno.test("DeleteBatch hints: tombstones at one version, read back; other copies are not", () => {
  const r = deleteBatchRecord("c", [4, 9], 77);
  assert.deepEqual(deleteBatchOfRecord(r), { collection: "c", ids: [4, 9], version: 77 });
  assert.equal(
    deleteBatchOfRecord({ ...r, deleted: Uint8Array.from([1, 0]) } as typeof r),
    null,
  );
  assert.equal(deleteBatchOfRecord({ kind: "delete", id: 1, version: 1 }), null);
});

Deno.test("mergeFieldIndexes: union by field, sorted", () => {
  assert.deepEqual(
    mergeFieldIndexes([{ field: "z", type: "keyword" }], [
      { field: "a", type: "integer" },
      { field: "z", type: "float" },
    ]),
    [{ field: "a", type: "integer" }, { field: "z", type: "keyword" }],
  );
});

Deno.test("request checks: filter paths, field indexes, id lists, DeleteByFilter needs a condition", () => {
  // The text the router passes on: "" without a condition, else the text as sent.
  const passed = (raw: unknown, field?: string) => filterJson(raw, validateFilter(raw, field));
  assert.equal(passed(""), "");
  const f = '{"must":[{"key":"a","match":{"value":1}}]}';
  assert.equal(passed(f), f);
  assert.throws(
    () => passed('{"must":[{"key":"a","range":{"gt":"x"}}]}'),
    (e: unknown) => e instanceof ValidationError && e.field.startsWith("filter.must[0].range"),
  );
  assert.throws(() => passed("{oops"), /filter: not valid JSON/);
  assert.throws(
    () => passed("{}", "searches[2].filter") === "" && passed(7),
    /must be a string/,
  );
  assert.deepEqual(validateCreateFieldIndexRequest({ field: "m.lang", type: "keyword" }), {
    collection: "default",
    field: "m.lang",
    type: "keyword",
  });
  assert.throws(() => validateCreateFieldIndexRequest({ field: "x", type: "text" }), /"text"/);
  assert.throws(() => validateDropFieldIndexRequest({ field: "" }), /field ""/);
  assert.throws(
    () => validateGetBatchRequest({ ids: [] }),
    /ids and string_ids have 0 entries together/,
  );
  assert.throws(
    () => validateGetBatchRequest({ ids: Array(1001).fill(1) }),
    /1001 entries together; they must have 1 to 1000/,
  );
  assert.throws(() => validateDeleteBatchRequest({ ids: [1, -2] }), /ids\[1\]/);
  assert.throws(() => validateDeleteByFilterRequest({ filter: "" }), /at least one condition/);
  assert.throws(() => validateDeleteByFilterRequest({ filter: "{}" }), /at least one condition/);
  assert.equal(validateDeleteByFilterRequest({ filter: f }).filter_json, f);
});

Deno.test("string and 64-bit ids: split by owners, merged by canonical id, hinted as PointIds", () => {
  const ring = placed(["n1:1", "n2:1", "n3:1"]);
  const big = 2n ** 64n - 1n;
  const ids = [5, big, "doc-7", "5", 2 ** 40];
  const split = splitIds(ring.p, "c", L, ids);
  for (const id of ids) {
    for (const o of ring.owners(id, 2)) {
      assert.ok(split.per_owner.get(o)!.includes(id), `${String(id)} on ${o}`);
    }
  }
  // Nodes answer with wire pairs: a uint64 as a decimal string, a string id in string_id.
  const rec = (id: string | number, string_id: string, version: number) => ({
    id,
    string_id,
    found: true,
    vector: [version],
    version: String(version),
    deleted: false,
  });
  const merged = mergeGetBatch([
    { node: "a", points: [rec(big.toString(), "", 3), rec(0, "5", 1), rec("5", "", 2)] },
    { node: "b", points: [rec(big.toString(), "", 4), rec("0", "5", 6)] },
  ], () => ["a", "b"]);
  assert.deepEqual([...merged.keys()].sort(compareIds), [5, big, "5"]);
  assert.equal(merged.get(big)!.version, 4);
  assert.deepEqual(merged.get(big)!.stale, ["a"]);
  assert.equal(merged.get("5")!.version, 6, 'the string "5" is not the integer 5');
  assert.equal(merged.get(5)!.version, 2);
  // A DeleteBatch hint keeps string and big ids (a Uint32Array only when all are uint32).
  const r = deleteBatchRecord("c", ["doc-7", big, 3], 9);
  assert.ok(r.kind === "copy" && Array.isArray(r.ids));
  assert.deepEqual(deleteBatchOfRecord(r), { collection: "c", ids: ["doc-7", big, 3], version: 9 });
  assert.ok(toRecordIds([1, 2, 0xffff_ffff]) instanceof Uint32Array);
  assert.deepEqual(toRecordIds([1, 2 ** 32]), [1, 2 ** 32]);
  assert.equal(
    deletedCount(new Map([["a", ["x", 1]], ["b", ["x"]]]), counts([["a", 2], ["b", 1]])),
    2,
  );
});
