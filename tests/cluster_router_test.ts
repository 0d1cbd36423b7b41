/**
 * The router with three real storage nodes (RF 2, quorum), all processes on free loopback ports:
 *
 * - the original quickstart through the CLI: put 100 and 101, search → 100;
 * - puts (single and batched) land on exactly the owners the ring names (checked on each node);
 * - router search equals exact search over the union of the points;
 * - with any one node SIGKILLed, every search is complete (partial=false) and every point
 *   readable; writes meanwhile (consistency one) are hinted and, after the node restarts, are
 *   on it in order (a put followed by a delete of the same id leaves no point).
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type ApiClient, isServiceError } from "../src/api/client.ts";
import type { StatsResponse } from "../src/api/proto.ts";
import { type CollectionPlacement, placementOf, placementWith } from "../harness/placement.ts";
import { type TestCluster, withCluster } from "../harness/cluster.ts";
import { freePort } from "../harness/ports.ts";
import { ROUTER_ENTRY, routerFlags, runCli, spawnServer } from "../harness/servers.ts";
import { waitFor } from "../harness/wait.ts";
import { Rng } from "../src/testing/random.ts";

const DIM = 4;
const COLLECTION = "cluster_test";
/** Shards of the test collection. */
const SHARDS = 12;

/** Seeded uniform [0, 1) numbers: the project's mulberry32 generator. */
function mulberry32(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

/** float32-rounded values, as the nodes store them. */
function vec(random: () => number): number[] {
  return Array.from(Float32Array.from({ length: DIM }, () => random() * 2 - 1));
}

function l2(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

/** `hints_pending` of node `addr` in a router's Stats (a uint64 string on the wire). */
function hintsPending(stats: StatsResponse, addr: string): number {
  const n = stats.nodes!.find((x) => x.address === addr) as { hints_pending?: string };
  return Number(n.hints_pending);
}

async function getOn(api: ApiClient, id: number): Promise<number[] | null> {
  const r = await api.call("Get", { id, collection: COLLECTION });
  return r.found ? r.vector : null;
}

/** Every point is on exactly its owners (checked directly on each running node). */
async function assertPlacement(
  c: TestCluster,
  ring: CollectionPlacement,
  points: Map<number, number[]>,
  skip: Set<number> = new Set(),
): Promise<void> {
  for (let i = 0; i < c.nodeAddrs.length; i++) {
    if (skip.has(i)) continue;
    const api = c.api(c.nodeAddrs[i]);
    for (const [id, v] of points) {
      const owns = ring.owners(id).includes(c.nodeAddrs[i]);
      const got = await getOn(api, id);
      if (owns) assert.deepEqual(got, v, `node ${c.nodeAddrs[i]} should hold id ${id}`);
      else assert.equal(got, null, `node ${c.nodeAddrs[i]} should not hold id ${id}`);
    }
  }
}

async function assertSearchExact(
  router: ApiClient,
  points: Map<number, number[]>,
  random: () => number,
  queries: number,
): Promise<void> {
  for (let q = 0; q < queries; q++) {
    const query = vec(random);
    const k = 10;
    const res = await router.call("Search", { vector: query, k, ef: 200, collection: COLLECTION });
    assert.equal(res.partial, false);
    assert.equal(res.shards_answered, SHARDS);
    assert.equal(res.shards_total, SHARDS);
    const exact = [...points].map(([id, v]) => ({ id, distance: l2(query, v) }))
      .sort((a, b) => a.distance - b.distance || a.id - b.id).slice(0, k);
    // uint64 ids come as decimal strings; these are small integers.
    assert.deepEqual(res.results.map((r) => Number(r.id)), exact.map((r) => r.id));
    res.results.forEach((r, i) => assert.ok(Math.abs(r.distance - exact[i].distance) < 1e-4));
  }
}

Deno.test({
  name: "router over three nodes: quickstart, placement, exact search, failover, handoff",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // Steps run in order and share the cluster; a failure ends the test (with the logs).
    const step = async (name: string, body: () => Promise<void>) => {
      const t0 = Date.now();
      await body();
      console.log(`  ${name}: ok (${Date.now() - t0} ms)`);
    };
    await withCluster({ nodes: 3, replication_factor: 2 }, async (c) => {
      const router = c.api(c.routerAddr);
      // 12 shards of the router's RF (2): every node holds some (the steps below need ids
      // each node owns; with one shard per node a node may hold none).
      const ring = placementWith(
        COLLECTION,
        { shard_number: SHARDS, replication_factor: 2 },
        c.nodeAddrs,
      );
      const random = mulberry32(20240611);

      await step("the original quickstart through the CLI", async () => {
        const addr = ["--addr", c.routerAddr];
        for (
          const args of [["put", "--id", "100", "--vector", "0.1,0.2,0.3"], [
            "put",
            "--id",
            "101",
            "--vector",
            "0.9,0.8,0.7",
          ]]
        ) {
          const r = await runCli([...args, ...addr]);
          assert.equal(r.code, 0, r.stderr);
        }
        const r = await runCli([
          "--json",
          "search",
          "--vector",
          "0.1,0.2,0.3",
          "--k",
          "1",
          ...addr,
        ]);
        assert.equal(r.code, 0, r.stderr);
        const res = JSON.parse(r.stdout);
        assert.equal(res.results.length, 1);
        assert.equal(res.results[0].id, 100);
        assert.equal(res.partial, false);
      });

      const points = new Map<number, number[]>();
      await step("writes land on exactly the owners the ring names", async () => {
        const created = await router.call("CreateCollection", {
          name: COLLECTION,
          dimension: DIM,
          shard_number: SHARDS,
        });
        assert.equal(created.created, true);
        const list = await router.call("ListCollections", {});
        assert.ok(list.collections.some((x) => x.name === COLLECTION));
        const batch = [];
        for (let i = 0; i < 50; i++) {
          const id = Math.floor(random() * 1_000_000);
          const v = vec(random);
          points.set(id, v);
          batch.push({ id, vector: v });
        }
        const b = await router.call("PutBatch", { points: batch, collection: COLLECTION });
        assert.equal(b.count, batch.length);
        for (let i = 0; i < 10; i++) {
          const id = 2_000_000 + i;
          const v = vec(random);
          points.set(id, v);
          const r = await router.call("Put", { id, vector: v, collection: COLLECTION });
          assert.equal(r.replicas_acked, 2);
        }
        // The layout the router reports is the one assumed above.
        assert.deepEqual(
          (await placementOf(router, COLLECTION, c.nodeAddrs, 2)).layout,
          ring.layout,
        );
        await assertPlacement(c, ring, points);
      });

      await step("router search equals exact search over the union", async () => {
        await assertSearchExact(router, points, random, 5);
      });

      await step("any one node down: searches complete, points readable", async () => {
        for (let i = 0; i < 3; i++) {
          await c.killNode(i);
          await assertSearchExact(router, points, random, 2);
          for (const [id, v] of points) {
            const r = await router.call("Get", { id, collection: COLLECTION });
            assert.deepEqual(r.vector, v, `id ${id} with node ${i} down`);
          }
          await c.startNode(i);
          // "Any one node down": wait until the router sees this one up again.
          await waitFor(async () => {
            const m = await router.call("Members", {});
            return m.members.every((x) => x.state === "alive");
          }, `the router did not see node ${i} come back`);
        }
      });

      await step("writes while a node is down reach it, in order, when it returns", async () => {
        const down = 1;
        const addr = c.nodeAddrs[down];
        await c.killNode(down);
        // Ids the down node owns, and one it does not.
        const owned: number[] = [];
        for (let id = 3_000_000; owned.length < 6; id++) {
          if (ring.owners(id).includes(addr)) owned.push(id);
        }
        const [a, b, d, e, q, x] = owned;
        const one = { collection: COLLECTION, consistency: "one" };
        const va = vec(random);
        await router.call("Put", { id: a, vector: va, ...one });
        points.set(a, va);
        // A put then a delete: the replayed put must not resurrect the point.
        await router.call("Put", { id: b, vector: vec(random), ...one });
        const del = await router.call("Delete", { id: b, ...one });
        assert.equal(del.deleted, true);
        // Two puts of one id: the later must win.
        await router.call("Put", { id: d, vector: vec(random), ...one });
        const vd = vec(random);
        await router.call("Put", { id: d, vector: vd, ...one });
        points.set(d, vd);
        // A batch, and the delete of a point written before the outage.
        const ve = vec(random);
        await router.call("PutBatch", { points: [{ id: e, vector: ve }], ...one });
        points.set(e, ve);
        const gone = [...points.keys()].find((id) => ring.owners(id).includes(addr))!;
        await router.call("Delete", { id: gone, ...one });
        points.delete(gone);
        // Quorum needs both owners: refused with the count, yet queued for the down owner.
        const vq = vec(random);
        await assert.rejects(
          router.call("Put", { id: q, vector: vq, collection: COLLECTION }),
          (err: unknown) => {
            assert.ok(isServiceError(err));
            assert.equal(err.code, grpc.status.UNAVAILABLE);
            assert.match(err.details, /Only 1 of 2 owners acknowledged the put of id \d+/);
            return true;
          },
        );
        points.set(q, vq);
        const stats = await router.call("Stats", {});
        const nodeStats = stats.nodes!.find((n) => n.address === addr)!;
        assert.match(nodeStats.error ?? "", /UNAVAILABLE/);
        // Writes for the down node: a, b, delete b, d, d, the batch, delete gone, and q.
        assert.equal(hintsPending(stats, addr), 8);

        await c.startNode(down);
        const direct = c.api(addr);
        await waitFor(
          async () => hintsPending(await router.call("Stats", {}), addr) === 0,
          "the router did not replay its hints",
        );
        assert.deepEqual(await getOn(direct, q), vq);
        // While it catches up (and after), quorum writes succeed again.
        const vx = vec(random);
        await router.call("Put", { id: x, vector: vx, collection: COLLECTION });
        points.set(x, vx);
        for (const addr of c.nodeAddrs) {
          const api = c.api(addr);
          assert.equal(await getOn(api, b), null, `id ${b} (put, then deleted) is back on ${addr}`);
          assert.equal(await getOn(api, gone), null, `deleted id ${gone} is back on ${addr}`);
        }
        await assertPlacement(c, ring, points);
        await assertSearchExact(router, points, random, 2);
      });

      await step("a full hint queue refuses writes with RESOURCE_EXHAUSTED", async () => {
        // A second router with room for 2 hints per node, in front of the same nodes.
        const port = await freePort();
        const small = spawnServer({
          name: "router-small",
          entry: ROUTER_ENTRY,
          flags: routerFlags({
            port,
            nodes: c.nodeAddrs,
            data_dir: `${c.dir}/router-small`,
            // The cluster's router's node timeout, not the 2 s default a loaded machine exceeds.
            node_timeout_ms: c.options.node_timeout_ms,
            extra: ["--hints-max", "2"],
          }),
          group: c.procs,
        });
        try {
          await small.ready;
          const api = c.api(`127.0.0.1:${port}`);
          // This router learned the layout from the nodes (storage nodes from before shards
          // report none: then it routes the collection as one shard): ask it, and stop a node
          // that holds a shard under it.
          const its = await placementOf(api, COLLECTION, c.nodeAddrs, 2);
          const victim = [2, 1, 0].find((i) =>
            its.placement.shardsOf(COLLECTION, its.layout, c.nodeAddrs[i]).length > 0
          )!;
          const addr = c.nodeAddrs[victim];
          await c.killNode(victim);
          const owned: number[] = [];
          for (let id = 4_000_000; owned.length < 3; id++) {
            if (its.owners(id).includes(addr)) owned.push(id);
          }
          const one = { collection: COLLECTION, consistency: "one" };
          await api.call("Put", { id: owned[0], vector: vec(random), ...one });
          await api.call("Put", { id: owned[1], vector: vec(random), ...one });
          await assert.rejects(
            api.call("Put", { id: owned[2], vector: vec(random), ...one }),
            (err: unknown) => {
              assert.ok(isServiceError(err));
              assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
              assert.match(err.details, /Hint queue for node 127\.0\.0\.1:\d+ is full: 2 hints/);
              return true;
            },
          );
          const stats = await api.call("Stats", {});
          const n = stats.nodes!.find((x) => x.address === addr) as { hints_refused?: string };
          assert.equal(n.hints_refused, "1");
          await c.startNode(victim);
          await waitFor(
            async () => hintsPending(await api.call("Stats", {}), addr) === 0,
            "the small router did not replay its hints",
          );
        } finally {
          await small.stop();
        }
      });
    });
  },
});
