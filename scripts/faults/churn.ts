/**
 * Full-size connection-churn run against one storage node (the evidence behind the README's
 * runtime decision): 1,000 client sessions that each open a channel, run 64 concurrent unary
 * calls (Put/Search/Get) and close it; every 10th is a child process SIGKILLed while its calls
 * are in flight, every 5th closes its channel with calls in flight. Then a long-lived channel
 * (reconnect backoff 100..500 ms) reconnects across a graceful restart and a SIGKILL restart;
 * the time from READY to its first successful call must be at most 2 s.
 *
 * ```sh
 * deno run -A scripts/faults/churn.ts                      # server under Node 20 (tsx): must pass
 * deno run -A scripts/faults/churn.ts --runtime deno       # server under Deno: counts its deaths
 * deno run -A scripts/faults/churn.ts --sessions 200 --parallel 4 --seed 7 --json
 * ```
 *
 * Under `--runtime deno` a dead server is started again and the run goes on, so the number of
 * deaths over the whole run is reported, with the last lines of stderr of the first one.
 * Exits 1 when any server died, any orderly call failed, a killed client misbehaved, or
 * reconnecting took over 2 s.
 * @module
 */
import { parseArgs } from "node:util";
import { ApiClient, describeGrpcError } from "../../src/api/client.ts";
import { NodeProcess } from "../../harness/node.ts";
import type { Runtime } from "../../harness/servers.ts";
import {
  FAST_RECONNECT_OPTIONS,
  measureReconnect,
  runChurn,
} from "../../harness/workloads/churn.ts";

const RECONNECT_MS_MAX = 2000;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sessions: { type: "string", default: "1000" },
    parallel: { type: "string", default: "8" },
    runtime: { type: "string", default: "node" },
    seed: { type: "string" },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const runtime = values.runtime as Runtime;
if (runtime !== "node" && runtime !== "deno") {
  throw new RangeError(`--runtime "${values.runtime}" must be "node" or "deno"`);
}
const sessions = Number(values.sessions);
const parallel = Number(values.parallel);
const seed = Number(values.seed ?? Math.floor(Math.random() * 2 ** 31));

const node = await NodeProcess.start({ runtime });
let problems: string[] = [];
let longLived: ApiClient | null = null;
const out: Record<string, unknown> = { runtime, seed, sessions };
try {
  const result = await runChurn(node, {
    sessions,
    parallel,
    seed,
    restart_dead: true,
    progress_every: 100,
    on_progress: (done, r) => {
      if (!values.json) {
        console.error(
          `  ${done} sessions, ${r.calls_ok} ok, ${r.calls_failed} failed, ` +
            `${r.server_deaths.length} server deaths`,
        );
      }
    },
  });
  Object.assign(out, {
    sessions: result.sessions,
    killed_clients: result.killed_clients,
    cancelled_sessions: result.cancelled_sessions,
    server_deaths: result.server_deaths.length,
    calls_ok: result.calls_ok,
    calls_failed: result.calls_failed,
    calls_cancelled: result.calls_cancelled,
    elapsed_s: Number((result.elapsed_ms / 1000).toFixed(1)),
    failures: Object.fromEntries([...result.failures].slice(0, 10)),
    child_problems: result.child_problems.slice(0, 10),
    first_death: result.server_deaths[0] ?? null,
  });
  if (result.server_deaths.length > 0) problems.push(`${result.server_deaths.length} deaths`);
  if (result.calls_failed > 0) problems.push(`${result.calls_failed} calls failed`);
  if (result.child_problems.length > 0) problems.push(`killed clients misbehaved`);

  longLived = new ApiClient(node.address, {
    timeout_ms: 5_000,
    client_options: FAST_RECONNECT_OPTIONS,
  });
  for (const kill of [false, true]) {
    const key = kill ? "reconnect_ms_sigkill" : "reconnect_ms_graceful";
    try {
      const ms = await measureReconnect(node, longLived, { kill });
      out[key] = Math.round(ms);
      if (ms > RECONNECT_MS_MAX) problems.push(`${key} ${ms.toFixed(0)} > ${RECONNECT_MS_MAX}`);
    } catch (e) {
      out[key] = `failed: ${(e as Error).message}`;
      problems.push(`${key} failed`);
    }
  }
  try {
    const stats = await longLived.call("Stats", {});
    out.alive_at_end = stats.node_id !== "" && node.running;
  } catch (e) {
    out.alive_at_end = false;
    problems.push(`no answer at the end: ${describeGrpcError(e)}`);
  }
  out.unexpected_exits = node.unexpected_exits.length;
  if (node.unexpected_exits.length > result.server_deaths.length) {
    problems.push(`${node.unexpected_exits.length} unexpected exits`);
  }
} catch (e) {
  problems = [...problems, (e as Error).message];
} finally {
  longLived?.close();
  await node.close();
}
out.problems = problems;
out.pass = problems.length === 0;
if (values.json) console.log(JSON.stringify(out));
else {
  for (const [k, v] of Object.entries(out)) {
    console.log(`${k.padEnd(22)} ${typeof v === "object" ? JSON.stringify(v, null, 1) : v}`);
  }
}
Deno.exit(problems.length === 0 ? 0 : 1);
