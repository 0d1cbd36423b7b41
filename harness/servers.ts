/**
 * How the harness starts the project's programs: a storage node (`src/node/main.ts`) and the
 * router (`src/router/main.ts`) under Node 20 through tsx, as production runs them
 * (`node --import ./node_modules/tsx/dist/esm/index.mjs …`, see the README's runtime note), or
 * under Deno with `runtime: "deno"` (to reproduce denoland/deno#36788); the client CLI
 * (`src/cli/cli.ts`) under Deno. Every process starts from the repository root.
 *
 * A server can run as another Unix user ({@link RunAs}: through `setpriv`, which execs, so the
 * pid is the server's) with HOME at its data directory, which the fault scripts use to cut one
 * process's links with iptables owner rules.
 *
 * Runtime-neutral (node: APIs only).
 * @module
 */
import { chmod, chown, mkdir } from "node:fs/promises";
import { spawnSync } from "node:child_process";
import {
  ChildProc,
  type ChildProcOptions,
  denoPath,
  type ProcGroup,
  REPO_ROOT,
  runProcess,
  type RunResult,
} from "./process.ts";

/** The tsx loader, as the README's commands give it. */
export const TSX_LOADER = "./node_modules/tsx/dist/esm/index.mjs";
/** Storage node entry point, relative to the repository root. */
export const NODE_ENTRY = "src/node/main.ts";
/** Router entry point. */
export const ROUTER_ENTRY = "src/router/main.ts";
/** Client CLI entry point. */
export const CLI_ENTRY = "src/cli/cli.ts";

/**
 * "node" (Node 20 through tsx, compiling the TypeScript at start), "bundle" (Node 20 running
 * the JavaScript `deno task build:js` wrote, as `deno task server` does; only for the two
 * server entries) or "deno" (`deno run -A`).
 */
export type Runtime = "node" | "bundle" | "deno";

/** The bundles scripts/tools/build_js.ts writes for the server entry points. */
export const BUNDLES: Readonly<Record<string, string>> = {
  "src/node/main.ts": "build/js/node.mjs",
  "src/router/main.ts": "build/js/router.mjs",
};

/** A Unix user to run a process as (needs root). */
export interface RunAs {
  uid: number;
  gid: number;
}

/** `setpriv` arguments that run the rest of the command line as `u` (it execs: same pid). */
export function asUser(u: RunAs): string[] {
  return [`--reuid=${u.uid}`, `--regid=${u.gid}`, "--clear-groups", "--"];
}

/** Flags of a storage node. */
export interface NodeFlags {
  port: number;
  data_dir: string;
  /** Address to bind (`--host`); the server's default when absent. */
  host?: string;
  /** Seeds to `--join`. */
  join?: string[];
  /** `--node-id`. */
  node_id?: string;
  /** `--advertise`. */
  advertise?: string;
  /** Further flags, e.g. `["--snapshot-every-ops", "1000"]`. */
  extra?: string[];
}

/** The command-line flags of a storage node. */
export function nodeFlags(f: NodeFlags): string[] {
  return [
    "--port",
    String(f.port),
    ...(f.host === undefined ? [] : ["--host", f.host]),
    ...(f.advertise === undefined ? [] : ["--advertise", f.advertise]),
    ...(f.node_id === undefined ? [] : ["--node-id", f.node_id]),
    "--data-dir",
    f.data_dir,
    ...(f.join === undefined || f.join.length === 0 ? [] : ["--join", f.join.join(",")]),
    ...httpOff(f.extra),
    ...(f.extra ?? []),
  ];
}

/**
 * `--http-port 0` unless `extra` gives `--http-port`: the default (the gRPC port + 1000) of a
 * free port found for gRPC may be taken, so tests and scripts ask for HTTP explicitly.
 */
function httpOff(extra: readonly string[] | undefined): string[] {
  return (extra ?? []).some((a) => a === "--http-port" || a.startsWith("--http-port="))
    ? []
    : ["--http-port", "0"];
}

/** Flags of the router. */
export interface RouterFlags {
  port: number;
  data_dir: string;
  host?: string;
  /** Static node list (`--nodes`). */
  nodes?: string[];
  /** Gossip seeds (`--join`). */
  join?: string[];
  replication_factor?: number;
  consistency?: "one" | "quorum" | "all";
  node_timeout_ms?: number;
  retry_interval_ms?: number;
  extra?: string[];
}

