import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { shardOf } from "../common/shard.ts";
import { type HandlerCall, rejectsWith, withNode } from "./handlers_testing.ts";

const INVALID = grpc.status.INVALID_ARGUMENT;

/** Puts points 0 .. n-1 (vector [i, i % 7]) and a few string ids into `collection`. */
async function fill(api: HandlerCall, collection: string, n: number): Promise<void> {
  // Explicit versions, so two collections given the same data hold the same versions.
  await api("PutBatch", {
    collection,
    version: "1000",
    points: Array.from({ length: n }, (_, i) => ({ id: i, vector: [i, i % 7] })),
  });
  for (const s of ["a", "b", "c", "d"]) {
    const vector = [s.charCodeAt(0) - 90, 1];
    await api("Put", { collection, string_id: s, vector, version: "1001" });
  }
}

Deno.test("node service: a collection's shard_number and replication_factor, stored and reported", async () => {
  await withNode("service_shards_", async (api) => {
    const made = await api("CreateCollection", {
      name: "s",
      dimension: 2,
      shard_number: 3,
      replication_factor: 2,
    });
    assert.equal(made.created, true);
    assert.equal(made.collection.shard_number, 3);
    assert.equal(made.collection.replication_factor, 2);
    const plain = await api("CreateCollection", { name: "p", dimension: 2 });
    assert.equal(plain.collection.shard_number, 1, "a node given 0 makes one shard");
    assert.equal(plain.collection.replication_factor, 0, "0: the router's default");
    const list = await api("ListCollections", {});
    assert.deepEqual(
      list.collections.map((c: { name: string; shard_number: number }) => [c.name, c.shard_number]),
      [["s", 3], ["p", 1]],
    );
    // The same again is no error; another shard count is.
    const again = await api("CreateCollection", {
      name: "s",
      dimension: 2,
      shard_number: 3,
      replication_factor: 2,
    });
    assert.equal(again.created, false);
    await rejectsWith(
      api("CreateCollection", { name: "s", dimension: 2, shard_number: 4 }),
      grpc.status.ALREADY_EXISTS,
      /"s" already exists with shard_number 3; the request asks 4/,
    );
    await rejectsWith(
      api("CreateCollection", { name: "s", dimension: 2, shard_number: 3, replication_factor: 3 }),
      grpc.status.ALREADY_EXISTS,
      /replication_factor 2; the request asks 3/,
    );
    // Fields the request leaves at 0 are not compared (create-if-absent re-issued).
    const unset = await api("CreateCollection", { name: "s", dimension: 2 });
    assert.equal(unset.created, false);
    assert.equal(unset.collection.shard_number, 3);
    // A collection that stored no replication factor takes any.
    const any = await api("CreateCollection", { name: "p", dimension: 2, replication_factor: 3 });
    assert.equal(any.created, false);
    await rejectsWith(
      api("CreateCollection", { name: "p", dimension: 3 }),
      grpc.status.ALREADY_EXISTS,
      /with dimension 2; the request asks 3/,
    );
    await rejectsWith(
      api("CreateCollection", { name: "x", dimension: 2, shard_number: 257 }),
      INVALID,
      /shard_number/,
    );
  });
});

