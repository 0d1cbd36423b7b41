/**
 * Graph threads through the node (`--search-threads`, `--build-threads`; src/index/graph_pool.ts):
 *
 * - searches on worker threads return exactly what the single-threaded node returns for the
 *   same writes (one build thread: the same graph), before and after deletes past the
 *   compaction ratio, upserts, a graceful restart (snapshot) and a SIGKILL (WAL replay);
 * - with two build threads the graph differs (inserts interleave) but recall at equal ef stays
 *   within 0.02 of the single-threaded node's, deleted points never come back, every upsert
 *   ends with its last write (also across concurrent batches), and restarts keep all that.
 */
import assert from "node:assert/strict";
import { ApiClient } from "../src/api/client.ts";
import type { SearchResult } from "../src/api/proto.ts";
import { NodeProcess } from "../harness/node.ts";
import { churnRandom } from "../harness/workloads/churn_vectors.ts";

const DIM = 16;
const N = 3000;
const QUERIES = 40;
const NO_AUTO_SNAPSHOTS = ["--snapshot-every-ops", "100000000", "--snapshot-every-s", "100000000"];

function randomVector(random: () => number): number[] {
  return Array.from({ length: DIM }, () => Math.fround(random() * 2 - 1));
}

/** The same writes to every node: batches with an id repeated, upserts, deletes past 10%. */
async function write(apis: ApiClient[], collection: string, seed: number): Promise<void> {
  const random = churnRandom(seed);
  const batches: { id: number; vector: number[] }[][] = [];
  for (let b = 0; b < 3; b++) {
    const points = Array.from({ length: 1000 }, (_, i) => ({
      id: b * 1000 + i,
      vector: randomVector(random),
    }));
    // An id twice in one batch: the later point wins.
    points.push({ id: b * 1000 + 7, vector: randomVector(random) });
    batches.push(points);
  }
  const upserts = Array.from({ length: 300 }, () => ({
    id: Math.floor(random() * N),
    vector: randomVector(random),
  }));
  for (const api of apis) {
    for (const points of batches) await api.call("PutBatch", { points, collection });
    await api.call("PutBatch", { points: upserts, collection });
    // 400 deletes of 3000 slots (13%): past the compaction ratio.
    for (let id = 3; id < N; id += 7) await api.call("Delete", { id, collection });
    for (let i = 0; i < 50; i++) {
      await api.call("Put", {
        ...upserts[i],
        vector: upserts[i].vector.map((x) => -x),
        collection,
      });
    }
  }
}

async function searchAll(
  api: ApiClient,
  collection: string,
  queries: number[][],
  exact = false,
): Promise<SearchResult[][]> {
  return await Promise.all(
    queries.map(async (vector) =>
      (await api.call("Search", { vector, k: 10, ef: 64, exact, collection })).results
    ),
  );
}

function recall(got: SearchResult[][], truth: SearchResult[][]): number {
  let hit = 0, all = 0;
  for (let i = 0; i < truth.length; i++) {
    const want = new Set(truth[i].map((h) => h.id));
    for (const h of got[i]) if (want.has(h.id)) hit++;
    all += truth[i].length;
  }
  return hit / all;
}

