/**
 * `deno task cluster`: three storage nodes (127.0.0.1:50051-50053, data under
 * `./data/node-<port>`) and the router (127.0.0.1:50050, hints under `./data/router`) as child
 * processes under Node 20 from the bundles `deno task build:js` writes (`node build/js/node.mjs …`,
 * see the README's runtime note; started by the shared harness, `harness/servers.ts`), each
 * output line prefixed with the process name (`node-50051 | …`).
 *
 * Membership: the first node starts the gossip cluster, the other two `--join` it, and the
 * router `--join`s it too (as a member with role "router"), so its ring follows the nodes
 * gossip reports; it also gets `--nodes` with the three addresses, which it uses until gossip
 * has reported them (ring member ids are addresses either way, so placement is the same).
 * A fourth node can join later: `deno task server -- --port 50054 --join 127.0.0.1:50051`.
 *
 * Ctrl-C (SIGINT, to the script alone or to the whole process group, as a terminal sends it)
 * or SIGTERM stops everything within {@link STOP_DEADLINE_MS}, data kept: SIGTERM to the router
 * first (it stops accepting writes), then to the nodes once the router exited or
 * {@link NODES_AFTER_MS} passed. A node stopped so keeps its data and does not leave the
 * cluster (src/node/main.ts): the next `deno task cluster` starts where this one stopped.
 * Whatever still runs at the deadline gets SIGKILL (its WAL keeps every acknowledged write). A
 * second Ctrl-C sends SIGKILL to everything at once. If any child exits on its own, the others
 * are stopped the same way and the script exits non-zero.
 *
 * Flags: `--base-port 50050` (router on it, nodes on the next three), `--data-dir ./data`,
 * `--replication-factor 2`, `--consistency quorum`.
 */

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { type ChildProc, describeStatus, type StartError } from "../../harness/process.ts";
import {
  NODE_ENTRY,
  nodeFlags,
  ROUTER_ENTRY,
  routerFlags,
  spawnServer,
} from "../../harness/servers.ts";

/** Everything still running this long after the stop began gets SIGKILL. */
const STOP_DEADLINE_MS = 4500;
/** The nodes get SIGTERM when the router exited, or this long after it got its own. */
const NODES_AFTER_MS = 1500;

/** Starts a server whose output lines are echoed, prefixed with its name. */
function start(name: string, entry: string, flags: string[]): ChildProc {
  const prefix = `${name.padEnd(10)} | `;
  return spawnServer({
    name,
    entry,
    flags,
    // The bundles `deno task build:js` (a dependency of this task) wrote: no TypeScript
    // compilation at each start.
    runtime: "bundle",
    lines_kept: 200,
    on_line: (line, stream) => {
      if (stream === "stdout") console.log(prefix + line);
      else console.error(prefix + line);
    },
  });
}