Deno.test("node service: every RPC works across shard units as on one shard", async () => {
  await withNode("service_shards_", async (api, tr) => {
    await api("CreateCollection", { name: "one", dimension: 2 });
    await api("CreateCollection", { name: "six", dimension: 2, shard_number: 6 });
    await fill(api, "one", 60);
    await fill(api, "six", 60);
    const same = async (method: string, request: Record<string, unknown>, strip: string[] = []) => {
      const a = await api(method, { ...request, collection: "one" });
      const b = await api(method, { ...request, collection: "six" });
      for (const k of strip) {
        delete a[k];
        delete b[k];
      }
      assert.deepEqual(b, a, method);
      return b;
    };
    const scroll = await same("Scroll", { limit: 100 });
    assert.equal(scroll.points.length, 64);
    await same("Scroll", { limit: 5, after_id: 7 });
    await same("Count", {});
    const s = await same("Search", { vector: [10.3, 3.2], k: 5, exact: true }, ["shard_searches"]);
    assert.equal(s.results.length, 5);
    await same("GetBatch", { ids: [1, 2, 99], string_ids: ["a", "zz"], with_vector: true }, []);
    const strip = (r: { points: { version: string }[] }) =>
      r.points.map((p) => ({ ...p, version: "" }));
    assert.deepEqual(
      strip(await api("GetBatch", { collection: "six", ids: [3], with_vector: true })),
      strip(await api("GetBatch", { collection: "one", ids: [3], with_vector: true })),
    );
    // DeleteBatch: `removed` is per id in wire order, whichever units hold them.
    const ids = [5, 6, 7, 500, 8];
    assert.ok(new Set(ids.map((id) => shardOf(id, 6))).size > 1, "the ids span units");
    for (const name of ["one", "six"]) {
      const del = await api("DeleteBatch", {
        collection: name,
        ids,
        string_ids: ["b", "q"],
        version: "2000",
      });
      assert.equal(del.deleted, 5);
      assert.deepEqual([...(del.removed as Uint8Array)], [1, 1, 1, 0, 1, 1, 0]);
      const byFilter = await api("DeleteByFilter", {
        collection: name,
        filter: '{"must":[{"has_id":[10,11,12,"c"]}]}',
        version: "2001",
      });
      assert.equal(byFilter.deleted, "4");
    }
    assert.equal((await api("Count", { collection: "six" })).count, String(64 - 9));
    await same("Scroll", { limit: 100, with_vector: true });
    // Entries (a router's paging read) lists tombstones too, in id order over every unit.
    const entries = (collection: string) =>
      tr("Entries", { collection, limit: 1000, with_vector: true, from_start: true });
    const all = await entries("six");
    assert.equal(all.done, true);
    assert.equal(all.ids.length + all.string_ids.length, 55 + 11, "live points and tombstones");
    assert.deepEqual(all.ids.slice(0, 5), [0, 1, 2, 3, 4]);
    assert.deepEqual(await entries("six"), await entries("one"));
    // Field indexes exist on every unit.
    assert.equal(
      (await api("CreateFieldIndex", { collection: "six", field: "x", type: "keyword" })).created,
      true,
    );
    const stats = await api("Stats", {});
    const six = stats.collections.find((c: { name: string }) => c.name === "six");
    assert.equal(six.count, 55);
    assert.equal(six.shards.length, 6);
    assert.equal(
      six.shards.reduce((n: number, x: { count: number }) => n + Number(x.count), 0),
      55,
    );
    assert.deepEqual(six.shards.map((x: { shard: number }) => x.shard), [0, 1, 2, 3, 4, 5]);
    const one = stats.collections.find((c: { name: string }) => c.name === "one");
    assert.deepEqual(one.shards, []);
  });
});

Deno.test("node service: Search honours shards and reports shard_searches", async () => {
  await withNode("service_shards_", async (api) => {
    await api("CreateCollection", { name: "c", dimension: 2, shard_number: 4 });
    await fill(api, "c", 80);
    const all = await api("Search", { collection: "c", vector: [1, 1], k: 200, exact: true });
    assert.equal(all.shard_searches, 4);
    assert.equal(all.results.length, 84);
    const some = await api("Search", {
      collection: "c",
      vector: [1, 1],
      k: 200,
      shards: [2, 0],
    });
    assert.equal(some.shard_searches, 2);
    for (const h of some.results) {
      const id = h.string_id !== undefined && h.string_id !== "" ? h.string_id : Number(h.id);
      assert.ok([0, 2].includes(shardOf(id, 4)), `hit ${id}`);
    }
    const batch = await api("SearchBatch", {
      searches: [
        { collection: "c", vector: [1, 1], k: 3, shards: [1] },
        { collection: "c", vector: [1, 1], k: 3 },
      ],
    });
    assert.deepEqual(batch.results.map((r: { shard_searches: number }) => r.shard_searches), [
      1,
      4,
    ]);
    // A 1-shard collection searches its one unit.
    await api("CreateCollection", { name: "one", dimension: 2 });
    await fill(api, "one", 3);
    assert.equal(
      (await api("Search", { collection: "one", vector: [1, 1], k: 3 })).shard_searches,
      1,
    );
  });
});

