/**
 * Partition-heal benchmark: "a partition that splits the cluster for 2 minutes heals into one
 * membership view within 30 s of the cut ending", measured with real processes and a real cut.
 *
 * Five storage nodes (Node 20 through tsx, like production), each on its own loopback address
 * (127.0.0.11–15, Linux answers on all of 127/8) and joined to all the others. Side A (two
 * nodes) runs as the Unix user `vdbparta`, side B (three nodes) as `vdbpartb` (created with
 * `useradd --system` when missing; processes are started through `setpriv`, which execs, so the
 * pid we hold is the node's). The cut is iptables OUTPUT rules on `lo` (made by
 * scripts/faults/lib/netcut.ts, which scripts/faults/chaos.ts shares):
 *
 * | rule                                                    | drops                          |
 * | ------------------------------------------------------- | ------------------------------ |
 * | `-o lo -d <B address> -m owner --uid-owner vdbparta`    | everything A sends to B        |
 * | `-o lo -d <A address> -m owner --uid-owner vdbpartb`    | everything B sends to A        |
 *
 * Sockets to 127.0.0.x get source address 127.0.0.1, so source-address rules would not work;
 * the owner match does. Established connections die too: every packet one side sends to the
 * other (data and ACKs) is dropped. This script (root) polls every node's `Members` RPC and is
 * not affected. Each rule carries the comment `vectordb-partition:pid=<our pid>`; cleanup
 * deletes exactly the rules this run added, and at start-up rules with that comment left by a
 * run whose process no longer exists (a SIGKILLed run) are deleted too. Nothing outside
 * 127.0.0.0/8 is touched.
 *
 * Per trial: wait for one 5-member all-alive view at every node; cut; poll every `--poll-ms`
 * and confirm that every node sees the other side dead and its own side alive (the cut is
 * effective); hold the cut until `--cut-s` after it began; heal (delete the rules); poll every
 * `--poll-ms` until one poll round finds every node seeing all 5 members alive. That time from
 * the heal is the figure (goal: at most `--goal-s`). Then `--settle-s` more of polling checks
 * the merged view stays merged. Trials reuse the same five processes.
 *
 * Diagnostics: just before each heal, the connections between the nodes stuck in SYN-SENT
 * (`ss`, with the time until each one's next SYN retransmission: a gRPC channel whose SYNs were
 * dropped during a long cut only reconnects at that retransmission); every change of every
 * node's view from the heal on; `--log-dir DIR` writes each node's log there at the end.
 *
 * Needs root (iptables, useradd, setpriv). Always removes its rules, processes and temporary
 * directory, also on Ctrl-C / SIGTERM. Exit status 1 when any trial misses the goal or its cut
 * could not be confirmed.
 *
 * @example
 * ```sh
 * npx --yes deno@2.9.6 run -A scripts/faults/partition.ts                    # 1 trial, 120 s cut
 * npx --yes deno@2.9.6 run -A scripts/faults/partition.ts --cut-s 20 --trials 3
 * npx --yes deno@2.9.6 run -A scripts/faults/partition.ts --json             # summary as JSON too
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { ApiClient, describeGrpcError } from "../../src/api/client.ts";
import type { MembersResponse } from "../../src/api/proto.ts";
import { freePort } from "../../harness/ports.ts";
import type { ChildProc } from "../../harness/process.ts";
import { NODE_ENTRY, nodeFlags, spawnServer } from "../../harness/servers.ts";
import { checkReadable, ensureUser, NetCut, runProgram, type UserIds } from "./lib/netcut.ts";

const { values: args } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    "cut-s": { type: "string", default: "120" },
    trials: { type: "string", default: "1" },
    "goal-s": { type: "string", default: "30" },
    "heal-timeout-s": { type: "string", default: "120" },
    "confirm-timeout-s": { type: "string", default: "30" },
    "settle-s": { type: "string", default: "5" },
    "poll-ms": { type: "string", default: "200" },
    "user-a": { type: "string", default: "vdbparta" },
    "user-b": { type: "string", default: "vdbpartb" },
    "log-dir": { type: "string" },
    json: { type: "boolean", default: false },
  },
  strict: true,
});

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`--${name} "${v}" must be positive`);
  return n;
}
const cutMs = positive("cut-s", args["cut-s"]!) * 1000;
const trials = positive("trials", args.trials!);
if (!Number.isInteger(trials)) throw new RangeError(`--trials ${trials} must be an integer`);
const goalMs = positive("goal-s", args["goal-s"]!) * 1000;
const healTimeoutMs = positive("heal-timeout-s", args["heal-timeout-s"]!) * 1000;
const confirmTimeoutMs = positive("confirm-timeout-s", args["confirm-timeout-s"]!) * 1000;
const settleMs = positive("settle-s", args["settle-s"]!) * 1000;
const pollMs = positive("poll-ms", args["poll-ms"]!);
const USER_A = args["user-a"]!;
const USER_B = args["user-b"]!;
if (USER_A === USER_B) throw new RangeError(`--user-a and --user-b must differ, both "${USER_A}"`);

const RULE_TAG = "vectordb-partition:pid=";
const SIDES = { A: 2, B: 3 } as const;
const FIRST_HOST = 11; // 127.0.0.11 .. 127.0.0.15
const RPC_TIMEOUT_MS = 1000;
const READY_TIMEOUT_MS = 90_000;
const FORM_TIMEOUT_MS = 60_000;

const t0 = performance.now();
const log = (m: string) =>
  console.error(`${new Date().toISOString()} partition +${secs(performance.now() - t0)} ${m}`);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

// ---------- interruption ----------

class Interrupted extends Error {
  constructor(signal: string) {
    super(`Interrupted by ${signal}`);
    this.name = "Interrupted";
  }
}
let interrupted: string | null = null;
let wake: () => void = () => {};
const onSignal = (signal: Deno.Signal) => () => {
  if (interrupted === null) log(`${signal}: stopping, cleaning up`);
  interrupted = signal;
  wake();
};
const onInt = onSignal("SIGINT");
const onTerm = onSignal("SIGTERM");
Deno.addSignalListener("SIGINT", onInt);
Deno.addSignalListener("SIGTERM", onTerm);

function checkInterrupted(): void {
  if (interrupted !== null) throw new Interrupted(interrupted);
}

/** Sleeps `ms`, or less when a signal arrives (then throws). */
async function sleep(ms: number): Promise<void> {
  checkInterrupted();
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, Math.max(0, ms));
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  checkInterrupted();
}

