/**
 * Scroll, Count and SearchBatch through the router over three real storage nodes (RF 2): the
 * router's answers are LOGICAL (src/router/points_read.ts). Points are written through the
 * router with overwrites and deletes; then stale copies are planted directly on the one node
 * that does not own an id (a live copy older than the owners' tombstone, which must not come
 * back; a live copy older than the owners' newer put, whose vector must not win). Count must be
 * the number of distinct live ids, and a full Scroll must list each exactly once, in order,
 * with the newest vector, whatever the page size.
 */
import assert from "node:assert/strict";
import { withCluster } from "../harness/cluster.ts";

const C = "points_read";
const N = 300;

Deno.test({
  name: "router Scroll and Count: each id once, newest version decides, across pages",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withCluster({ nodes: 3, replication_factor: 2, consistency: "all" }, async (c) => {
      const router = c.api(c.routerAddr);
      const nodes = c.nodeAddrs.map((a) => c.api(a));
      await router.call("CreateCollection", { name: C, dimension: 2 });
      /** The model: id -> vector of the live points. */
      const live = new Map<number, number[]>();
      const ids = Array.from({ length: N }, (_, i) => i * 13 + 1);
      await router.call("PutBatch", {
        collection: C,
        points: ids.map((id) => ({ id, vector: [id, 0] })),
      });
      for (const id of ids) live.set(id, [id, 0]);
      // Overwrites, and deletes of existing and never-written ids.
      const versions = new Map<number, number>();
      for (const id of ids.slice(0, 40)) {
        const r = await router.call("Put", { collection: C, id, vector: [id, 1] });
        versions.set(id, Number(r.version));
        live.set(id, [id, 1]);
      }
      const deleted = ids.filter((_, i) => i % 7 === 3);
      for (const id of [...deleted, 999_999]) {
        await router.call("Delete", { collection: C, id });
        live.delete(id);
      }

      // Stale copies on the node that does not own the id, at a version below the owners'.
      const stray = async (id: number, vector: number[], version: number) => {
        let planted = 0;
        for (const n of nodes) {
          const g = await n.call("Get", { collection: C, id });
          if (g.version !== "0") continue; // an owner
          await n.call("Put", { collection: C, id, vector, version: String(version) });
          planted++;
        }
        assert.equal(planted, 1, `id ${id} is held by exactly two of three nodes`);
      };
      const revived = deleted.filter((id) => id <= ids[39]); // deleted after an overwrite
      assert.ok(revived.length >= 3);
      for (const id of revived) await stray(id, [id, 7], versions.get(id)!);
      const overwritten = ids.slice(0, 40).filter((id) => !deleted.includes(id)).slice(0, 5);
      for (const id of overwritten) await stray(id, [id, 9], versions.get(id)! - 1);

      const expected = [...live.keys()].sort((a, b) => a - b);
      const count = await router.call("Count", { collection: C });
      assert.equal(count.count, String(expected.length));
      assert.equal(count.partial, false);
      assert.equal(count.shards_answered, count.shards_total);
      // A node holds the points of its shards (3 shards of 2 replicas over 3 nodes: at least
      // one node lacks a shard), plus the strays: no single node's count is the answer.
      const own = await Promise.all(nodes.map((n) => n.call("Count", { collection: C })));
      assert.ok(
        own.some((o) => Number(o.count) < expected.length),
        `node counts ${own.map((o) => o.count)}`,
      );

      for (const limit of [1, 37, 10_000]) {
        const seen: number[] = [];
        let cursor = "";
        let pages = 0;
        do {
          const page = await router.call("Scroll", {
            collection: C,
            limit,
            cursor,
            with_vector: limit === 37,
          });
          assert.ok(page.points.length <= limit);
          assert.equal(page.partial, false);
          for (const p of page.points) {
            // uint64 ids come as decimal strings; these are small integers.
            const id = Number(p.id);
            if (limit === 37) assert.deepEqual(p.vector, live.get(id), `vector of ${id}`);
            else assert.deepEqual(p.vector, []);
            seen.push(id);
          }
          cursor = page.next_cursor;
          pages++;
          if (limit === 1 && pages > 30) break; // enough single-point pages
        } while (cursor !== "");
        if (limit === 1) assert.deepEqual(seen, expected.slice(0, seen.length));
        else {
          assert.deepEqual(seen, expected, `limit ${limit}`);
          assert.equal(pages, Math.ceil(expected.length / limit));
        }
      }

      const batch = await router.call("SearchBatch", {
        searches: ids.slice(104, 107).map((id) => ({ collection: C, vector: [id, 0], k: 1 })),
      });
      // Once (CI under load, 2026-12-01) the third search's top hit was 1366, not 1379: its
      // shard's answer was missing. The message shows whether the router said so (partial).
      assert.deepEqual(
        batch.results.map((r) => Number(r.results[0]?.id)),
        ids.slice(104, 107),
        JSON.stringify(batch.results.map((r) => ({
          ids: r.results.map((h) => h.id),
          partial: r.partial,
          shards: `${r.shards_answered}/${r.shards_total}`,
          searches: r.shard_searches,
        }))),
      );
      await assert.rejects(router.call("Count", { collection: "missing" }), { code: 5 });
      await assert.rejects(
        router.call("Scroll", { collection: C, cursor: "v1:x" }),
        (e: { code: number; details: string }) =>
          e.code === 3 && /^cursor "v1:x" is not a cursor/.test(e.details),
      );
    }),
});
