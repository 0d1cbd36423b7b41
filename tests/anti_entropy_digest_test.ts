/**
 * The router's periodic anti-entropy goes by digests (src/router/rebalance/digest_sync.ts over
 * the nodes' Transfer.Digest and Transfer.BucketEntries): three storage nodes, a router following
 * gossip with `--anti-entropy-s 1`, a collection of 3 shards with RF 2 and 600 points.
 *
 * - Runs on the unchanged cluster find every shard's replicas equal (the router logs it) and
 *   scan nothing.
 * - A put and a delete written to one replica only (as if the other had missed them) reach the
 *   other replica through the next run, which logs the differing buckets and copies.
 */
import assert from "node:assert/strict";
import { withCluster } from "../harness/cluster.ts";
import { waitFor } from "../harness/wait.ts";
import { placementOf } from "../harness/placement.ts";

const COLLECTION = "digest_ae";

Deno.test({
  name:
    "anti-entropy by digests: unchanged replicas exchange roots only; a missed write is repaired",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({
      nodes: 3,
      replication_factor: 2,
      gossip: true,
      router_args: ["--anti-entropy-s", "1"],
    }, async (c) => {
      const router = c.api(c.routerAddr, 10_000);
      await waitFor(async () => {
        const s = await router.call("Stats", {});
        return s.nodes!.filter((n) => n.error === "").length === 3 && !s.rebalancing;
      }, "3-node ring");
      await router.call("CreateCollection", {
        name: COLLECTION,
        dimension: 2,
        shard_number: 3,
        replication_factor: 2,
      });
      await router.call("PutBatch", {
        collection: COLLECTION,
        points: Array.from({ length: 600 }, (_, id) => ({ id, vector: [id, 1] })),
        consistency: "all",
      });
      const log = () => c.router!.log();
      await waitFor(
        () =>
          Promise.resolve(
            /anti-entropy by digests over 3 shard replica sets .* 3 equal/.test(log()),
          ),
        "a digest run on the unchanged cluster",
        30_000,
      );
      const p = await placementOf(router, COLLECTION, c.nodeAddrs, 2);
      const [a, b] = p.owners(1000);
      const [d, e] = p.owners(5);
      const v = Date.now() * 1024;
      await c.api(a).call("Put", {
        collection: COLLECTION,
        id: 1000,
        vector: [9, 9],
        version: String(v),
      });
      await c.api(e).call("Delete", { collection: COLLECTION, id: 5, version: String(v + 1) });
      await waitFor(
        async () => {
          const got = await c.api(b).call("Get", { collection: COLLECTION, id: 1000 });
          const gone = await c.api(d).call("Get", { collection: COLLECTION, id: 5 });
          return got.found && !gone.found;
        },
        "the missed put and delete reached the other replicas",
        30_000,
      );
      // The run logs its summary after its copies landed: wait for it, do not race it.
      await waitFor(
        () =>
          Promise.resolve(
            /anti-entropy by digests over 3 shard replica sets .* [1-9]\d* buckets differed/.test(
              log(),
            ),
          ),
        "the repairing run's summary names the buckets that differed",
        30_000,
      );
      const count = await router.call("Count", { collection: COLLECTION });
      assert.equal(Number(count.count), 600);
    });
  },
});
