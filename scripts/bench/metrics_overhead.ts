/**
 * The cost of metrics on single-node search throughput: two storage nodes from the same code,
 * one with `--metrics true` (the default) and one with `--metrics false` (no request counters,
 * no latency or search histograms: the guard and search paths skip them), loaded with the same
 * random points; then the same search workload against each, alternating on/off rounds so
 * machine noise falls on both alike. Prints queries/s per round, the medians, the ratio, and
 * the load average before and after. Only one node is searched at a time; the other is idle.
 *
 * `deno run --allow-all scripts/bench/metrics_overhead.ts [--points 20000] [--dim 32]
 *  [--rounds 6] [--round-s 5] [--concurrency 8] [--k 10] [--ef 64]`
 *
 * A scrape of the metrics node's `/metrics` is taken under load (a search round running) and
 * a few of its lines are printed.
 */
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import { NodeProcess } from "../../harness/node.ts";
import { freePort } from "../../harness/ports.ts";
import { ApiClient } from "../../src/api/client.ts";
import { Prng } from "../../src/common/prng.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    points: { type: "string", default: "20000" },
    dim: { type: "string", default: "32" },
    rounds: { type: "string", default: "6" },
    "round-s": { type: "string", default: "5" },
    concurrency: { type: "string", default: "8" },
    k: { type: "string", default: "10" },
    ef: { type: "string", default: "64" },
  },
});
const POINTS = Number(values.points);
const DIM = Number(values.dim);
const ROUNDS = Number(values.rounds);
const ROUND_MS = Number(values["round-s"]) * 1000;
const CONCURRENCY = Number(values.concurrency);
const K = Number(values.k);
const EF = Number(values.ef);
const C = "bench";

const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const rng = new Prng(12345);
const vec = () => Array.from({ length: DIM }, () => rng.float() * 2 - 1);
const points = Array.from({ length: POINTS }, (_, id) => ({ id, vector: vec() }));
const queries = Array.from({ length: 1000 }, vec);

async function start(metrics: boolean) {
  const http = await freePort();
  const node = await NodeProcess.start({
    args: ["--http-port", String(http), "--metrics", String(metrics)],
  });
  const api = new ApiClient(node.address, { timeout_ms: 60_000 });
  await api.call("CreateCollection", { name: C, dimension: DIM });
  for (let i = 0; i < POINTS; i += 1000) {
    await api.call("PutBatch", { collection: C, points: points.slice(i, i + 1000) });
  }
  return { node, api, http, metrics };
}

type Server = Awaited<ReturnType<typeof start>>;

/** Searches for `ROUND_MS` with `CONCURRENCY` calls in flight; queries/s. */
async function round(s: Server): Promise<number> {
  let done = 0;
  const end = performance.now() + ROUND_MS;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async (_, w) => {
    let i = w;
    while (performance.now() < end) {
      await s.api.call("Search", {
        collection: C,
        vector: queries[i % queries.length],
        k: K,
        ef: EF,
      });
      i += CONCURRENCY;
      done++;
    }
  }));
  return done / ((performance.now() - t0) / 1000);
}

console.log(
  `metrics overhead: ${POINTS} points of dimension ${DIM}, k ${K}, ef ${EF}, ${CONCURRENCY} ` +
    `in flight, ${ROUNDS} rounds x ${ROUND_MS / 1000} s per side; load average ${load()}`,
);
const on = await start(true);
const off = await start(false);
try {
  // Warm both (JIT, channels).
  await round(on);
  await round(off);
  const qps: Record<"on" | "off", number[]> = { on: [], off: [] };
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which side goes first, so drift is shared.
    const order = r % 2 === 0 ? [on, off] : [off, on];
    for (const s of order) {
      const q = await round(s);
      qps[s.metrics ? "on" : "off"].push(q);
      console.log(`round ${r + 1} metrics ${s.metrics ? "on " : "off"}: ${q.toFixed(0)} q/s`);
    }
  }
  const mOn = median(qps.on);
  const mOff = median(qps.off);
  console.log(
    `median q/s: on ${mOn.toFixed(0)}, off ${mOff.toFixed(0)}; on/off ${(mOn / mOff).toFixed(4)} ` +
      `(overhead ${((1 - mOn / mOff) * 100).toFixed(2)}%); load average ${load()}`,
  );
  // A scrape under load.
  const busy = round(on);
  await new Promise((r) => setTimeout(r, ROUND_MS / 2));
  const text = await (await fetch(`http://127.0.0.1:${on.http}/metrics`)).text();
  await busy;
  const keep = text.split("\n").filter((l) =>
    /^vectordb_(grpc_requests_total\{method="Search"|grpc_request_duration_seconds_(sum|count)\{method="Search"|wal_appends_total|wal_sync_duration_seconds_count|index_points|index_memory_bytes|search_ef_(sum|count)|search_candidates_visited_(sum|count)|gossip_members\{state="alive",role="node")/
      .test(l) || /^process_cpu_seconds_total|^nodejs_eventloop_lag_p99_seconds/.test(l)
  );
  console.log(`scraped under load (${text.length} bytes):\n${keep.join("\n")}`);
} finally {
  on.api.close();
  off.api.close();
  await on.node.close();
  await off.node.close();
}
