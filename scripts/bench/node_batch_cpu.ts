/**
 * Node CPU per search, Search against SearchBatch (a script, not a test): one storage node
 * holding GloVe-100 points (cosine), asked directly by `--clients` clients (each its own channel,
 * one request at a time) for `--seconds` with single Search calls, then with SearchBatch calls of
 * `--batch` searches (what the router's coalescer sends, src/router/search_coalescer.ts). The
 * node's CPU (utime + stime of its process, worker threads included, from `/proc/<pid>/stat`) is
 * read before and after each phase and divided by the searches answered.
 *
 * `--bundles` names one or more bundle folders (each `<root>/build/<x>/node.mjs`, two folders
 * below the repository root as scripts/tools/build_js.ts writes them, so the bundle finds
 * `build/kernels.wasm` and `node_modules`): each round starts a node from each of them in turn on
 * the same data directory (loaded once, by the first) and measures both phases, so an A/B of two
 * builds runs on the same points, the same machine state and the same load. Rounds alternate the
 * order of the bundles.
 *
 * ```sh
 * deno task build:js
 * cp -a build/js build/js_base       # … check out the other version, build again
 * deno run -A scripts/bench/node_batch_cpu.ts --bundles build/js_base,build/js \
 *   [--n 100000] [--ef 96] [--clients 16] [--batch 10] [--seconds 10] [--rounds 2] \
 *   [--packed] [--calls single,batch] [--data DIR] [--cpu-prof DIR]
 * ```
 *
 * `--packed` sends the query as `vector_bytes`; `--calls` runs only the phases named; `--data DIR`
 * keeps the node's data directory there (loaded by the first run that finds it empty, reused by
 * later runs with the same `--n`, never removed); `--cpu-prof DIR` starts every node with Node's
 * `--cpu-prof` (a profile per thread, written at exit, into DIR). Every process is stopped at the
 * end, also on error; a temporary data directory is removed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { freePort } from "../../harness/ports.ts";
import { ChildProc, ProcGroup, REPO_ROOT } from "../../harness/process.ts";
import { nodeFlags } from "../../harness/servers.ts";
import { packVector } from "../../src/api/proto.ts";
import { loadDataset } from "./lib/dataset.ts";
import { ownClient, row } from "./lib/cluster_search.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    bundles: { type: "string", default: "build/js" },
    n: { type: "string", default: "100000" },
    ef: { type: "string", default: "96" },
    clients: { type: "string", default: "16" },
    batch: { type: "string", default: "10" },
    seconds: { type: "string", default: "10" },
    rounds: { type: "string", default: "2" },
    packed: { type: "boolean", default: false },
    calls: { type: "string", default: "single,batch" },
    data: { type: "string" },
    "cpu-prof": { type: "string" },
  },
  strict: true,
  allowPositionals: false,
});

function positive(name: string, text: string | undefined): number {
  const x = Number(text);
  if (text === undefined || !Number.isFinite(x) || x <= 0) {
    throw new RangeError(`--${name} "${text}" must be a positive number`);
  }
  return x;
}

const BUNDLES = flags.bundles!.split(",").filter((b) => b !== "");
const N = Math.floor(positive("n", flags.n));
const EF = Math.floor(positive("ef", flags.ef));
const CLIENTS = Math.floor(positive("clients", flags.clients));
const BATCH = Math.floor(positive("batch", flags.batch));
const SECONDS = positive("seconds", flags.seconds);
const ROUNDS = Math.floor(positive("rounds", flags.rounds));
const CALLS = flags.calls!.split(",").map((c) => {
  if (c !== "single" && c !== "batch") throw new RangeError(`--calls ${c}: single or batch`);
  return c === "single" ? 0 : BATCH;
});
const K = 10;
const COLLECTION = "glove";
const CALL_TIMEOUT_MS = 60_000;
const LOAD_BATCH = 500;

const CLK_TCK = 100; // Linux USER_HZ on every common kernel.
/** CPU seconds (user + system, every thread) used so far by process `pid`. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
const loadavg = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");

const T0 = performance.now();
function log(message: string): void {
  console.error(`[${((performance.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${message}`);
}

const dir = flags.data === undefined
  ? await Deno.makeTempDir({ prefix: "vectordb_bench_nbatch_" })
  : resolve(flags.data);
const loaded = flags.data !== undefined && existsSync(join(dir, "loaded"));
const procs = new ProcGroup();

async function startNode(bundle: string, port: number): Promise<ChildProc> {
  const entry = resolve(REPO_ROOT, bundle, "node.mjs");
  const prof = flags["cpu-prof"] === undefined
    ? []
    : ["--cpu-prof", "--cpu-prof-dir", resolve(flags["cpu-prof"]!)];
  const p = new ChildProc({
    name: `node-${bundle}`,
    command: "node",
    args: [...prof, entry, ...nodeFlags({ port, data_dir: join(dir, "node") })],
    ready_timeout_ms: 300_000,
  });
  procs.add(p);
  await p.ready;
  return p;
}

interface Phase {
  bundle: string;
  kind: string;
  searches: number;
  calls: number;
  errors: number;
  wall_s: number;
  cpu_s: number;
  loadavg_before: string;
  loadavg_after: string;
}

const ds = loadDataset({ cacheDir: join(REPO_ROOT, ".cache", "bench"), n: N });
const vectors = Array.from({ length: ds.queries.n }, (_, i) => row(ds.queries, i));
const wire = vectors.map((v) =>
  flags.packed ? { vector: [], vector_bytes: packVector(Float32Array.from(v)) } : { vector: v }
);
const spec = { collection: COLLECTION, k: K, ef: EF };

async function phase(
  bundle: string,
  pid: number,
  addr: string,
  batch: number,
): Promise<Phase> {
  const clients = Array.from({ length: CLIENTS }, () => ownClient(addr, CALL_TIMEOUT_MS));
  let next = 0;
  const one = async (c: ReturnType<typeof ownClient>): Promise<number> => {
    if (batch === 0) {
      await c.call("Search", { ...wire[next++ % wire.length], ...spec });
      return 1;
    }
    const searches = [];
    for (let i = 0; i < batch; i++) searches.push({ ...wire[next++ % wire.length], ...spec });
    const r = await c.call("SearchBatch", { searches });
    return r.results.length;
  };
  try {
    // Warm-up: opens the channels and warms the node's JIT for this call.
    await Promise.all(clients.map(async (c) => {
      for (let i = 0; i < 20; i++) await one(c);
    }));
    const before = loadavg();
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    const end = t0 + SECONDS * 1000;
    let searches = 0, calls = 0, errors = 0;
    await Promise.all(clients.map(async (c) => {
      while (performance.now() < end) {
        try {
          // Not `searches += await …`: that adds to the value read before the await.
          const n = await one(c);
          searches += n;
          calls++;
        } catch {
          errors++;
        }
      }
    }));
    const wall_s = (performance.now() - t0) / 1000;
    const cpu_s = cpuSeconds(pid) - cpu0;
    return {
      bundle,
      kind: batch === 0 ? "Search" : `SearchBatch(${batch})`,
      searches,
      calls,
      errors,
      wall_s,
      cpu_s,
      loadavg_before: before,
      loadavg_after: loadavg(),
    };
  } finally {
    for (const c of clients) c.close();
  }
}

const results: Phase[] = [];
try {
  const port = await freePort();
  const addr = `127.0.0.1:${port}`;
  if (!loaded) {
    const node = await startNode(BUNDLES[0], port);
    const api = ownClient(addr, CALL_TIMEOUT_MS);
    try {
      await api.call("CreateCollection", {
        name: COLLECTION,
        dimension: ds.base.dim,
        metric: ds.metric,
        m: 16,
        ef_construction: 200,
      });
      const t = performance.now();
      for (let at = 0; at < N; at += LOAD_BATCH) {
        const points = [];
        for (let i = at; i < Math.min(N, at + LOAD_BATCH); i++) {
          points.push({ id: i, vector: row(ds.base, i) });
        }
        await api.call("PutBatch", { collection: COLLECTION, points });
      }
      log(`loaded ${N} points in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    } finally {
      api.close();
    }
    await node.stop();
    writeFileSync(join(dir, "loaded"), `${N}\n`);
  }
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? BUNDLES : [...BUNDLES].reverse();
    for (const bundle of order) {
      const node = await startNode(bundle, port);
      try {
        for (const batch of CALLS) {
          const p = await phase(bundle, node.pid!, addr, batch);
          results.push(p);
          log(
            `round ${r} ${bundle} ${p.kind}: ${p.searches} searches in ${p.calls} calls, ` +
              `${(p.searches / p.wall_s).toFixed(0)} searches/s, node CPU ` +
              `${((p.cpu_s / p.searches) * 1000).toFixed(3)} ms/search, errors ${p.errors}, ` +
              `load ${p.loadavg_before} -> ${p.loadavg_after}`,
          );
        }
      } finally {
        await node.stop();
      }
    }
  }
} finally {
  await procs.stopAll(10_000);
  if (flags.data === undefined) await Deno.remove(dir, { recursive: true }).catch(() => {});
}

console.log(
  "| bundle | call | searches/s | node CPU ms/search | batch/single | load before -> after |",
);
console.log("| --- | --- | --- | --- | --- | --- |");
for (const bundle of BUNDLES) {
  const mine = results.filter((p) => p.bundle === bundle);
  const per = (kind: string) => {
    const ps = mine.filter((p) => p.kind === kind);
    const cpu = ps.reduce((a, p) => a + p.cpu_s, 0);
    const n = ps.reduce((a, p) => a + p.searches, 0);
    const wall = ps.reduce((a, p) => a + p.wall_s, 0);
    return { ms: (cpu / n) * 1000, qps: n / wall, ps };
  };
  const single = per("Search");
  for (const kind of ["Search", `SearchBatch(${BATCH})`]) {
    const x = per(kind);
    if (x.ps.length === 0) continue;
    const loads = x.ps.map((p) => `${p.loadavg_before} -> ${p.loadavg_after}`).join("; ");
    console.log(
      `| ${bundle} | ${kind} | ${x.qps.toFixed(0)} | ${x.ms.toFixed(3)} | ` +
        `${(x.ms / single.ms).toFixed(2)} | ${loads} |`,
    );
  }
}