Deno.test("graph threads: worker searches equal the single-threaded node's; parallel builds keep recall, deletes and upserts, across restarts", async () => {
  const random = churnRandom(77);
  const queries = Array.from({ length: QUERIES }, () => randomVector(random));
  const one = await NodeProcess.start({
    args: [...NO_AUTO_SNAPSHOTS, "--search-threads", "1", "--build-threads", "1"],
  });
  const searchOnly = await NodeProcess.start({
    args: [...NO_AUTO_SNAPSHOTS, "--search-threads", "2", "--build-threads", "1"],
  });
  const both = await NodeProcess.start({
    args: [...NO_AUTO_SNAPSHOTS, "--search-threads", "2", "--build-threads", "2"],
  });
  const nodes = [one, searchOnly, both];
  let apis = nodes.map((n) => new ApiClient(n.address, { timeout_ms: 60_000 }));
  try {
    assert.match(both.stderr, /graph threads: 2 search, 2 build/);
    for (const metric of ["l2", "cosine"]) {
      for (const api of apis) {
        await api.call("CreateCollection", { name: metric, dimension: DIM, metric });
      }
      await write(apis, metric, metric === "l2" ? 1 : 2);
    }
    const check = async (when: string) => {
      for (const metric of ["l2", "cosine"]) {
        const [ref, viaWorkers, parallel] = await Promise.all(
          apis.map((api) => searchAll(api, metric, queries)),
        );
        assert.deepEqual(viaWorkers, ref, `${metric} ${when}: worker searches`);
        const truth = await searchAll(apis[0], metric, queries, true);
        const r1 = recall(ref, truth);
        const r2 = recall(parallel, truth);
        assert.ok(r1 > 0.9, `${metric} ${when}: recall ${r1}`);
        assert.ok(r2 >= r1 - 0.02, `${metric} ${when}: recall ${r2} with 2 build threads, ${r1}`);
        // A hit that was deleted (ids 3 mod 7, unless put again after) is live.
        for (const res of parallel) {
          for (const h of res) {
            if (Number(h.id) % 7 !== 3) continue;
            const got = await apis[2].call("Get", { id: h.id, collection: metric });
            assert.ok(got.found, `${metric} ${when}: deleted ${h.id} returned`);
          }
        }
        // Every point holds its last write, on every node.
        const stats = await Promise.all(apis.map((api) => api.call("Stats", {})));
        const counts = stats.map((s) => s.collections.find((c) => c.name === metric)?.count);
        assert.deepEqual(new Set(counts).size, 1, `${metric} ${when}: counts ${counts}`);
        for (const id of [7, 1007, 2007, 5, 10, 11]) {
          const got = await Promise.all(
            apis.map((api) => api.call("Get", { id, collection: metric })),
          );
          for (const g of got.slice(1)) {
            assert.deepEqual(g.vector, got[0].vector, `${metric} ${when}: id ${id}`);
          }
        }
      }
    };
    await check("built");
    // Graceful restart: each node snapshots and loads its own graph.
    for (const a of apis) a.close();
    for (const n of nodes) await n.restart();
    apis = nodes.map((n) => new ApiClient(n.address, { timeout_ms: 60_000 }));
    await check("after a snapshot restart");
    // More writes, then SIGKILL: snapshot + WAL replay (single-threaded replay of the batches).
    for (const metric of ["l2", "cosine"]) await write(apis, metric, 3);
    for (const a of apis) a.close();
    for (const n of nodes) await n.restart({ kill: true });
    apis = nodes.map((n) => new ApiClient(n.address, { timeout_ms: 60_000 }));
    assert.match(both.stderr, /replayed [1-9]\d* WAL records/);
    await check("after WAL replay");
    for (const n of nodes) assert.deepEqual(n.unexpected_exits, []);
  } catch (e) {
    for (const n of nodes) console.error(`node stderr:\n${n.tail()}`);
    throw e;
  } finally {
    for (const a of apis) a.close();
    for (const n of nodes) await n.close();
  }
});

