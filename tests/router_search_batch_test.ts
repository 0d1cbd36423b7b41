/**
 * The router coalesces concurrent searches bound for one storage node into SearchBatch calls
 * (src/router/search_coalescer.ts), against real processes: a router and 3 nodes, a collection
 * of 3 shards (RF 2). Many searches at once through the router each get exactly the exact top-k
 * over all points, every shard answered once, and the router's metrics show that some of them
 * did travel in batches; searches of a missing collection sent among them get NOT_FOUND each
 * while the others still answer. The same searches with `--search-batch-max 0` give the same
 * answers and no batches.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { isServiceError } from "../src/api/client.ts";
import { type TestCluster, withCluster } from "../harness/cluster.ts";
import { Rng } from "../src/testing/random.ts";

const DIM = 8;
const COLLECTION = "coalesced";
const POINTS = 300;
const SEARCHES = 80;
const K = 10;

/** `name{labels} value` lines of the router's `GET /metrics`. */
async function scrape(c: TestCluster): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${c.routerHttpPort}/metrics`);
  assert.equal(res.status, 200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

function l2(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

async function run(batch_max: number): Promise<string[]> {
  const answers: string[] = [];
  await withCluster({
    nodes: 3,
    replication_factor: 2,
    http: true,
    // No hedges: 80 searches at once on a busy machine pass the hedge delay, and a hedge adds
    // a shard search (this test counts them exactly).
    router_args: [
      "--search-batch-max",
      String(batch_max),
      "--search-hedge-ms",
      "0",
      "--recall-sample-rate",
      "0",
    ],
  }, async (c) => {
    const router = c.api(c.routerAddr, 20_000);
    const rng = new Rng(1414);
    const vec = () => Array.from(Float32Array.from({ length: DIM }, () => rng.next() * 2 - 1));
    await router.call("CreateCollection", {
      name: COLLECTION,
      dimension: DIM,
      shard_number: 3,
      replication_factor: 2,
    });
    const points = Array.from({ length: POINTS }, (_, id) => ({ id, vector: vec() }));
    await router.call("PutBatch", { points, collection: COLLECTION });
    const queries = Array.from({ length: SEARCHES }, vec);
    const before = await scrape(c);
    // Every fifth search is of a collection no node has: NOT_FOUND, whatever it travels with.
    const settled = await Promise.allSettled(queries.map((vector, i) =>
      router.call("Search", {
        vector,
        k: K,
        ef: 300,
        collection: i % 5 === 4 ? "missing" : COLLECTION,
      })
    ));
    const after = await scrape(c);
    let good = 0;
    settled.forEach((s, i) => {
      if (i % 5 === 4) {
        assert.equal(s.status, "rejected", `search ${i} of a missing collection`);
        const e = (s as PromiseRejectedResult).reason;
        assert.ok(isServiceError(e) && e.code === grpc.status.NOT_FOUND, String(e));
        answers.push("NOT_FOUND");
        return;
      }
      assert.equal(s.status, "fulfilled", `search ${i}: ${(s as PromiseRejectedResult).reason}`);
      const r = (s as PromiseFulfilledResult<Awaited<ReturnType<typeof router.call<"Search">>>>)
        .value;
      good++;
      assert.equal(r.partial, false);
      assert.equal(r.shards_answered, 3);
      assert.equal(r.shards_total, 3);
      assert.equal(r.shard_searches, 3, "each shard searched once");
      const exact = points.map((p) => ({ id: p.id, d: l2(queries[i], p.vector) }))
        .sort((a, b) => a.d - b.d || a.id - b.id).slice(0, K).map((x) => x.id);
      const ids = r.results.map((x) => Number(x.id));
      assert.deepEqual(ids, exact, `search ${i}`);
      answers.push(ids.join(","));
    });
    const d = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    assert.equal(d("vectordb_router_search_shard_searches_total"), good * 3);
    const batches = d("vectordb_router_search_batches_total");
    const batched = d('vectordb_router_search_batched_total{outcome="batched"}');
    const resent = d('vectordb_router_search_batched_total{outcome="resent"}');
    if (batch_max === 0) {
      assert.equal(batches, 0);
      assert.equal(batched, 0);
      assert.equal(resent, 0);
    } else {
      assert.ok(batches > 0, `${SEARCHES} searches at once made no SearchBatch call`);
      assert.ok(batched >= 2 * batches, `${batched} searches in ${batches} batches`);
      assert.ok(batched / batches <= batch_max);
      // A batch carrying a search of the missing collection is refused as a whole (NOT_FOUND)
      // and its searches resent alone: the answers above are theirs.
      assert.ok(resent > 0, `no batch carried a search of the missing collection`);
    }
  });
  return answers;
}

Deno.test({
  name: "router: concurrent searches travel in SearchBatch calls with the answers of lone ones",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const batched = await run(8);
    const alone = await run(0);
    assert.deepEqual(batched, alone);
  },
});
