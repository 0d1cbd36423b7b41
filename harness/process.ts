/**
 * The one child-process wrapper of the tests and scripts: {@link ChildProc} spawns a program from
 * the repository root, keeps its pid and its last output lines, watches stdout for a `READY`
 * line (with a timeout), and stops it by pid (SIGTERM, then SIGKILL after a grace period).
 * {@link ProcGroup} keeps every process a test or script started so that one call stops them all;
 * {@link runProcess} runs a program to its end and returns its output.
 *
 * ```ts
 * const p = new ChildProc({ name: "node-1", command: "node", args: [...] });
 * await p.ready;                 // the READY line; rejects with StartError on exit or timeout
 * p.signal("SIGSTOP");           // by pid; a no-op once it exited
 * const status = await p.stop(); // SIGTERM, SIGKILL after 5 s; { code, signal }
 * ```
 *
 * Guaranteed stop: every live process is also SIGKILLed by pid when this process exits
 * (`process.on("exit")`, and Deno's `unload` event, which `Deno.exit` fires), so a script that
 * dies or exits early leaves no servers behind.
 *
 * Runtime-neutral (node: APIs only), so it also serves drivers that run under Node, such as the
 * crash test's (a Deno process's gRPC client can abort when a server is killed under it:
 * denoland/deno#36788).
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** Repository root, with a trailing slash (processes run there, as `deno task …` does). */
export const REPO_ROOT: string = fileURLToPath(new URL("..", import.meta.url));
/** Default wait for `READY`. A node replaying a large WAL needs more (pass it). */
export const READY_TIMEOUT_MS = 60_000;
/** Default grace period between SIGTERM and SIGKILL in {@link ChildProc.stop}. */
export const STOP_GRACE_MS = 5_000;
/** Default number of output lines kept per process (stdout and stderr interleaved). */
export const LINES_KEPT = 2000;
/** Most bytes of stdout and of stderr kept per process (the last ones). */
export const OUTPUT_BYTES_MAX = 256 * 1024;

/** How a process ended: an exit code, or the signal that ended it. */
export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

/** The signals the harness sends. */
export type Signal = "SIGTERM" | "SIGKILL" | "SIGINT" | "SIGSTOP" | "SIGCONT" | "SIGHUP";

/** `exit code 1`, `signal SIGABRT`… */
export function describeStatus(s: ExitStatus): string {
  return s.signal !== null ? `signal ${s.signal}` : `exit code ${s.code}`;
}

/** Path of the Deno binary: this process's when running under Deno, else `deno` on PATH. */
export function denoPath(): string {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  return deno !== undefined ? deno.execPath() : "deno";
}

/** The process exited, or printed no ready line in time. */
export class StartError extends Error {
  constructor(message: string, readonly status: ExitStatus | null, readonly stderr: string) {
    super(message);
    this.name = "StartError";
  }
}

/** The process did not stop in time, or stopped with an unexpected status. */
export class StopError extends Error {
  constructor(message: string, readonly stderr: string) {
    super(message);
    this.name = "StopError";
  }
}

/** `promise`, or `"timeout"` when it has not settled within `ms`. */
export async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Options of a {@link ChildProc}. */
export interface ChildProcOptions {
  /** Name in log lines and errors (e.g. `node-50051`). */
  name: string;
  /** Program to run (looked up on PATH). */
  command: string;
  args?: string[];
  /** Working directory; default {@link REPO_ROOT}. */
  cwd?: string;
  /** Variables added to this process's environment. */
  env?: Record<string, string>;
  /**
   * A stdout line starting with this resolves {@link ChildProc.ready}; default `"READY "`.
   * `null`: nothing to wait for (ready resolves at once).
   */
  ready_prefix?: string | null;
  /** How long to wait for the ready line; default {@link READY_TIMEOUT_MS}. */
  ready_timeout_ms?: number;
  /** Output lines kept; default {@link LINES_KEPT}. */
  lines_kept?: number;
  /** Called with every complete (newline-terminated) output line. */
  on_line?: (line: string, stream: "stdout" | "stderr") => void;
  /**
   * The command is a prefix (`strace -f …`) whose child is the real process: signals go to the
   * prefix's children (the prefix exits after them). Not for `setpriv` or `env`, which exec.
   */
  signal_children?: boolean;
}

/** Every process started and not seen to exit, SIGKILLed when this process exits. */
const live = new Set<ChildProc>();
let exitHookInstalled = false;
function killLiveOnExit(): void {
  for (const p of live) p.signal("SIGKILL");
}
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", killLiveOnExit);
  (globalThis as { addEventListener?: (type: string, fn: () => void) => void })
    .addEventListener?.("unload", killLiveOnExit);
}

