/**
 * Cluster-wide backups through the router (src/router/backups.ts) with real processes:
 *
 * - static ring, 3 nodes, RF 2: write (puts, overwrites, deletes), back up through the router,
 *   write more, restore into a new collection through the router: every id read through the
 *   router and every search equal the state at backup time; list, ALREADY_EXISTS, the CLI,
 *   delete; then one node stopped: Backup fails UNAVAILABLE naming it and leaves no backup on
 *   the others, Restore fails changing nothing;
 * - gossip ring, a 4th node joins after the backup: the restore creates the collection empty on
 *   it and starts anti-entropy, after which every id reads back as at backup time and each
 *   point is on its owners.
 *
 * `withCluster` stops every process it started.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { placementOf } from "../harness/placement.ts";
import { type ApiClient, isServiceError } from "../src/api/client.ts";
import type { StatsResponse } from "../src/api/proto.ts";
import { withCluster } from "../harness/cluster.ts";
import { runCli } from "../harness/servers.ts";
import { waitFor } from "../harness/wait.ts";
import { Rng } from "../src/testing/random.ts";

const DIM = 4;
const C = "bk_src";
const IDS = 300;

function vec(rng: Rng): number[] {
  return Array.from(Float32Array.from({ length: DIM }, () => rng.next() * 2 - 1));
}

/** Every id 0..IDS-1 of `collection` read through the router: its vector or null. */
async function readAll(api: ApiClient, collection: string): Promise<(number[] | null)[]> {
  const out: (number[] | null)[] = [];
  for (let id = 0; id < IDS; id++) {
    const r = await api.call("Get", { id, collection });
    out.push(r.found ? r.vector : null);
  }
  return out;
}

/** Search results (id, distance) of `queries` in `collection` through the router. */
async function searchAll(
  api: ApiClient,
  collection: string,
  queries: number[][],
): Promise<Array<Array<[number, number]>>> {
  const out: Array<Array<[number, number]>> = [];
  for (const vector of queries) {
    const r = await api.call("Search", { vector, k: 10, ef: 400, collection });
    assert.equal(r.partial, false);
    // uint64 ids come as decimal strings; these are small integers.
    out.push(r.results.map((x) => [Number(x.id), x.distance]));
  }
  return out;
}

/** Writes: 200 points, 20 overwritten, 20 deleted (ids from `from`). */
async function writeSome(api: ApiClient, rng: Rng, from: number, count: number): Promise<void> {
  const points = Array.from({ length: count }, (_, i) => ({ id: from + i, vector: vec(rng) }));
  await api.call("PutBatch", { points, collection: C });
  for (let i = 0; i < 20; i++) {
    await api.call("Put", { id: (i * 13) % (from + count), vector: vec(rng), collection: C });
    await api.call("Delete", { id: (i * 29 + 5) % (from + count), collection: C });
  }
}

async function rejectsCode(p: Promise<unknown>, code: grpc.status, message: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isServiceError(e), String(e));
    assert.equal(e.code, code, e.details);
    assert.match(e.details, message);
    return true;
  });
}

