/**
 * One storage node (`src/node/main.ts`) that keeps its port and data directory across starts,
 * for multi-process tests and scripts. Each start is a {@link ChildProc}.
 *
 * ```ts
 * const node = await NodeProcess.start({ args: ["--snapshot-every-ops", "1000"] });
 * try {
 *   const api = new ApiClient(node.address);
 *   // ...
 *   await node.restart();           // SIGTERM (snapshot on shutdown), start again, same port
 *   await node.kill();              // SIGKILL
 *   await node.start();             // same port and data directory
 * } finally {
 *   await node.close();             // stops it if running, removes a temporary data directory
 * }
 * ```
 *
 * The node listens on a free loopback port that stays the same across restarts, so a
 * long-lived client channel can reconnect. It runs under Node 20 through tsx (the production
 * set-up), or under Deno with `runtime: "deno"`. Runtime-neutral (node: APIs only), so the crash
 * test's driver uses it under Node.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.ts";
import {
  type ChildProc,
  describeStatus,
  type ExitStatus,
  raceTimeout,
  StartError,
  StopError,
} from "./process.ts";
import { NODE_ENTRY, nodeFlags, type Runtime, scriptCommand, spawnServer } from "./servers.ts";
import { sleep } from "./wait.ts";

export interface NodeProcessOptions {
  /** Data directory; default a fresh temporary directory, removed by {@link NodeProcess.close}. */
  data_dir?: string;
  /** Port; default a free loopback port. */
  port?: number;
  /** "node" (default: Node 20 through tsx) or "deno" (`deno run -A`). */
  runtime?: Runtime;
  /** Extra server flags, e.g. `["--snapshot-every-ops", "1000"]`. */
  args?: string[];
  /** Variables added to the server's environment, e.g. `{ VECTORDB_LOG_FORMAT: "json" }`. */
  env?: Record<string, string>;
  /** How long to wait for `READY`; default 60 s. */
  ready_timeout_ms?: number;
  /** Command words put before the runtime, e.g. `["strace", "-f", "-o", "out"]`. */
  command_prefix?: string[];
  /** Called with each output line (e.g. to echo it). */
  on_line?: (line: string, stream: "stdout" | "stderr") => void;
}

/** One storage node; it may be started and stopped many times. */
export class NodeProcess {
  readonly port: number;
  readonly data_dir: string;
  readonly runtime: Runtime;
  /** `127.0.0.1:<port>` */
  readonly address: string;
  /** Times the process was started. */
  starts = 0;
  /** Every exit not caused by {@link stop}, {@link kill} or {@link close}. */
  readonly unexpected_exits: ExitStatus[] = [];

  private readonly ownsDir: boolean;
  private readonly options: NodeProcessOptions;
  private current: ChildProc | null = null;
  private expectingExit = false;

  private constructor(port: number, dataDir: string, ownsDir: boolean, o: NodeProcessOptions) {
    this.port = port;
    this.data_dir = dataDir;
    this.ownsDir = ownsDir;
    this.runtime = o.runtime ?? "node";
    this.options = o;
    this.address = `127.0.0.1:${port}`;
  }

  /** Creates and starts a node. On a start failure the temporary directory is removed. */
  static async start(options: NodeProcessOptions = {}): Promise<NodeProcess> {
    const node = await NodeProcess.prepare(options);
    try {
      await node.start();
    } catch (e) {
      await node.close();
      throw e;
    }
    return node;
  }

