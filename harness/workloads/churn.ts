/**
 * Connection churn against one storage node, shared by `tests/server_churn_test.ts` (a few
 * hundred sessions) and `scripts/faults/churn.ts` (1,000).
 *
 * A session opens its own channel (a local subchannel pool, so its own TCP connection), runs
 * `calls_per_session` concurrent unary calls (Put/Search/Get) and closes the channel. Every
 * `kill_every`-th session instead runs in a child process (`churn_client.ts`) that is SIGKILLed
 * while its calls are in flight. Every `cancel_every`-th in-process session closes its channel
 * as soon as the first call answered, cancelling the rest. Sessions run `parallel` at a time.
 *
 * A server death is any exit of the node that {@link runChurn} did not cause; with
 * `restart_dead: true` the node is started again and the run goes on (to count deaths under
 * Deno), otherwise the run stops at the first death.
 *
 * {@link measureReconnect} times how long a long-lived channel takes to make its first
 * successful call after a restarted node prints READY.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { fileURLToPath } from "node:url";
import { createClient, type UnaryCallback, type VectorDBClient } from "../../src/api/proto.ts";
import { ApiClient, describeGrpcError } from "../../src/api/client.ts";
import type { NodeProcess } from "../node.ts";
import { ChildProc, denoPath, describeStatus, type ExitStatus } from "../process.ts";
import { sleep } from "../wait.ts";
import { churnRandom, churnVector } from "./churn_vectors.ts";

const CLIENT_CHILD = fileURLToPath(new URL("./churn_client.ts", import.meta.url));

export interface ChurnOptions {
  /** Client sessions in all, killed ones included. */
  sessions: number;
  /** Every n-th session is a child process killed mid-call; 0: none. Default 10. */
  kill_every?: number;
  /** Every n-th in-process session closes its channel with calls in flight; 0: none. Default 5. */
  cancel_every?: number;
  /** Sessions at a time. Default 8. */
  parallel?: number;
  /** Concurrent calls of a session. Default 64. */
  calls_per_session?: number;
  /** Vector dimension of the churn collection. Default 16. */
  dim?: number;
  collection?: string;
  seed?: number;
  /** Start the node again after a death and go on (counting deaths). Default false. */
  restart_dead?: boolean;
  /** Called every `progress_every` sessions. */
  on_progress?: (done: number, result: ChurnResult) => void;
  progress_every?: number;
}

export interface ServerDeath {
  status: ExitStatus;
  /** The last lines of the node's stderr (the abort message). */
  stderr_tail: string;
  /** Sessions finished when it was noticed. */
  after_sessions: number;
}

export interface ChurnResult {
  sessions: number;
  killed_clients: number;
  cancelled_sessions: number;
  calls_ok: number;
  /** Calls that failed in sessions that were not meant to fail. */
  calls_failed: number;
  /** Calls cancelled by closing their own channel (expected). */
  calls_cancelled: number;
  /** failure line → count */
  failures: Map<string, number>;
  /** Killed children that exited some other way than by our SIGKILL. */
  child_problems: string[];
  server_deaths: ServerDeath[];
  elapsed_ms: number;
}

function call<Res>(
  client: VectorDBClient,
  method: "Put" | "Search" | "Get",
  request: unknown,
  calls: grpc.ClientUnaryCall[],
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const cb: UnaryCallback<Res> = (e, res) => (e ? reject(e) : resolve(res as Res));
    const fn = client[method] as unknown as (
      req: unknown,
      opts: Partial<grpc.CallOptions>,
      cb: UnaryCallback<Res>,
    ) => grpc.ClientUnaryCall;
    calls.push(fn.call(client, request, { deadline: Date.now() + 30_000 }, cb));
  });
}

