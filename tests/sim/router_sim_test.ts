/**
 * Seeded simulations of the router's write path: the real router core (src/router/core.ts:
 * replication, hints, hint delivery, Get with read repair) over simulated storage nodes behind
 * a lossy, reordering network (tests/sim/router_world.ts).
 *
 * Each seed picks 3–5 nodes, a shard layout for the collection (3 to 6 shards of 2 or 3 replicas,
 * which the nodes report in ListCollections and the router learns; the router's own
 * --replication-factor is drawn apart, and must not matter), and a loss rate, then runs four
 * concurrent clients for 20 simulated seconds over 16 ids (so writes to one id race): puts,
 * batches and deletes at every consistency level (one, quorum, all, the default), and Gets.
 * Meanwhile nodes die and come back with the data they had (missing what was written while
 * they were away), requests and replies are lost, and some requests arrive after the router gave
 * up on them and hinted them, so hints and direct writes land late and out of order.
 *
 * Checked all along:
 * - an acknowledged write at level L is held (that version or a newer one) by at least as many
 *   owners as L requires, at the moment the client is told;
 * - a Get during which every owner stayed up and none of its calls failed returns a version no
 *   older than any write acknowledged before it started;
 * - every version a Get returns was written by some client, with that content (no phantoms).
 * Checked after settling (every node up, no loss, hints delivered): every owner holds every
 * acknowledged write, or a newer one, and no hint is left.
 *
 * A failing seed prints the command that replays it alone. The second test injects mistakes
 * into a copy of the router's source and shows that the simulation catches each.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  validatePointRef,
  validatePutBatchRequest,
  validatePutRequest,
} from "../../src/api/validate.ts";
import type { Consistency } from "../../src/common/limits.ts";
import { Prng } from "../../src/common/prng.ts";
import * as realCore from "../../src/router/core.ts";
import * as realQueue from "../../src/router/hints/queue.ts";
import { requiredAcks } from "../../src/router/plan.ts";
import { SimNodePort, SimRouterClock, World } from "./router_world.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const SEEDS = Number(process.env.ROUTER_SIM_SEEDS ?? 100);
const REPLAY = (seed: number) => `SIM_SEED=${seed} deno test -A tests/sim/router_sim_test.ts`;
const IDS = 16;
const CLIENTS = 4;
const RUN_MS = 20_000;
const SETTLE_MS = 20_000;
const NODE_TIMEOUT_MS = 200;

/** The router modules a simulation runs: the real ones, or a mutant's. */
interface RouterLib {
  RouterCore: typeof realCore.RouterCore;
  MemoryHintQueue: typeof realQueue.MemoryHintQueue;
}

interface Ack {
  version: number;
  deleted: boolean;
  value: number;
  at_ms: number;
}

interface Summary {
  nodes: number;
  rf: number;
  writes_acked: number;
  writes_failed: number;
  gets: number;
  gets_full: number;
  deaths: number;
  hints_delivered: number;
  calls: number;
  lost: number;
  late: number;
}

/** The counters of a {@link Summary}, all zero. */
function zeroCounts(): Omit<Summary, "nodes" | "rf"> {
  return {
    writes_acked: 0,
    writes_failed: 0,
    gets: 0,
    gets_full: 0,
    deaths: 0,
    hints_delivered: 0,
    calls: 0,
    lost: 0,
    late: 0,
  };
}

class SimFailure extends Error {
  override name = "SimFailure";
}