Deno.test("node service: bad shards values are INVALID_ARGUMENT naming the field and value", async () => {
  await withNode("service_shards_", async (api) => {
    await api("CreateCollection", { name: "c", dimension: 2, shard_number: 3 });
    await fill(api, "c", 10);
    const search = (shards: unknown) =>
      api("Search", { collection: "c", vector: [1, 1], k: 3, shards });
    await rejectsWith(
      search([3]),
      INVALID,
      /shards\[0\] 3 is not a shard of collection "c".*0 \.\. 2/,
    );
    await rejectsWith(search([1, 2, 1]), INVALID, "shards[2] 1 is listed twice");
    await rejectsWith(
      search(Array.from({ length: 257 }, (_, i) => i)),
      INVALID,
      "shards has 257 entries; at most 256",
    );
    await rejectsWith(
      api("SearchBatch", {
        searches: [
          { collection: "c", vector: [1, 1], k: 3 },
          { collection: "c", vector: [1, 1], k: 3, shards: [0, 9] },
        ],
      }),
      INVALID,
      /searches\[1\]\.shards\[1\] 9 is not a shard/,
    );
    // The node keeps serving.
    assert.equal((await search([0, 1, 2])).shard_searches, 3);
  });
});

Deno.test("node service: a sharded collection's backup restores as that sharded collection", async () => {
  await withNode("service_shards_", async (api) => {
    await api("CreateCollection", {
      name: "c",
      dimension: 2,
      shard_number: 3,
      replication_factor: 2,
    });
    await fill(api, "c", 30);
    const made = await api("Backup", { collection: "c", name: "b" });
    assert.equal(made.backup.collection.shard_number, 3);
    assert.equal(made.backup.points, "34");
    const listed = await api("ListBackups", {});
    assert.equal(listed.backups[0].collection.replication_factor, 2);
    const r = await api("Restore", { backup: "b", collection: "r" });
    assert.equal(r.collection.shard_number, 3);
    assert.equal(r.collection.replication_factor, 2);
    assert.equal(r.points, "34");
    const a = await api("Scroll", { collection: "c", limit: 100, with_vector: true });
    const b = await api("Scroll", { collection: "r", limit: 100, with_vector: true });
    assert.deepEqual(b, a);
  });
});

Deno.test("writes carrying another shard_number than the node's are refused, naming both; 0 or absent passes", async () => {
  await withNode("shard_guard_", async (api, _tr, store) => {
    await api("CreateCollection", { name: "g", dimension: 2, shard_number: 3 });
    const refused = (n: number) =>
      new RegExp(
        `^collection "g" has 3 shards on this node, not ${n} as the request's shard_number says`,
      );
    const writes: [string, Record<string, unknown>][] = [
      ["Put", { collection: "g", id: 1, vector: [1, 2] }],
      ["PutBatch", { collection: "g", points: [{ id: 2, vector: [1, 2] }] }],
      ["Delete", { collection: "g", id: 1 }],
      ["DeleteBatch", { collection: "g", ids: [2] }],
    ];
    for (const [method, req] of writes) {
      await rejectsWith(
        api(method, { ...req, shard_number: 4 }),
        grpc.status.FAILED_PRECONDITION,
        refused(4),
      );
      await api(method, { ...req, shard_number: 3 });
      await api(method, { ...req, shard_number: 0 });
      await api(method, req);
    }
    // The refused writes changed nothing: ids 1 and 2 end deleted by the accepted deletes.
    assert.equal(store.get("g").getEntry(1).deleted, true);
    assert.equal(store.get("g").getEntry(2).deleted, true);
    await rejectsWith(
      api("Put", { collection: "g", id: 9, vector: [1, 2], shard_number: 1 }),
      grpc.status.FAILED_PRECONDITION,
      refused(1),
    );
    assert.equal(store.get("g").getEntry(9).version, 0);
  });
});
