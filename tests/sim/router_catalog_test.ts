/**
 * The router's catalog of collection layouts at work in the router core, in the simulated world
 * of router_world.ts: points go to the replicas of their shard under the layout the nodes
 * report; an unknown collection is looked up once (shared, then negatively cached), never
 * guessed while no node answers; CreateCollection fills in and sends the layout; DropCollection
 * forgets it; ListCollections shows it.
 */
import assert from "node:assert/strict";
import {
  validateCreateCollectionRequest,
  validatePointRef,
  validatePutRequest,
} from "../../src/api/validate.ts";
import * as grpc from "@grpc/grpc-js";
import { RouterStatusError } from "../../src/router/node_port.ts";
import { LAYOUT_MISS_TTL_MS } from "../../src/router/core.ts";
import { simRouterCore, type World } from "./router_world.ts";

/** Runs the world until `p` settled; its rejection is returned to the caller, not unhandled. */
async function settle<T>(world: World, p: Promise<T>): Promise<T> {
  const outcome = p.then((value) => ({ value }), (error) => ({ error }));
  await world.run(world.clock.now_ms + 5_000);
  const o = await outcome;
  if ("error" in o) throw o.error;
  return o.value;
}

const listCalls = (world: World) =>
  [...world.nodes.values()].reduce((sum, n) => sum + n.list_calls, 0);

Deno.test("router catalog: points go to their shard's replicas under the reported layout", async () => {
  const layout = { shard_number: 5, replication_factor: 2 };
  const { world, core } = await simRouterCore(11, 0, layout);
  for (let id = 1; id <= 60; id++) {
    await settle(world, core.put(validatePutRequest({ id, vector: [id, 0], collection: "c" })));
  }
  assert.deepEqual(core.catalog.get("c"), layout, "learned from the nodes");
  for (let id = 1; id <= 60; id++) {
    const owners = core.view.placement.owners("c", layout, id);
    for (const [a, n] of world.nodes) {
      assert.equal(n.data.has(id), owners.includes(a), `id ${id} on ${a}`);
    }
  }
  // The ring's hash would have placed some ids elsewhere: routing really changed.
  const differs = Array.from({ length: 60 }, (_, i) => i + 1).some((id) =>
    core.view.ring.owners(id, 2).join() !== core.view.placement.owners("c", layout, id).join()
  );
  assert.ok(differs);
  await core.stop();
});

Deno.test("router catalog: an unknown collection is looked up once, shared, then cached as missing", async () => {
  const { world, core } = await simRouterCore(12);
  await world.run(world.clock.now_ms + 1_000); // the start-up refresh
  const before = listCalls(world);
  // Ten concurrent requests for a collection no node has: one ListCollections per node.
  const gets = Array.from(
    { length: 10 },
    (_, i) => core.get(validatePointRef({ id: i + 1, collection: "nope" })).catch(() => null),
  );
  await settle(world, Promise.all(gets));
  assert.equal(listCalls(world) - before, 3, "one shared refresh of the three nodes");
  // More within the negative cache's time: no more lookups, the pre-shard layout is used.
  assert.deepEqual(await settle(world, core.layout("nope")), core.catalog.legacy);
  assert.equal(listCalls(world) - before, 3, "negatively cached");
  world.clock.runUntil(world.clock.now_ms + LAYOUT_MISS_TTL_MS + 1);
  await settle(world, core.layout("nope"));
  assert.equal(listCalls(world) - before, 6, "looked up again after the cache's time");
  await core.stop();
});