/** Runs one seed; throws {@link SimFailure} on the first broken invariant. */
async function simulate(seed: number, lib: RouterLib): Promise<Summary> {
  const rng = new Prng(seed);
  const n_nodes = rng.intBetween(3, 5);
  const rf = rng.intBetween(2, 3);
  const layout = { shard_number: rng.intBetween(3, 6), replication_factor: rf };
  const router_rf = rng.intBetween(1, 3);
  const world = new World({
    layout,
    rng: rng.fork(),
    nodes: n_nodes,
    loss: rng.pick([0, 0.01, 0.05]),
    latency_max_ms: 20,
    late: 0.01,
    node_timeout_ms: NODE_TIMEOUT_MS,
  });
  const s: Summary = { nodes: n_nodes, rf, ...zeroCounts() };
  const logs: string[] = [];
  const core = new lib.RouterCore({
    nodes: new SimNodePort(world),
    clock: new SimRouterClock(world),
    openHints: (a) => {
      const q = new lib.MemoryHintQueue(a, { hints_max: 100_000 });
      const commit = q.commit.bind(q);
      q.commit = async () => {
        const n = await commit();
        s.hints_delivered += n;
        return n;
      };
      return Promise.resolve(q);
    },
    log: (m) => {
      logs.push(`${world.clock.now_ms} ${m}`);
      if (logs.length > 40) logs.shift();
    },
    replication_factor: router_rf,
    consistency: "quorum",
    node_timeout_ms: NODE_TIMEOUT_MS,
    retry_interval_ms: 100,
    retry_timeout_ms: NODE_TIMEOUT_MS,
  });
  const fail = (what: string): never => {
    throw new SimFailure(
      `seed ${seed} (${n_nodes} nodes, ${layout.shard_number} shards, RF ${rf}) at ${world.clock.now_ms} ms: ${what}\n` +
        `  replay: ${REPLAY(seed)}\n  last router log lines:\n    ${logs.join("\n    ")}`,
    );
  };
  await core.followRing([...world.addresses].sort(), new Set(), true);
  const owners = (id: number) => core.view.placement.owners("c", layout, id);
  const acks = new Map<number, Ack[]>();
  const end_ms = RUN_MS;
  let value = 1;

  // The 100 ms tick, as the production loop runs it.
  const tick = () => {
    core.tick();
    if (world.clock.now_ms < end_ms + SETTLE_MS) world.clock.after(100, tick);
  };
  world.clock.after(100, tick);

  // Faults: nodes die and come back with the data they had; at most RF - 1 down at once.
  const frng = rng.fork();
  let faults = 0;
  const fault = () => {
    if (world.clock.now_ms >= end_ms) return;
    const down = [...world.nodes.values()].filter((n) => !n.up);
    const up = [...world.nodes.values()].filter((n) => n.up);
    faults++;
    if (down.length > 0 && (down.length >= rf - 1 || frng.chance(0.5))) {
      frng.pick(down).up = true;
    } else if (up.length > 0) {
      frng.pick(up).up = false;
      s.deaths++;
    }
    world.clock.after(frng.intBetween(200, 2500), fault);
  };
  world.clock.after(frng.intBetween(200, 2500), fault);

  const sleep = (ms: number) => new Promise<void>((r) => world.clock.after(ms, r));
  const check = (id: number, version: number, consistency: Consistency | undefined) => {
    const o = owners(id);
    const holders = o.filter((a) => (world.nodes.get(a)!.data.get(id)?.version ?? 0) >= version);
    const need = requiredAcks(consistency ?? "quorum", o.length);
    if (holders.length < need) {
      fail(
        `write of id ${id} at version ${version} acknowledged at ${consistency ?? "default"} ` +
          `while only ${holders.length} of its owners [${o.join(", ")}] hold it (${need} needed)`,
      );
    }
  };
  const acked = (id: number, a: Ack) => {
    let list = acks.get(id);
    if (list === undefined) acks.set(id, list = []);
    list.push(a);
    s.writes_acked++;
  };
  const floorOf = (id: number, before_ms: number): Ack | undefined => {
    let best: Ack | undefined;
    for (const a of acks.get(id) ?? []) {
      if (a.at_ms < before_ms && (best === undefined || a.version > best.version)) best = a;
    }
    return best;
  };

  const client = async (crng: Prng) => {
    while (world.clock.now_ms < end_ms) {
      await sleep(crng.intBetween(0, 40));
      const id = crng.intBetween(1, IDS);
      const consistency = crng.pick([undefined, "one", "quorum", "all"] as const);
      const op = crng.next() % 100;
      try {
        if (op < 45) {
          const v = value++;
          const r = await core.put(
            validatePutRequest({ id, vector: [v, 0], collection: "c", consistency }),
          );
          const version = Number(r.version);
          check(id, version, consistency);
          acked(id, { version, deleted: false, value: v, at_ms: world.clock.now_ms });
        } else if (op < 55) {
          const ids = [...new Set([id, crng.intBetween(1, IDS), crng.intBetween(1, IDS)])];
          const points = ids.map((i) => ({ id: i, vector: [value++, 0] }));
          const r = await core.putBatch(
            validatePutBatchRequest({ points, collection: "c", consistency }),
          );
          const version = Number(r.version);
          for (const p of points) check(p.id, version, consistency);
          for (const p of points) {
            acked(p.id, { version, deleted: false, value: p.vector[0], at_ms: world.clock.now_ms });
          }
        } else if (op < 70) {
          const r = await core.delete(validatePointRef({ id, collection: "c", consistency }));
          const version = Number(r.version);
          check(id, version, consistency);
          acked(id, { version, deleted: true, value: 0, at_ms: world.clock.now_ms });
        } else {
          s.gets++;
          const floor = floorOf(id, world.clock.now_ms);
          // The strict check applies to a Get during which every owner stayed up and no call
          // of the Get failed: then it must have heard from every holder of the newest write.
          let callFailed = false;
          const epoch = faults;
          const allUp = owners(id).every((o) => world.nodes.get(o)!.up);
          world.tag = (_node, ok) => {
            if (!ok) callFailed = true;
          };
          let pending;
          try {
            pending = core.get(validatePointRef({ id, collection: "c" }));
          } finally {
            world.tag = null;
          }
          const r = await pending;
          const version = Number(r.version ?? 0);
          if (version > 0) {
            const w = world.applied.get(id)?.get(version);
            if (w === undefined) fail(`Get of id ${id} returned version ${version}, never written`);
            const deleted = r.deleted === true;
            if (w!.deleted !== deleted || (!deleted && r.vector[0] !== w!.value)) {
              fail(
                `Get of id ${id} returned version ${version} as ${JSON.stringify(r)}, but that ` +
                  `version wrote ${JSON.stringify(w)}`,
              );
            }
          }
          if (allUp && !callFailed && epoch === faults) {
            s.gets_full++;
            if (floor !== undefined && version < floor.version) {
              fail(
                `Get of id ${id} answered by every owner returned version ${version}, older ` +
                  `than the write acknowledged at ${floor.at_ms} ms with version ${floor.version}`,
              );
            }
          }
        }
      } catch (e) {
        if (e instanceof SimFailure) throw e;
        // The nodes' layout never changes here: a write they refuse as routed with another
        // shard count (the shard_number guard) means the router routes with a wrong layout.
        if (/as the request's shard_number says/.test((e as Error)?.message ?? "")) {
          fail(`a write was refused for its layout: ${(e as Error).message}`);
        }
        if (op < 70) s.writes_failed++;
      }
    }
  };
  const clients = Array.from({ length: CLIENTS }, () => client(rng.fork()));
  let failure: unknown = null;
  const all = Promise.all(clients).catch((e) => {
    failure = e;
  });
  await world.run(end_ms);
  // Settle: everything comes back, the network heals, hints drain.
  for (const n of world.nodes.values()) n.up = true;
  world.loss = 0;
  world.late = 0;
  await world.run(end_ms + SETTLE_MS);
  await all;
  if (failure !== null) throw failure;
  const pending = [...core.pendingHints()].filter(([, n]) => n > 0);
  if (pending.length > 0) fail(`hints still pending after settling: ${JSON.stringify(pending)}`);
  for (const [id, list] of acks) {
    const newest = list.reduce((a, b) => (b.version > a.version ? b : a));
    for (const o of owners(id)) {
      const held = world.nodes.get(o)!.data.get(id);
      if (held === undefined || held.version < newest.version) {
        fail(
          `after settling, owner ${o} holds id ${id} at version ${held?.version ?? "none"}, ` +
            `older than the acknowledged version ${newest.version}`,
        );
      }
    }
  }
  s.calls = world.counts.calls;
  s.lost = world.counts.lost;
  s.late = world.counts.late;
  await core.stop();
  return s;
}

