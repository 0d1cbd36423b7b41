import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type HandlerCall, rejectsWith, withNode as withNodeHandlers } from "./handlers_testing.ts";
import { Rng } from "../testing/random.ts";

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
    // Per id in request order: a repeated id is marked once, an absent one not at all.
    assert.deepEqual([...del.removed], [1, 1, 0, 0]);
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

Deno.test("Search exact: the true top-k by brute force (also filtered), where a weak graph misses some", async () => {
  await withNode(async (api) => {
    const rng = new Rng(41);
    const dim = 16;
    // A deliberately weak graph (m 2, ef_construction 2) so graph search at ef = k misses.
    await api("CreateCollection", {
      name: "x",
      dimension: dim,
      metric: "l2",
      m: 2,
      ef_construction: 2,
    });
    const vectors = Array.from({ length: 2000 }, () => Array.from(rng.vector(dim)));
    await api("PutBatch", {
      collection: "x",
      points: vectors.map((vector, id) => ({
        id,
        vector,
        payload: JSON.stringify({ odd: id % 2 === 1 }),
      })),
    });
    const f32 = (xs: number[]) => Array.from(new Float32Array(xs));
    const odd = JSON.stringify({ must: [{ key: "odd", match: { value: true } }] });
    let graphMissed = 0;
    for (let q = 0; q < 10; q++) {
      const query = f32(Array.from(rng.vector(dim)));
      for (const filter of ["", odd]) {
        const ids = vectors.map((v, id) => ({ id, v: f32(v) }))
          .filter(({ id }) => filter === "" || id % 2 === 1)
          .map(({ id, v }) => ({ id, d: v.reduce((s, x, i) => s + (x - query[i]) ** 2, 0) }))
          .sort((a, b) => a.d - b.d || a.id - b.id).slice(0, 10).map((p) => p.id);
        const exact = await api("Search", {
          collection: "x",
          vector: query,
          k: 10,
          filter,
          exact: true,
        });
        assert.deepEqual(
          exact.results.map((r: { id: number }) => r.id),
          ids,
          `query ${q} ${filter}`,
        );
        const graph = await api("Search", {
          collection: "x",
          vector: query,
          k: 10,
          ef: 10,
          filter,
        });
        const got = new Set(graph.results.map((r: { id: number }) => r.id));
        graphMissed += ids.filter((id) => !got.has(id)).length;
      }
    }
    assert.ok(graphMissed > 0, "the weak graph's search missed some true neighbours");
    await rejects(
      api("Search", { collection: "x", vector: new Array(dim).fill(0), k: 1, exact: "yes" }),
      BAD,
      /exact "yes" must be true or false/,
    );
  });
});
