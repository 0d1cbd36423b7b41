/**
 * Seeded simulations of the membership protocol (src/cluster/membership.ts) over the simulated
 * network (src/sim/network.ts). Every scenario runs many seeds; a failure names the seed.
 *
 * Replay one seed:   SIM_SEED=123 npx --yes deno@2.9.6 test -A tests/sim/membership_sim_test.ts \
 *                      --filter "<test name>"
 * Soak (10x seeds):  SIM_SCALE=10 npx --yes deno@2.9.6 test -A tests/sim/membership_sim_test.ts
 */

import assert from "node:assert/strict";
import { type RecordedEvent, SimCluster, type SimClusterOptions } from "./membership_cluster.ts";

const REPLAY = Deno.env.get("SIM_SEED");
const SCALE = Number(Deno.env.get("SIM_SCALE") ?? "1");
const FILE = "tests/sim/membership_sim_test.ts";

/** Runs `body` for `count` seeds from `base` (or only SIM_SEED); a failure names its seed. */
function forEachSeed(name: string, base: number, count: number, body: (seed: number) => void) {
  const seeds = REPLAY !== undefined
    ? [Number(REPLAY)]
    : Array.from({ length: Math.max(1, Math.round(count * SCALE)) }, (_, i) => base + i);
  for (const seed of seeds) {
    try {
      body(seed);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(
        `Simulation "${name}" failed for seed ${seed}: ${msg}\n` +
          `Replay: SIM_SEED=${seed} npx --yes deno@2.9.6 test -A ${FILE} --filter "${name}"`,
        { cause: e },
      );
    }
  }
}

function summary(label: string, values: number[]): string {
  if (values.length === 0) return `${label}: no samples`;
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  const p99 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))];
  return `${label}: n=${sorted.length} mean=${mean.toFixed(0)} ms p99=${p99} ms ` +
    `max=${sorted.at(-1)} ms`;
}

/** A cluster that has converged to a full view (fails otherwise). */
function convergedCluster(options: SimClusterOptions, within_ms = 10_000): SimCluster {
  const c = new SimCluster(options);
  const spread = options.start_spread_ms ?? 0;
  c.run(spread);
  const t = c.runUntil(() => c.converged(), spread + within_ms);
  assert.ok(t !== undefined, `no full view ${within_ms} ms after the last start\n${c.describe()}`);
  return c;
}

function eventsAbout(c: SimCluster, id: string, type: RecordedEvent["type"]): RecordedEvent[] {
  return c.events.filter((e) => e.id === id && e.type === type);
}

/** Transient suspicions happen (tiny clusters, loss): the view must settle within 10 s. */
function assertConverges(c: SimCluster): void {
  const t = c.runUntil(() => c.converged(), c.now_ms + 10_000);
  assert.ok(t !== undefined, `views do not settle\n${c.describe()}`);
}

const deathTimes: number[] = [];
const healTimes: number[] = [];

Deno.test("sim: join through seeds converges to a full view", (t) => {
  const times: number[] = [];
  forEachSeed(t.name, 1_000_000, 250, (seed) => {
    const nodes = 3 + (seed % 6);
    const spread = seed % 3 === 0 ? 0 : 3000;
    const c = new SimCluster({
      seed,
      nodes,
      loss: 0.01,
      duplicate: 0.01,
      seed_nodes: [0],
      start_spread_ms: spread,
    });
    c.run(spread);
    const t = c.runUntil(() => c.converged(), spread + 10_000);
    assert.ok(t !== undefined, `${nodes} nodes: no full view within 10 s\n${c.describe()}`);
    times.push(t - spread);
    for (const observer of c.ids) {
      for (const id of c.ids) {
        if (id === observer) continue;
        assert.ok(
          c.events.some((e) => e.observer === observer && e.id === id && e.type === "joined"),
          `${observer} has no joined event for ${id}`,
        );
      }
    }
    assert.equal(c.events.filter((e) => e.type === "dead").length, 0, "a death while joining");
  });
  console.log(summary("full view after the last start", times));
});

Deno.test("sim: a killed node is declared dead by every member within 5 s", (t) => {
  forEachSeed(t.name, 2_000_000, 400, (seed) => {
    const nodes = 3 + (seed % 6);
    const c = convergedCluster({ seed, nodes, loss: 0.01, delay_min_ms: 1, delay_max_ms: 20 });
    c.run(c.now_ms + 1000 + c.prng.nextInt(3000));
    const victim = c.prng.pick(c.ids);
    const killed_at = c.now_ms;
    c.kill(victim);
    const others = c.liveIds();
    const t = c.runUntil(
      () => others.every((o) => c.stateOf(o, victim) === "dead"),
      killed_at + 5000,
      10,
    );
    assert.ok(t !== undefined, `${victim} not dead everywhere 5 s after the kill\n${c.describe()}`);
    deathTimes.push(t - killed_at);
    const false_deaths = c.events.filter((e) => e.type === "dead" && e.id !== victim);
    assert.deepEqual(false_deaths, [], "false deaths");
  });
  console.log(summary("dead at every member after a kill", deathTimes));
});

