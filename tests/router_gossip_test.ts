/**
 * The router following gossip: three storage nodes that join each other and a router started
 * with only `--join` (no `--nodes`), all real processes on free loopback ports (RF 2, quorum):
 *
 * - once gossip has converged, `Members` through the router lists the 3 nodes and the router
 *   (flagged `is_router`), also through the CLI; puts land on exactly the owners of the ring
 *   over the nodes' addresses and searches through the router are exact and complete;
 * - a SIGKILLed node is shown `dead` by the router within 8 s; then every search is complete
 *   (partial=false) and exact, and quorum writes succeed (the ring lost the dead node); the
 *   writes (consistency one) it missed before it was declared dead stay queued as hints;
 * - a 4th node started with `--join` enters the router's ring: it gets the collection created
 *   before it joined, and the new writes it owns land on it;
 * - the dead node restarted (same id, port, data) re-enters the ring and gets its hints.
 */

import assert from "node:assert/strict";
import type { ApiClient } from "../src/api/client.ts";
import type { MembersResponse } from "../src/api/proto.ts";
import { placementOf } from "../harness/placement.ts";
import { type TestCluster, withCluster } from "../harness/cluster.ts";
import { runCli } from "../harness/servers.ts";
import { waitFor } from "../harness/wait.ts";
import { Rng } from "../src/testing/random.ts";

const DIM = 4;
const COLLECTION = "gossip_test";

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

async function getOn(api: ApiClient, id: number): Promise<number[] | null> {
  const r = await api.call("Get", { id, collection: COLLECTION });
  return r.found ? r.vector : null;
}

/** Router search equals exact search over `points`, and covers every shard. */
async function assertSearchExact(
  router: ApiClient,
  points: Map<number, number[]>,
  random: () => number,
  queries: number,
  shards_total: number,
): Promise<void> {
  for (let q = 0; q < queries; q++) {
    const query = vec(random);
    const k = 10;
    const res = await router.call("Search", { vector: query, k, ef: 200, collection: COLLECTION });
    assert.equal(res.partial, false);
    assert.equal(res.shards_total, shards_total);
    assert.equal(res.shards_answered, shards_total);
    const exact = [...points].map(([id, v]) => ({ id, distance: l2(query, v) }))
      .sort((a, b) => a.distance - b.distance || a.id - b.id).slice(0, k);
    // uint64 ids come as decimal strings; these are small integers.
    assert.deepEqual(res.results.map((r) => Number(r.id)), exact.map((r) => r.id));
  }
}

/** Puts ids [from, to) through the router (quorum); records them in `points`. */
async function putRange(
  router: ApiClient,
  points: Map<number, number[]>,
  random: () => number,
  from: number,
  to: number,
): Promise<void> {
  for (let id = from; id < to; id++) {
    const vector = vec(random);
    const r = await router.call("Put", { id, vector, collection: COLLECTION });
    assert.equal(r.replicas_acked, 2, `put of id ${id} was acknowledged by ${r.replicas_acked}`);
    points.set(id, vector);
  }
}

/** Members through the router, by id. */
async function view(router: ApiClient): Promise<MembersResponse> {
  return await router.call("Members", {});
}

/** `hints_pending` of node `addr` in the router's Stats (0 when not listed). */
async function hintsPending(router: ApiClient, addr: string): Promise<number> {
  const s = await router.call("Stats", {});
  const n = s.nodes!.find((x) => x.address === addr) as { hints_pending?: string } | undefined;
  return Number(n?.hints_pending ?? 0);
}

/** Addresses the router's Stats reports as answering ring nodes. */
async function answeringNodes(router: ApiClient): Promise<string[]> {
  const s = await router.call("Stats", {});
  return s.nodes!.filter((n) => n.error === "").map((n) => n.address).sort();
}