/** The command-line flags of the router. */
export function routerFlags(f: RouterFlags): string[] {
  const opt = (flag: string, v: string | number | undefined) =>
    v === undefined ? [] : [flag, String(v)];
  return [
    "--port",
    String(f.port),
    ...(f.nodes === undefined ? [] : ["--nodes", f.nodes.join(",")]),
    ...(f.join === undefined ? [] : ["--join", f.join.join(",")]),
    ...opt("--replication-factor", f.replication_factor),
    ...opt("--consistency", f.consistency),
    ...opt("--node-timeout-ms", f.node_timeout_ms),
    ...opt("--retry-interval-ms", f.retry_interval_ms),
    "--data-dir",
    f.data_dir,
    ...opt("--host", f.host),
    ...httpOff(f.extra),
    ...(f.extra ?? []),
  ];
}

/**
 * Writes the server bundles ({@link BUNDLES}) unless they are up to date, as `deno task build:js`
 * does (scripts/tools/build_js.ts); throws with its output when the build fails. Call before
 * starting a server with runtime "bundle" outside a task that depends on build:js.
 */
export function buildBundles(): void {
  const r = spawnSync(denoPath(), ["run", "-A", "scripts/tools/build_js.ts"], {
    cwd: REPO_ROOT,
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`build_js failed (${r.status}): ${r.stderr}`);
}

/**
 * The command line (program first) that runs a TypeScript entry point (a server, or a driver
 * such as the crash test's) with `flags`: under Node through tsx, or under Deno.
 */
export function scriptCommand(entry: string, flags: string[], runtime: Runtime = "node"): string[] {
  if (runtime === "deno") return [denoPath(), "run", "-A", entry, ...flags];
  if (runtime === "bundle") {
    const bundle = BUNDLES[entry];
    if (bundle === undefined) {
      throw new RangeError(`No bundle of ${entry} (only ${Object.keys(BUNDLES)})`);
    }
    return ["node", bundle, ...flags];
  }
  return ["node", "--import", TSX_LOADER, entry, ...flags];
}

/** Options of {@link spawnServer}. */
export interface ServerOptions
  extends Omit<ChildProcOptions, "command" | "args" | "signal_children"> {
  /** {@link NODE_ENTRY} or {@link ROUTER_ENTRY}. */
  entry: string;
  flags: string[];
  /** Default "node". */
  runtime?: Runtime;
  /** Command words put before the runtime, e.g. `["strace", "-f", "-o", "out"]`. */
  command_prefix?: string[];
  /** Run as this user, with HOME at `home` (see {@link prepareUserDir}). */
  user?: RunAs;
  home?: string;
  /** Track the process in this group. */
  group?: ProcGroup;
}

/** Starts a storage node or the router (does not wait for READY: await `.ready`). */
export function spawnServer(o: ServerOptions): ChildProc {
  let argv = [...(o.command_prefix ?? []), ...scriptCommand(o.entry, o.flags, o.runtime)];
  if (o.user !== undefined) {
    argv = ["setpriv", ...asUser(o.user), "/usr/bin/env", `HOME=${o.home ?? "/"}`, ...argv];
  }
  const [command, ...args] = argv;
  const p = new ChildProc({
    name: o.name,
    command,
    args,
    cwd: o.cwd,
    env: o.env,
    ready_prefix: o.ready_prefix,
    ready_timeout_ms: o.ready_timeout_ms,
    lines_kept: o.lines_kept,
    on_line: o.on_line,
    signal_children: (o.command_prefix ?? []).length > 0,
  });
  o.group?.add(p);
  return p;
}

/** Creates `dir` for a server run as `user` and gives it to that user; `parent` world-traversable. */
export async function prepareUserDir(parent: string, dir: string, user: RunAs): Promise<void> {
  await chmod(parent, 0o755);
  await mkdir(dir, { recursive: true });
  await chown(dir, user.uid, user.gid);
}

/** Runs the client CLI under Deno and waits for it to exit. */
export function runCli(args: string[], options: { group?: ProcGroup } = {}): Promise<RunResult> {
  return runProcess(
    denoPath(),
    ["run", "--allow-net", "--allow-read", "--allow-env", CLI_ENTRY, ...args],
    { name: "client", group: options.group },
  );
}