Deno.test({
  name: "cluster backup (static, RF 2): back up, write more, restore: the restore is the backup",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withCluster({ nodes: 3, replication_factor: 2 }, async (c) => {
      const api = c.api(c.routerAddr, 20_000);
      const rng = new Rng(7);
      await api.call("CreateCollection", { name: C, dimension: DIM });
      await writeSome(api, rng, 0, 200);
      const atBackup = await readAll(api, C);
      const queries = Array.from({ length: 8 }, () => vec(rng));
      const searchesAtBackup = await searchAll(api, C, queries);
      const live = atBackup.filter((v) => v !== null).length;
      assert.ok(live > 150 && live < 200, `${live} live points`);

      const made = await api.call("Backup", { collection: C, name: "b1" });
      const b = made.backup!;
      assert.equal(b.complete, true);
      assert.deepEqual(b.nodes!.map((n) => n.address), [...c.nodeAddrs].sort());
      assert.ok(b.nodes!.every((n) => n.error === "" && n.backup!.name === "b1"));
      // RF 2: every live point is in two nodes' images.
      assert.equal(Number(b.points), 2 * live);

      // Write more: new ids, overwrites, deletes.
      await writeSome(api, rng, 200, 100);
      assert.notDeepEqual(await readAll(api, C), atBackup);

      const restored = await api.call("Restore", { backup: "b1", collection: "bk_dst" });
      assert.equal(restored.collection!.name, "bk_dst");
      assert.equal(restored.collection!.dimension, DIM);
      assert.equal(Number(restored.points), 2 * live);
      assert.deepEqual(restored.nodes!.map((n) => n.from_backup), [true, true, true]);
      assert.equal(restored.anti_entropy_started, false);
      assert.deepEqual(await readAll(api, "bk_dst"), atBackup);
      assert.deepEqual(await searchAll(api, "bk_dst", queries), searchesAtBackup);

      const listed = await api.call("ListBackups", {});
      assert.deepEqual(listed.errors, []);
      assert.deepEqual(listed.backups.map((x) => [x.name, x.complete, x.nodes!.length]), [
        ["b1", true, 3],
      ]);
      await rejectsCode(
        api.call("Backup", { collection: C, name: "b1" }),
        grpc.status.ALREADY_EXISTS,
        /failed on 3 of 3 storage nodes/,
      );
      await rejectsCode(
        api.call("Restore", { backup: "b1", collection: "bk_dst" }),
        grpc.status.ALREADY_EXISTS,
        /already exists/,
      );

      // The CLI through the router.
      const cli = (...args: string[]) => runCli(["--addr", c.routerAddr, ...args]);
      const created = await cli("backup", "create", "--collection", C, "--name", "b2");
      assert.equal(created.code, 0, created.stderr);
      assert.match(created.stdout, /Backup "b2" of collection "bk_src" on 3 storage nodes/);
      const list = await cli("backup", "list");
      assert.match(list.stdout, /^b1 .* nodes=3\/3\nb2 .* nodes=3\/3$/m);
      const del = await cli("backup", "delete", "--name", "b2");
      assert.equal(del.code, 0, del.stderr);
      assert.match(del.stdout, /Deleted backup "b2" on 3 storage nodes/);

      const deleted = await api.call("DeleteBackup", { name: "b1" });
      assert.deepEqual(deleted.nodes, [...c.nodeAddrs].sort());
      assert.deepEqual((await api.call("ListBackups", {})).backups, []);
      await rejectsCode(
        api.call("DeleteBackup", { name: "b1" }),
        grpc.status.NOT_FOUND,
        /on no storage node/,
      );

      // One node down: no backup anywhere, and a restore changes nothing.
      await api.call("Backup", { collection: C, name: "b3" });
      await c.killNode(1, "SIGTERM");
      await rejectsCode(
        api.call("Backup", { collection: C, name: "b4" }),
        grpc.status.UNAVAILABLE,
        new RegExp(`failed on 1 of 3 storage nodes: ${c.nodeAddrs[1].replace(/\./g, "\\.")}`),
      );
      for (const i of [0, 2]) {
        const own = await c.api(c.nodeAddrs[i]).call("ListBackups", {});
        assert.deepEqual(own.backups.map((x) => x.name), ["b3"], `node ${i}`);
      }
      await rejectsCode(
        api.call("Restore", { backup: "b3", collection: "bk_none" }),
        grpc.status.UNAVAILABLE,
        /nothing was changed/,
      );
      for (const i of [0, 2]) {
        const own = await c.api(c.nodeAddrs[i]).call("ListCollections", {});
        assert.equal(own.collections.some((x) => x.name === "bk_none"), false);
      }
    }),
});

async function stats(api: ApiClient): Promise<StatsResponse> {
  return await api.call("Stats", {});
}

Deno.test({
  name: "cluster restore into a changed ring (gossip): a new node starts empty; anti-entropy " +
    "moves the points to their owners",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withCluster({ nodes: 3, replication_factor: 2, gossip: true }, async (c) => {
      const api = c.api(c.routerAddr, 20_000);
      const answering = async () => (await stats(api)).nodes!.filter((n) => n.error === "").length;
      await waitFor(async () => (await answering()) === 3, "the router's ring has 3 nodes");
      const rng = new Rng(9);
      // 12 shards: the node that joins later is all but sure to hold some (checked below).
      await api.call("CreateCollection", { name: C, dimension: DIM, shard_number: 12 });
      await writeSome(api, rng, 0, 200);
      await waitFor(async () => !(await stats(api)).rebalancing, "placement settled", 30_000);
      const atBackup = await readAll(api, C);
      await api.call("Backup", { collection: C, name: "g1" });

      const n = await c.addNode();
      await waitFor(async () => (await answering()) === 4, "the router's ring has 4 nodes", 30_000);
      await waitFor(async () => !(await stats(api)).rebalancing, "the join settled", 60_000);
      const listed = await api.call("ListBackups", {});
      assert.equal(listed.backups[0].complete, false, "the new node lacks g1");

      const r = await api.call("Restore", { backup: "g1", collection: "g_dst" });
      const fresh = r.nodes!.find((x) => x.address === c.nodeAddrs[n])!;
      assert.deepEqual([fresh.from_backup, fresh.points], [false, "0"]);
      assert.equal(r.anti_entropy_started, true);
      await waitFor(
        async () => !(await stats(api)).rebalancing,
        "the anti-entropy run settled",
        60_000,
      );
      assert.deepEqual(await readAll(api, "g_dst"), atBackup);
      // The new node now holds its share of the restored collection: the points of its shards
      // (the restored collection keeps the backed-up one's 12 shards).
      // The fresh node made g_dst empty with the backup's layout (it once took the default,
      // one shard, and the router's ListCollections could list that node's entry).
      const freshInfo = (await c.api(c.nodeAddrs[n]).call("ListCollections", {})).collections
        .find((x) => x.name === "g_dst");
      assert.equal(freshInfo?.shard_number, 12);
      const placed = await placementOf(api, "g_dst", c.nodeAddrs, 2);
      assert.equal(placed.layout.shard_number, 12);
      const mine = [...atBackup.keys()].filter((id) =>
        atBackup[id] !== null && placed.owners(id).includes(c.nodeAddrs[n])
      );
      const own = await c.api(c.nodeAddrs[n]).call("Stats", {});
      const count = Number(own.collections.find((x) => x.name === "g_dst")?.count ?? 0);
      assert.equal(count, mine.length, `the new node holds ${count} points of g_dst`);
      assert.ok(count > 0);
    }),
});
