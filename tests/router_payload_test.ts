/**
 * Payloads through the router, with real processes (RF 2):
 *
 * - written by Put and PutBatch, read back by Get (the newest version's) and Search
 *   (`with_payload`, `with_vector`) through the router, and stored on every owner;
 * - written while an owner is down (hinted handoff): once it is back and the hints are
 *   delivered, it holds exactly the payloads written, including a payload cleared by a later put
 *   and a point deleted after its payloaded put;
 * - repaired by a read: an owner holding an older version gets the newest one's payload;
 * - moved by rebalancing: after a 4th node joins and the placement settles, every owner under
 *   the new ring holds each point's payload, byte for byte;
 * - through the CLI: `load` of JSON lines with payloads, `put --payload`, `get` and
 *   `search --with-payload` print them.
 */

import assert from "node:assert/strict";
import type { ApiClient } from "../src/api/client.ts";
import type { StatsResponse } from "../src/api/proto.ts";
import { placementOf } from "../harness/placement.ts";
import { type TestCluster, withCluster } from "../harness/cluster.ts";
import { waitFor } from "../harness/wait.ts";
import { runCli } from "../harness/servers.ts";
import { join } from "node:path";

const DIM = 4;
const COLLECTION = "payload_test";
const RF = 2;

/** A point's vector and payload text ("" for none); null once deleted. */
type Want = { vector: number[]; payload: string } | null;

function vec(id: number): number[] {
  return [id, id % 7, (id * 13) % 5, 1];
}

/** Payloads of varied shapes; every fifth id has none. */
function payloadOf(id: number, round = 0): string {
  if (id % 5 === 0) return "";
  return JSON.stringify({
    id,
    round,
    name: `point-${id}-é`,
    tags: ["a", id % 2 === 0 ? "even" : "odd"],
    nested: { deep: { n: id / 4, ok: id % 3 === 0, none: null } },
  });
}

function hintsPending(stats: StatsResponse, addr: string): number {
  const n = stats.nodes!.find((x) => x.address === addr) as { hints_pending?: string };
  return Number(n.hints_pending);
}

/** Every id of `want` is on exactly its owners under `nodes`, with its vector and payload. */
async function assertHeld(
  c: TestCluster,
  nodes: string[],
  want: Map<number, Want>,
): Promise<void> {
  const ring = await placementOf(c.api(c.routerAddr), COLLECTION, nodes, RF);
  for (const addr of nodes) {
    const api = c.api(addr);
    const ids = [...want.keys()];
    for (let i = 0; i < ids.length; i += 200) {
      const chunk = ids.slice(i, i + 200);
      const got = await Promise.all(
        chunk.map((id) => api.call("Get", { id, collection: COLLECTION })),
      );
      chunk.forEach((id, j) => {
        const w = want.get(id)!;
        if (w !== null && ring.owners(id).includes(addr)) {
          assert.ok(got[j].found, `${addr} owns id ${id} but lacks it`);
          assert.deepEqual(got[j].vector, w.vector, `vector of id ${id} on ${addr}`);
          assert.equal(got[j].payload ?? "", w.payload, `payload of id ${id} on ${addr}`);
        } else {
          assert.equal(got[j].found, false, `${addr} holds id ${id}`);
        }
      });
    }
  }
}

async function put(router: ApiClient, want: Map<number, Want>, id: number, round = 0) {
  const payload = payloadOf(id, round);
  await router.call("Put", {
    id,
    vector: vec(id),
    payload,
    collection: COLLECTION,
    consistency: "one",
  });
  want.set(id, { vector: vec(id), payload });
}

