import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import type { EntriesRequest, EntriesResponse } from "../api/transfer.ts";
import { type NodePort, NodeStatusError } from "./node_port.ts";
import type { NodeTable } from "./node_table.ts";
import {
  EntryMerge,
  type EntryPage,
  type MergedEntry,
  readEntries,
  routerCount,
  routerScroll,
  runSearchBatch,
} from "./points_read.ts";
import { makeView } from "./ring_view.ts";
import { compareIds, idFromWire, type PointId } from "../common/point_id.ts";

/** A page of entries `[id, version, deleted]`; vectors `[id]` for live ones when asked. */
function page(
  entries: [PointId, number, boolean][],
  done: boolean,
  with_vector = false,
): EntryPage {
  return {
    ids: entries.map((e) => e[0]),
    versions: entries.map((e) => e[1]),
    deleted: entries.map((e) => e[2]),
    vectors: with_vector ? entries.filter((e) => !e[2]).map((e) => Number(e[0]) || 0) : [],
    dimension: 1,
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

Deno.test("EntryMerge: the newest version decides; a stale live copy does not revive a delete", () => {
  const m = new EntryMerge(["a", "b"], null);
  // a missed the delete of 2 (version 9) and holds the old put (5); b holds the tombstone.
  // 3 is on both replicas at the same version: listed once.
  m.feed("a", page([[1, 4, false], [2, 5, false], [3, 6, false]], true, true));
  m.feed("b", page([[2, 9, true], [3, 6, false], [4, 1, false]], true, true));
  const merged = drain(m);
  assert.deepEqual(merged.map((e) => [e.id, e.version, e.deleted]), [
    [1, 4, false],
    [2, 9, true],
    [3, 6, false],
    [4, 1, false],
  ]);
  assert.deepEqual(merged.map((e) => e.vector === null ? null : Array.from(e.vector)), [
    [1],
    null,
    [3],
    [4],
  ]);
  assert.ok(m.finished);
  // The reverse: a newer put after an older tombstone on another replica is live.
  const r = new EntryMerge(["a", "b"], null);
  r.feed("a", page([[7, 3, true]], true));
  r.feed("b", page([[7, 8, false]], true));
  assert.deepEqual(drain(r).map((e) => [e.id, e.deleted]), [[7, false]]);
});

Deno.test("EntryMerge: merges only up to the smallest last id of a full page", () => {
  const m = new EntryMerge(["a", "b"], 10);
  m.feed("a", page([[11, 1, false], [20, 1, false]], false));
  m.feed("b", page([[12, 1, false], [13, 1, false], [30, 1, false]], false));
  assert.equal(m.bound(), 20);
  assert.deepEqual(drain(m).map((e) => e.id), [11, 12, 13, 20]);
  // a's page is consumed, b still holds 30: only a is asked, after its last id.
  assert.deepEqual(m.hungry(), [{ node: "a", after: 20 }]);
  assert.throws(() => m.bound(), /needs its next page/);
  // a lists 25 and ends: only b bounds the merge now, and b has listed up to 30.
  m.feed("a", page([[25, 1, false]], true));
  assert.equal(m.bound(), 30);
  assert.deepEqual(drain(m).map((e) => e.id), [25, 30]);
  assert.deepEqual(m.hungry(), [{ node: "b", after: 30 }]);
  m.feed("b", page([], true));
  assert.equal(m.bound(), null);
  assert.deepEqual(drain(m), []);
  assert.ok(m.finished);
});

Deno.test("EntryMerge: a visitor can stop; a dropped node leaves the merge", () => {
  const m = new EntryMerge(["a", "b"], null);
  m.feed("a", page([[1, 1, false], [2, 1, false], [3, 1, false]], true));
  m.feed("b", page([[5, 1, false]], false));
  const seen: PointId[] = [];
  assert.equal(m.step((e) => (seen.push(e.id), seen.length < 2)), false);
  assert.deepEqual(seen, [1, 2]);
  const n = new EntryMerge(["a", "b"], null);
  n.feed("a", page([[1, 1, false]], true));
  n.feed("b", page([[2, 1, false]], false));
  drain(n);
  n.drop("b");
  assert.ok(n.finished);
  assert.deepEqual(n.nodes, ["a"]);
});

Deno.test("EntryMerge refuses pages that break the Entries contract", () => {
  const m = new EntryMerge(["a"], 5);
  assert.throws(() => m.feed("a", page([[5, 1, false]], true)), /listed id 5 after 5/);
  assert.throws(() => m.feed("a", page([[7, 1, false], [6, 1, false]], true)), /must ascend/);
  assert.throws(() => m.feed("a", page([], false)), /empty page that is not its last/);
  assert.throws(
    () => m.feed("a", { ...page([[7, 1, false]], true), versions: [] }),
    /1 ids with 0 versions/,
  );
  assert.throws(
    () => m.feed("a", { ...page([[7, 1, false]], true), vectors: [1, 2] }),
    /2 vector values for 1 live entries/,
  );
  assert.throws(() => m.feed("z", page([], true)), /not in the merge/);
});

/** A NodePort whose nodes hold sorted entry lists and page them like Transfer.Entries. */
function fakeNodes(
  held: Record<string, [PointId, number, boolean][]>,
  fail: { node: string; after_calls: number } | null = null,
): NodePort & { calls: number } {
  let calls = 0;
  const port = {
    get calls() {
      return calls;
    },
    call: () => Promise.reject(new Error("not used")),
    transfer: () => null,
    open: () => {},
    close: () => {},
    entries(node: string, r: EntriesRequest): Promise<EntriesResponse> {
      calls++;
      if (fail !== null && node === fail.node && calls > fail.after_calls) {
        return Promise.reject(new NodeStatusError(grpc.status.UNAVAILABLE, "gone"));
      }
      const list = held[node];
      if (list === undefined) {
        return Promise.reject(new NodeStatusError(grpc.status.NOT_FOUND, "no collection"));
      }
      const after = r.from_start ? null : idFromWire(r.after_id, r.after_string_id);
      const rest = list.filter((e) => after === null || compareIds(e[0], after) > 0);
      const slice = rest.slice(0, r.limit);
      return Promise.resolve({
        ...page(slice, slice.length === rest.length, r.with_vector),
        versions: slice.map((e) => e[1]),
      });
    },
  };
  return port as unknown as NodePort & { calls: number };
}

const NO_TABLE = {
  all: () => [],
  find: () => undefined,
  observe: () => {},
} as unknown as NodeTable;

Deno.test("routerCount and routerScroll: each id once, newest version decides, paged", async () => {
  // Three nodes, RF 2: every id on two of them; node c missed the delete of 4 and the
  // overwrite of 6 (version 7 on a).
  const held: Record<string, [number, number, boolean][]> = {
    a: [[1, 1, false], [4, 9, true], [6, 7, false], [8, 1, false]],
    b: [[1, 1, false], [2, 1, false], [8, 1, false], [9, 2, true]],
    c: [[2, 1, false], [4, 3, false], [6, 2, false], [9, 1, false]],
  };
  const view = makeView(["a", "b", "c"], 2);
  const deps = { nodes: fakeNodes(held), table: NO_TABLE, retry_timeout_ms: 100 };
  const count = await routerCount(deps, view, "c1");
  assert.equal(count.count, "4"); // 1, 2, 6, 8
  assert.equal(count.partial, false);
  const ids: number[] = [];
  let after: number | null = null;
  let pages = 0;
  while (true) {
    const r = await routerScroll(deps, view, {
      collection: "c1",
      limit: 1,
      after,
      with_vector: true,
      filter: null,
      with_payload: false,
    });
    pages++;
    for (const p of r.points) {
      ids.push(Number(p.id));
      assert.deepEqual(p.vector, [p.id]);
    }
    if (r.next_cursor === "") break;
    after = Number(r.next_cursor.slice(3));
  }
  assert.deepEqual(ids, [1, 2, 6, 8]);
  assert.equal(pages, 4, "the last page says no point follows");
  const version6 = (await routerScroll(deps, view, {
    collection: "c1",
    limit: 10,
    after: 5,
    with_vector: false,
    filter: null,
    with_payload: false,
  })).points[0];
  assert.deepEqual(version6, { id: 6, string_id: "", vector: [], version: "7" });
});

Deno.test("readEntries: a node failing part-way makes the answer partial", async () => {
  const held: Record<string, [number, number, boolean][]> = {
    a: Array.from({ length: 10 }, (_, i) => [i, 1, false] as [number, number, boolean]),
    b: Array.from({ length: 10 }, (_, i) => [i + 100, 1, false] as [number, number, boolean]),
  };
  // b answers its first page only (calls 1 and 2 are the first round).
  const nodes = fakeNodes(held, { node: "b", after_calls: 2 });
  const view = makeView(["a", "b"], 1);
  let seen = 0;
  const coverage = await readEntries({ nodes, table: NO_TABLE, retry_timeout_ms: 100 }, view, {
    collection: "c1",
    after: null,
    page_limit: 3,
    with_vector: false,
    what: "Count",
    visit: () => (seen++, true),
  });
  assert.equal(coverage.partial, true);
  assert.ok(coverage.shards_answered < coverage.shards_total);
  assert.equal(seen, 10 + 3, "all of a, b's first page");
});

Deno.test("readEntries: NOT_FOUND everywhere is NOT_FOUND, except for the default collection", async () => {
  const view = makeView(["a", "b"], 2);
  const deps = { nodes: fakeNodes({}), table: NO_TABLE, retry_timeout_ms: 100 };
  await assert.rejects(routerCount(deps, view, "c1"), { code: grpc.status.NOT_FOUND });
  assert.equal((await routerCount(deps, view, "default")).count, "0");
  // One node without the collection, one with it: counted from the one.
  const some = { ...deps, nodes: fakeNodes({ a: [[1, 1, false]] }) };
  assert.equal((await routerCount(some, view, "c1")).count, "1");
});

Deno.test("runSearchBatch keeps request order, bounds concurrency, names the failed search", async () => {
  let running = 0;
  let peak = 0;
  const search = async (v: { k: number }) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, (v.k * 7) % 4));
    running--;
    if (v.k === 99) throw new NodeStatusError(grpc.status.UNAVAILABLE, "down");
    return v.k;
  };
  const list = Array.from(
    { length: 20 },
    (_, i) => ({
      vector: [0],
      k: i + 1,
      ef: 0,
      collection: "c",
      with_payload: false,
      with_vector: false,
    }),
  );
  assert.deepEqual(await runSearchBatch(list, search, 3), list.map((v) => v.k));
  assert.ok(peak <= 3 && peak >= 2, `peak ${peak}`);
  list[5].k = 99;
  await assert.rejects(runSearchBatch(list, search, 3), (e: { code: number; message: string }) => {
    assert.equal(e.code, grpc.status.UNAVAILABLE);
    assert.match(e.message, /^searches\[5\]: /);
    return true;
  });
});

