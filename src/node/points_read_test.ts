import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type HandlerCall, rejectsWith, withNode as withNodeHandlers } from "./handlers_testing.ts";
import { upperBound } from "./points_read.ts";
import { IdList } from "../storage/collection.ts";

/** A node's handlers over a fresh store (see handlers_testing.ts). */
const withNode = (fn: (api: HandlerCall, tr: HandlerCall) => Promise<void>) =>
  withNodeHandlers("points_read_test_", fn);
const rejects = rejectsWith;

Deno.test("upperBound finds the first id above `after`, uint32 ids first, then the others", () => {
  const big = 2n ** 63n;
  const ids = new IdList(Uint32Array.from([2, 5, 9]), [2 ** 32, 2 ** 53 - 1, big, "a", "b"]);
  assert.equal(upperBound(ids, null), 0);
  assert.equal(upperBound(ids, 1), 0);
  assert.equal(upperBound(ids, 2), 1);
  assert.equal(upperBound(ids, 6), 2);
  assert.equal(upperBound(ids, 9), 3);
  assert.equal(upperBound(ids, 2 ** 32 - 1), 3);
  assert.equal(upperBound(ids, 2 ** 32), 4);
  assert.equal(upperBound(ids, 2 ** 40), 4);
  assert.equal(upperBound(ids, big - 1n), 5);
  assert.equal(upperBound(ids, big), 6);
  assert.equal(upperBound(ids, 2n ** 64n - 1n), 6);
  assert.equal(upperBound(ids, ""), 6);
  assert.equal(upperBound(ids, "a"), 7);
  assert.equal(upperBound(ids, "aa"), 7);
  assert.equal(upperBound(ids, "b"), 8);
  assert.deepEqual([...ids], [2, 5, 9, 2 ** 32, 2 ** 53 - 1, big, "a", "b"]);
});

Deno.test("Scroll pages live points in id order; the cursor continues; Count is exact", async () => {
  await withNode(async (api) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    const ids = Array.from({ length: 250 }, (_, i) => (i * 7919) % 100_003);
    await api("PutBatch", { collection: "c", points: ids.map((id) => ({ id, vector: [id, 1] })) });
    const deleted = new Set([ids[3], ids[100], ids[249]]);
    for (const id of deleted) await api("Delete", { collection: "c", id });
    // A delete of an id never written leaves a tombstone, not a point.
    await api("Delete", { collection: "c", id: 100_500 });
    const live = ids.filter((id) => !deleted.has(id)).sort((a, b) => a - b);

    const seen: number[] = [];
    let cursor = "";
    let pages = 0;
    do {
      const page = await api("Scroll", { collection: "c", limit: 40, cursor });
      assert.ok(page.points.length <= 40);
      assert.equal(page.shards_total, 1);
      for (const p of page.points) {
        assert.deepEqual(p.vector, [], "no vectors unless asked");
        assert.ok(Number(p.version) > 0);
        seen.push(p.id);
      }
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== "");
    assert.deepEqual(seen, live);
    assert.equal(pages, Math.ceil(live.length / 40), "no empty page at the end");

    const withVectors = await api("Scroll", { collection: "c", limit: 3, with_vector: true });
    assert.deepEqual(withVectors.points.map((p: { vector: number[] }) => p.vector), [
      [live[0], 1],
      [live[1], 1],
      [live[2], 1],
    ]);
    assert.equal(withVectors.next_cursor, `v1:${live[2]}`);
    // Default limit 100.
    assert.equal((await api("Scroll", { collection: "c" })).points.length, 100);

    assert.equal((await api("Count", { collection: "c" })).count, String(live.length));
    // The default collection before its first Put reads as empty.
    assert.equal((await api("Count", {})).count, "0");
    assert.deepEqual((await api("Scroll", {})).points, []);
    await rejects(api("Count", { collection: "nope" }), grpc.status.NOT_FOUND, /nope/);
    await rejects(api("Scroll", { collection: "nope" }), grpc.status.NOT_FOUND, /nope/);
  });
});

Deno.test("Scroll: a page sees writes made since the last one (the id order is rebuilt)", async () => {
  await withNode(async (api) => {
    await api("PutBatch", { points: [1, 3, 5].map((id) => ({ id, vector: [id] })) });
    const first = await api("Scroll", { limit: 1 });
    assert.deepEqual(first.points.map((p: { id: number }) => p.id), [1]);
    await api("Put", { id: 2, vector: [2] });
    await api("Delete", { id: 3 });
    const rest = await api("Scroll", { limit: 10, cursor: first.next_cursor });
    assert.deepEqual(rest.points.map((p: { id: number }) => p.id), [2, 5]);
    assert.equal(rest.next_cursor, "");
    // A trailing tombstone: the page before it ends the scroll.
    await api("Delete", { id: 5 });
    const last = await api("Scroll", { limit: 2 });
    assert.deepEqual(last.points.map((p: { id: number }) => p.id), [1, 2]);
    assert.equal(last.next_cursor, "");
  });
});