// ---------- system helpers ----------

/**
 * TCP connections to `addrs` stuck in SYN-SENT (their SYNs were dropped by the cut), as `ss`
 * prints them: `<local> <peer> timer:(on,<time to the next SYN>,<retransmits>)`.
 */
async function synSentTo(addrs: string[]): Promise<string[]> {
  const res = await runProgram("ss", ["-Htno", "state", "syn-sent"], [0, 1, 255]);
  return res.stdout.split("\n").map((l) => l.trim().split(/\s+/).slice(2).join(" "))
    .filter((l) => addrs.includes(l.split(" ")[1] ?? ""));
}

// ---------- nodes and views ----------

type Side = "A" | "B";

interface NodeInfo {
  id: string;
  side: Side;
  user: UserIds;
  host: string;
  port: number;
  addr: string;
  dataDir: string;
  proc: ChildProc | null;
  api: ApiClient | null;
}

/** One node's view: member id → state and incarnation; or the error of the call. */
type View = { ok: true; members: Map<string, { state: string; incarnation: number }> } | {
  ok: false;
  error: string;
};

async function poll(n: NodeInfo): Promise<View> {
  try {
    const res: MembersResponse = await n.api!.call("Members", {}, { timeout_ms: RPC_TIMEOUT_MS });
    const members = new Map<string, { state: string; incarnation: number }>();
    for (const m of res.members) members.set(m.id, { state: m.state, incarnation: m.incarnation });
    return { ok: true, members };
  } catch (e) {
    return { ok: false, error: describeGrpcError(e) };
  }
}

async function pollAll(nodes: NodeInfo[]): Promise<View[]> {
  return await Promise.all(nodes.map(poll));
}

function stateOf(v: View, id: string): string {
  if (!v.ok) return "?";
  return v.members.get(id)?.state ?? "absent";
}

function allAlive(v: View, nodes: NodeInfo[]): boolean {
  return v.ok && v.members.size === nodes.length &&
    nodes.every((n) => v.members.get(n.id)?.state === "alive");
}

