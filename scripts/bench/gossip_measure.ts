/**
 * Gossip measurement with real storage-node processes: false deaths in a healthy 5-node cluster
 * under light load, then the time until every other member sees a SIGKILLed node `dead`, over
 * several trials. A benchmark script, not a test (it takes minutes); exits non-zero on any
 * false suspicion or death.
 *
 * | env                        | default | meaning                              |
 * | -------------------------- | ------- | ------------------------------------ |
 * | `GOSSIP_MEASURE_HEALTHY_S` | 120     | seconds of healthy, loaded cluster   |
 * | `GOSSIP_MEASURE_TRIALS`    | 6       | SIGKILL trials                       |
 *
 * @example
 * ```sh
 * GOSSIP_MEASURE_HEALTHY_S=600 deno run -A scripts/bench/gossip_measure.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { allSee, withGossipCluster } from "../../harness/gossip_cluster.ts";
import { sleep, waitFor } from "../../harness/wait.ts";

await withGossipCluster(5, async (c) => {
  const all = [0, 1, 2, 3, 4];
  const converge = () =>
    waitFor(
      async () => {
        const views = await Promise.all(all.map((i) => c.view(i)));
        return views.every((v) =>
          v !== undefined && all.every((j) => v.get(c.id(j))?.state === "alive")
        );
      },
      "all 5 see 5 alive",
      30_000,
    );
  await converge();

  // Healthy cluster under light load: a few writes and searches a second, polling views.
  const healthy_s = Number(Deno.env.get("GOSSIP_MEASURE_HEALTHY_S") ?? "120");
  const bad: string[] = [];
  let requests = 0;
  const t_end = performance.now() + healthy_s * 1000;
  let id = 0;
  while (performance.now() < t_end) {
    const i = id % 5;
    const vector = [Math.random(), Math.random(), Math.random(), Math.random()];
    await c.api(i).call("Put", { id: id++, vector });
    await c.api(i).call("Search", { vector, k: 5 });
    requests += 2;
    const views = await Promise.all(all.map((j) => c.view(j)));
    for (const [j, v] of views.entries()) {
      for (const m of v?.values() ?? []) {
        if (m.state !== "alive") bad.push(`${c.id(j)} saw ${m.id} ${m.state}`);
      }
    }
    await sleep(100);
  }
  const suspicions = c.log().split("\n").filter((l) => / (suspect|dead),/.test(l));
  console.log(
    `gossip: healthy 5-node cluster for ${healthy_s} s with ${requests} requests: ` +
      `${bad.length} non-alive observations, ${suspicions.length} suspect/dead log lines`,
  );
  for (const s of new Set([...bad, ...suspicions])) console.log(`  ${s}`);

  // SIGKILL trials: time until every other member sees the victim dead.
  const trials = Number(Deno.env.get("GOSSIP_MEASURE_TRIALS") ?? "6");
  const times: number[] = [];
  for (let t = 0; t < trials; t++) {
    const victim = 1 + (t % 4);
    const others = all.filter((j) => j !== victim);
    c.procs[victim]!.signal("SIGKILL");
    await c.procs[victim]!.done;
    const ms = await waitFor(
      () => allSee(c, others, c.id(victim), "dead"),
      `all see n${victim} dead`,
      15_000,
    );
    times.push(Math.round(ms));
    await c.start(victim);
    await converge();
  }
  times.sort((a, b) => a - b);
  console.log(`gossip: SIGKILL → dead at every member, ms (sorted): ${times.join(", ")}`);
  assert.equal(bad.length, 0, `false suspicions or deaths: ${bad.slice(0, 5).join("; ")}`);
});
