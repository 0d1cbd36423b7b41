/**
 * Restart A/B of node bundles on one existing data directory (not a test; seconds per start):
 * starts each bundle in turn (`node BUNDLE --data-dir DIR`), waits for `READY`, searches once,
 * stops it (SIGTERM), `--repeats` rounds, alternating, so both see the same machine. Reports per
 * bundle the wall time from spawn to the first answered search and the CPU time (user + system,
 * from /proc) the node had used by then: on a shared, loaded machine the CPU time is the steadier
 * figure. The node's own log line of where its start-up went ("start-up: …") is printed for the
 * last start of each.
 *
 * The data directory must hold a collection (`--collection`, default `glove100`) of dimension
 * `--dim` (100), e.g. GloVe vectors put by a node started on that directory and stopped with
 * SIGTERM. Every bundle given must read the directory's snapshot format; `--data-dirs A,B,…`
 * gives each bundle a directory of its own instead (in order), e.g. copies of one directory
 * whose snapshot each bundle wrote in its own format (an older bundle cannot read a newer
 * snapshot version).
 *
 * ```sh
 * deno run -A scripts/bench/restart_ab.ts --data-dir DIR [--collection glove100] [--dim 100]
 *   [--repeats 8] OLD/build/js/node.mjs build/js/node.mjs
 * deno run -A scripts/bench/restart_ab.ts --data-dirs OLD_DIR,NEW_DIR OLD/build/js/node.mjs
 *   build/js/node.mjs
 * ```
 * @module
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { ApiClient } from "../../src/api/client.ts";
import { freePort } from "../../harness/ports.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    "data-dir": { type: "string" },
    "data-dirs": { type: "string" },
    collection: { type: "string", default: "glove100" },
    dim: { type: "string", default: "100" },
    repeats: { type: "string", default: "8" },
  },
  allowPositionals: true,
  strict: true,
});
const dirs = values["data-dirs"]?.split(",") ??
  positionals.map(() => values["data-dir"]).filter((d) => d !== undefined);
if (dirs.length !== positionals.length || positionals.length === 0) {
  console.error(
    "usage: restart_ab.ts (--data-dir DIR | --data-dirs DIR,…) [--repeats N] BUNDLE...",
  );
  Deno.exit(2);
}
const repeats = Number(values.repeats);
const vector = Array.from({ length: Number(values.dim) }, (_, i) => Math.sin(i));
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Start {
  wall_ms: number;
  cpu_ms: number;
  log: string;
}

/** One start of `bundle`: spawn → READY → first answered search; then SIGTERM. */
async function start(bundle: string, dir: string, port: number): Promise<Start> {
  const t0 = performance.now();
  const child = spawn("node", [bundle, "--port", String(port), "--data-dir", dir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  const exited = new Promise((resolve) => child.on("exit", resolve));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        if (out.includes("READY")) resolve();
      });
      child.on("exit", (code) => reject(new Error(`${bundle} exited ${code}: ${err}`)));
    });
    const api = new ApiClient(`127.0.0.1:${port}`, { timeout_ms: 60_000 });
    try {
      await api.call("Search", { vector, k: 10, collection: values.collection });
    } finally {
      api.close();
    }
    const wall = performance.now() - t0;
    // Fields 14 and 15 of /proc/PID/stat (after the command's parenthesis): utime, stime, in
    // clock ticks (100 per second here).
    const stat = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ");
    const cpu = (Number(stat[11]) + Number(stat[12])) * 10;
    return {
      wall_ms: Math.round(wall),
      cpu_ms: cpu,
      log: err.split("\n").filter((l) => /Collection "|start-up:/.test(l)).join("\n"),
    };
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

const port = await freePort();
const results = new Map<string, Start[]>(positionals.map((b) => [b, []]));
console.log(`load at start ${load()}`);
for (let r = 0; r < repeats; r++) {
  const line: string[] = [];
  for (const [i, bundle] of positionals.entries()) {
    const s = await start(bundle, dirs[i], port);
    results.get(bundle)!.push(s);
    line.push(`${s.wall_ms}/${s.cpu_ms}`);
  }
  console.log(`round ${r + 1}: wall/cpu ms ${line.join("  ")}; load ${load()}`);
}
for (const [bundle, starts] of results) {
  const wall = starts.map((s) => s.wall_ms);
  const cpu = starts.map((s) => s.cpu_ms);
  console.log(
    `${bundle}: first search wall median ${median(wall)} ms (min ${Math.min(...wall)}), ` +
      `CPU median ${median(cpu)} ms (min ${Math.min(...cpu)})\n${starts[starts.length - 1].log}`,
  );
}
console.log(`load at end ${load()}`);