/** Compact text of a view: `A1=alive B1=dead/3 …` (incarnation after the slash when > 0). */
function viewText(v: View, nodes: NodeInfo[]): string {
  if (!v.ok) return `error: ${v.error}`;
  const parts = nodes.map((n) => {
    const m = v.members.get(n.id);
    if (m === undefined) return `${n.id}=absent`;
    return `${n.id}=${m.state}${m.incarnation > 0 ? `/${m.incarnation}` : ""}`;
  });
  for (const id of v.members.keys()) {
    if (!nodes.some((n) => n.id === id)) parts.push(`${id}=unknown-member`);
  }
  return parts.join(" ");
}

// ---------- a trial ----------

interface NodeCutReport {
  id: string;
  side: Side;
  /** First poll that showed any other-side member not alive; ms after the cut. */
  first_not_alive_ms: number | null;
  /** First poll that showed every other-side member dead and its own side alive. */
  other_side_dead_ms: number | null;
  /** Polls during the cut in which a member of its own side was not alive. */
  own_side_not_alive_polls: number;
  /** Polls after `other_side_dead_ms` in which an other-side member was alive again. */
  other_side_alive_again_polls: number;
  /** Failed Members calls during the cut. */
  poll_errors: number;
  /** The view at the end of the cut. */
  view_at_heal: string;
}

interface NodeHealReport {
  id: string;
  /** First poll after the heal that showed all members alive; ms after the heal. */
  all_alive_ms: number | null;
  /** The view after the heal and settle. */
  view_final: string;
}

interface TrialReport {
  trial: number;
  cut_ms: number;
  cut_confirmed_ms: number | null;
  heal_ms: number | null;
  settle_polls_not_merged: number;
  goal_met: boolean;
  /** Connections between the nodes in SYN-SENT just before the heal (see {@link synSentTo}). */
  syn_sent_at_heal: string[];
  /** Every change of a node's view from the heal to the end of the settle: `+s id [view]`. */
  heal_timeline: string[];
  nodes_cut: NodeCutReport[];
  nodes_heal: NodeHealReport[];
  problems: string[];
}

async function waitMerged(nodes: NodeInfo[], timeout_ms: number, what: string): Promise<number> {
  const start = performance.now();
  let views: View[] = [];
  while (performance.now() - start < timeout_ms) {
    views = await pollAll(nodes);
    if (views.every((v) => allAlive(v, nodes))) return performance.now() - start;
    await sleep(pollMs);
  }
  throw new Error(
    `${what}: no all-alive ${nodes.length}-member view at every node within ${timeout_ms} ms; ` +
      `views: ${nodes.map((n, i) => `${n.id}: [${viewText(views[i], nodes)}]`).join("; ")}`,
  );
}