Deno.test("graph threads: concurrent PutBatches to one id end with the later write", async () => {
  const node = await NodeProcess.start({
    args: [...NO_AUTO_SNAPSHOTS, "--search-threads", "2", "--build-threads", "2"],
  });
  const api = new ApiClient(node.address, { timeout_ms: 60_000 });
  try {
    await api.call("CreateCollection", { name: "c", dimension: DIM });
    const random = churnRandom(5);
    for (let round = 0; round < 5; round++) {
      const batches = Array.from(
        { length: 4 },
        () => Array.from({ length: 200 }, (_, i) => ({ id: i, vector: randomVector(random) })),
      );
      const acks = await Promise.all(
        batches.map((points) => api.call("PutBatch", { points, collection: "c" })),
      );
      // The batch with the highest sequence number was applied last.
      let last = 0;
      for (let b = 1; b < 4; b++) if (Number(acks[b].seq) > Number(acks[last].seq)) last = b;
      for (const id of [0, 99, 199]) {
        const got = await api.call("Get", { id, collection: "c" });
        assert.deepEqual(got.vector, batches[last][id].vector, `round ${round} id ${id}`);
        const hit = await api.call("Search", { vector: got.vector, k: 1, collection: "c" });
        assert.equal(Number(hit.results[0].id), id);
      }
    }
  } finally {
    api.close();
    await node.close();
  }
});

Deno.test("graph threads: int8 collections answer on 2 search threads as on 1, before and after training, through deletes, upserts and a restart", async () => {
  const random = churnRandom(91);
  const queries = Array.from({ length: QUERIES }, () => randomVector(random));
  // A collection's quantizer trains at 4096 live points (quantizer.ts DEFAULT_TRAIN_SIZE).
  const total = 5000;
  const points = Array.from({ length: total }, (_, id) => ({ id, vector: randomVector(random) }));
  const nodes = [
    await NodeProcess.start({
      args: [...NO_AUTO_SNAPSHOTS, "--search-threads", "1", "--build-threads", "1"],
    }),
    // One build thread: the same graph (trained int8 batches link in parallel with two).
    await NodeProcess.start({
      args: [...NO_AUTO_SNAPSHOTS, "--search-threads", "2", "--build-threads", "1"],
    }),
  ];
  let apis = nodes.map((n) => new ApiClient(n.address, { timeout_ms: 60_000 }));
  const metrics = ["l2", "cosine", "dot"];
  const same = async (when: string) => {
    for (const metric of metrics) {
      const name = `q8_${metric}`;
      const [ref, threaded] = await Promise.all(apis.map((api) => searchAll(api, name, queries)));
      assert.ok(ref.every((r) => r.length === 10), `${metric} ${when}: 10 hits`);
      assert.deepEqual(threaded, ref, `${metric} ${when}: 2 search threads`);
    }
  };
  const put = async (from: number, to: number) => {
    for (const api of apis) {
      for (const metric of metrics) {
        for (let i = from; i < to; i += 1000) {
          await api.call("PutBatch", {
            points: points.slice(i, Math.min(to, i + 1000)),
            collection: `q8_${metric}`,
          });
        }
      }
    }
  };
  try {
    for (const api of apis) {
      for (const metric of metrics) {
        await api.call("CreateCollection", {
          name: `q8_${metric}`,
          dimension: DIM,
          metric,
          quantization: "int8",
          // One candidate per hit re-ranked: the hits are the int8 walk's own (at a larger
          // factor they would match a float search's, hiding which one ran).
          rescore: 1,
        });
      }
    }
    await put(0, 2000);
    await same("before training");
    await put(2000, total);
    await same("trained");
    for (const api of apis) {
      for (const metric of metrics) {
        const collection = `q8_${metric}`;
        for (let id = 5; id < total; id += 9) await api.call("Delete", { id, collection });
        for (let id = 0; id < 200; id += 3) {
          await api.call("Put", {
            id,
            vector: points[id].vector.map((x) => -x),
            collection,
          });
        }
      }
    }
    await same("deletes and upserts");
    for (const a of apis) a.close();
    for (const n of nodes) await n.restart();
    apis = nodes.map((n) => new ApiClient(n.address, { timeout_ms: 60_000 }));
    await same("after a snapshot restart");
    for (const n of nodes) assert.deepEqual(n.unexpected_exits, []);
  } catch (e) {
    for (const n of nodes) console.error(`node stderr:\n${n.tail()}`);
    throw e;
  } finally {
    for (const a of apis) a.close();
    for (const n of nodes) await n.close();
  }
});
