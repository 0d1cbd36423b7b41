/**
 * `deno task cluster`: three storage nodes (127.0.0.1:50051-50053, data under
 * `./data/node-<port>`) and the router (127.0.0.1:50050, hints under `./data/router`) as child
 * processes under Node 20 through tsx (`/usr/bin/env node --import tsx …`, see the README's
 * runtime note), each output line prefixed with the process name (`node-50051 | …`).
 *
 * Membership: the first node starts the gossip cluster, the other two `--join` it, and the
 * router `--join`s it too (as a member with role "router"), so its ring follows the nodes
 * gossip reports; it also gets `--nodes` with the three addresses, which it uses until gossip
 * has reported them (ring member ids are addresses either way, so placement is the same).
 * A fourth node can join later: `deno task server -- --port 50054 --join 127.0.0.1:50051`.
 *
 * Ctrl-C or SIGTERM stops everything: the router first (so it stops accepting writes), then
 * the nodes, each with SIGTERM; whatever has not exited 10 s later gets SIGKILL. If any child
 * exits on its own, the others are stopped the same way and the script exits non-zero.
 *
 * Flags: `--base-port 50050` (router on it, nodes on the next three), `--data-dir ./data`,
 * `--replication-factor 2`, `--consistency quorum`.
 */

import { parseArgs } from "node:util";

const STOP_GRACE_MS = 10_000;
const READY_TIMEOUT_MS = 60_000;

interface Child {
  name: string;
  process: Deno.ChildProcess;
  ready: Promise<void>;
  status: Promise<Deno.CommandStatus>;
  exited: boolean;
}

const encoder = new TextEncoder();

async function pipeLines(
  name: string,
  stream: ReadableStream<Uint8Array>,
  out: { write(p: Uint8Array): Promise<number> },
  onLine: (line: string) => void,
): Promise<void> {
  let partial = "";
  const prefix = `${name.padEnd(10)} | `;
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    if (lines.length === 0) continue;
    for (const l of lines) onLine(l);
    await out.write(encoder.encode(lines.map((l) => prefix + l + "\n").join("")));
  }
  if (partial !== "") await out.write(encoder.encode(prefix + partial + "\n"));
}

function spawn(name: string, script: string, args: string[]): Child {
  const process = new Deno.Command("/usr/bin/env", {
    args: ["node", "--import", "tsx", script, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const watch = (line: string) => {
    if (line.startsWith("READY ")) onReady();
  };
  const piping = Promise.all([
    pipeLines(name, process.stdout, Deno.stdout, watch),
    pipeLines(name, process.stderr, Deno.stderr, () => {}),
  ]);
  const child: Child = { name, process, ready, status: null!, exited: false };
  child.status = process.status.then(async (s) => {
    child.exited = true;
    await piping.catch(() => {});
    return s;
  });
  return child;
}

function say(message: string): void {
  Deno.stderr.writeSync(encoder.encode(`${"cluster".padEnd(10)} | ${message}\n`));
}

/** SIGTERM to `group`; SIGKILL to whatever has not exited within the grace period. */
async function stopGroup(group: Child[]): Promise<void> {
  for (const c of group) {
    if (c.exited) continue;
    try {
      c.process.kill("SIGTERM");
    } catch {
      // Already gone.
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), STOP_GRACE_MS);
  });
  const all = Promise.all(group.map((c) => c.status));
  if (await Promise.race([all, late]) === "late") {
    for (const c of group) {
      if (c.exited) continue;
      say(`${c.name} did not stop within ${STOP_GRACE_MS} ms; sending SIGKILL`);
      try {
        c.process.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await all;
  }
  clearTimeout(timer);
}

/** The router first (no new writes reach nodes that are stopping), then the nodes. */
async function stopAll(children: Child[]): Promise<void> {
  await stopGroup(children.filter((c) => c.name === "router"));
  await stopGroup(children.filter((c) => c.name !== "router"));
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
  const dataDir = values["data-dir"]!;
  const nodePorts = [base + 1, base + 2, base + 3];
  const seed = `127.0.0.1:${nodePorts[0]}`;
  const nodes = nodePorts.map((p, i) =>
    spawn(`node-${p}`, "src/node/main.ts", [
      "--port",
      String(p),
      "--data-dir",
      `${dataDir}/node-${p}`,
      ...(i === 0 ? [] : ["--join", seed]),
    ])
  );
  const children: Child[] = [...nodes];
  let stopping = false;
  let stopped: Promise<void> | null = null;
  const stop = (why: string) => {
    if (!stopping) {
      stopping = true;
      say(`${why}: stopping all processes`);
      stopped = stopAll(children);
    }
    return stopped!;
  };
  const onSignal = (sig: Deno.Signal) => () => void stop(sig);
  Deno.addSignalListener("SIGINT", onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", onSignal("SIGTERM"));

  const firstExit = () => Promise.race(children.map((c) => c.status.then((s) => ({ c, s }))));

  const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), READY_TIMEOUT_MS));
  const nodesReady = await Promise.race([
    Promise.all(nodes.map((n) => n.ready)).then(() => "ready" as const),
    firstExit().then(() => "exit" as const),
    timeout,
  ]);
  if (nodesReady !== "ready" || stopping) {
    await stop(nodesReady === "timeout" ? "nodes not ready in time" : "a node exited");
    return 1;
  }
  const router = spawn("router", "src/router/main.ts", [
    "--port",
    String(base),
    "--nodes",
    nodePorts.map((p) => `127.0.0.1:${p}`).join(","),
    "--join",
    seed,
    "--replication-factor",
    values["replication-factor"]!,
    "--consistency",
    values.consistency!,
    "--data-dir",
    `${dataDir}/router`,
  ]);
  children.unshift(router);
  const routerReady = await Promise.race([
    router.ready.then(() => "ready" as const),
    firstExit().then(() => "exit" as const),
    timeout,
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
    await stop(`${c.name} exited with status ${s.code}`);
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