async function runTrial(trial: number, nodes: NodeInfo[], users: Record<Side, UserIds>) {
  const report: TrialReport = {
    trial,
    cut_ms: cutMs,
    cut_confirmed_ms: null,
    heal_ms: null,
    settle_polls_not_merged: 0,
    goal_met: false,
    syn_sent_at_heal: [],
    heal_timeline: [],
    nodes_cut: nodes.map((n) => ({
      id: n.id,
      side: n.side,
      first_not_alive_ms: null,
      other_side_dead_ms: null,
      own_side_not_alive_polls: 0,
      other_side_alive_again_polls: 0,
      poll_errors: 0,
      view_at_heal: "",
    })),
    nodes_heal: nodes.map((n) => ({ id: n.id, all_alive_ms: null, view_final: "" })),
    problems: [],
  };
  const formed = await waitMerged(nodes, FORM_TIMEOUT_MS, `trial ${trial} before the cut`);
  log(`trial ${trial}: one ${nodes.length}-member all-alive view (waited ${secs(formed)})`);

  // ----- cut -----
  const cut = new NetCut(RULE_TAG);
  cuts.push(cut);
  const sideA = nodes.filter((n) => n.side === "A");
  const sideB = nodes.filter((n) => n.side === "B");
  for (const b of sideB) await cut.drop({ from_uid: users.A.uid, to_host: b.host });
  for (const a of sideA) await cut.drop({ from_uid: users.B.uid, to_host: a.host });
  const cutAt = performance.now();
  log(
    `trial ${trial}: CUT {${sideA.map((n) => n.id)}} | {${sideB.map((n) => n.id)}} ` +
      `for ${secs(cutMs)} (${sideA.length + sideB.length} iptables rules)`,
  );
  let lastViews: View[] = [];
  let lastPrint = 0;
  let unconfirmedLogged = false;
  while (performance.now() - cutAt < cutMs) {
    const views = await pollAll(nodes);
    const at = performance.now() - cutAt;
    lastViews = views;
    nodes.forEach((n, i) => {
      const r = report.nodes_cut[i];
      const v = views[i];
      if (!v.ok) {
        r.poll_errors++;
        return;
      }
      const own = nodes.filter((m) => m.side === n.side);
      const other = nodes.filter((m) => m.side !== n.side);
      if (own.some((m) => stateOf(v, m.id) !== "alive")) r.own_side_not_alive_polls++;
      if (r.first_not_alive_ms === null && other.some((m) => stateOf(v, m.id) !== "alive")) {
        r.first_not_alive_ms = at;
      }
      const otherDead = other.every((m) => stateOf(v, m.id) === "dead");
      if (r.other_side_dead_ms === null) {
        if (otherDead && own.every((m) => stateOf(v, m.id) === "alive")) r.other_side_dead_ms = at;
      } else if (other.some((m) => stateOf(v, m.id) === "alive")) {
        r.other_side_alive_again_polls++;
      }
    });
    if (
      report.cut_confirmed_ms === null &&
      report.nodes_cut.every((r) => r.other_side_dead_ms !== null)
    ) {
      report.cut_confirmed_ms = at;
      log(
        `trial ${trial}: cut confirmed at +${secs(at)}: every node sees the other side dead ` +
          `(per node: ${
            report.nodes_cut.map((r) => `${r.id} ${secs(r.other_side_dead_ms!)}`).join(", ")
          })`,
      );
    }
    if (report.cut_confirmed_ms === null && at > confirmTimeoutMs && !unconfirmedLogged) {
      unconfirmedLogged = true;
      const msg = `cut not confirmed within ${secs(confirmTimeoutMs)}: ` +
        nodes.map((n, i) => `${n.id}: [${viewText(views[i], nodes)}]`).join("; ");
      report.problems.push(msg);
      log(`trial ${trial}: PROBLEM ${msg}`);
    }
    if (at - lastPrint >= 30_000) {
      lastPrint = at;
      log(
        `trial ${trial}: cut +${secs(at)}: ` +
          nodes.map((n, i) => `${n.id}[${viewText(views[i], nodes)}]`).join(" "),
      );
    }
    await sleep(Math.min(pollMs, cutMs - (performance.now() - cutAt)));
  }
  nodes.forEach((_, i) => (report.nodes_cut[i].view_at_heal = viewText(lastViews[i], nodes)));
  for (const r of report.nodes_cut) {
    if (r.own_side_not_alive_polls > 0) {
      report.problems.push(
        `${r.id} saw a member of its own side not alive in ${r.own_side_not_alive_polls} polls ` +
          `during the cut`,
      );
    }
    if (r.other_side_alive_again_polls > 0) {
      report.problems.push(
        `${r.id} saw an other-side member alive again in ${r.other_side_alive_again_polls} ` +
          `polls after declaring the other side dead`,
      );
    }
  }

  // ----- heal -----
  report.syn_sent_at_heal = await synSentTo(nodes.map((n) => n.addr));
  if (report.syn_sent_at_heal.length > 0) {
    log(
      `trial ${trial}: ${report.syn_sent_at_heal.length} connections between nodes in SYN-SENT ` +
        `at the heal (next SYN in): ${report.syn_sent_at_heal.join("; ")}`,
    );
  }
  const shown = lastViews.map((v) => viewText(v, nodes));
  const TIMELINE_MAX = 500;
  const track = (views: View[], at: number) => {
    views.forEach((v, i) => {
      const text = viewText(v, nodes);
      if (text === shown[i]) return;
      shown[i] = text;
      if (report.heal_timeline.length < TIMELINE_MAX) {
        report.heal_timeline.push(`+${secs(at)} ${nodes[i].id} [${text}]`);
      }
    });
  };
  const healStart = performance.now();
  await cut.heal();
  const healAt = performance.now();
  log(
    `trial ${trial}: HEAL after ${secs(healStart - cutAt)} of cut ` +
      `(rules deleted in ${(healAt - healStart).toFixed(0)} ms)`,
  );
  let views: View[] = [];
  while (performance.now() - healAt < healTimeoutMs) {
    views = await pollAll(nodes);
    const at = performance.now() - healAt;
    track(views, at);
    nodes.forEach((_, i) => {
      const r = report.nodes_heal[i];
      if (r.all_alive_ms === null && allAlive(views[i], nodes)) r.all_alive_ms = at;
    });
    if (views.every((v) => allAlive(v, nodes))) {
      report.heal_ms = at;
      break;
    }
    await sleep(pollMs);
  }
  if (report.heal_ms === null) {
    const stuck = nodes.filter((_, i) => !allAlive(views[i], nodes));
    report.problems.push(
      `no single view within ${secs(healTimeoutMs)} of the heal; not merged: ` +
        stuck.map((n) => `${n.id} [${viewText(views[nodes.indexOf(n)], nodes)}]`).join("; "),
    );
    for (const n of stuck) {
      if (n.proc !== null) console.error(`--- last log lines of ${n.id} ---\n${n.proc.tail(60)}`);
    }
  } else {
    log(
      `trial ${trial}: ONE VIEW ${secs(report.heal_ms)} after the heal (per node: ${
        report.nodes_heal.map((r) => `${r.id} ${secs(r.all_alive_ms!)}`).join(", ")
      })`,
    );
    // ----- settle: the merged view must stay merged -----
    const settleAt = performance.now();
    while (performance.now() - settleAt < settleMs) {
      await sleep(pollMs);
      views = await pollAll(nodes);
      track(views, performance.now() - healAt);
      if (!views.every((v) => allAlive(v, nodes))) report.settle_polls_not_merged++;
    }
    if (report.settle_polls_not_merged > 0) {
      report.problems.push(
        `the merged view broke apart again in ${report.settle_polls_not_merged} polls during ` +
          `the ${secs(settleMs)} after it formed`,
      );
    }
  }
  nodes.forEach((_, i) => (report.nodes_heal[i].view_final = viewText(views[i], nodes)));
  report.goal_met = report.heal_ms !== null && report.heal_ms <= goalMs &&
    report.cut_confirmed_ms !== null;
  return report;
}

