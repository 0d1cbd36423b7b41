import assert from "node:assert/strict";
import { Placement } from "../../cluster/placement.ts";
import { type RebalanceHost, Rebalancer, type RingRef } from "./rebalancer.ts";

const ringOf = (nodes: string[]): RingRef => ({
  nodes,
  placement: new Placement(nodes),
});

const L = { shard_number: 3, replication_factor: 2 };

/** A host whose nodes hold nothing: a run settles at once. Counts the runs. */
function host(current: () => RingRef) {
  const runs: string[][] = [];
  const h: RebalanceHost = {
    log: () => {},
    transfer: () => null,
    collections: () => {
      runs.push(current().nodes);
      return Promise.resolve([]);
    },
    layout: () => Promise.resolve(L),
    current,
    drainOlderWrites: () => Promise.resolve(true),
    node_timeout_ms: 1000,
  };
  return { h, runs };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
}

Deno.test("rebalancer: a dead node's grace; it returns within it and nothing is re-replicated", async () => {
  const full = ringOf(["a", "b", "c"]);
  let cur = full;
  const { h, runs } = host(() => cur);
  const rb = new Rebalancer(h, { delay_ms: 1, dead_grace_ms: 60_000 });
  rb.changed(full);
  // c is declared dead: the ring in use loses it, but the run waits out the grace.
  cur = ringOf(["a", "b"]);
  rb.changed(cur, true);
  assert.equal(rb.inGrace, true);
  assert.equal(rb.busy, false, "a joining node is not held back during a grace");
  assert.equal(rb.stats.rebalancing, true);
  // Reads still ask c's replicas' other holders under the settled placement, and a search
  // reads from the settled placement (its replicas hold complete shards).
  for (const id of [1, 2, 3, 4, 5]) {
    for (const o of full.placement.owners("c", L, id)) {
      assert.ok(rb.readers("c", L, id).includes(o));
    }
  }
  assert.equal(rb.readPlacement(), full.placement);
  // c is back: the run starts at once, to the full ring (only what c missed moves).
  cur = full;
  rb.changed(cur, false);
  assert.equal(rb.inGrace, false);
  await until(() => !rb.stats.rebalancing, "the run after the return settles");
  assert.deepEqual(runs, [["a", "b", "c"]], "no run on the ring without c");
  assert.equal(rb.readPlacement(), full.placement, "settled: the placement in use");
  assert.equal(rb.stats.rebalances_done, 1);
  await rb.stop();
});

Deno.test("rebalancer: after the grace a dead node's ranges are re-replicated", async () => {
  const full = ringOf(["a", "b", "c"]);
  let cur = full;
  const { h, runs } = host(() => cur);
  const rb = new Rebalancer(h, { delay_ms: 1, dead_grace_ms: 30 });
  rb.changed(full);
  cur = ringOf(["a", "b"]);
  rb.changed(cur, true);
  assert.equal(rb.inGrace, true);
  await until(() => rb.stats.rebalances_done === 1, "the run after the grace settles");
  assert.deepEqual(runs, [["a", "b"]]);
  assert.equal(rb.inGrace, false);
  // A death while a join is owed is not held back: the ring is not the settled one minus nodes.
  cur = ringOf(["a", "b", "d"]);
  rb.changed(cur, false);
  cur = ringOf(["a", "d"]);
  rb.changed(cur, true);
  assert.equal(rb.inGrace, false);
  await until(() => rb.stats.rebalances_done === 2, "the run settles");
  // With dead_grace_ms 0 a death moves at once.
  const zero = new Rebalancer(host(() => cur).h, { dead_grace_ms: 0 });
  zero.changed(full);
  zero.changed(ringOf(["a", "b"]), true);
  assert.equal(zero.inGrace, false);
  assert.throws(
    () => new Rebalancer(h, { dead_grace_ms: -1 }),
    /dead_grace_ms -1/,
  );
  await rb.stop();
  await zero.stop();
});

Deno.test("rebalancer: searches read the new placement while losers prune; a failed prune does not settle", async () => {
  // Three nodes hold one 1-shard collection on a and b (RF 2); c joins with RF 2: under the
  // new placement the shard's replicas change, and a node that lost it prunes.
  const layout = { shard_number: 1, replication_factor: 2 };
  const before = ringOf(["a", "b"]);
  const after = ringOf(["a", "b", "c"]);
  // A collection name whose shard moves to c (the placement of some names keeps a and b).
  const name = ["k", "k1", "k2", "k3", "k4", "k5", "k6", "k7"].find((n) =>
    after.placement.owners(n, layout, 7).includes("c")
  )!;
  const owners = after.placement.owners(name, layout, 7);
  const loser = ["a", "b"].find((n) => !owners.includes(n))!;
  const held = new Map<string, Map<number, number>>([
    ["a", new Map([[7, 5]])],
    ["b", new Map([[7, 5]])],
    ["c", new Map()],
  ]);
  let failPrunes = 1;
  let readDuringPrune: Placement | null = null;
  // The rebalancer is built below from ports that read it back during a prune.
  const ref: { rb?: Rebalancer } = {};
  const port = (node: string) => ({
    scan: (_c: string, _after: unknown, _from: boolean, _limit: number) => {
      const entries = [...held.get(node)!].map(([id, version]) => ({
        id,
        version,
        deleted: false,
        vector: [1, 2],
      }));
      return Promise.resolve({ entries, next_after: 7, done: true });
    },
    copy: (_c: string, entries: { id: unknown; version: number }[]) => {
      for (const e of entries) held.get(node)!.set(e.id as number, e.version);
      return Promise.resolve({ applied: entries.length, skipped: 0 });
    },
    prune: (_c: string, ids: unknown[]) => {
      readDuringPrune = ref.rb!.readPlacement();
      if (failPrunes > 0) {
        failPrunes--;
        return Promise.reject(new Error("UNAVAILABLE: prune"));
      }
      for (const id of ids) held.get(node)!.delete(id as number);
      return Promise.resolve(ids.length);
    },
  });
  let cur = before;
  const h: RebalanceHost = {
    log: () => {},
    transfer: (n) => port(n),
    collections: () => Promise.resolve([name]),
    layout: () => Promise.resolve(layout),
    current: () => cur,
    drainOlderWrites: () => Promise.resolve(true),
    node_timeout_ms: 1000,
    sleep: (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 20))),
  };
  const rb = new Rebalancer(h, { delay_ms: 1, dead_grace_ms: 0 });
  ref.rb = rb;
  rb.changed(before); // the first ring a router sees is taken as settled
  cur = after;
  rb.changed(after);
  await until(() => rb.stats.rebalances_done === 1, "the join settles after the retried prune");
  assert.equal(readDuringPrune, after.placement, "searches read the new placement while pruning");
  assert.equal(failPrunes, 0, "the first prune failed");
  assert.equal(held.get(loser)!.has(7), false, "the retry pruned the loser's copy");
  for (const o of owners) assert.equal(held.get(o)!.get(7), 5);
  await rb.stop();
});