Deno.test({
  name: "router payloads: Get and Search return them; hints keep them for a node that was down",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({ nodes: 3, replication_factor: RF }, async (c) => {
      const router = c.api(c.routerAddr, 10_000);
      const want = new Map<number, Want>();
      // 12 shards: the node taken down below is all but sure to own some ids.
      await router.call("CreateCollection", { name: COLLECTION, dimension: DIM, shard_number: 12 });
      const points = Array.from({ length: 300 }, (_, id) => ({
        id,
        vector: vec(id),
        payload: payloadOf(id),
      }));
      await router.call("PutBatch", { points, collection: COLLECTION });
      for (const p of points) want.set(p.id, { vector: p.vector, payload: p.payload });
      await assertHeld(c, c.nodeAddrs, want);

      const got = await router.call("Get", { id: 7, collection: COLLECTION });
      assert.equal(got.payload, payloadOf(7));
      assert.deepEqual(JSON.parse(got.payload!).nested.deep, { n: 1.75, ok: false, none: null });
      const res = await router.call("Search", {
        vector: vec(7),
        k: 3,
        collection: COLLECTION,
        with_payload: true,
        with_vector: true,
      });
      assert.equal(res.results[0].id, "7", "a uint64 id comes as a decimal string");
      assert.equal(res.results[0].payload, payloadOf(7));
      assert.deepEqual(res.results[0].vector, vec(7));
      for (const r of res.results) assert.equal(r.payload, payloadOf(Number(r.id)));
      const bare = await router.call("Search", { vector: vec(7), k: 3, collection: COLLECTION });
      assert.equal(bare.results[0].payload, "");
      assert.deepEqual(bare.results[0].vector, []);

      // A bad payload through the router: INVALID_ARGUMENT naming it, nothing written.
      await assert.rejects(
        router.call("Put", { id: 9999, vector: vec(1), payload: "[1]", collection: COLLECTION }),
        /INVALID_ARGUMENT: payload "\[1\]" must be a JSON object, got an array/,
      );
      assert.equal((await router.call("Get", { id: 9999, collection: COLLECTION })).found, false);

      // Node 1 goes down; writes it owns are hinted.
      const down = 1;
      const addr = c.nodeAddrs[down];
      const ring = await placementOf(c.api(c.routerAddr), COLLECTION, c.nodeAddrs, RF);
      await c.killNode(down);
      const owned = [...want.keys()].filter((id) => ring.owners(id).includes(addr));
      const [a, b, d, e] = owned.filter((id) => id % 5 !== 0);
      await put(router, want, a, 1); // a new payload
      await router.call("Put", {
        id: b,
        vector: vec(b),
        collection: COLLECTION,
        consistency: "one",
      });
      want.set(b, { vector: vec(b), payload: "" }); // a put without one clears it
      await put(router, want, d, 2);
      await router.call("Delete", { id: d, collection: COLLECTION, consistency: "one" });
      want.set(d, null); // deleted after its payloaded put
      const fresh = Array.from({ length: 2000 }, (_, i) => 10_000 + i)
        .filter((id) => ring.owners(id).includes(addr)).slice(0, 40);
      await router.call("PutBatch", {
        points: fresh.map((id) => ({ id, vector: vec(id), payload: payloadOf(id, 3) })),
        collection: COLLECTION,
        consistency: "one",
      });
      for (const id of fresh) want.set(id, { vector: vec(id), payload: payloadOf(id, 3) });
      await put(router, want, e, 4);
      assert.ok(hintsPending(await router.call("Stats", {}), addr) >= 6);
      // Reads through the router meanwhile see the newest payload.
      assert.equal(
        (await router.call("Get", { id: a, collection: COLLECTION })).payload,
        payloadOf(a, 1),
      );

      await c.startNode(down);
      await waitFor(
        async () => hintsPending(await router.call("Stats", {}), addr) === 0,
        "the router delivers its hints",
      );
      await assertHeld(c, c.nodeAddrs, want);

      // Read repair: one owner gets a newer version directly; a Get through the router answers
      // with it and copies it, payload included, to the other owner.
      const r = [...want.keys()].find((id) => id % 5 !== 0 && want.get(id) !== null)!;
      const [first, second] = ring.owners(r);
      const held = await c.api(second).call("Get", { id: r, collection: COLLECTION });
      const newer = String(BigInt(held.version!) + 1024n);
      const repaired = JSON.stringify({ repaired: true, id: r });
      await c.api(first).call("Put", {
        id: r,
        vector: vec(r + 1),
        payload: repaired,
        version: newer,
        collection: COLLECTION,
      });
      const read = await router.call("Get", { id: r, collection: COLLECTION });
      assert.deepEqual([read.version, read.payload], [newer, repaired]);
      await waitFor(async () => {
        const g = await c.api(second).call("Get", { id: r, collection: COLLECTION });
        return g.version === newer;
      }, "read repair reaches the stale owner");
      want.set(r, { vector: vec(r + 1), payload: repaired });
      await assertHeld(c, c.nodeAddrs, want);

      // The CLI: load keeps the payloads of JSON lines, put --payload, get and search show them.
      const file = join(c.dir, "points.jsonl");
      const lines = [20_000, 20_001, 20_002].map((id) =>
        JSON.stringify({ id, vector: vec(id), payload: id === 20_001 ? null : { cli: id } })
      );
      await Deno.writeTextFile(file, lines.join("\n") + "\n");
      const cli = (...args: string[]) =>
        runCli(["--addr", c.routerAddr, ...args, "--collection", COLLECTION]);
      const load = await cli("load", "--file", file);
      assert.equal(load.code, 0, load.stderr);
      want.set(20_000, { vector: vec(20_000), payload: '{"cli":20000}' });
      want.set(20_001, { vector: vec(20_001), payload: "" });
      want.set(20_002, { vector: vec(20_002), payload: '{"cli":20002}' });
      const putCli = await cli(
        "put",
        "--id",
        "20003",
        "--vector",
        vec(20_003).join(","),
        "--payload",
        '{ "via": "put" }',
      );
      assert.equal(putCli.code, 0, putCli.stderr);
      want.set(20_003, { vector: vec(20_003), payload: '{"via":"put"}' });
      const bad = await cli("put", "--id", "1", "--vector", vec(1).join(","), "--payload", "[]");
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--payload "\[\]" must be a JSON object, got an array/);
      const getCli = await cli("get", "--id", "20000");
      assert.equal(getCli.code, 0, getCli.stderr);
      assert.match(getCli.stdout, /payload: \{"cli":20000\}/);
      const searchCli = await cli(
        "search",
        "--vector",
        vec(20_003).join(","),
        "--k",
        "1",
        "--with-payload",
      );
      assert.equal(searchCli.code, 0, searchCli.stderr);
      assert.match(searchCli.stdout, /20003 .*\{"via":"put"\}/);
      await assertHeld(c, c.nodeAddrs, want);
    });
  },
});