// ---------- main ----------

const cuts: NetCut[] = [];
const nodes: NodeInfo[] = [];
let dir: string | null = null;
const reports: TrialReport[] = [];
let failure: unknown = null;

try {
  if (Deno.uid() !== 0) {
    throw new Error(`Needs root for iptables and setpriv; uid is ${Deno.uid()}`);
  }
  const stale = await NetCut.removeStale(RULE_TAG, log);
  if (stale > 0) log(`removed ${stale} stale rules of earlier runs`);
  const users: Record<Side, UserIds> = {
    A: await ensureUser(USER_A, log),
    B: await ensureUser(USER_B, log),
  };
  await checkReadable(users.A);
  await checkReadable(users.B);

  dir = await Deno.makeTempDir({ prefix: "vectordb_partition_" });
  await Deno.chmod(dir, 0o755);
  let k = 0;
  for (const side of ["A", "B"] as const) {
    for (let i = 1; i <= SIDES[side]; i++, k++) {
      const host = `127.0.0.${FIRST_HOST + k}`;
      const port = await freePort(host);
      const id = `${side}${i}`;
      const dataDir = `${dir}/${id}`;
      await Deno.mkdir(dataDir);
      await Deno.chown(dataDir, users[side].uid, users[side].gid);
      nodes.push({
        id,
        side,
        user: users[side],
        host,
        port,
        addr: `${host}:${port}`,
        dataDir,
        proc: null,
        api: null,
      });
    }
  }
  log(
    `machine: ${navigator.hardwareConcurrency} cores, load average ${
      Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
    }; nodes ${nodes.map((n) => `${n.id}=${n.addr}(${n.user.name})`).join(" ")}; dir ${dir}`,
  );
  for (const n of nodes) {
    n.proc = spawnServer({
      name: n.id,
      entry: NODE_ENTRY,
      flags: nodeFlags({
        port: n.port,
        host: n.host,
        advertise: n.addr,
        node_id: n.id,
        data_dir: n.dataDir,
        join: nodes.filter((m) => m !== n).map((m) => m.addr),
      }),
      user: n.user,
      home: n.dataDir,
      ready_timeout_ms: READY_TIMEOUT_MS,
      lines_kept: 5000,
    });
    n.api = new ApiClient(n.addr, { timeout_ms: RPC_TIMEOUT_MS });
  }
  // Waits in short sleeps so that Ctrl-C is noticed while the nodes start.
  let started: { error: unknown } | null = null;
  Promise.all(nodes.map((n) => n.proc!.ready)).then(
    () => (started = { error: null }),
    (e) => (started = { error: e }),
  );
  while (started === null) await sleep(200);
  if ((started as { error: unknown }).error !== null) throw (started as { error: unknown }).error;
  log(
    `all ${nodes.length} nodes READY (pids ${nodes.map((n) => `${n.id}:${n.proc!.pid}`)})`,
  );

  for (let t = 1; t <= trials; t++) {
    const r = await runTrial(t, nodes, users);
    reports.push(r);
    for (const p of r.problems) log(`trial ${t}: PROBLEM ${p}`);
  }
} catch (e) {
  failure = e;
  if (!(e instanceof Interrupted)) {
    console.error(`partition: ${e instanceof Error ? e.stack ?? e.message : e}`);
    for (const n of nodes) if (n.proc !== null) console.error(n.proc.tail(30));
  }
} finally {
  // Rules first: nothing else may outlive this run's cut.
  for (const c of cuts) {
    try {
      if (c.active) log("deleting this run's iptables rules");
      await c.heal();
    } catch (e) {
      console.error(`partition: could not delete a rule: ${e}`);
      failure ??= e;
    }
  }
  for (const n of nodes) n.api?.close();
  await Promise.allSettled(nodes.map((n) => n.proc?.stop()));
  if (args["log-dir"] !== undefined) {
    try {
      await Deno.mkdir(args["log-dir"], { recursive: true });
      for (const n of nodes) {
        if (n.proc !== null) {
          await Deno.writeTextFile(`${args["log-dir"]}/${n.id}.log`, n.proc.log());
        }
      }
      log(`node logs written to ${args["log-dir"]}/`);
    } catch (e) {
      console.error(`partition: could not write the node logs: ${e}`);
    }
  }
  if (dir !== null) await Deno.remove(dir, { recursive: true }).catch(() => {});
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
}

