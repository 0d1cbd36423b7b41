import assert from "node:assert/strict";
import { HttpApi } from "../api/http.ts";
import { SecurityConfig } from "../api/security.ts";
import { shardOf } from "../common/shard.ts";
import { withNode } from "./handlers_testing.ts";

Deno.test("node GET /stats: a sharded collection's per-shard figures, as gRPC clients see them", async () => {
  await withNode("stats_http_", async (api, _tr, _store, handlers) => {
    const http = new HttpApi({
      kind: "node",
      handlers,
      security: SecurityConfig.insecure(),
      ready: () => true,
      log: () => {},
    });
    try {
      const shards = 4;
      await api("CreateCollection", { name: "sharded", dimension: 2, shard_number: shards });
      await api("PutBatch", {
        collection: "sharded",
        points: Array.from({ length: 30 }, (_, i) => ({ id: i, vector: [i, 1] })),
      });
      const deleted = [0, 1, 2, 3, 4, 5, 6];
      await api("DeleteBatch", { collection: "sharded", ids: deleted });
      const port = await http.listen("127.0.0.1", 0);
      const res = await fetch(`http://127.0.0.1:${port}/stats`);
      assert.equal(res.status, 200);
      const body = await res.json();

      const c = body.collections.find((x: { name: string }) => x.name === "sharded");
      assert.equal(c.count, "23");
      assert.equal(c.tombstones, "7");
      assert.equal(c.shards.length, shards);
      const live = Array(shards).fill(0);
      const dead = Array(shards).fill(0);
      for (let id = 0; id < 30; id++) {
        if (deleted.includes(id)) dead[shardOf(id, shards)]++;
        else live[shardOf(id, shards)]++;
      }
      for (let s = 0; s < shards; s++) {
        const unit = c.shards[s];
        assert.equal(unit.shard, s);
        assert.equal(unit.count, String(live[s]), `shard ${s} count`);
        assert.equal(unit.tombstones, String(dead[s]), `shard ${s} tombstones`);
        for (const f of ["last_seq", "last_snapshot_seq", "wal_bytes"]) {
          assert.match(unit[f], /^[0-9]+$/, `shard ${s} ${f}`);
        }
        assert.ok(Number(unit.last_seq) > 0, `shard ${s} was written`);
      }
      // The same figures as the gRPC handler's, which builds them as numbers.
      const grpcStats = await api("Stats", {});
      const own = grpcStats.collections.find((x: { name: string }) => x.name === "sharded");
      assert.deepEqual(
        c.shards.map((u: Record<string, string>) => [u.count, u.last_seq, u.wal_bytes]),
        own.shards.map((u: Record<string, number>) => [
          String(u.count),
          String(u.last_seq),
          String(u.wal_bytes),
        ]),
      );
      // The router's fields are there at their zero values (the proto's shape on every server).
      assert.equal(body.is_router, false);
      assert.deepEqual(
        [body.shard_drops_done, body.shard_drops_refused, body.points_dropped],
        ["0", "0", "0"],
      );
      assert.deepEqual(body.layout_conflicts, []);
    } finally {
      await http.close(1000);
    }
  });
});
