/**
 * Child processes of the cluster benchmark (scripts/bench_cluster.ts): storage nodes, routers
 * and client CLI runs, each a real process started from the repository root, with its last
 * output lines kept for diagnostics. {@link ProcGroup.stopAll} stops every process the group
 * started (SIGTERM, then SIGKILL after a grace period); the benchmark calls it on success, on
 * error and on Ctrl-C.
 *
 * Nodes and routers run under Node 20 through tsx like production
 * (`node --import ./node_modules/tsx/dist/esm/index.mjs src/node/main.ts …`); the CLI runs
 * under this Deno (`deno run --allow-net --allow-read --allow-env src/cli/cli.ts …`).
 *
 * Unlike tests/helpers/cluster.ts this waits for `READY` as long as the caller says: a node
 * restarted after SIGKILL replays its write-ahead log before it serves, which with a 100,000
 * point index takes longer than a test would wait.
 *
 * @module
 */

import { ChildProc } from "../tests/helpers/cluster.ts";

/** The tsx loader, as the README's commands give it. */
export const TSX_LOADER = "./node_modules/tsx/dist/esm/index.mjs";
/** Output lines kept per process. */
export const LOG_LINES_KEPT = 300;
/** Grace period between SIGTERM and SIGKILL in {@link Proc.stop}. */
export const STOP_GRACE_MS = 10_000;

/** One child process: the test helper's, with the benchmark's READY wait and log size. */
export type Proc = ChildProc;

/** Options of a router started by {@link ProcGroup.startRouter}. */
export interface RouterProcOptions {
  port: number;
  nodes: string[];
  replication_factor: number;
  consistency: "one" | "quorum" | "all";
  node_timeout_ms: number;
  data_dir: string;
}

/** The outcome of one CLI run. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall-clock time of the whole CLI process, start-up included. */
  wall_ms: number;
}

/** Every process the benchmark started; {@link stopAll} stops them all. */
export class ProcGroup {
  readonly #all = new Set<Proc>();
  readonly ready_timeout_ms: number;

  constructor(ready_timeout_ms: number) {
    this.ready_timeout_ms = ready_timeout_ms;
  }

  #spawn(name: string, command: string, args: string[]): Proc {
    const p = new ChildProc(name, args, {
      command,
      ready_timeout_ms: this.ready_timeout_ms,
      lines_kept: LOG_LINES_KEPT,
    });
    this.#all.add(p);
    return p;
  }

  /** Starts a storage node (does not wait for READY). */
  startNode(name: string, port: number, data_dir: string, extra: string[] = []): Proc {
    return this.#spawn(name, "/usr/bin/env", [
      "node",
      "--import",
      TSX_LOADER,
      "src/node/main.ts",
      "--port",
      String(port),
      "--data-dir",
      data_dir,
      ...extra,
    ]);
  }

  /** Starts the router with a static node list (does not wait for READY). */
  startRouter(name: string, o: RouterProcOptions): Proc {
    return this.#spawn(name, "/usr/bin/env", [
      "node",
      "--import",
      TSX_LOADER,
      "src/router/main.ts",
      "--port",
      String(o.port),
      "--nodes",
      o.nodes.join(","),
      "--replication-factor",
      String(o.replication_factor),
      "--consistency",
      o.consistency,
      "--node-timeout-ms",
      String(o.node_timeout_ms),
      "--data-dir",
      o.data_dir,
    ]);
  }

  /** Runs the client CLI under this Deno and waits for it to exit. */
  async runCli(args: string[]): Promise<CliRun> {
    const t0 = performance.now();
    const p = this.#spawn("client", Deno.execPath(), [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      "src/cli/cli.ts",
      ...args,
    ]);
    const status = await p.done;
    const wall_ms = performance.now() - t0;
    this.#all.delete(p);
    // Proc keeps stdout and stderr interleaved; the CLI prints its result as one stdout line
    // and failures as "error: …" lines, which is all callers need.
    const text = p.lines.join("\n");
    const errors = p.lines.filter((l) => l.startsWith("error:")).join("\n");
    return { code: status.code, stdout: text, stderr: errors, wall_ms };
  }

  /** Stops every process still running, all at once. */
  async stopAll(): Promise<void> {
    const live = [...this.#all].filter((p) => !p.exited);
    await Promise.allSettled(live.map((p) => p.stop(STOP_GRACE_MS)));
  }

  /** The last lines of every process started, for a failure report. */
  tails(n = 30): string {
    return [...this.#all].map((p) => p.tail(n)).filter((t) => t !== "").join("\n");
  }
}