// ---------- summary ----------

if (reports.length > 0) {
  for (const r of reports) {
    console.log(`trial ${r.trial}: what each node saw during the ${secs(r.cut_ms)} cut:`);
    for (const c of r.nodes_cut) {
      const fmt = (ms: number | null) => (ms === null ? "never" : `+${secs(ms)}`);
      console.log(
        `  ${c.id} (side ${c.side}): other side first not alive ${fmt(c.first_not_alive_ms)}, ` +
          `all dead ${fmt(c.other_side_dead_ms)}; own side not alive in ` +
          `${c.own_side_not_alive_polls} polls; poll errors ${c.poll_errors}; at heal: ` +
          `[${c.view_at_heal}]`,
      );
    }
    console.log(
      `trial ${r.trial}: ${r.syn_sent_at_heal.length} connections between nodes in SYN-SENT ` +
        `at the heal${r.syn_sent_at_heal.map((l) => `\n  ${l}`).join("")}`,
    );
    console.log(`trial ${r.trial}: view changes after the heal:`);
    for (const line of r.heal_timeline) console.log(`  ${line}`);
    console.log(`trial ${r.trial}: after the heal:`);
    for (const h of r.nodes_heal) {
      console.log(
        `  ${h.id}: all alive ${
          h.all_alive_ms === null ? "never" : `+${secs(h.all_alive_ms)}`
        }; final [${h.view_final}]`,
      );
    }
  }
  const heals = reports.map((r) => r.heal_ms);
  const done = heals.filter((h): h is number => h !== null);
  const met = reports.filter((r) => r.goal_met).length;
  console.log(
    `partition summary: ${reports.length}/${trials} trials, cut ${secs(cutMs)}, ` +
      `heal→one view ${heals.map((h) => (h === null ? "never" : secs(h))).join(", ")}` +
      (done.length > 0 ? ` (max ${secs(Math.max(...done))})` : "") +
      `; cut confirmed after ${
        reports.map((r) => (r.cut_confirmed_ms === null ? "never" : secs(r.cut_confirmed_ms)))
          .join(", ")
      }; goal ≤ ${secs(goalMs)}: ${met}/${reports.length} met; problems ${
        reports.reduce((s, r) => s + r.problems.length, 0)
      }; load average at end ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`,
  );
  if (args.json) console.log(JSON.stringify({ cut_ms: cutMs, goal_ms: goalMs, trials: reports }));
}
if (failure !== null || reports.length < trials || reports.some((r) => !r.goal_met)) {
  Deno.exit(1);
}