function seedList(): number[] {
  if (process.env.SIM_SEED !== undefined) return [Number(process.env.SIM_SEED)];
  return Array.from({ length: SEEDS }, (_, i) => 9001 + i * 7919);
}

Deno.test("router simulation: seeded write path, no acknowledged write lost or unread", async () => {
  const total = zeroCounts();
  const seeds = seedList();
  for (const seed of seeds) {
    const s = await simulate(seed, realLib());
    for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += s[k];
  }
  console.log(
    `  ${seeds.length} seeds: ${total.writes_acked} writes acknowledged, ${total.writes_failed} ` +
      `failed; ${total.gets} gets (${total.gets_full} with every owner up and every call answered); ` +
      `${total.deaths} node deaths, ${total.hints_delivered} hints delivered; ${total.calls} node calls, ${total.lost} messages lost, ` +
      `${total.late} requests applied after their deadline`,
  );
  assert.ok(total.writes_acked > 100 * seeds.length, "the simulation did little work");
  assert.ok(
    total.deaths > 0 && total.lost > 0 && total.late > 0 && total.hints_delivered > 0,
    "faults and hints were exercised",
  );
});

Deno.test("router simulation: the same seed gives the same run", async () => {
  const a = await simulate(4242, realLib());
  const b = await simulate(4242, realLib());
  assert.deepEqual(a, b);
  assert.ok(a.writes_acked > 0 && a.gets > 0);
});