  /** A node on a free port (or `options.port`) that is not started yet (call {@link start}). */
  static async prepare(options: NodeProcessOptions = {}): Promise<NodeProcess> {
    const port = options.port ?? await freePort();
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new RangeError(`Port ${port} must be an integer in 1..65535`);
    }
    const ownsDir = options.data_dir === undefined;
    const dir = options.data_dir ?? mkdtempSync(join(tmpdir(), "vectordb_node_"));
    return new NodeProcess(port, dir, ownsDir, options);
  }

  /** The process of the latest start; null before the first. */
  get proc(): ChildProc | null {
    return this.current;
  }

  /** Whether the process is running (started and not seen to exit). */
  get running(): boolean {
    return this.current !== null && !this.current.exited;
  }

  /** OS process id of the latest start. */
  get pid(): number {
    if (this.current?.pid === undefined) throw new Error("The node was never started");
    return this.current.pid;
  }

  /** stderr of the latest start (its last bytes). */
  get stderr(): string {
    return this.current?.stderr ?? "";
  }

  /** Milliseconds from spawn to `READY` of the latest start. */
  get ready_ms(): number {
    return this.current?.ready_ms ?? 0;
  }

  /** `performance.now()` when the latest start printed `READY`. */
  get ready_at(): number {
    return this.current?.ready_at ?? 0;
  }

  /** Resolves when the current process exits. */
  get done(): Promise<ExitStatus> {
    if (this.current === null) throw new Error("The node was never started");
    return this.current.done;
  }

  /** The command line the node is started with. */
  commandLine(extraArgs: string[] = []): string[] {
    return [
      ...(this.options.command_prefix ?? []),
      ...scriptCommand(NODE_ENTRY, this.#flags(extraArgs), this.runtime),
    ];
  }

  #flags(extraArgs: string[]): string[] {
    return nodeFlags({
      port: this.port,
      data_dir: this.data_dir,
      extra: [...(this.options.args ?? []), ...extraArgs],
    });
  }

  /**
   * Starts the process and waits for `READY`. `extraArgs` are added for this start only.
   * Throws {@link StartError} (with the exit status and stderr) when it exits first.
   */
  async start(extraArgs: string[] = []): Promise<void> {
    await this.launch(extraArgs);
  }

  /**
   * Spawns the process at once and returns a promise of its `READY` (as {@link start} does), so a
   * caller can kill it while it starts up. A start killed on purpose rejects with
   * {@link StartError} too; a start that times out is killed.
   */
  launch(extraArgs: string[] = []): Promise<void> {
    if (this.running) throw new Error(`The node on ${this.address} is already running`);
    this.expectingExit = false;
    const p = spawnServer({
      name: `node-${this.port}`,
      entry: NODE_ENTRY,
      flags: this.#flags(extraArgs),
      runtime: this.runtime,
      command_prefix: this.options.command_prefix,
      env: this.options.env,
      ready_timeout_ms: this.options.ready_timeout_ms,
      on_line: this.options.on_line,
    });
    this.current = p;
    this.starts++;
    p.done.then((status) => {
      // An exit before READY is a failed start (start() throws), not a death to report.
      if (!this.expectingExit && !Number.isNaN(p.ready_at)) this.unexpected_exits.push(status);
    });
    return p.ready.then(
      () => {},
      async (e: StartError) => {
        if (e.status === null) {
          // Timed out: it must not linger.
          this.expectingExit = true;
          await p.kill();
        }
        throw e;
      },
    );
  }

  /**
   * SIGTERM (graceful: snapshot, exit 0) and wait; SIGKILL after `timeout_ms` (then throws).
   * Throws {@link StopError} when the exit is not a clean exit 0.
   */
  async stop(timeout_ms = 60_000): Promise<ExitStatus> {
    const p = this.current;
    if (p === null || !this.running) {
      throw new StopError(`The node on ${this.address} is not running`, "");
    }
    this.expectingExit = true;
    p.signal("SIGTERM");
    const outcome = await raceTimeout(p.done, timeout_ms);
    if (outcome === "timeout") {
      await p.kill();
      throw new StopError(
        `The node on ${this.address} did not stop within ${timeout_ms} ms of SIGTERM:\n` +
          this.tail(),
        p.stderr,
      );
    }
    if (outcome.code !== 0) {
      throw new StopError(
        `The node on ${this.address} stopped with ${describeStatus(outcome)}:\n${this.tail()}`,
        p.stderr,
      );
    }
    return outcome;
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<ExitStatus> {
    const p = this.current;
    if (p === null || !this.running) {
      throw new StopError(`The node on ${this.address} is not running`, "");
    }
    this.expectingExit = true;
    return await p.kill();
  }

  /** Graceful stop (or SIGKILL with `{ kill: true }`), then start on the same port and data. */
  async restart(options: { kill?: boolean; args?: string[] } = {}): Promise<void> {
    if (this.running) {
      if (options.kill) await this.kill();
      else await this.stop();
    }
    // The port was free a moment ago; a listener that is just closing may hold it briefly.
    for (let attempt = 0;; attempt++) {
      try {
        await this.start(options.args);
        return;
      } catch (e) {
        if (!(e instanceof StartError) || !/EADDRINUSE/.test(e.stderr) || attempt >= 20) {
          throw e;
        }
        await sleep(100);
      }
    }
  }

  /** Stops the node if it runs (SIGTERM, then SIGKILL) and removes a temporary data directory. */
  async close(): Promise<void> {
    if (this.running) {
      try {
        await this.stop(20_000);
      } catch {
        // stop() has killed it; close() is for finally blocks and must not mask the real error.
      }
    }
    if (this.ownsDir) rmSync(this.data_dir, { recursive: true, force: true });
  }

  /** The last lines of stderr, for error messages. */
  tail(lines = 40): string {
    return this.stderr.split("\n").slice(-lines).join("\n");
  }
}

/** Runs `fn` with a started node that is always closed afterwards. */
export async function withNode<T>(
  options: NodeProcessOptions,
  fn: (node: NodeProcess) => Promise<T>,
): Promise<T> {
  const node = await NodeProcess.start(options);
  try {
    return await fn(node);
  } finally {
    await node.close();
  }
}