function say(message: string): void {
  console.error(`${"cluster".padEnd(10)} | ${message}`);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The router first (no new writes reach nodes that are stopping), then the nodes, all with
 * SIGTERM; SIGKILL to whatever runs at `deadline` (resolves when every child exited).
 */
async function stopAll(children: ChildProc[], deadline: Promise<void>): Promise<void> {
  const routers = children.filter((c) => c.name === "router");
  const nodes = children.filter((c) => c.name !== "router");
  for (const r of routers) r.signal("SIGTERM");
  await Promise.race([Promise.all(routers.map((r) => r.done)), sleep(NODES_AFTER_MS)]);
  for (const n of nodes) n.signal("SIGTERM");
  const all = Promise.all(children.map((c) => c.done)).then(() => {});
  await Promise.race([all, deadline]);
  for (const c of children) {
    if (c.exited) continue;
    say(`${c.name} did not stop within ${STOP_DEADLINE_MS} ms; sending SIGKILL`);
    c.signal("SIGKILL");
  }
  await all;
}

/** "ready" once every process printed READY; "exit" or "timeout" when one did not. */
function allReady(group: ChildProc[]): Promise<"ready" | "exit" | "timeout"> {
  return Promise.all(group.map((c) => c.ready)).then(
    () => "ready" as const,
    (e: StartError) => (e.status === null ? "timeout" as const : "exit" as const),
  );
}

async function main(): Promise<number> {
  const argv = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  const { values } = parseArgs({
    args: argv,
    options: {
      "base-port": { type: "string", default: "50050" },
      "data-dir": { type: "string", default: "./data" },
      "replication-factor": { type: "string", default: "2" },
      consistency: { type: "string", default: "quorum" },
    },
    strict: true,
  });
  const base = Number(values["base-port"]);
  if (!Number.isInteger(base) || base < 1 || base > 65532) {
    throw new RangeError(`--base-port "${values["base-port"]}" must be an integer 1..65532`);
  }
  // Relative to where the script was started (the servers run from the repository root).
  const dataDir = resolve(values["data-dir"]!);
  const nodePorts = [base + 1, base + 2, base + 3];
  const seed = `127.0.0.1:${nodePorts[0]}`;
  const nodes = nodePorts.map((p, i) =>
    start(
      `node-${p}`,
      NODE_ENTRY,
      nodeFlags({
        port: p,
        data_dir: `${dataDir}/node-${p}`,
        join: i === 0 ? [] : [seed],
        // The servers' own default (gRPC port + 1000), given explicitly: the harness turns HTTP
        // off unless asked.
        extra: ["--http-port", String(p + 1000)],
      }),
    )
  );
  const children: ChildProc[] = [...nodes];
  let stopping = false;
  let stopped: Promise<void> | null = null;
  let forceNow: () => void = () => {};
  const force = new Promise<void>((r) => (forceNow = r));
  const stop = (why: string) => {
    if (!stopping) {
      stopping = true;
      const t0 = Date.now();
      say(`${why}: stopping all processes (data kept; Ctrl-C again to kill them now)`);
      const deadline = Promise.race([sleep(STOP_DEADLINE_MS), force]);
      stopped = stopAll(children, deadline).then(() => {
        say(`all processes stopped in ${Date.now() - t0} ms`);
      });
    }
    return stopped!;
  };
  const onSignal = (sig: Deno.Signal) => () => {
    if (stopping) {
      say(`${sig} again: killing every process now`);
      forceNow();
      return;
    }
    void stop(sig);
  };
  Deno.addSignalListener("SIGINT", onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", onSignal("SIGTERM"));

  const firstExit = () => Promise.race(children.map((c) => c.done.then((s) => ({ c, s }))));

  const nodesReady = await allReady(nodes);
  if (nodesReady !== "ready" || stopping) {
    await stop(nodesReady === "timeout" ? "nodes not ready in time" : "a node exited");
    return 1;
  }
  const router = start(
    "router",
    ROUTER_ENTRY,
    routerFlags({
      port: base,
      nodes: nodePorts.map((p) => `127.0.0.1:${p}`),
      join: [seed],
      data_dir: `${dataDir}/router`,
      extra: [
        "--http-port",
        String(base + 1000),
        "--replication-factor",
        values["replication-factor"]!,
        "--consistency",
        values.consistency!,
      ],
    }),
  );
  children.unshift(router);
  const routerReady = await Promise.race([
    allReady([router]),
    firstExit().then(() => "exit" as const),
  ]);
  if (routerReady !== "ready" && !stopping) {
    await stop(routerReady === "timeout" ? "the router was not ready in time" : "a process exited");
    return 1;
  }
  if (!stopping) {
    say(
      `ready: router on 127.0.0.1:${base}, nodes on ${nodePorts.join(", ")}; Ctrl-C stops all`,
    );
  }
  const { c, s } = await firstExit();
  if (!stopping) {
    await stop(`${c.name} exited (${describeStatus(s)})`);
    return 1;
  }
  await stopped;
  return 0;
}

if (import.meta.main) {
  main().then(
    (code) => Deno.exit(code),
    (e) => {
      say(`error: ${(e as Error).message}`);
      Deno.exit(2);
    },
  );
}