Deno.test("router catalog: no node answering the lookup is UNAVAILABLE, not a guess", async () => {
  const { world, core } = await simRouterCore(13, 0, { shard_number: 4, replication_factor: 2 });
  for (const n of world.nodes.values()) n.up = false;
  await world.run(world.clock.now_ms + 1_000); // the start-up refresh fails
  assert.equal(core.catalog.get("c"), undefined);
  await assert.rejects(
    settle(world, core.put(validatePutRequest({ id: 1, vector: [1, 0], collection: "c" }))),
    (e: unknown) => e instanceof RouterStatusError && /layout of collection "c"/.test(e.message),
  );
  for (const n of world.nodes.values()) n.up = true;
  await settle(world, core.put(validatePutRequest({ id: 1, vector: [1, 0], collection: "c" })));
  assert.deepEqual(core.catalog.get("c"), { shard_number: 4, replication_factor: 2 });
  await core.stop();
});

Deno.test("router catalog: CreateCollection fills in and sends the layout; Drop forgets it", async () => {
  const { world, core } = await simRouterCore(14);
  const made = await settle(
    world,
    core.createCollection(validateCreateCollectionRequest({ name: "d", dimension: 2 })),
  );
  assert.equal(made.created, true);
  // Default: one shard per storage node at creation, the router's replication factor.
  const want = { shard_number: 3, replication_factor: 2 };
  assert.deepEqual(core.catalog.get("d"), want);
  for (const n of world.nodes.values()) {
    const r = n.created.get("d")!;
    assert.equal(r.shard_number, 3);
    assert.equal(r.replication_factor, 2);
  }
  const asked = await settle(
    world,
    core.createCollection(
      validateCreateCollectionRequest({
        name: "e",
        dimension: 2,
        shard_number: 6,
        replication_factor: 3,
      }),
    ),
  );
  assert.equal(asked.created, true);
  assert.deepEqual(core.catalog.get("e"), { shard_number: 6, replication_factor: 3 });
  // Creating it again (it exists) keeps the layout.
  await settle(
    world,
    core.createCollection(validateCreateCollectionRequest({ name: "e", dimension: 2 })),
  );
  assert.deepEqual(core.catalog.get("e"), { shard_number: 6, replication_factor: 3 });
  // ListCollections shows the layouts.
  const list = await settle(world, core.listCollections());
  const e = list.collections.find((c) => c.name === "e")!;
  assert.equal(e.shard_number, 6);
  assert.equal(e.replication_factor, 3);
  await settle(world, core.dropCollection("d"));
  assert.equal(core.catalog.get("d"), undefined);
  await core.stop();
});

Deno.test("router catalog: a creation hinted to a node that was down carries the layout", async () => {
  const { world, core } = await simRouterCore(15);
  await world.run(world.clock.now_ms + 1_000);
  const down = [...world.nodes.values()][2];
  down.up = false;
  const made = await settle(
    world,
    core.createCollection(
      validateCreateCollectionRequest({ name: "h", dimension: 2, shard_number: 5 }),
    ),
  );
  assert.equal(made.created, true);
  assert.equal(down.created.get("h"), undefined);
  down.up = true;
  // The production loop's 100 ms tick delivers hints.
  const until = world.clock.now_ms + 10_000;
  const tick = () => {
    core.tick();
    if (world.clock.now_ms < until) world.clock.after(100, tick);
  };
  world.clock.after(100, tick);
  await world.run(until + 1_000);
  const r = down.created.get("h");
  assert.ok(r !== undefined, "the hinted creation was delivered");
  // Without the layout the node would make one shard and refuse the router's shard lists.
  assert.equal(r.shard_number, 5);
  assert.equal(r.replication_factor, 2);
  await core.stop();
});