Deno.test("sim: a suspected but alive node refutes and survives", (t) => {
  forEachSeed(t.name, 3_000_000, 150, (seed) => {
    const c = convergedCluster({ seed, nodes: 5, loss: 0.01 });
    const [victim, accuser] = c.prng.shuffle([...c.ids]) as [string, string];
    const inc = c.node(victim).incarnation;
    // The accuser's suspicion reaches everyone else but the victim at once.
    const loss = c.net.link.loss;
    c.net.configure({ loss: 0 });
    for (const id of c.ids) {
      if (id === victim || id === accuser) continue;
      c.net.send(c.addressOf(accuser), c.addressOf(id), {
        type: "gossip",
        v: 1,
        from: accuser,
        updates: [{ state: "suspect", id: victim, inc, by: accuser }],
      });
    }
    c.net.configure({ loss });
    const from = c.events.length;
    c.run(c.now_ms + 25);
    const suspects = new Set(
      c.events.slice(from).filter((e) => e.id === victim && e.type === "suspect").map((e) =>
        e.observer
      ),
    );
    assert.ok(suspects.size >= 1, `only ${[...suspects]} suspected ${victim}`);
    c.run(c.now_ms + 15_000);
    assert.deepEqual(eventsAbout(c, victim, "dead"), [], `${victim} was declared dead`);
    assert.ok(c.node(victim).incarnation > inc, "no refutation");
    assertConverges(c);
  });
});

Deno.test("sim: a node cut off for 1.2 s is suspected, refutes and survives", (t) => {
  let suspected_runs = 0;
  let runs = 0;
  forEachSeed(t.name, 4_000_000, 100, (seed) => {
    const c = convergedCluster({ seed, nodes: 5, loss: 0.01 });
    const victim = c.prng.pick(c.ids);
    const rest = c.ids.filter((i) => i !== victim).map((i) => c.addressOf(i));
    const cut = c.net.cut([c.addressOf(victim)], rest);
    c.run(c.now_ms + 1200);
    c.net.restore(cut);
    c.run(c.now_ms + 15_000);
    runs++;
    if (eventsAbout(c, victim, "suspect").length > 0) suspected_runs++;
    assert.deepEqual(eventsAbout(c, victim, "dead"), [], `${victim} was declared dead`);
    assertConverges(c);
  });
  if (REPLAY === undefined) {
    assert.ok(suspected_runs > runs / 3, `only ${suspected_runs}/${runs} runs saw a suspicion`);
  }
});

Deno.test("sim: no false death over 10 simulated minutes (5 nodes, 1% loss, 1–20 ms)", (t) => {
  let suspicions = 0;
  forEachSeed(t.name, 5_000_000, 20, (seed) => {
    const c = convergedCluster({ seed, nodes: 5, loss: 0.01, delay_min_ms: 1, delay_max_ms: 20 });
    const from = c.events.length;
    c.run(c.now_ms + 600_000);
    const later = c.events.slice(from);
    suspicions += later.filter((e) => e.type === "suspect").length;
    const bad = later.filter((e) => e.type === "dead" || e.type === "left");
    assert.deepEqual(bad, [], "false deaths");
    assertConverges(c);
    assert.ok(c.net.stats.dropped_loss > 0, "the network lost nothing");
  });
  console.log(`suspicions over all 10-minute runs: ${suspicions}`);
});

Deno.test("sim: a 2-minute partition heals into one view within 30 s", (t) => {
  forEachSeed(t.name, 6_000_000, 150, (seed) => {
    const nodes = 4 + (seed % 5);
    const c = convergedCluster({
      seed,
      nodes,
      loss: 0.01,
      // Half the runs have a single seed, which then sits on one side only.
      seed_nodes: seed % 2 === 0 ? [0] : [0, 1],
    });
    const ids = c.prng.shuffle([...c.ids]);
    const k = 1 + c.prng.nextInt(nodes - 1);
    const [a, b] = [ids.slice(0, k), ids.slice(k)];
    c.net.cut(a.map((i) => c.addressOf(i)), b.map((i) => c.addressOf(i)));
    c.run(c.now_ms + 120_000);
    for (const x of a) {
      for (const y of b) {
        assert.equal(c.stateOf(x, y), "dead", `${x} still sees ${y} across the partition`);
        assert.equal(c.stateOf(y, x), "dead", `${y} still sees ${x} across the partition`);
      }
    }
    c.net.heal();
    const healed_at = c.now_ms;
    const t = c.runUntil(() => c.converged(), healed_at + 30_000, 100);
    assert.ok(t !== undefined, `no single view 30 s after the heal\n${c.describe()}`);
    healTimes.push(t - healed_at);
  });
  console.log(summary("single view after the partition heals", healTimes));
});