function realLib(): RouterLib {
  return { RouterCore: realCore.RouterCore, MemoryHintQueue: realQueue.MemoryHintQueue };
}

/** A deliberate mistake in the router's source. */
interface Mutation {
  name: string;
  file: string;
  from: string;
  to: string;
}

const MUTATIONS: Mutation[] = [
  {
    name: "a hint is not enqueued for one owner that missed a write",
    file: "src/router/replication.ts",
    from: `const late = owners.filter((o) => results.get(o)!.kind === "unreached");`,
    to: `const late = owners.filter((o) => results.get(o)!.kind === "unreached").slice(1);`,
  },
  {
    name: "the quorum counts owners that did not acknowledge (unreached or queued)",
    file: "src/router/replication.ts",
    from: `for (const [o, r] of results) if (r.kind === "acked") acked.add(o);`,
    to: `for (const [o, r] of results) if (r.kind !== "rejected") acked.add(o);`,
  },
  {
    name: "Get asks only the first owner",
    file: "src/router/replication.ts",
    from: `const askers = (this.deps.readers(v.collection, layout, v.id) ?? owners).filter(`,
    to: `const askers = (this.deps.readers(v.collection, layout, v.id) ?? owners.slice(0, 1))` +
      `.filter(`,
  },
  {
    name: "a Put ignores the collection's shard count (one shard)",
    file: "src/router/replication.ts",
    from:
      `  async put(view: RingView, layout: ShardLayout, v: ValidPut): Promise<ResponseOf<"Put">> {`,
    to: `  async put(view: RingView, l: ShardLayout, v: ValidPut): Promise<ResponseOf<"Put">> {\n` +
      `    const layout = { ...l, shard_number: 1 };`,
  },
  {
    name: "the router ignores the layouts the nodes report",
    file: "src/router/core.ts",
    from: `if ((c.shard_number ?? 0) >= 1) this.catalog.learn(c);`,
    // Learns the pre-shard layout instead (a collection it knows nothing of is refused writes).
    to: `if ((c.shard_number ?? 0) >= 1) this.catalog.set(c.name, this.catalog.legacy);`,
  },
  {
    name: "replay marks a hint delivered without sending it",
    file: "src/router/hints/replay.ts",
    from: `batch.slice(i, end).map((hint, k) => this.#deliver(state, hint, records[i + k])),`,
    to: `batch.slice(i, end).map(() => "delivered" as "delivered" | "discarded" | "retry"),`,
  },
];

/** Copies src/ beside the repo's ignored cache with one mutation applied; imports its router. */
async function mutantLib(m: Mutation, index: number): Promise<RouterLib> {
  const dir = join(ROOT, ".cache", "mutants", `m${index}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(join(ROOT, "src"), join(dir, "src"), { recursive: true });
  cpSync(join(ROOT, "proto"), join(dir, "proto"), { recursive: true });
  const path = join(dir, m.file);
  const text = readFileSync(path, "utf8");
  assert.equal(text.split(m.from).length, 2, `mutation "${m.name}" must match exactly once`);
  writeFileSync(path, text.replace(m.from, m.to));
  const core = await import(pathToFileURL(join(dir, "src/router/core.ts")).href);
  const queue = await import(pathToFileURL(join(dir, "src/router/hints/queue.ts")).href);
  return { RouterCore: core.RouterCore, MemoryHintQueue: queue.MemoryHintQueue };
}

Deno.test("router simulation catches injected mistakes", async () => {
  const caught: string[] = [];
  for (const [i, m] of MUTATIONS.entries()) {
    const lib = await mutantLib(m, i);
    let by: number | null = null;
    for (const seed of seedList().slice(0, 60)) {
      try {
        await simulate(seed, lib);
      } catch (e) {
        if (!(e instanceof SimFailure)) throw e;
        // A failure names its seed and the command that replays it alone.
        assert.match(e.message, new RegExp(`SIM_SEED=${seed} deno test`));
        by = seed;
        break;
      }
    }
    assert.notEqual(by, null, `the simulation did not catch: ${m.name}`);
    caught.push(`${m.name}: caught by seed ${by}`);
  }
  console.log(`  ${caught.join("\n  ")}`);
  rmSync(join(ROOT, ".cache", "mutants"), { recursive: true, force: true });
});
