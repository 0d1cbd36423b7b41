import assert from "node:assert/strict";
import {
  RecallMonitor,
  RecallMonitorConfigError,
  type RecallMonitorDeps,
  recallOf,
  type RecallSample,
} from "./recall_monitor.ts";

/** A scripted monitor: the coin returns `coins` in turn, exact answers come from `truth`. */
function harness(
  options: Partial<ConstructorParameters<typeof RecallMonitor>[0]> = {},
  truth: (s: RecallSample) => (string | number)[] = () => [1, 2, 3, 4],
) {
  const coins: number[] = [];
  const warnings: string[] = [];
  const sleeps: number[] = [];
  let exactCalls = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const deps: RecallMonitorDeps = {
    random: () => coins.shift() ?? 0,
    sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    },
    warn: (m) => warnings.push(m),
    exact: async (s) => {
      exactCalls++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await Promise.resolve();
      inFlight--;
      if (s.collection === "broken") throw new Error("node down");
      return truth(s);
    },
  };
  const monitor = new RecallMonitor({ sample_rate: 0.5, warn_below: 0.9, ...options }, deps);
  return {
    monitor,
    coins,
    warnings,
    sleeps,
    get exactCalls() {
      return exactCalls;
    },
    get maxInFlight() {
      return maxInFlight;
    },
  };
}

function sample(collection: string, ids: (string | number)[]): RecallSample {
  return { collection, vector: [0, 1], k: 4, ef: 32, filter_json: "", ids };
}

Deno.test("recallOf: the share of exact ids found, ids compared as text", () => {
  assert.equal(recallOf([1, 2, 3, 4], [4, 3, 2, 1]), 1);
  assert.equal(recallOf([1, 2, 9, 8], [1, 2, 3, 4]), 0.5);
  assert.equal(recallOf(["7"], [7]), 1);
  assert.ok(Number.isNaN(recallOf([1], [])));
});

Deno.test("RecallMonitor: samples by the coin, measures one at a time with a pause, rolls a mean", async () => {
  const h = harness({ window: 3, gap_ms: 25 });
  h.coins.push(0.7, 0.1, 0.2, 0.4, 0.3);
  h.monitor.offer(sample("a", [1, 2, 3, 4]), false); // 0.7 >= 0.5: not sampled
  h.monitor.offer(sample("a", [1, 2, 3, 4]), false); // 1
  h.monitor.offer(sample("a", [1, 2, 9, 9]), false); // 0.5
  h.monitor.offer(sample("a", [1, 9, 9, 9]), false); // 0.25
  h.monitor.offer(sample("a", [9, 9, 9, 9]), false); // 0: the window of 3 drops the first 1
  await h.monitor.idle();
  assert.equal(h.exactCalls, 4);
  assert.equal(h.maxInFlight, 1, "one exact search at a time");
  assert.deepEqual(h.sleeps, [25, 25, 25, 25]);
  const [f] = h.monitor.figures();
  assert.equal(f.collection, "a");
  assert.equal(f.samples, 3);
  assert.equal(f.total, 4);
  assert.ok(Math.abs(f.recall - 0.25) < 1e-12, `mean of 0.5, 0.25, 0: ${f.recall}`);
  assert.deepEqual([f.k, f.ef], [4, 32]);
  assert.deepEqual(h.monitor.counts, { sampled: 4, measured: 4, dropped: 0, failed: 0 });
});

Deno.test("RecallMonitor: partial answers are never sampled; rate 0 samples nothing", async () => {
  const h = harness({ sample_rate: 1 });
  h.monitor.offer(sample("a", [1]), true);
  const off = harness({ sample_rate: 0 });
  off.monitor.offer(sample("a", [1]), false);
  await h.monitor.idle();
  await off.monitor.idle();
  assert.equal(h.exactCalls + off.exactCalls, 0);
  assert.deepEqual(h.monitor.figures(), []);
});

Deno.test("RecallMonitor: a full queue drops samples and counts them; failures are counted", async () => {
  const h = harness({ sample_rate: 1, queue_max: 2, gap_ms: 0 });
  // The first is taken off the queue at once (the drain starts synchronously), two wait, the
  // rest find the queue full.
  for (let i = 0; i < 6; i++) {
    h.monitor.offer(sample(i === 0 ? "broken" : "a", [1, 2, 3, 4]), false);
  }
  assert.ok(h.monitor.queued <= 2);
  await h.monitor.idle();
  assert.equal(h.monitor.counts.sampled, 6);
  assert.equal(h.monitor.counts.dropped, 3);
  assert.equal(h.monitor.counts.failed, 1);
  assert.equal(h.monitor.counts.measured, 2);
});

Deno.test("RecallMonitor: warns once when the rolling figure dips below the threshold, again after it recovers", async () => {
  const h = harness({ sample_rate: 1, window: 4, warn_min_samples: 4, gap_ms: 0 });
  const feed = async (ids: number[], times: number) => {
    for (let i = 0; i < times; i++) {
      h.monitor.offer(sample("c", ids), false);
      await h.monitor.idle();
    }
  };
  await feed([1, 2, 9, 9], 3);
  assert.equal(h.warnings.length, 0, "not before warn_min_samples");
  await feed([1, 2, 9, 9], 3);
  assert.equal(h.warnings.length, 1);
  assert.match(
    h.warnings[0],
    /recall@4 of collection "c" is 0\.500 .* below --recall-warn-below 0\.9/,
  );
  await feed([1, 2, 3, 4], 4); // recovers to 1
  await feed([9, 9, 9, 9], 1); // 0.75: a new dip
  assert.equal(h.warnings.length, 2);
});

Deno.test("RecallMonitor: tracks at most collections_max collections, forgetting the least recently sampled", async () => {
  const h = harness({ sample_rate: 1, collections_max: 2, gap_ms: 0 });
  for (const c of ["a", "b", "a", "c"]) {
    h.monitor.offer(sample(c, [1, 2, 3, 4]), false);
    await h.monitor.idle();
  }
  assert.deepEqual(h.monitor.figures().map((f) => f.collection), ["a", "c"]);
  h.monitor.forget("a");
  assert.deepEqual(h.monitor.figures().map((f) => f.collection), ["c"]);
  await h.monitor.stop();
  h.monitor.offer(sample("c", [1]), false);
  assert.equal(h.monitor.queued, 0, "no samples after stop");
});

Deno.test("RecallMonitor: bad settings are refused naming the flag", () => {
  const d: RecallMonitorDeps = {
    random: Math.random,
    sleep: () => Promise.resolve(),
    warn: () => {},
    exact: () => Promise.resolve([]),
  };
  assert.throws(
    () => new RecallMonitor({ sample_rate: 1.5, warn_below: 0.9 }, d),
    (e) => e instanceof RecallMonitorConfigError && /--recall-sample-rate 1\.5/.test(e.message),
  );
  assert.throws(
    () => new RecallMonitor({ sample_rate: 0.1, warn_below: -1 }, d),
    /--recall-warn-below -1/,
  );
});
