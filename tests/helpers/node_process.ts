/**
 * A storage node (`src/node/main.ts`) as a child process, for multi-process tests and scripts.
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
 * The node listens on a free loopback port (found by binding port 0 and closing it) that stays
 * the same across restarts, so a long-lived client channel can reconnect. It runs under Node 20
 * through tsx (the production set-up), or under Deno with `runtime: "deno"` (to reproduce
 * denoland/deno#36788). stdout is scanned for `READY host:port`; stderr is kept (the last
 * {@link STDERR_BYTES_MAX} bytes) for diagnostics.
 *
 * Runtime-neutral (node: APIs only), so it also serves drivers that run under Node, such as the
 * crash test's (a Deno process's gRPC client can abort when a server is killed under it:
 * denoland/deno#36788).
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import process from "node:process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Repository root (the server is started from there, as `deno task server` does). */
export const REPO_ROOT: string = fileURLToPath(new URL("../..", import.meta.url));
/** The server entry point, relative to {@link REPO_ROOT}. */
export const SERVER_ENTRY = "src/node/main.ts";
/** Most bytes of stderr kept per process start. */
export const STDERR_BYTES_MAX = 256 * 1024;

/** How the node was started or ended. */
export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

export type Runtime = "node" | "deno";

export interface NodeProcessOptions {
  /** Data directory; default a fresh temporary directory, removed by {@link NodeProcess.close}. */
  data_dir?: string;
  /** Port; default a free loopback port. */
  port?: number;
  /** "node" (default: Node 20 through tsx) or "deno" (`deno run -A`). */
  runtime?: Runtime;
  /** Extra server flags, e.g. `["--snapshot-every-ops", "1000"]`. */
  args?: string[];
  /** How long to wait for `READY`; default 60 s. */
  ready_timeout_ms?: number;
  /** Command words put before the runtime, e.g. `["strace", "-f", "-o", "out"]`. */
  command_prefix?: string[];
  /** Called with each stderr chunk (e.g. to echo it). */
  on_stderr?: (text: string) => void;
}

/** The node exited or timed out before printing `READY`. */
export class NodeStartError extends Error {
  constructor(message: string, readonly status: ExitStatus | null, readonly stderr: string) {
    super(message);
    this.name = "NodeStartError";
  }
}

/** The node did not stop in time, or stopped with an unexpected status. */
export class NodeStopError extends Error {
  constructor(message: string, readonly stderr: string) {
    super(message);
    this.name = "NodeStopError";
  }
}

