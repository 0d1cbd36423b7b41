/**
 * Restarting a storage node keeps its search results exactly: a few thousand random points (and
 * some deletes), then
 *
 * 1. a graceful stop (SIGTERM: snapshot on shutdown) and start: the snapshot path;
 * 2. more writes, SIGKILL and start: the snapshot plus WAL replay path;
 *
 * each time the same queries must return the same ids and distances, and every point the same
 * vector. (The index's level generator state is in the snapshot, so replaying the WAL rebuilds
 * the very same graph.)
 */
import assert from "node:assert/strict";
import { ApiClient } from "../src/api/client.ts";
import type { SearchResult } from "../src/api/proto.ts";
import { NodeProcess } from "../harness/node.ts";
import { churnRandom } from "../harness/workloads/churn_vectors.ts";

const COLLECTION = "restart";
const DIM = 32;
const QUERIES = 40;
// One build thread: WAL replay links batches in order on one thread, so only a batch linked
// that way live gives the very same graph (tests/threads_node_test.ts covers two).
const NO_AUTO_SNAPSHOTS = [
  "--snapshot-every-ops",
  "100000000",
  "--snapshot-every-s",
  "100000000",
  "--build-threads",
  "1",
];

function randomVector(random: () => number): number[] {
  return Array.from({ length: DIM }, () => Math.fround(random() * 2 - 1));
}

async function putBatch(api: ApiClient, random: () => number, from: number, count: number) {
  const points = Array.from({ length: count }, (_, i) => ({
    id: from + i,
    vector: randomVector(random),
  }));
  const res = await api.call("PutBatch", { points, collection: COLLECTION });
  assert.equal(res.count, count);
}

async function searchAll(api: ApiClient, queries: number[][]): Promise<SearchResult[][]> {
  return await Promise.all(
    queries.map(async (vector) =>
      (await api.call("Search", { vector, k: 10, collection: COLLECTION })).results
    ),
  );
}

async function vectors(api: ApiClient, ids: number[]): Promise<(number[] | null)[]> {
  return await Promise.all(ids.map(async (id) => {
    const got = await api.call("Get", { id, collection: COLLECTION });
    return got.found ? got.vector : null;
  }));
}

async function count(api: ApiClient): Promise<number> {
  const stats = await api.call("Stats", {});
  return Number(stats.collections.find((c) => c.name === COLLECTION)?.count);
}

Deno.test("storage node restarts from a snapshot and from WAL replay with identical results", async () => {
  const random = churnRandom(20240611);
  const queries = Array.from({ length: QUERIES }, () => randomVector(random));
  const sample = Array.from({ length: 200 }, (_, i) => i * 23);
  const node = await NodeProcess.start({ args: NO_AUTO_SNAPSHOTS });
  let api = new ApiClient(node.address, { timeout_ms: 30_000 });
  try {
    await api.call("CreateCollection", { name: COLLECTION, dimension: DIM });
    for (let b = 0; b < 3; b++) await putBatch(api, random, b * 1000, 1000);
    for (let id = 5; id < 3000; id += 97) {
      assert.equal((await api.call("Delete", { id, collection: COLLECTION })).deleted, true);
    }
    const before = await searchAll(api, queries);
    const vectorsBefore = await vectors(api, sample);
    const countBefore = await count(api);
    assert.ok(before.every((r) => r.length === 10));

    // 1. Graceful stop: snapshot on shutdown; the start loads it and replays nothing.
    api.close();
    await node.restart();
    api = new ApiClient(node.address, { timeout_ms: 30_000 });
    assert.match(node.stderr, /snapshot at seq \d+, replayed 0 WAL records/);
    const stats = await api.call("Stats", {});
    assert.ok(Number(stats.collections[0].last_snapshot_seq) > 0, JSON.stringify(stats));
    assert.deepEqual(await searchAll(api, queries), before);
    assert.deepEqual(await vectors(api, sample), vectorsBefore);
    assert.equal(await count(api), countBefore);

    // 2. More writes after the snapshot, then SIGKILL: snapshot + WAL replay.
    await putBatch(api, random, 3000, 1000);
    for (let i = 0; i < 200; i++) {
      const id = Math.floor(random() * 4000);
      await api.call("Put", { id, vector: randomVector(random), collection: COLLECTION });
    }
    for (let id = 11; id < 4000; id += 131) {
      await api.call("Delete", { id, collection: COLLECTION });
    }
    const afterWrites = await searchAll(api, queries);
    const vectorsAfter = await vectors(api, sample);
    const countAfter = await count(api);
    api.close();
    await node.restart({ kill: true });
    api = new ApiClient(node.address, { timeout_ms: 30_000 });
    assert.match(node.stderr, /snapshot at seq \d+, replayed [1-9]\d* WAL records/);
    assert.deepEqual(await searchAll(api, queries), afterWrites);
    assert.deepEqual(await vectors(api, sample), vectorsAfter);
    assert.equal(await count(api), countAfter);
    assert.deepEqual(node.unexpected_exits, []);
  } catch (e) {
    console.error(`node stderr:\n${node.tail()}`);
    throw e;
  } finally {
    api.close();
    await node.close();
  }
});
