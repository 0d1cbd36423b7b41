/**
 * Shards move as files, with real processes: three storage nodes and a router following gossip
 * (RF 2, quorum), a collection of 6 shards with 6,000 points. A 4th node joins while two
 * clients search and one writes (new ids and overwrites). Once the router's Stats say the
 * placement is settled:
 *
 * - the shards the newcomer gained arrived as files (Stats: shard moves done, bytes moved; the
 *   newcomer's log: installed from an image), not point by point;
 * - no search failed or came back partial or short during the move;
 * - no acknowledged write was lost: every id reads back (through the router) with the last
 *   value written;
 * - the newcomer serves its shards: it holds every point of the shards placed on it, with the
 *   last value written, and nothing else;
 * - the nodes that lost shards emptied those units wholesale (Stats: shard drops done) and
 *   every node holds exactly the points of its shards.
 */

import assert from "node:assert/strict";
import type { ApiClient } from "../src/api/client.ts";
import type { StatsResponse } from "../src/api/proto.ts";
import { placementOf } from "../harness/placement.ts";
import { withCluster } from "../harness/cluster.ts";
import { waitFor } from "../harness/wait.ts";
import { Rng } from "../src/testing/random.ts";

const DIM = 16;
const COLLECTION = "shard_move_test";
const POINTS = 6000;
const RF = 2;
const SHARDS = 6;

function vec(rng: Rng): number[] {
  return Array.from(Float32Array.from({ length: DIM }, () => rng.next() * 2 - 1));
}

const stats = (router: ApiClient): Promise<StatsResponse> => router.call("Stats", {});

