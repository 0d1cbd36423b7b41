/**
 * A node away longer than the tombstone grace cannot bring back a point deleted meanwhile
 * (src/node/tombstone_gc.ts): three storage nodes with `--tombstone-grace-s 3`, a router
 * following gossip (RF 3, so every node holds every point), 300 points loaded.
 *
 * - Node 1 stops (SIGTERM, data kept). Point 7 is deleted directly on nodes 0 and 2 (as if
 *   node 1 had missed the delete, with no hint for it anywhere).
 * - Nodes 0 and 2 collect the tombstone once it is older than the grace (their Stats show no
 *   tombstone left).
 * - Node 1 starts again on its data directory after more than the grace: it warns, forgets its
 *   entries, and the router's rebalancing refills it from the others. Without the rule, the
 *   rebalancer's scan of node 1 would copy its live, older point 7 to the others, which no
 *   longer hold the tombstone that would have beaten it: a resurrection.
 * - Point 7 stays deleted through the router and on every node; every other point is back on
 *   node 1.
 */
import assert from "node:assert/strict";
import { withCluster } from "../harness/cluster.ts";
import { sleep, waitFor } from "../harness/wait.ts";
import { ApiClient } from "../src/api/client.ts";

const COLLECTION = "grace_test";
const POINTS = 300;
const GRACE_S = 3;

async function statsOf(api: ApiClient): Promise<{ count: number; tombstones: number }> {
  const s = await api.call("Stats", {});
  const c = s.collections.find((x) => x.name === COLLECTION);
  return { count: Number(c?.count ?? 0), tombstones: Number(c?.tombstones ?? 0) };
}

Deno.test({
  name: "tombstone grace: a node back after the grace does not resurrect a deleted point",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({
      nodes: 3,
      replication_factor: 3,
      gossip: true,
      node_args: ["--tombstone-grace-s", String(GRACE_S)],
      router_args: ["--dead-grace-s", "1"],
    }, async (c) => {
      const router = c.api(c.routerAddr, 10_000);
      await waitFor(async () => {
        const s = await router.call("Stats", {});
        return s.nodes!.filter((n) => n.error === "").length === 3 && !s.rebalancing;
      }, "3-node ring");
      await router.call("CreateCollection", { name: COLLECTION, dimension: 2 });
      await router.call("PutBatch", {
        collection: COLLECTION,
        points: Array.from({ length: POINTS }, (_, id) => ({ id, vector: [id, 1] })),
        consistency: "all",
      });
      // Node 1's client is its own, closed before the SIGTERM: a Deno client that receives the
      // server's GOAWAY can hit denoland/deno#36788 (an nghttp2 assertion aborts the test).
      const first = new ApiClient(c.nodeAddrs[1], { timeout_ms: 5000 });
      assert.equal((await statsOf(first)).count, POINTS);
      first.close();
      const nodes = c.nodeAddrs.map((a, i) => i === 1 ? null : c.api(a));
      for (const n of nodes) if (n !== null) assert.equal((await statsOf(n)).count, POINTS);

      // Node 1 stops with its data; the delete reaches only nodes 0 and 2.
      const p = c.nodes[1]!;
      p.signal("SIGTERM");
      assert.equal((await p.done).code, 0, p.tail());
      const version = String(Date.now() * 1024);
      for (const i of [0, 2]) {
        await nodes[i]!.call("Delete", { collection: COLLECTION, id: 7, version });
      }
      const downAt = Date.now();
      await waitFor(
        async () => {
          for (const i of [0, 2]) if ((await statsOf(nodes[i]!)).tombstones !== 0) return false;
          return true;
        },
        "nodes 0 and 2 collected the tombstone",
        30_000,
      );
      for (const i of [0, 2]) {
        assert.equal((await nodes[i]!.call("Get", { collection: COLLECTION, id: 7 })).found, false);
      }
      const away = Date.now() - downAt;
      if (away < (GRACE_S + 2) * 1000) await sleep((GRACE_S + 2) * 1000 - away);

      await c.startNode(1);
      const node1 = c.api(c.nodeAddrs[1]);
      nodes[1] = node1;
      assert.match(
        c.nodes[1]!.log(),
        /WARNING: this node last ran \d+ s ago, longer than the tombstone grace/,
      );
      // Refilled by the router from nodes 0 and 2.
      await waitFor(
        async () => {
          const s = await router.call("Stats", {});
          return (await statsOf(node1)).count === POINTS - 1 && !s.rebalancing &&
            s.nodes!.filter((n) => n.error === "").length === 3;
        },
        "node 1 refilled",
        60_000,
      );
      // Give any later copy a chance to resurrect it: a further anti-entropy would have by now.
      await sleep(1000);
      assert.equal((await router.call("Get", { collection: COLLECTION, id: 7 })).found, false);
      for (const n of nodes) {
        assert.equal((await n!.call("Get", { collection: COLLECTION, id: 7 })).found, false);
        assert.equal((await statsOf(n!)).count, POINTS - 1);
      }
      const count = await router.call("Count", { collection: COLLECTION });
      assert.equal(Number(count.count), POINTS - 1);
    });
  },
});