async function stats(router: ApiClient): Promise<StatsResponse> {
  return await router.call("Stats", {});
}

/** Waits until the router's ring is `nodes` and a rebalance after `done_before` settled. */
async function waitSettled(router: ApiClient, nodes: string[], done_before: number) {
  await waitFor(
    async () => {
      const s = await stats(router);
      const ring = s.nodes!.filter((n) => n.error === "").map((n) => n.address).sort();
      return JSON.stringify(ring) === JSON.stringify([...nodes].sort()) && !s.rebalancing &&
        Number(s.rebalances_done) > done_before;
    },
    `the router settles on [${nodes.join(", ")}]`,
    30_000,
  );
}

Deno.test({
  name: "router payloads: rebalancing copies them to the new owners",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({ nodes: 3, replication_factor: RF, gossip: true }, async (c) => {
      const router = c.api(c.routerAddr, 10_000);
      await waitFor(
        async () => (await stats(router)).nodes!.filter((n) => n.error === "").length === 3,
        "the router's ring has 3 nodes",
      );
      // Twelve shards: the fourth node is all but sure to gain some (checked below).
      await router.call("CreateCollection", { name: COLLECTION, dimension: DIM, shard_number: 12 });
      const want = new Map<number, Want>();
      const points = Array.from({ length: 1500 }, (_, id) => ({
        id,
        vector: vec(id),
        payload: payloadOf(id),
      }));
      for (let from = 0; from < points.length; from += 500) {
        await router.call("PutBatch", {
          points: points.slice(from, from + 500),
          collection: COLLECTION,
        });
      }
      for (const p of points) want.set(p.id, { vector: p.vector, payload: p.payload });
      let s = await stats(router);
      if (s.rebalancing) await waitSettled(router, c.nodeAddrs, Number(s.rebalances_done));
      s = await stats(router);
      await c.addNode();
      await waitSettled(router, c.nodeAddrs.slice(), Number(s.rebalances_done));
      const after = await stats(router);
      const placed = await placementOf(router, COLLECTION, c.nodeAddrs, RF);
      assert.equal(placed.layout.shard_number, 12);
      const gained = placed.placement.shardsOf(COLLECTION, placed.layout, c.nodeAddrs[3]);
      // A gained shard arrives as files (its snapshot image, payloads inside) or, as a
      // fallback, point by point: either way something moved.
      if (gained.length > 0) {
        assert.ok(
          Number(after.points_copied) > 0 || Number(after.shard_moves_done ?? 0) > 0,
          "the join moved the gained shards",
        );
      }
      await assertHeld(c, c.nodeAddrs.slice(), want);
    });
  },
});