Deno.test({
  name: "a 4th node joining gets its shards as files; no failed search, no lost write",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({ nodes: 3, replication_factor: RF, gossip: true }, async (c) => {
      const router = c.api(c.routerAddr, 10_000);
      const rng = new Rng(5);
      const expected = new Map<number, number[]>();
      await waitFor(
        async () => (await stats(router)).nodes!.filter((n) => n.error === "").length === 3,
        "the router's ring has 3 nodes",
      );
      await router.call("CreateCollection", {
        name: COLLECTION,
        dimension: DIM,
        shard_number: SHARDS,
      });
      for (let from = 0; from < POINTS; from += 1000) {
        const points = [];
        for (let id = from; id < from + 1000; id++) {
          const vector = vec(rng);
          points.push({ id, vector });
          expected.set(id, vector);
        }
        await router.call("PutBatch", { points, collection: COLLECTION });
      }
      await waitFor(async () => !(await stats(router)).rebalancing, "no rebalance running");
      const before = await stats(router);

      // Traffic: two search loops and one writer; a write counts once acknowledged.
      let running = true;
      const counts = { searches: 0, failed: 0, incomplete: 0, writes: 0, write_errors: 0 };
      const errors: string[] = [];
      const searcher = async (seed: number) => {
        const r = new Rng(seed);
        while (running) {
          try {
            const res = await router.call("Search", {
              vector: vec(r),
              k: 10,
              collection: COLLECTION,
            });
            counts.searches++;
            if (res.partial || res.results.length !== 10) counts.incomplete++;
          } catch (e) {
            counts.failed++;
            errors.push((e as Error).message);
          }
        }
      };
      const writer = async () => {
        const r = new Rng(77);
        let next = 1_000_000;
        while (running) {
          const id = r.next() < 0.5 ? next++ : Math.floor(r.next() * POINTS);
          const vector = vec(r);
          try {
            await router.call("Put", { id, vector, collection: COLLECTION });
            expected.set(id, vector);
            counts.writes++;
          } catch (e) {
            // Not acknowledged: it may or may not have landed; a later write of the id (or none)
            // decides what is expected, so such an id is retried until acknowledged.
            counts.write_errors++;
            errors.push((e as Error).message);
            for (;;) {
              try {
                await router.call("Put", { id, vector, collection: COLLECTION });
                expected.set(id, vector);
                break;
              } catch {
                await new Promise((res) => setTimeout(res, 100));
              }
            }
          }
        }
      };
      const load = Promise.all([searcher(1), searcher(2), writer()]);
      const t0 = Date.now();
      let settled: StatsResponse;
      let n: number;
      try {
        n = await c.addNode();
        await waitFor(
          async () => {
            settled = await stats(router);
            return settled.nodes!.filter((x) => x.error === "").length === 4 &&
              !settled.rebalancing &&
              Number(settled.rebalances_done) > Number(before.rebalances_done);
          },
          "the router settles on 4 nodes",
          60_000,
        );
      } finally {
        running = false;
        await load;
      }
      const s = settled!;
      console.log(
        `  settled ${Date.now() - t0} ms after the 4th node started: ${s.shard_moves_done} ` +
          `shards moved as files, ${s.shard_bytes_moved} bytes; ${s.points_copied} points ` +
          `copied to catch up; traffic ${JSON.stringify(counts)}`,
      );
      assert.ok(Number(s.shard_moves_done) > 0, "no shard moved as a file");
      // The nodes that lost shards emptied those units wholesale (ShardDrop), not entry by entry.
      assert.ok(Number(s.shard_drops_done) > 0, "no lost shard unit was dropped whole");
      assert.ok(Number(s.points_dropped) > 0);
      assert.ok(Number(s.shard_bytes_moved) > 0);
      assert.equal(s.shard_moves_active, 0);
      assert.ok(counts.searches > 0 && counts.writes > 0);
      assert.equal(counts.failed, 0, `failed searches: ${errors.slice(0, 3).join("; ")}`);
      assert.equal(counts.incomplete, 0, "a search during the move was partial or short");
      const newcomer = c.nodeAddrs[n!];
      assert.match(c.nodes[n!]!.log(), /installed from an image/);

      // No lost write: every id reads back with its last acknowledged value.
      const ids = [...expected.keys()];
      for (let i = 0; i < ids.length; i += 256) {
        const chunk = ids.slice(i, i + 256);
        const got = await Promise.all(
          chunk.map((id) => router.call("Get", { id, collection: COLLECTION })),
        );
        chunk.forEach((id, j) => {
          assert.ok(got[j].found, `acknowledged id ${id} lost`);
          assert.deepEqual(got[j].vector, expected.get(id), `id ${id} holds a stale value`);
        });
      }
      // The newcomer serves its shards: exactly the points of the shards placed on it.
      const ring = await placementOf(router, COLLECTION, c.nodeAddrs, RF);
      const api = c.api(newcomer);
      let held = 0;
      for (let i = 0; i < ids.length; i += 256) {
        const chunk = ids.slice(i, i + 256);
        const got = await Promise.all(
          chunk.map((id) => api.call("Get", { id, collection: COLLECTION })),
        );
        chunk.forEach((id, j) => {
          if (ring.owners(id).includes(newcomer)) {
            assert.ok(got[j].found, `${newcomer} owns id ${id} but lacks it`);
            assert.deepEqual(got[j].vector, expected.get(id));
            held++;
          } else {
            assert.equal(got[j].found, false, `${newcomer} holds id ${id} it does not own`);
          }
        });
      }
      assert.ok(held > 0, "the newcomer holds no shard");
      // The router counts each point once (per shard, from its replicas), not once per replica.
      const logical = (await stats(router)).collections.find((x) => x.name === COLLECTION)!;
      assert.equal(Number(logical.count), ids.length, "the router's logical count");
      assert.equal(Number(logical.replica_count), ids.length * RF);
      // Every node holds exactly the points of its shards (losers kept nothing they lost).
      for (const addr of c.nodeAddrs) {
        const st = await c.api(addr).call("Stats", {});
        const mine = st.collections!.find((x) => x.name === COLLECTION)!;
        const owned = ids.filter((id) => ring.owners(id).includes(addr)).length;
        assert.equal(Number(mine.count), owned, `${addr} holds ${mine.count}, owns ${owned}`);
      }
      console.log(`  ${newcomer} serves ${held} of ${ids.length} points`);
    });
  },
});
