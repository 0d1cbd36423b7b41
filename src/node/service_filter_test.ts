import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type HandlerCall, rejectsWith, withNode as withNodeHandlers } from "./handlers_testing.ts";

/** A node's handlers over a fresh store (see handlers_testing.ts). */
const withNode = (fn: (api: HandlerCall, tr: HandlerCall) => Promise<void>) =>
  withNodeHandlers("service_filter_test_", fn);
const rejects = rejectsWith;

const BAD = grpc.status.INVALID_ARGUMENT;

Deno.test("filters, payload indexes, GetBatch, DeleteBatch, DeleteByFilter and Entries on a node", async () => {
  await withNode(async (api, tr) => {
    await api("CreateCollection", { name: "c", dimension: 2, metric: "l2" });
    await api("PutBatch", {
      collection: "c",
      points: Array.from({ length: 30 }, (_, id) => ({
        id,
        vector: [id, 0],
        payload: JSON.stringify({ g: id % 3, name: `p${id}` }),
      })),
    });
    const g0 = JSON.stringify({ must: [{ key: "g", match: { value: 0 } }] });
    // Bad requests: nothing written, the node keeps serving.
    await rejects(api("Count", { collection: "c", filter: "{" }), BAD, /filter/);
    await rejects(
      api("Search", { collection: "c", vector: [0, 0], k: 1, filter: '{"must":[1,{"key":"g"}]}' }),
      BAD,
      /filter\.must\[0\]/,
    );
    await rejects(
      api("Scroll", { collection: "c", filter: '{"must":[{"key":"g","range":{"gt":"a"}}]}' }),
      BAD,
      /filter\.must\[0\]\.range\.gt/,
    );
    await rejects(
      api("SearchBatch", { searches: [{ collection: "c", vector: [0, 0], k: 1, filter: "[]" }] }),
      BAD,
      /searches\[0\]\.filter/,
    );
    await rejects(
      api("CreateFieldIndex", { collection: "c", field: "g", type: "text" }),
      BAD,
      /type "text"/,
    );
    await rejects(
      api("GetBatch", { collection: "c", ids: new Array(1001).fill(1) }),
      BAD,
      /ids and string_ids have 1001 entries together/,
    );
    await rejects(api("GetBatch", { collection: "c", ids: [] }), BAD, /have 0 entries/);
    await rejects(
      api("DeleteBatch", { collection: "c", ids: new Array(10_001).fill(1) }),
      BAD,
      /10000/,
    );
    await rejects(api("DeleteByFilter", { collection: "c", filter: "" }), BAD, /filter .*required/);
    await rejects(api("DeleteByFilter", { collection: "c", filter: "{}" }), BAD, /required/);
    assert.equal((await api("Count", { collection: "c" })).count, "30");

    // Unindexed, then indexed: the same answers.
    for (const indexed of [false, true]) {
      if (indexed) {
        assert.equal(
          (await api("CreateFieldIndex", { collection: "c", field: "g", type: "integer" })).created,
          true,
        );
        assert.equal(
          (await api("CreateFieldIndex", { collection: "c", field: "g", type: "integer" })).created,
          false,
        );
        await rejects(
          api("CreateFieldIndex", { collection: "c", field: "g", type: "keyword" }),
          grpc.status.ALREADY_EXISTS,
          /"g"/,
        );
      }
      assert.equal((await api("Count", { collection: "c", filter: g0 })).count, "10");
      const hits =
        (await api("Search", { collection: "c", vector: [4, 0], k: 2, filter: g0 })).results;
      assert.deepEqual(hits.map((h: { id: number }) => h.id), [3, 6]);
      const page = await api("Scroll", {
        collection: "c",
        filter: g0,
        limit: 4,
        with_payload: true,
      });
      assert.deepEqual(page.points.map((p: { id: number }) => p.id), [0, 3, 6, 9]);
      assert.equal(page.points[1].payload, '{"g":0,"name":"p3"}');
      assert.notEqual(page.next_cursor, "");
      const batch = await api("SearchBatch", {
        searches: [{ collection: "c", vector: [4, 0], k: 1, filter: g0 }],
      });
      assert.equal(batch.results[0].results[0].id, 3);
    }
    const list = await api("ListCollections", {});
    assert.deepEqual(list.collections[0].field_indexes, [{ field: "g", type: "integer" }]);

    // Entries: matched per entry, payloads per live entry.
    const e = await tr("Entries", {
      collection: "c",
      from_start: true,
      limit: 4,
      with_vector: false,
      filter: g0,
      with_payload: true,
    });
    assert.deepEqual(e.matched, [true, false, false, true]);
    assert.equal(e.payloads.length, 4);
    assert.equal(e.payloads[2], '{"g":2,"name":"p2"}');

    const got = await api("GetBatch", { collection: "c", ids: [2, 99, 2], with_payload: true });
    assert.deepEqual(got.points.map((p: { found: boolean }) => p.found), [true, false, true]);
    assert.equal(got.points[0].payload, '{"g":2,"name":"p2"}');

    const del = await api("DeleteBatch", { collection: "c", ids: [1, 2, 2, 99] });
    assert.equal(del.deleted, 2);
    assert.notEqual(del.version, "0");
    const after = await api("GetBatch", { collection: "c", ids: [1, 99] });
    assert.deepEqual(after.points.map((p: { deleted: boolean }) => p.deleted), [true, true]);

    const byFilter = await api("DeleteByFilter", { collection: "c", filter: g0 });
    assert.equal(byFilter.deleted, "10");
    assert.equal((await api("Count", { collection: "c", filter: g0 })).count, "0");
    assert.equal((await api("Count", { collection: "c" })).count, "18");
    assert.equal((await api("DropFieldIndex", { collection: "c", field: "g" })).dropped, true);
    assert.equal((await api("DropFieldIndex", { collection: "c", field: "g" })).dropped, false);
  });
});