/** One child process, its output kept (last lines) and drained. */
export class ChildProc {
  readonly name: string;
  /** OS process id; undefined when the program could not be spawned. */
  readonly pid: number | undefined;
  /** The last output lines, stdout and stderr interleaved. */
  readonly lines: string[] = [];
  /** Resolves with the ready line; rejects with {@link StartError} on exit or timeout first. */
  readonly ready: Promise<string>;
  /** Resolves with the exit status once the process exited and its output is drained. */
  readonly done: Promise<ExitStatus>;
  /** `performance.now()` at spawn. */
  readonly started_at: number;
  /** `performance.now()` when the ready line came; NaN before. */
  ready_at = NaN;

  readonly #child: ChildProcess;
  readonly #options: ChildProcOptions;
  #status: ExitStatus | null = null;
  #stdout = "";
  #stderr = "";

  constructor(options: ChildProcOptions) {
    installExitHook();
    this.#options = options;
    this.name = options.name;
    const readyPrefix = options.ready_prefix === undefined ? "READY " : options.ready_prefix;
    const readyTimeoutMs = options.ready_timeout_ms ?? READY_TIMEOUT_MS;
    const linesKept = options.lines_kept ?? LINES_KEPT;
    this.started_at = performance.now();
    const child = spawn(options.command, options.args ?? [], {
      cwd: options.cwd ?? REPO_ROOT,
      env: options.env === undefined ? undefined : { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    this.pid = child.pid;
    live.add(this);

    let onReady!: (line: string) => void;
    let onFail!: (e: Error) => void;
    this.ready = new Promise<string>((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    // Callers that never wait for the ready line must not see an unhandled rejection.
    this.ready.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (readyPrefix === null) {
      this.ready_at = this.started_at;
      onReady("");
    } else {
      timer = setTimeout(() => {
        onFail(
          new StartError(
            `${this.name} printed no ${readyPrefix.trim()} line within ${readyTimeoutMs} ms:\n` +
              this.tail(),
            null,
            this.#stderr,
          ),
        );
      }, readyTimeoutMs);
    }

    const keep = (text: string, stream: "stdout" | "stderr") => {
      if (stream === "stdout") this.#stdout = cap(this.#stdout + text);
      else this.#stderr = cap(this.#stderr + text);
    };
    const watch = (stream: "stdout" | "stderr") => {
      let partial = "";
      const s = stream === "stdout" ? child.stdout! : child.stderr!;
      s.setEncoding("utf8");
      s.on("data", (text: string) => {
        keep(text, stream);
        const parts = (partial + text).split("\n");
        partial = parts.pop()!;
        for (const line of parts) {
          this.lines.push(line);
          if (this.lines.length > linesKept) this.lines.shift();
          options.on_line?.(line, stream);
          if (
            stream === "stdout" && readyPrefix !== null && line.startsWith(readyPrefix) &&
            Number.isNaN(this.ready_at)
          ) {
            this.ready_at = performance.now();
            clearTimeout(timer);
            onReady(line);
          }
        }
      });
      // An unterminated last line is kept, but is no ready line (the process may have been
      // killed while writing it).
      s.on("end", () => {
        if (partial !== "") this.lines.push(partial);
        partial = "";
      });
    };
    watch("stdout");
    watch("stderr");

    // "close": the process exited and its stdout and stderr are drained.
    this.done = new Promise<ExitStatus>((resolve) => {
      child.on("error", (e) => {
        this.#stderr += `spawn ${options.command} failed: ${e.message}\n`;
        this.lines.push(`spawn ${options.command} failed: ${e.message}`);
        resolve({ code: -1, signal: null });
      });
      child.on("close", (code, signal) => resolve({ code: signal === null ? code : null, signal }));
    }).then((status) => {
      this.#status = status;
      live.delete(this);
      clearTimeout(timer);
      onFail(
        new StartError(
          `${this.name} exited (${describeStatus(status)}) before it was ready:\n${this.tail()}`,
          status,
          this.#stderr,
        ),
      );
      return status;
    });
  }

  /** Whether the process has exited (and its output is drained). */
  get exited(): boolean {
    return this.#status !== null;
  }

  /** The exit status; null while it runs. */
  get status(): ExitStatus | null {
    return this.#status;
  }

  /** Milliseconds from spawn to the ready line; NaN before it. */
  get ready_ms(): number {
    return this.ready_at - this.started_at;
  }

  /** The last {@link OUTPUT_BYTES_MAX} bytes of stdout. */
  get stdout(): string {
    return this.#stdout;
  }

  /** The last {@link OUTPUT_BYTES_MAX} bytes of stderr. */
  get stderr(): string {
    return this.#stderr;
  }

  /** The last `n` kept lines, each prefixed with the process name. */
  tail(n = 40): string {
    return this.lines.slice(-n).map((l) => `${this.name} | ${l}`).join("\n");
  }

  /** Every kept line, each prefixed with the process name. */
  log(): string {
    return this.tail(this.lines.length);
  }

  /** Sends `sig` by pid (to the prefix's children with `signal_children`); no-op once exited. */
  signal(sig: Signal): void {
    const pid = this.pid;
    if (pid === undefined || this.exited) return;
    if (this.#options.signal_children) {
      let children: number[] = [];
      try {
        children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)
          .filter((x) => x !== "").map(Number);
      } catch {
        // No /proc: signal the prefix process itself.
      }
      if (children.length > 0) {
        for (const c of children) killPid(c, sig);
        return;
      }
    }
    // process.kill, not child.kill: Deno 2.9.6's node:child_process then reports the signal
    // sent as the exit signal even when the child exits 0 on its own.
    killPid(pid, sig);
  }

  /**
   * SIGTERM, wait up to `grace_ms`, then SIGKILL (calling `on_late` first); resolves with the
   * exit status. Never throws.
   */
  async stop(grace_ms = STOP_GRACE_MS, on_late?: () => void): Promise<ExitStatus> {
    this.signal("SIGTERM");
    if (await raceTimeout(this.done, grace_ms) === "timeout") {
      on_late?.();
      this.signal("SIGKILL");
    }
    return await this.done;
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<ExitStatus> {
    this.signal("SIGKILL");
    return await this.done;
  }
}

function killPid(pid: number, sig: Signal): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already exited.
  }
}

function cap(text: string): string {
  return text.length > OUTPUT_BYTES_MAX ? text.slice(-OUTPUT_BYTES_MAX) : text;
}

/** Every process a test or script started, in start order; {@link stopAll} stops them all. */
export class ProcGroup {
  readonly #all: ChildProc[] = [];

  /** Starts a process in this group. */
  spawn(options: ChildProcOptions): ChildProc {
    return this.add(new ChildProc(options));
  }

  /** Adds a process started elsewhere. */
  add(p: ChildProc): ChildProc {
    this.#all.push(p);
    return p;
  }

  /** Forgets a process (its output no longer goes into {@link log}). */
  remove(p: ChildProc): void {
    const i = this.#all.indexOf(p);
    if (i >= 0) this.#all.splice(i, 1);
  }

  /** Every process of the group, in start order. */
  get procs(): readonly ChildProc[] {
    return this.#all;
  }

  /** Stops every process still running, all at once (SIGTERM, SIGKILL after `grace_ms`). */
  async stopAll(grace_ms = STOP_GRACE_MS, on_late?: (p: ChildProc) => void): Promise<void> {
    const running = this.#all.filter((p) => !p.exited);
    await Promise.allSettled(running.map((p) => p.stop(grace_ms, () => on_late?.(p))));
  }

  /** The last `n` lines of every process, for a failure report. */
  tails(n = 30): string {
    return this.#all.map((p) => p.tail(n)).filter((t) => t !== "").join("\n");
  }

  /** Every process's kept output. */
  log(): string {
    return this.#all.map((p) => p.log()).filter((t) => t !== "").join("\n");
  }
}

/** The outcome of {@link runProcess}. */
export interface RunResult {
  /** Exit code; null when a signal ended it. */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Wall-clock time of the whole process, start-up included. */
  wall_ms: number;
}

/** Options of {@link runProcess}. */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Group to track the process in while it runs (so a Ctrl-C handler can stop it). */
  group?: ProcGroup;
  name?: string;
}

/** Runs `command` to its end; its exit status and output (the last {@link OUTPUT_BYTES_MAX}). */
export async function runProcess(
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const p = new ChildProc({
    name: options.name ?? command,
    command,
    args,
    cwd: options.cwd,
    env: options.env,
    ready_prefix: null,
  });
  options.group?.add(p);
  const status = await p.done;
  options.group?.remove(p);
  return {
    code: status.code,
    signal: status.signal,
    stdout: p.stdout,
    stderr: p.stderr,
    wall_ms: performance.now() - p.started_at,
  };
}