Deno.test({
  name: "router with --join only: follows gossip; node death and join change its ring",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const step = async (name: string, body: () => Promise<void>) => {
      const t0 = Date.now();
      await body();
      console.log(`  ${name}: ok (${Date.now() - t0} ms)`);
    };
    await withCluster({ nodes: 3, replication_factor: 2, gossip: true }, async (c: TestCluster) => {
      const router = c.api(c.routerAddr);
      const random = mulberry32(7);
      const id = (i: number) => `node-${c.nodePorts[i]}`;
      const points = new Map<number, number[]>();
      const hinted: number[] = [];

      await step("the router joins; Members shows 3 nodes and 1 router", async () => {
        await waitFor(async () => {
          const m = await view(router);
          const nodes = await answeringNodes(router);
          return m.members.length === 4 && m.members.every((x) => x.state === "alive") &&
            nodes.length === 3;
        }, "the router's view has 3 alive nodes and itself, and its ring 3 nodes");
        const m = await view(router);
        const routers = m.members.filter((x) => x.is_router);
        assert.equal(routers.length, 1);
        assert.equal(routers[0].id, m.self_id);
        assert.equal(routers[0].address, c.routerAddr);
        for (let i = 0; i < 3; i++) {
          const n = m.members.find((x) => x.id === id(i));
          assert.equal(n?.address, c.nodeAddrs[i], `member ${id(i)}`);
          assert.equal(n?.is_router, false);
        }
        assert.deepEqual(await answeringNodes(router), c.nodeAddrs.slice().sort());
        const cli = await runCli(["members", "--addr", c.routerAddr]);
        assert.equal(cli.code, 0, cli.stderr);
        for (let i = 0; i < 3; i++) assert.match(cli.stdout, new RegExp(id(i)));
        assert.match(cli.stdout, new RegExp(`${m.self_id} \\*.*router`));
      });

      await step("puts land on the ring owners; searches are exact and complete", async () => {
        // 12 shards: a node joining later is all but sure to gain some (checked below).
        await router.call("CreateCollection", {
          name: COLLECTION,
          dimension: DIM,
          shard_number: 12,
        });
        await putRange(router, points, random, 0, 40);
        const ring = await placementOf(router, COLLECTION, c.nodeAddrs, 2);
        for (let i = 0; i < 3; i++) {
          const api = c.api(c.nodeAddrs[i]);
          for (const [p, v] of points) {
            const got = await getOn(api, p);
            if (ring.owners(p).includes(c.nodeAddrs[i])) {
              assert.deepEqual(got, v, `${id(i)} should hold id ${p}`);
            } else assert.equal(got, null, `${id(i)} should not hold id ${p}`);
          }
        }
        await assertSearchExact(router, points, random, 5, 12);
      });

      await step(
        "SIGKILL a node: dead within 8 s; searches complete, quorum writes ok",
        async () => {
          await c.killNode(2);
          const t0 = Date.now();
          // Before it is declared dead it is still an owner: writes it misses are hinted.
          const ring = await placementOf(router, COLLECTION, c.nodeAddrs, 2);
          for (let p = 50; p < 70; p++) {
            const vector = vec(random);
            await router.call("Put", { id: p, vector, collection: COLLECTION, consistency: "one" });
            points.set(p, vector);
            if (ring.owners(p).includes(c.nodeAddrs[2])) hinted.push(p);
          }
          assert.ok(hinted.length > 0);
          assert.equal(await hintsPending(router, c.nodeAddrs[2]), hinted.length);
          await waitFor(
            async () => {
              const m = await view(router);
              return m.members.find((x) => x.id === id(2))?.state === "dead";
            },
            `the router sees ${id(2)} dead`,
            8000,
          );
          console.log(`    router saw ${id(2)} dead ${Date.now() - t0} ms after SIGKILL`);
          assert.deepEqual(await answeringNodes(router), c.nodeAddrs.slice(0, 2).sort());
          await assertSearchExact(router, points, random, 5, 12);
          await putRange(router, points, random, 100, 120);
          for (let p = 100; p < 120; p++) {
            const r = await router.call("Get", { id: p, collection: COLLECTION });
            assert.deepEqual(r.vector, points.get(p));
          }
          await assertSearchExact(router, points, random, 3, 12);
          // Off the ring, its hints are kept (and reported by Stats).
          assert.equal(await hintsPending(router, c.nodeAddrs[2]), hinted.length);
        },
      );

      await step("a 4th node joins: it enters the ring and new writes land on it", async () => {
        const n = await c.addNode();
        await waitFor(
          async () => {
            const m = await view(router);
            const nodes = await answeringNodes(router);
            return m.members.find((x) => x.id === id(n))?.state === "alive" &&
              nodes.includes(c.nodeAddrs[n]);
          },
          `the router's ring has ${id(n)}`,
          15_000,
        );
        const fresh = c.api(c.nodeAddrs[n]);
        await waitFor(
          async () => {
            const l = await fresh.call("ListCollections", {});
            return l.collections.some((x) => x.name === COLLECTION);
          },
          `${id(n)} got collection ${COLLECTION}`,
          10_000,
        );
        const ring = await placementOf(router, COLLECTION, [
          c.nodeAddrs[0],
          c.nodeAddrs[1],
          c.nodeAddrs[n],
        ], 2);
        await putRange(router, points, random, 200, 240);
        let owned = 0;
        for (let p = 200; p < 240; p++) {
          const got = await getOn(fresh, p);
          if (ring.owners(p).includes(c.nodeAddrs[n])) {
            owned++;
            assert.deepEqual(got, points.get(p), `${id(n)} should hold id ${p}`);
          } else assert.equal(got, null, `${id(n)} should not hold id ${p}`);
        }
        assert.ok(owned > 0, `none of 40 new points is owned by ${id(n)}`);
        console.log(`    ${owned} of 40 new points landed on ${id(n)}`);
        const m = await view(router);
        assert.equal(m.members.length, 5);
        assert.equal(m.members.filter((x) => x.is_router).length, 1);
      });

      await step("the dead node restarts: back on the ring, its hints replayed", async () => {
        await c.startNode(2);
        await waitFor(
          async () => {
            const nodes = await answeringNodes(router);
            return nodes.includes(c.nodeAddrs[2]) &&
              await hintsPending(router, c.nodeAddrs[2]) === 0;
          },
          `the router's ring has ${id(2)} again and its hints are delivered`,
          15_000,
        );
        const back = c.api(c.nodeAddrs[2]);
        // Rebalancing may prune the hinted points it no longer owns on the 4-node ring.
        const ring = await placementOf(router, COLLECTION, c.nodeAddrs, 2);
        for (const p of hinted) {
          if (!ring.owners(p).includes(c.nodeAddrs[2])) continue;
          assert.deepEqual(await getOn(back, p), points.get(p), `id ${p}`);
        }
        assert.equal((await answeringNodes(router)).length, 4);
      });
    });
  },
});