/** Creates the churn collection and runs the sessions. */
export async function runChurn(node: NodeProcess, options: ChurnOptions): Promise<ChurnResult> {
  const started = performance.now();
  const killEvery = options.kill_every ?? 10;
  const cancelEvery = options.cancel_every ?? 5;
  const parallel = options.parallel ?? 8;
  const callsPerSession = options.calls_per_session ?? 64;
  const dim = options.dim ?? 16;
  const collection = options.collection ?? "churn";
  const seed = options.seed ?? 1;
  const random = churnRandom(seed);
  const result: ChurnResult = {
    sessions: 0,
    killed_clients: 0,
    cancelled_sessions: 0,
    calls_ok: 0,
    calls_failed: 0,
    calls_cancelled: 0,
    failures: new Map(),
    child_problems: [],
    server_deaths: [],
    elapsed_ms: 0,
  };
  const failure = (line: string) => {
    result.calls_failed++;
    result.failures.set(line, (result.failures.get(line) ?? 0) + 1);
  };

  const admin = new ApiClient(node.address, { timeout_ms: 30_000 });
  try {
    await admin.call("CreateCollection", { name: collection, dimension: dim });
  } finally {
    admin.close();
  }

  // Deaths: noticed between sessions; at most one restart at a time.
  let reviving: Promise<void> | null = null;
  let deathFatal: Error | null = null;
  const checkAlive = (): Promise<void> => {
    // While a restart is under way the node already counts as running: wait for READY.
    if (reviving) return reviving;
    if (node.running) return Promise.resolve();
    reviving = (async () => {
      const status = await node.done;
      result.server_deaths.push({
        status,
        stderr_tail: node.tail(15),
        after_sessions: result.sessions,
      });
      if (!options.restart_dead) {
        deathFatal = new Error(
          `The node died (${describeStatus(status)}) after ${result.sessions} sessions:\n` +
            node.tail(30),
        );
        return;
      }
      await node.start();
    })().finally(() => (reviving = null));
    return reviving;
  };

  async function inProcessSession(index: number, cancel: boolean): Promise<void> {
    const client = createClient(node.address, { "grpc.use_local_subchannel_pool": 1 });
    const idBase = index * callsPerSession;
    const calls: Promise<unknown>[] = [];
    const handles: grpc.ClientUnaryCall[] = [];
    for (let i = 0; i < callsPerSession; i++) {
      const kind = i % 4;
      if (kind <= 1) {
        const id = idBase + i;
        calls.push(call(client, "Put", { id, vector: churnVector(id, dim), collection }, handles));
      } else if (kind === 2) {
        const q = churnVector(Math.floor(random() * 1e9), dim);
        calls.push(call(client, "Search", { vector: q, k: 10, collection }, handles));
      } else {
        const id = Math.floor(random() * Math.max(1, idBase));
        calls.push(call(client, "Get", { id, collection }, handles));
      }
    }
    if (cancel) {
      // The rest are cancelled (RST_STREAM) and the channel closed while they are in flight.
      await Promise.race(calls.map((p) => p.catch(() => {})));
      for (const h of handles) h.cancel();
      client.close();
    }
    const settled = await Promise.allSettled(calls);
    if (!cancel) client.close();
    for (const s of settled) {
      if (s.status === "fulfilled") result.calls_ok++;
      else if (cancel && (s.reason as grpc.ServiceError).code === grpc.status.CANCELLED) {
        result.calls_cancelled++;
      } else failure(describeGrpcError(s.reason));
    }
  }

  async function killedSession(index: number): Promise<void> {
    const child = new ChildProc({
      name: `churn-client-${index}`,
      command: denoPath(),
      args: [
        "run",
        "-A",
        CLIENT_CHILD,
        "--address",
        node.address,
        "--collection",
        collection,
        "--dim",
        String(dim),
        "--id-base",
        String(2_000_000_000 + index * 1_000_000),
        "--calls",
        String(callsPerSession),
        "--seed",
        String(seed + index),
      ],
      ready_prefix: "INFLIGHT",
      ready_timeout_ms: 60_000,
    });
    const inflight = await child.ready.then(() => true, () => false);
    if (inflight) await sleep(random() * 30);
    const status = await child.kill();
    if (!inflight || status.signal !== "SIGKILL") {
      result.child_problems.push(
        `session ${index}: child ${inflight ? "killed" : "never had calls in flight"}, ` +
          `exit ${status.signal ?? status.code}: ` +
          child.stderr.trim().split("\n").slice(-3).join(" | "),
      );
    }
    result.killed_clients++;
  }

  let nextSession = 0;
  const worker = async () => {
    while (deathFatal === null) {
      const index = nextSession++;
      if (index >= options.sessions) return;
      await checkAlive();
      if (deathFatal !== null) return;
      if (killEvery > 0 && index % killEvery === killEvery - 1) {
        await killedSession(index);
      } else {
        const cancel = cancelEvery > 0 && index % cancelEvery === cancelEvery - 1;
        if (cancel) result.cancelled_sessions++;
        await inProcessSession(index, cancel);
      }
      result.sessions++;
      const every = options.progress_every ?? 100;
      if (options.on_progress && result.sessions % every === 0) {
        options.on_progress(result.sessions, result);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  await checkAlive();
  result.elapsed_ms = performance.now() - started;
  if (deathFatal !== null) throw deathFatal;
  return result;
}

/** Reconnect options for a long-lived client channel. */
export const FAST_RECONNECT_OPTIONS: Partial<grpc.ClientOptions> = {
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 500,
};

/**
 * Restarts the node (gracefully, or by SIGKILL with `kill`) under a long-lived client that keeps
 * calling Stats, and returns the milliseconds from READY to its first successful call after it.
 */
export async function measureReconnect(
  node: NodeProcess,
  client: ApiClient,
  options: { kill?: boolean } = {},
): Promise<number> {
  await client.call("Stats", {}); // connected before the restart
  let restarted = false;
  let firstOkAt = 0;
  let lastError = "";
  const poller = (async () => {
    while (firstOkAt === 0) {
      try {
        await client.call("Stats", {}, { timeout_ms: 250 });
        if (restarted) firstOkAt = performance.now();
      } catch (e) {
        lastError = describeGrpcError(e);
        await sleep(5);
      }
      if (!restarted) await sleep(5);
    }
  })();
  try {
    await node.restart({ kill: options.kill });
    restarted = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), 30_000);
    });
    const outcome = await Promise.race([poller, timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      throw new Error(`No successful call within 30 s of READY; last error: ${lastError}`);
    }
  } finally {
    firstOkAt ||= -1;
    await poller;
  }
  return firstOkAt - node.ready_at;
}