Deno.test("router catalog: a pre-shard collection's points on hash-ring owners stay readable", async () => {
  // Nodes report no layout: collection "c" is from before shards (1 shard, the router's RF 2),
  // and its points still lie where the hash ring put them (no rebalancing here).
  const { world, core } = await simRouterCore(15);
  const legacy = core.catalog.legacy;
  let id = 1;
  let holder = "";
  for (; id < 1000; id++) {
    const only = core.view.ring.owners(id, 2).find((a) =>
      !core.view.placement.owners("c", legacy, id).includes(a)
    );
    if (only !== undefined) {
      holder = only;
      break;
    }
  }
  assert.notEqual(holder, "", "some id has a ring owner outside its shard's replicas");
  world.nodes.get(holder)!.data.set(id, { version: 5, deleted: false, value: 42 });
  world.recordApplied(id, 5, false, 42);
  const got = await settle(world, core.get(validatePointRef({ id, collection: "c" })));
  assert.equal(got.found, true, "found on its hash-ring owner");
  assert.equal(got.vector[0], 42);
  // Read repair copies it to the shard's replicas (the migration, one read at a time).
  await world.run(world.clock.now_ms + 2_000);
  for (const a of core.view.placement.owners("c", legacy, id)) {
    assert.equal(world.nodes.get(a)!.data.get(id)?.version, 5, `repaired onto ${a}`);
  }
  await core.stop();
});

Deno.test("router catalog: a write to a collection no node reported is NOT_FOUND, never routed by a guess", async () => {
  const { world, core } = await simRouterCore(16, 0, { shard_number: 4, replication_factor: 2 });
  await world.run(world.clock.now_ms + 1_000); // the start-up refresh
  const isNotFound = (e: unknown) =>
    e instanceof RouterStatusError && e.code === grpc.status.NOT_FOUND &&
    /Collection "nope"/.test(e.message);
  await assert.rejects(
    settle(world, core.put(validatePutRequest({ id: 1, vector: [1, 0], collection: "nope" }))),
    isNotFound,
  );
  // Again within the negative cache's time: still refused, not guessed.
  await assert.rejects(
    settle(world, core.delete(validatePointRef({ id: 1, collection: "nope" }))),
    isNotFound,
  );
  for (const n of world.nodes.values()) assert.equal(n.data.has(1), false, "nothing written");
  // The implicit default collection (made by its first Put on the nodes) is written unseen.
  const put = await settle(
    world,
    core.put(validatePutRequest({ id: 2, vector: [2, 0], collection: "default" })),
  );
  assert.equal(put.ok, true);
  // A read of an unknown collection is not refused here (the nodes answer for it).
  await settle(world, core.get(validatePointRef({ id: 3, collection: "nope" })));
  await core.stop();
});

Deno.test("router catalog: create-if-absent re-issued sends the layout the nodes report for what the client left unset", async () => {
  // "c" exists with 4 shards (RF 2); the ring has 3 nodes, the router's default would be 3.
  const { world, core } = await simRouterCore(17, 0, { shard_number: 4, replication_factor: 2 });
  const again = await settle(
    world,
    core.createCollection(validateCreateCollectionRequest({ name: "c", dimension: 2 })),
  );
  assert.equal(again.created, false);
  for (const n of world.nodes.values()) {
    const r = n.create_requests.at(-1)!;
    assert.equal(r.shard_number, 4, `${n.address} asked for the reported shard_number`);
    assert.equal(r.replication_factor, 2);
  }
  // What the client sets is sent as set (the nodes compare it).
  await settle(
    world,
    core.createCollection(
      validateCreateCollectionRequest({ name: "c", dimension: 2, shard_number: 5 }),
    ),
  );
  for (const n of world.nodes.values()) {
    assert.equal(n.create_requests.at(-1)!.shard_number, 5);
    assert.equal(n.create_requests.at(-1)!.replication_factor, 2);
  }
  // A new collection still gets the defaults (one shard per node).
  await settle(
    world,
    core.createCollection(validateCreateCollectionRequest({ name: "new", dimension: 2 })),
  );
  for (const n of world.nodes.values()) assert.equal(n.create_requests.at(-1)!.shard_number, 3);
  await core.stop();
});