/** A free TCP port on 127.0.0.1 (bound to port 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`Unexpected listen address ${JSON.stringify(address)}`));
        return;
      }
      const port = address.port;
      server.close(() => resolve(port));
    });
  });
}

/** Path of the Deno binary: this process's when running under Deno, else `deno` on PATH. */
function denoPath(): string {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  return deno !== undefined ? deno.execPath() : "deno";
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One storage node child process; it may be started and stopped many times. */
export class NodeProcess {
  readonly port: number;
  readonly data_dir: string;
  readonly runtime: Runtime;
  /** `127.0.0.1:<port>` */
  readonly address: string;
  /** Times the process was started. */
  starts = 0;
  /** Milliseconds from spawn to `READY` of the latest start. */
  ready_ms = 0;
  /** `performance.now()` when the latest start printed `READY`. */
  ready_at = 0;

  private readonly ownsDir: boolean;
  private readonly options: NodeProcessOptions;
  private child: ChildProcess | null = null;
  private exitStatus: Promise<ExitStatus> | null = null;
  private lastStatus: ExitStatus | null = null;
  private stderrText = "";
  /** Every exit not caused by {@link stop}, {@link kill} or {@link close}. */
  readonly unexpected_exits: ExitStatus[] = [];
  private expectingExit = false;

  private constructor(
    port: number,
    dataDir: string,
    ownsDir: boolean,
    options: NodeProcessOptions,
  ) {
    this.port = port;
    this.data_dir = dataDir;
    this.ownsDir = ownsDir;
    this.runtime = options.runtime ?? "node";
    this.options = options;
    this.address = `127.0.0.1:${port}`;
  }

  /** Creates and starts a node. On a start failure the temporary directory is removed. */
  static async start(options: NodeProcessOptions = {}): Promise<NodeProcess> {
    const node = NodeProcess.create(options, await freePort());
    try {
      await node.start();
    } catch (e) {
      await node.close();
      throw e;
    }
    return node;
  }

  /** A node on a free port that is not started yet (call {@link start}). */
  static async prepare(options: NodeProcessOptions = {}): Promise<NodeProcess> {
    return NodeProcess.create(options, options.port ?? await freePort());
  }

  /** A node that is not started yet (call {@link start}); see {@link NodeProcess.start}. */
  static create(options: NodeProcessOptions = {}, port = options.port ?? 0): NodeProcess {
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new RangeError(`Port ${port} must be an integer in 1..65535 (use freePort())`);
    }
    const ownsDir = options.data_dir === undefined;
    const dir = options.data_dir ?? mkdtempSync(join(tmpdir(), "vectordb_node_"));
    return new NodeProcess(port, dir, ownsDir, options);
  }

  /** Whether the process is running (started and not seen to exit). */
  get running(): boolean {
    return this.child !== null && this.lastStatus === null;
  }

  /** OS process id of the running process. */
  get pid(): number {
    if (this.child?.pid === undefined) throw new Error("The node was never started");
    return this.child.pid;
  }

  /** stderr of the latest start (last {@link STDERR_BYTES_MAX} bytes). */
  get stderr(): string {
    return this.stderrText;
  }

  /** Resolves when the current process exits. */
  get exited(): Promise<ExitStatus> {
    if (this.exitStatus === null) throw new Error("The node was never started");
    return this.exitStatus;
  }

  /** The command line the node is started with. */
  commandLine(extraArgs: string[] = []): string[] {
    const flags = [
      "--port",
      String(this.port),
      "--data-dir",
      this.data_dir,
      ...(this.options.args ?? []),
      ...extraArgs,
    ];
    const prefix = this.options.command_prefix ?? [];
    if (this.runtime === "deno") {
      return [...prefix, denoPath(), "run", "-A", SERVER_ENTRY, ...flags];
    }
    return [
      ...prefix,
      "node",
      "--import",
      "./node_modules/tsx/dist/esm/index.mjs",
      SERVER_ENTRY,
      ...flags,
    ];
  }

  /**
   * Starts the process and waits for `READY`. `extraArgs` are added for this start only.
   * Throws {@link NodeStartError} (with the exit status and stderr) when it exits first.
   */
  async start(extraArgs: string[] = []): Promise<void> {
    await this.launch(extraArgs);
  }

  /**
   * Spawns the process at once and returns a promise of its `READY` (as {@link start} does), so a
   * caller can kill it while it starts up. A start killed on purpose rejects with
   * {@link NodeStartError} too.
   */
  launch(extraArgs: string[] = []): Promise<void> {
    if (this.running) throw new Error(`The node on ${this.address} is already running`);
    return this.launchAndWait(extraArgs);
  }

  private async launchAndWait(extraArgs: string[]): Promise<void> {
    if (this.running) throw new Error(`The node on ${this.address} is already running`);
    const [cmd, ...args] = this.commandLine(extraArgs);
    const started = performance.now();
    this.stderrText = "";
    this.lastStatus = null;
    this.expectingExit = false;
    const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    this.starts++;
    // "close": the process exited and its stdout and stderr are drained.
    this.exitStatus = new Promise<ExitStatus>((resolve) => {
      child.on("error", (e) => {
        this.stderrText += `spawn ${cmd} failed: ${e.message}\n`;
        resolve({ code: -1, signal: null });
      });
      child.on("close", (code, signal) => resolve({ code: signal === null ? code : null, signal }));
    }).then((status) => {
      this.lastStatus = status;
      if (!this.expectingExit) this.unexpected_exits.push(status);
      return status;
    });

    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (text: string) => {
      this.options.on_stderr?.(text);
      this.stderrText += text;
      if (this.stderrText.length > STDERR_BYTES_MAX) {
        this.stderrText = this.stderrText.slice(-STDERR_BYTES_MAX);
      }
    });

    let ready: (line: string) => void = () => {};
    const sawReady = new Promise<string>((resolve) => (ready = resolve));
    let partial = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (text: string) => {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      for (const line of lines) if (line.startsWith("READY ")) ready(line);
    });

    const timeoutMs = this.options.ready_timeout_ms ?? 60_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([sawReady, this.exitStatus, timeout]);
    clearTimeout(timer);
    if (typeof outcome === "string" && outcome.startsWith("READY ")) {
      this.ready_at = performance.now();
      this.ready_ms = this.ready_at - started;
      return;
    }
    if (outcome === "timeout") {
      this.expectingExit = true;
      this.signal("SIGKILL");
      const status = await this.exitStatus;
      throw new NodeStartError(
        `The node on ${this.address} printed no READY within ${timeoutMs} ms:\n${this.tail()}`,
        status,
        this.stderrText,
      );
    }
    const status = outcome as ExitStatus;
    // It already exited: that was a failed start, not a death to report separately.
    if (!this.expectingExit) this.unexpected_exits.pop();
    throw new NodeStartError(
      `The node on ${this.address} exited (${describeStatus(status)}) before READY:\n` +
        this.tail(),
      status,
      this.stderrText,
    );
  }

  /**
   * SIGTERM (graceful: snapshot, exit 0) and wait; SIGKILL after `timeout_ms` (then throws).
   * Throws {@link NodeStopError} when the exit is not a clean exit 0.
   */
  async stop(timeout_ms = 60_000): Promise<ExitStatus> {
    if (!this.running) throw new NodeStopError(`The node on ${this.address} is not running`, "");
    this.expectingExit = true;
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeout_ms);
    });
    const outcome = await Promise.race([this.exitStatus!, timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.signal("SIGKILL");
      await this.exitStatus;
      throw new NodeStopError(
        `The node on ${this.address} did not stop within ${timeout_ms} ms of SIGTERM:\n` +
          this.tail(),
        this.stderrText,
      );
    }
    if (outcome.code !== 0) {
      throw new NodeStopError(
        `The node on ${this.address} stopped with ${describeStatus(outcome)}:\n${this.tail()}`,
        this.stderrText,
      );
    }
    return outcome;
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<ExitStatus> {
    if (!this.running) throw new NodeStopError(`The node on ${this.address} is not running`, "");
    this.expectingExit = true;
    this.signal("SIGKILL");
    const status = await this.exitStatus!;
    return status;
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
        if (!(e instanceof NodeStartError) || !/EADDRINUSE/.test(e.stderr) || attempt >= 20) {
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
    if (this.ownsDir) {
      rmSync(this.data_dir, { recursive: true, force: true });
    }
  }

  /** The last lines of stderr, for error messages. */
  tail(lines = 40): string {
    return this.stderrText.split("\n").slice(-lines).join("\n");
  }

  private signal(sig: "SIGTERM" | "SIGKILL"): void {
    // Under a command prefix (strace…) the signal is for the server, the prefix's child; the
    // prefix exits after it.
    const pid = this.child?.pid;
    if (pid !== undefined && (this.options.command_prefix ?? []).length > 0) {
      let children: number[] = [];
      try {
        children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)
          .filter((x) => x !== "").map(Number);
      } catch {
        // No /proc: signal the prefix process itself.
      }
      if (children.length > 0) {
        for (const c of children) {
          try {
            process.kill(c, sig);
          } catch {
            // Already exited.
          }
        }
        return;
      }
    }
    // process.kill, not child.kill: Deno 2.9.6's node:child_process then reports the signal
    // sent as the exit signal even when the child exits 0 on its own.
    if (pid === undefined || !this.running) return;
    try {
      process.kill(pid, sig);
    } catch {
      // Already exited.
    }
  }
}

/** `exit code 1`, `signal SIGABRT`… */
export function describeStatus(s: ExitStatus): string {
  return s.signal !== null ? `signal ${s.signal}` : `exit code ${s.code}`;
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
