/**
 * Child processes of the cluster benchmark (scripts/bench_cluster.ts): storage nodes, routers
 * and client CLI runs, each a real process started from the repository root, with its last
 * output lines kept for diagnostics. {@link ProcGroup.stopAll} stops every process the group
 * started (SIGTERM, then SIGKILL after a grace period); the benchmark calls it on success, on
 * error and on Ctrl-C.
 *
 * Nodes and routers run under Node 20 through tsx like production
 * (`node --import ./node_modules/tsx/dist/esm/index.mjs src/server/main.ts …`); the CLI runs
 * under this Deno (`deno run --allow-net --allow-read --allow-env src/client/cli.ts …`).
 *
 * Unlike tests/helpers/cluster.ts this waits for `READY` as long as the caller says: a node
 * restarted after SIGKILL replays its write-ahead log before it serves, which with a 100,000
 * point index takes longer than a test would wait.
 *
 * @module
 */

import { REPO_ROOT } from "../tests/helpers/cluster.ts";

/** The tsx loader, as the README's commands give it. */
export const TSX_LOADER = "./node_modules/tsx/dist/esm/index.mjs";
/** Output lines kept per process. */
export const LOG_LINES_KEPT = 300;
/** Grace period between SIGTERM and SIGKILL in {@link Proc.stop}. */
export const STOP_GRACE_MS = 10_000;

/** One child process with its output drained and its last lines kept. */
export class Proc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  /** Resolves when the process prints a line starting with `READY `. */
  readonly ready: Promise<void>;
  /** Resolves with the exit status once the process has exited and its output is drained. */
  readonly done: Promise<Deno.CommandStatus>;
  /** performance.now() when the process was spawned. */
  readonly started_ms: number;
  /** performance.now() when READY was seen; NaN before. */
  ready_ms = NaN;
  #exited = false;

  constructor(name: string, command: string, args: string[], ready_timeout_ms: number) {
    this.name = name;
    this.started_ms = performance.now();
    this.child = new Deno.Command(command, {
      args,
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let onReady!: () => void;
    let onFail!: (e: Error) => void;
    this.ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    // Callers that never wait for READY (CLI runs) must not see an unhandled rejection.
    this.ready.catch(() => {});
    const timer = setTimeout(
      () => onFail(new Error(`${name} printed no READY line within ${ready_timeout_ms} ms`)),
      ready_timeout_ms,
    );
    const drain = async (stream: ReadableStream<Uint8Array>, watch: boolean) => {
      let partial = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (partial + text).split("\n");
        partial = parts.pop()!;
        for (const line of parts) {
          this.lines.push(line);
          if (this.lines.length > LOG_LINES_KEPT) this.lines.shift();
          if (watch && line.startsWith("READY ") && Number.isNaN(this.ready_ms)) {
            this.ready_ms = performance.now();
            clearTimeout(timer);
            onReady();
          }
        }
      }
      if (partial !== "") this.lines.push(partial);
    };
    const out = drain(this.child.stdout, true);
    const err = drain(this.child.stderr, false);
    this.done = this.child.status.then(async (status) => {
      this.#exited = true;
      clearTimeout(timer);
      await Promise.allSettled([out, err]);
      onFail(new Error(`${name} exited with code ${status.code} before it printed READY`));
      return status;
    });
  }

  /** Whether the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Sends `signal`; a no-op once the process has exited. */
  signal(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.child.kill(signal);
    } catch {
      // It exited meanwhile.
    }
  }

  /** SIGTERM, up to `grace_ms` to exit, then SIGKILL; resolves with the exit status. */
  async stop(grace_ms = STOP_GRACE_MS): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), grace_ms);
    });
    const first = await Promise.race([this.done, late]);
    clearTimeout(timer);
    if (first === "late") this.signal("SIGKILL");
    return await this.done;
  }

  /** The last `n` kept lines, each prefixed with the process name. */
  tail(n = 40): string {
    return this.lines.slice(-n).map((l) => `${this.name} | ${l}`).join("\n");
  }
}

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
    const p = new Proc(name, command, args, this.ready_timeout_ms);
    this.#all.add(p);
    return p;
  }

  /** Starts a storage node (does not wait for READY). */
  startNode(name: string, port: number, data_dir: string, extra: string[] = []): Proc {
    return this.#spawn(name, "/usr/bin/env", [
      "node",
      "--import",
      TSX_LOADER,
      "src/server/main.ts",
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
      "src/client/cli.ts",
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
    await Promise.allSettled(live.map((p) => p.stop()));
  }

  /** The last lines of every process started, for a failure report. */
  tails(n = 30): string {
    return [...this.#all].map((p) => p.tail(n)).filter((t) => t !== "").join("\n");
  }
}
