/**
 * Graph threads through a real storage node (a script, not a test): one node process from the
 * bundle (`build/js/node.mjs`, `deno task build:js`), gRPC over loopback, GloVe-100 (cosine,
 * M 16, ef_construction 200; the first `--n` base vectors), recall@10 at ef 200 against exact
 * ground truth (`--queries` held-out queries).
 *
 * | phase   | what                                                                         |
 * |---------|------------------------------------------------------------------------------|
 * | build   | for each `--build-threads` value (rounds interleave them): a fresh node, the points sent as PutBatches of `--batch` with `--inflight` in flight; wall time and the node's CPU seconds; recall |
 * | search  | the last build's data directory, the node restarted with each `--search-threads` value (interleaved, `--rounds` each): `--clients` clients on this machine (each its own channel, one request at a time) for `--seconds`; queries/s, node CPU s per query, recall |
 *
 * The machine is shared and noisy: every figure is printed with the load average, and the
 * node's CPU seconds (utime + stime of the process, all its threads, from /proc) beside wall
 * time. The clients run in this process (Deno); its CPU seconds are printed too.
 *
 * ```sh
 * deno task build:js
 * deno run -A scripts/bench/threads.ts                          # 100K, 1 vs 2 threads
 * deno run -A scripts/bench/threads.ts --n 20000 --seconds 5     # quick
 * ```
 *
 * | flag               | default | meaning                                            |
 * |--------------------|---------|----------------------------------------------------|
 * | `--n`              | 100000  | base vectors                                       |
 * | `--queries`        | 1000    | queries (recall and the timed searches cycle them) |
 * | `--build-threads`  | 1,2     | values compared in the build phase                 |
 * | `--search-threads` | 1,2     | values compared in the search phase                |
 * | `--rounds`         | 2       | rounds of each value (interleaved)                 |
 * | `--clients`        | 16      | concurrent search clients                          |
 * | `--seconds`        | 20      | length of one timed search run                     |
 * | `--batch`          | 1000    | points per PutBatch                                |
 * | `--inflight`       | 4       | PutBatches in flight                               |
 * | `--phases`         | build,search | which phases                                  |
 * | `--quantization`   | none    | the collection's quantization (`int8`: searched over codes, re-ranked) |
 * @module
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import process from "node:process";
import { join } from "node:path";
import { NodeProcess } from "../../harness/node.ts";
import { REPO_ROOT } from "../../harness/process.ts";
import { loadDataset } from "./lib/dataset.ts";
import { cpuScaling } from "./lib/cpu_scaling.ts";
import { measureRecall, ownClient, row, type SearchSpec } from "./lib/cluster_search.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    queries: { type: "string", default: "1000" },
    "build-threads": { type: "string", default: "1,2" },
    "search-threads": { type: "string", default: "1,2" },
    rounds: { type: "string", default: "2" },
    clients: { type: "string", default: "16" },
    seconds: { type: "string", default: "20" },
    batch: { type: "string", default: "1000" },
    inflight: { type: "string", default: "4" },
    phases: { type: "string", default: "build,search" },
    quantization: { type: "string", default: "none" },
  },
});
const int = (name: string, v: string) => {
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) {
    throw new RangeError(`--${name} "${v}" must be a positive integer`);
  }
  return x;
};
const N = int("n", flags.n!);
const ROUNDS = int("rounds", flags.rounds!);
const CLIENTS = int("clients", flags.clients!);
const SECONDS = int("seconds", flags.seconds!);
const BATCH = int("batch", flags.batch!);
const INFLIGHT = int("inflight", flags.inflight!);
const BUILD = flags["build-threads"]!.split(",").map((s) => int("build-threads", s));
const SEARCH = flags["search-threads"]!.split(",").map((s) => int("search-threads", s));
const PHASES = new Set(flags.phases!.split(","));
const QUANTIZATION = flags.quantization!;
if (QUANTIZATION !== "none" && QUANTIZATION !== "int8") {
  throw new RangeError(`--quantization "${QUANTIZATION}" must be none or int8`);
}
const COLLECTION = "threads";
const TIMEOUT_MS = 120_000;
const NO_AUTO_SNAPSHOTS = ["--snapshot-every-ops", "100000000", "--snapshot-every-s", "100000000"];

const ds = loadDataset({ cacheDir: join(REPO_ROOT, ".cache", "bench"), n: N });
const nq = Math.min(int("queries", flags.queries!), ds.queries.n);
const queries = {
  n: nq,
  dim: ds.queries.dim,
  data: ds.queries.data.subarray(0, nq * ds.queries.dim),
};
const spec: SearchSpec = { collection: COLLECTION, k: 10, ef: 200 };
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const log = (s: string) => console.log(`${s}  [load ${load()}]`);
const selfCpu = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

/** CPU seconds (user + system, every thread) the process `pid` used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

log(
  `threads bench: ${ds.name} n=${ds.base.n} ${ds.metric} (quantization ${QUANTIZATION}), ` +
    `${nq} queries, recall@10 at ef 200`,
);

const probe = async () =>
  log(
    `machine now: 2 threads do ${(await cpuScaling()).toFixed(2)}x the work of 1 (pure-CPU loop)`,
  );
await probe();

async function build(threads: number): Promise<{ node: NodeProcess; wall: number; cpu: number }> {
  const node = await NodeProcess.start({
    runtime: "bundle",
    args: [...NO_AUTO_SNAPSHOTS, "--build-threads", String(threads), "--search-threads", "1"],
  });
  const api = ownClient(node.address, TIMEOUT_MS);
  try {
    await api.call("CreateCollection", {
      name: COLLECTION,
      dimension: ds.base.dim,
      metric: ds.metric,
      m: 16,
      ef_construction: 200,
      quantization: QUANTIZATION,
    });
    const cpu0 = cpuSeconds(node.pid);
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: INFLIGHT }, async () => {
      while (next < N) {
        const from = next;
        next += BATCH;
        const points = [];
        for (let i = from; i < Math.min(N, from + BATCH); i++) {
          points.push({ id: i, vector: row(ds.base, i) });
        }
        await api.call("PutBatch", { points, collection: COLLECTION });
      }
    }));
    const wall = (performance.now() - t0) / 1000;
    return { node, wall, cpu: cpuSeconds(node.pid) - cpu0 };
  } finally {
    api.close();
  }
}

let last: NodeProcess | null = null;
try {
  if (PHASES.has("build")) {
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of BUILD) {
        await probe();
        const b = await build(t);
        const rec = await measureRecall(b.node.address, queries, ds.gt, spec, 4, TIMEOUT_MS);
        log(
          `build round ${r + 1}, --build-threads ${t}: ${N} points in ${
            b.wall.toFixed(1)
          } s wall, ` +
            `${b.cpu.toFixed(1)} node CPU s; recall@10 ${rec.recall.toFixed(4)}`,
        );
        if (last !== null) await last.close();
        last = b.node;
      }
    }
  } else {
    last = (await build(1)).node;
  }
  if (PHASES.has("search")) {
    const vectors = Array.from({ length: nq }, (_, i) => row(queries, i));
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of SEARCH) {
        await probe();
        await last!.restart({ args: [...NO_AUTO_SNAPSHOTS, "--search-threads", String(t)] });
        const addr = last!.address;
        const rec = await measureRecall(addr, queries, ds.gt, spec, 4, TIMEOUT_MS);
        const clients = Array.from({ length: CLIENTS }, () => ownClient(addr, TIMEOUT_MS));
        try {
          await Promise.all(clients.map(async (c, j) => {
            for (let i = 0; i < 20; i++) {
              await c.call("Search", { vector: vectors[(j * 20 + i) % nq], ...spec });
            }
          }));
          const cpu0 = cpuSeconds(last!.pid);
          const self0 = selfCpu();
          const t0 = performance.now();
          const end = t0 + SECONDS * 1000;
          let answered = 0, next = 0;
          await Promise.all(clients.map(async (c) => {
            while (performance.now() < end) {
              await c.call("Search", { vector: vectors[next++ % nq], ...spec });
              answered++;
            }
          }));
          const wall = (performance.now() - t0) / 1000;
          const cpu = cpuSeconds(last!.pid) - cpu0;
          log(
            `search round ${r + 1}, --search-threads ${t}: ${(answered / wall).toFixed(0)} q/s ` +
              `(${CLIENTS} clients, ${answered} in ${wall.toFixed(1)} s), node ${
                (cpu * 1000 / answered).toFixed(2)
              } CPU ms/query ` +
              `(${(cpu / wall).toFixed(2)} cores), clients ${
                (selfCpu() - self0).toFixed(1)
              } CPU s; ` +
              `recall@10 ${rec.recall.toFixed(4)}`,
          );
        } finally {
          for (const c of clients) c.close();
        }
      }
    }
  }
} finally {
  if (last !== null) await last.close();
}