Deno.test("Scroll refuses bad limits and cursors, naming the field and the value", async () => {
  await withNode(async (api) => {
    await api("Put", { id: 1, vector: [1] });
    const bad = grpc.status.INVALID_ARGUMENT;
    await rejects(
      api("Scroll", { limit: 10_001 }),
      bad,
      /^limit 10001 must be between 1 and 10000/,
    );
    for (
      const cursor of [
        "x",
        "v1:",
        "v1:01",
        "v1:-1",
        "v1:18446744073709551616",
        "v2:5",
        "v1:1 ",
        'v1s:""',
        "v1s:5",
      ]
    ) {
      await rejects(
        api("Scroll", { cursor }),
        bad,
        new RegExp(
          `^cursor ${JSON.stringify(cursor).replace(/[\\^$.*+?()[\]{}|-]/g, "\\$&")} ` +
            "is not a cursor",
        ),
      );
    }
    // A string cursor whose id is over 128 bytes was never handed out.
    await rejects(
      api("Scroll", { cursor: 'v1s:"' + "x".repeat(129) + '"' }),
      bad,
      /^cursor "v1s:\\"x+"\.\.\. \(135 characters\) is not a cursor/,
    );
    const long = "v1:" + "9".repeat(500);
    await rejects(api("Scroll", { cursor: long }), bad, /\.\.\. \(503 characters\)/);
    // The largest integer id is a valid cursor: only string ids follow it.
    const end = await api("Scroll", { cursor: "v1:18446744073709551615" });
    assert.deepEqual(end.points, []);
    assert.equal(end.next_cursor, "");
  });
});

Deno.test("SearchBatch answers in request order and validates every search first", async () => {
  await withNode(async (api) => {
    await api("PutBatch", { points: [1, 2, 3].map((id) => ({ id, vector: [id, 0] })) });
    await api("CreateCollection", { name: "other", dimension: 1 });
    await api("Put", { collection: "other", id: 7, vector: [5] });
    const r = await api("SearchBatch", {
      searches: [
        { vector: [3, 0], k: 1 },
        { vector: [1, 0], k: 2 },
        { vector: [4], k: 1, collection: "other" },
      ],
    });
    assert.deepEqual(
      r.results.map((x: { results: { id: number }[] }) => x.results.map((h) => h.id)),
      [[3], [1, 2], [7]],
    );
    const bad = grpc.status.INVALID_ARGUMENT;
    await rejects(api("SearchBatch", { searches: [] }), bad, /^searches has 0 entries/);
    await rejects(
      api("SearchBatch", { searches: Array.from({ length: 101 }, () => ({ vector: [1], k: 1 })) }),
      bad,
      /^searches has 101 entries; it must have 1 to 100$/,
    );
    await rejects(
      api("SearchBatch", { searches: [{ vector: [1, 0], k: 1 }, { vector: [1, 0], k: 0 }] }),
      bad,
      /^searches\[1\]\.k 0 /,
    );
    await rejects(
      api("SearchBatch", { searches: [{ vector: [1, 0], k: 5, ef: 2 }] }),
      bad,
      /^searches\[0\]\.ef 2 must be at least k 5/,
    );
    await rejects(
      api("SearchBatch", { searches: [{ vector: [1, 0], k: 1 }, { vector: [1], k: 1 }] }),
      bad,
      /^searches\[1\]\.vector dimension 1 does not match the collection dimension 2$/,
    );
  });
});

Deno.test("Transfer.Entries pages ids, versions and tombstones; vectors only when asked", async () => {
  await withNode(async (api, tr) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    await api("PutBatch", {
      collection: "c",
      points: [1, 2, 3, 4].map((id) => ({ id, vector: [id, 0] })),
      version: "10",
    });
    await api("Delete", { collection: "c", id: 2, version: "20" });
    const first = await tr("Entries", { collection: "c", from_start: true, limit: 3 });
    assert.deepEqual(first.ids, [1, 2, 3]);
    assert.deepEqual(first.versions.map(Number), [10, 20, 10]);
    assert.deepEqual(first.deleted, [false, true, false]);
    assert.deepEqual(first.vectors, []);
    assert.equal(first.done, false);
    const rest = await tr("Entries", { collection: "c", after_id: 3, limit: 3, with_vector: true });
    assert.deepEqual(rest.ids, [4]);
    assert.deepEqual(rest.vectors, [4, 0]);
    assert.equal(rest.done, true);
    await rejects(
      tr("Entries", { collection: "c", limit: 0 }),
      grpc.status.INVALID_ARGUMENT,
      /^limit 0 must be between 1 and 16384$/,
    );
    await rejects(
      tr("Entries", { collection: "gone", limit: 1 }),
      grpc.status.NOT_FOUND,
      /gone/,
    );
  });
});