Deno.test("router catalog: nodes reporting two layouts for one collection: writes refused naming both", async () => {
  const { world, core } = await simRouterCore(18, 0, { shard_number: 4, replication_factor: 2 });
  const [a, b, c] = [...world.nodes.values()];
  const made = (shard_number: number) => ({
    name: "d",
    dimension: 2,
    metric: "l2",
    shard_number,
    replication_factor: 2,
  });
  a.created.set("d", made(3));
  b.created.set("d", made(4));
  c.created.set("d", made(3));
  const put = (id: number) =>
    settle(world, core.put(validatePutRequest({ id, vector: [1, 0], collection: "d" })));
  await assert.rejects(put(1), (e: unknown) => {
    assert.ok(e instanceof RouterStatusError);
    assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
    assert.match(e.message, /"d" has two layouts/);
    assert.match(e.message, /shard_number 3 replication_factor 2/);
    assert.match(e.message, /shard_number 4 replication_factor 2/);
    return true;
  });
  assert.equal(core.layoutConflicts().length, 1);
  for (const n of world.nodes.values()) assert.equal(n.data.has(1), false, "nothing written");
  // Dropped (to be made again alike): forgotten.
  await settle(world, core.dropCollection("d"));
  assert.deepEqual(core.layoutConflicts(), []);
  await core.stop();
});

Deno.test("router catalog: after a creation, nodes that kept another router's layout are found out", async () => {
  const { world, core } = await simRouterCore(19, 0, { shard_number: 4, replication_factor: 2 });
  await world.run(world.clock.now_ms + 1_000); // the start-up refresh
  // Another router (a ring of 5) created "d" on one node first; that node keeps its layout.
  const [a] = [...world.nodes.values()];
  a.created.set("d", { name: "d", dimension: 2, shard_number: 5, replication_factor: 2 });
  // (A simulated node does not compare layouts: it answers created:false.)
  await settle(
    world,
    core.createCollection(
      validateCreateCollectionRequest({ name: "d", dimension: 2, shard_number: 3 }),
    ),
  );
  await world.run(world.clock.now_ms + 1_000);
  assert.equal(core.layoutConflicts().length, 1, "the refresh after the creation saw both");
  await assert.rejects(
    settle(world, core.put(validatePutRequest({ id: 1, vector: [1, 0], collection: "d" }))),
    (e: unknown) => e instanceof RouterStatusError && e.code === grpc.status.FAILED_PRECONDITION,
  );
  await core.stop();
});

Deno.test("router catalog: a write routed with a stale layout is refused by its nodes; the catalog is refreshed and the write routed again", async () => {
  const layout = { shard_number: 5, replication_factor: 2 };
  const { world, core } = await simRouterCore(13, 0, layout);
  await world.run(world.clock.now_ms + 1_000); // the start-up refresh
  assert.deepEqual(core.catalog.get("c"), layout);
  // The catalog keeps an older layout of "c" (dropped and made again through another router).
  const stale = { shard_number: 3, replication_factor: 2 };
  core.catalog.set("c", stale);
  for (let id = 1; id <= 40; id++) {
    await settle(world, core.put(validatePutRequest({ id, vector: [id, 0], collection: "c" })));
    if (id === 1) assert.deepEqual(core.catalog.get("c"), layout, "refreshed after the refusal");
  }
  // Every point sits on its owners under the nodes' layout, and nowhere else.
  for (let id = 1; id <= 40; id++) {
    const owners = core.view.placement.owners("c", layout, id);
    for (const [a, n] of world.nodes) {
      assert.equal(n.data.has(id), owners.includes(a), `id ${id} on ${a}`);
    }
  }
  // Deletes too, after the catalog went stale again.
  core.catalog.set("c", stale);
  await settle(world, core.delete(validatePointRef({ id: 7, collection: "c" })));
  assert.deepEqual(core.catalog.get("c"), layout);
  for (const a of core.view.placement.owners("c", layout, 7)) {
    assert.equal(world.nodes.get(a)!.data.get(7)!.deleted, true);
  }
  await core.stop();
});