Deno.test("EntryMerge orders integer ids, 64-bit ids, then string ids (compareIds)", () => {
  const big = 18446744073709551615n;
  const m = new EntryMerge(["a", "b"], null);
  m.feed("a", page([[3, 1, false], [2n ** 60n, 2, false], ["a", 1, false], ["b", 4, true]], false));
  m.feed("b", page([[7, 1, false], [big, 1, false], ["a", 3, false], ["ab", 1, false]], true));
  // a's page is full and ends at "b": everything up to "b" is final.
  assert.equal(m.bound(), "b");
  const merged = drain(m);
  assert.deepEqual(merged.map((e) => [e.id, e.version, e.deleted]), [
    [3, 1, false],
    [7, 1, false],
    [2n ** 60n, 2, false],
    [big, 1, false],
    ["a", 3, false],
    ["ab", 1, false],
    ["b", 4, true],
  ]);
  assert.deepEqual(m.hungry(), [{ node: "a", after: "b" }]);
  // A string id below the cursor, or an integer after a string, breaks the order.
  assert.throws(() => m.feed("a", page([[9, 1, false]], true)), /listed id 9 after "b"/);
  const s = new EntryMerge(["a"], "m");
  assert.throws(() => s.feed("a", page([["l", 1, false]], true)), /listed id "l" after "m"/);
});

Deno.test("routerCount and routerScroll with string and 64-bit ids: each id once", async () => {
  const big = 2n ** 63n + 5n;
  const held: Record<string, [PointId, number, boolean][]> = {
    a: [[1, 1, false], [big, 2, false], ["doc-1", 1, false], ["doc-2", 5, true]],
    b: [[1, 1, false], [big, 2, false], ["doc-2", 3, false], ["doc-3", 1, false]],
  };
  const view = makeView(["a", "b"], 2);
  const deps = { nodes: fakeNodes(held), table: NO_TABLE, retry_timeout_ms: 100 };
  assert.equal((await routerCount(deps, view, "c1")).count, "4"); // 1, big, doc-1, doc-3 (doc-2 deleted)
  const r = await routerScroll(deps, view, {
    collection: "c1",
    limit: 10,
    after: null,
    with_vector: false,
    filter: null,
    with_payload: false,
  });
  assert.deepEqual(r.points.map((p) => [p.id, p.string_id]), [
    [1, ""],
    [big.toString(), ""],
    [0, "doc-1"],
    [0, "doc-3"],
  ]);
  assert.equal(r.next_cursor, "");
});