Deno.test("sim: a restarted node rejoins with a higher incarnation", (t) => {
  forEachSeed(t.name, 7_000_000, 150, (seed) => {
    const c = convergedCluster({ seed, nodes: 5, loss: 0.01 });
    const victim = c.prng.pick(c.ids);
    c.kill(victim);
    const quick = seed % 3 === 0; // restarts before anyone noticed
    if (quick) {
      c.run(c.now_ms + 300);
    } else {
      const others = c.liveIds();
      const t = c.runUntil(
        () => others.every((o) => c.stateOf(o, victim) === "dead"),
        c.now_ms + 5000,
      );
      assert.ok(t !== undefined, "victim not declared dead");
      c.run(c.now_ms + c.prng.nextInt(20_000));
    }
    const dead_inc = Math.max(
      ...c.liveIds().map((o) => c.node(o).member(victim)?.incarnation ?? 0),
    );
    c.start(victim, 0);
    const t = c.runUntil(() => c.converged(), c.now_ms + 10_000);
    assert.ok(t !== undefined, `restarted ${victim} not back everywhere\n${c.describe()}`);
    if (!quick) {
      assert.ok(c.node(victim).incarnation > dead_inc, "incarnation not above the tombstone");
      for (const o of c.liveIds()) {
        if (o === victim) continue;
        assert.ok(
          c.events.some((e) =>
            e.observer === o && e.id === victim && e.type === "joined" &&
            e.inc > dead_inc
          ),
          `${o} saw no rejoin of ${victim}`,
        );
      }
    }
  });
});

Deno.test("sim: graceful leave is seen by all and never turns into a death", (t) => {
  forEachSeed(t.name, 8_000_000, 150, (seed) => {
    const c = convergedCluster({ seed, nodes: 3 + (seed % 6), loss: 0.01 });
    const victim = c.prng.pick(c.ids);
    c.leave(victim);
    const others = c.liveIds();
    const t = c.runUntil(
      () => others.every((o) => c.stateOf(o, victim) === "left"),
      c.now_ms + 2000,
      10,
    );
    assert.ok(
      t !== undefined,
      `leave of ${victim} not seen everywhere within 2 s\n${c.describe()}`,
    );
    c.run(c.now_ms + 1000);
    c.kill(victim);
    c.run(c.now_ms + 60_000);
    for (const o of others) assert.equal(c.stateOf(o, victim), "left", `${o} on ${victim}`);
    assert.deepEqual(eventsAbout(c, victim, "dead"), [], "a left node was declared dead");
    assertConverges(c);
  });
});

Deno.test("sim: LHM rises on a node whose outgoing messages are dropped, and recovers", (t) => {
  forEachSeed(t.name, 9_000_000, 100, (seed) => {
    const c = convergedCluster({ seed, nodes: 5, loss: 0.01 });
    const victim = c.prng.pick(c.ids);
    const rest = c.ids.filter((i) => i !== victim);
    const cut = c.net.cut([c.addressOf(victim)], rest.map((i) => c.addressOf(i)), {
      one_way: true,
    });
    let victim_max = 0;
    let others_max = 0;
    const end = c.now_ms + 10_000;
    while (c.now_ms < end) {
      c.run(c.now_ms + 100);
      victim_max = Math.max(victim_max, c.node(victim).localHealth);
      for (const o of rest) others_max = Math.max(others_max, c.node(o).localHealth);
    }
    assert.ok(victim_max >= 4, `victim LHM only reached ${victim_max}`);
    assert.ok(others_max <= 2, `a healthy node's LHM reached ${others_max}`);
    c.net.restore(cut);
    const t = c.runUntil(
      () => c.node(victim).localHealth === 0 && c.converged(),
      c.now_ms + 60_000,
      100,
    );
    assert.ok(t !== undefined, `no recovery within 60 s\n${c.describe()}`);
  });
});

Deno.test("sim: the same seed gives the same event trace", (t) => {
  const scenario = (seed: number): string[] => {
    const c = new SimCluster({
      seed,
      nodes: 6,
      loss: 0.02,
      duplicate: 0.02,
      start_spread_ms: 1000,
    });
    c.run(5000);
    c.kill("n3");
    c.run(12_000);
    const cut = c.net.cut(["addr-n0", "addr-n1"], ["addr-n2", "addr-n4", "addr-n5"]);
    c.run(30_000);
    c.net.restore(cut);
    c.start("n3");
    c.run(45_000);
    c.leave("n5");
    c.run(60_000);
    return c.trace();
  };
  forEachSeed(t.name, 10_000_000, 10, (seed) => {
    const first = scenario(seed);
    assert.ok(first.length > 50, `trace of only ${first.length} lines`);
    assert.deepEqual(scenario(seed), first);
    assert.notDeepEqual(scenario(seed + 1), first, "another seed gave the same trace");
  });
});
