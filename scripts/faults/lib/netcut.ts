/**
 * Real network cuts on loopback for the fault scripts (`scripts/faults/partition.ts`,
 * `scripts/faults/chaos.ts`): iptables OUTPUT rules on `lo` that drop what one Unix user's processes
 * send, optionally only to one loopback address.
 *
 * Each process under test runs as its own system user (created with `useradd --system` when
 * missing; started through `setpriv`, which execs, so the pid the caller holds is the
 * process's) and listens on its own loopback address (127.0.0.x; Linux answers on all of
 * 127/8). Sockets to 127.0.0.x get source address 127.0.0.1, so source-address rules would not
 * tell the processes apart; the owner match does:
 *
 * | rule                                               | drops                                  |
 * | -------------------------------------------------- | -------------------------------------- |
 * | `-o lo -d <host> -m owner --uid-owner <uid>`       | everything `uid` sends to `host`       |
 * | `-o lo -m owner --uid-owner <uid>`                 | everything `uid` sends on loopback     |
 *
 * A cut in both directions is two such rules. Established connections die too: every packet
 * one side sends to the other (data, ACKs, SYN-ACKs) is dropped. The caller (root) is not
 * affected by rules naming other users. Nothing outside 127.0.0.0/8 is touched (`-o lo`).
 *
 * Every rule carries the comment `<tag prefix><pid of this run>` (e.g.
 * `vectordb-chaos:pid=1234`); {@link NetCut.heal} deletes exactly the rules its object added, and
 * {@link NetCut.removeStale} deletes rules with the same prefix left by a run whose process no
 * longer exists (a SIGKILLed run). Needs root and the `iptables` program;
 * {@link netCutUnavailable} says why when either is missing.
 *
 * @module
 */
import { join } from "node:path";
import { REPO_ROOT, runProcess, type RunResult } from "../../../harness/process.ts";
import { asUser } from "../../../harness/servers.ts";

/** Runs a program; throws with its stderr when it fails (unless `ok_codes` allows the code). */
export async function runProgram(
  program: string,
  argv: string[],
  ok_codes: number[] = [0],
): Promise<RunResult> {
  const res = await runProcess(program, argv);
  if (res.code === null || !ok_codes.includes(res.code)) {
    throw new Error(
      `${program} ${argv.join(" ")} exited with ${res.code ?? res.signal}: ` +
        (res.stderr.trim() || res.stdout),
    );
  }
  return res;
}

/** Why real cuts cannot be made here (not root, or iptables/setpriv/useradd missing); null when they can. */
export async function netCutUnavailable(): Promise<string | null> {
  if (Deno.uid() !== 0) return `needs root for iptables and setpriv; uid is ${Deno.uid()}`;
  for (
    const [program, argv] of [
      ["iptables", ["-w", "-S", "OUTPUT"]],
      ["setpriv", ["--version"]],
      ["useradd", ["--help"]],
    ] as const
  ) {
    try {
      const r = await runProgram(program, [...argv], [0, 1, 2]);
      if (program === "iptables" && r.code !== 0) {
        return `iptables -S OUTPUT exited with ${r.code}: ${r.stderr.trim()}`;
      }
    } catch (e) {
      return `cannot run ${program}: ${(e as Error).message}`;
    }
  }
  return null;
}

/** A Unix user's ids. */
export interface UserIds {
  name: string;
  uid: number;
  gid: number;
}

/** The ids of `name`, creating it as a system user without a home when missing. */
export async function ensureUser(name: string, log: (m: string) => void): Promise<UserIds> {
  if ((await runProgram("id", ["-u", name], [0, 1])).code !== 0) {
    log(`creating system user ${name}`);
    await runProgram("useradd", [
      "--system",
      "--no-create-home",
      "--shell",
      "/usr/sbin/nologin",
      name,
    ]);
  }
  const uid = Number((await runProgram("id", ["-u", name])).stdout.trim());
  const gid = Number((await runProgram("id", ["-g", name])).stdout.trim());
  if (!Number.isInteger(uid) || uid === 0) throw new Error(`User ${name} has uid ${uid}`);
  return { name, uid, gid };
}

/** Throws unless `u` can read what a node or the router needs. */
export async function checkReadable(u: UserIds): Promise<void> {
  const files = [
    "node_modules/tsx/dist/esm/index.mjs",
    "node_modules/@grpc/grpc-js/package.json",
    "src/node/main.ts",
    "src/router/main.ts",
    "proto/vector_db.proto",
    "build/kernels.wasm",
  ].map((f) => join(REPO_ROOT, f));
  const test = files.flatMap((f, i) => (i === 0 ? ["-r", f] : ["-a", "-r", f]));
  const res = await runProgram("setpriv", [...asUser(u), "test", ...test], [0, 1]);
  if (res.code !== 0) {
    throw new Error(`User ${u.name} cannot read one of ${files.join(", ")}; check permissions`);
  }
}

/** One drop rule: what `from_uid`'s processes send (to `to_host` only, when given). */
export interface DropSpec {
  from_uid: number;
  to_host?: string;
}

/** Whether a process with this pid exists. */
function pidAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** The iptables rules one object added; deletes exactly those. */
export class NetCut {
  readonly #rules: string[][] = [];
  readonly #tag: string;

  /** `tag_prefix` names the script, e.g. `vectordb-chaos:pid=`; no spaces or quotes. */
  constructor(tag_prefix: string) {
    checkTagPrefix(tag_prefix);
    this.#tag = `${tag_prefix}${Deno.pid}`;
  }

  /** Deletes rules tagged `tag_prefix<pid>` by an earlier run whose process is gone. */
  static async removeStale(tag_prefix: string, log: (m: string) => void): Promise<number> {
    checkTagPrefix(tag_prefix);
    const { stdout } = await runProgram("iptables", ["-w", "-S", "OUTPUT"]);
    const re = new RegExp(`${tag_prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(\\d+)`);
    let removed = 0;
    for (const line of stdout.split("\n")) {
      const m = line.match(re);
      if (m === null || !line.startsWith("-A OUTPUT ")) continue;
      const pid = Number(m[1]);
      if (pid === Deno.pid || pidAlive(pid)) continue; // A live run's rules are its own.
      // `-S` quotes the comment; ours has no spaces, so dropping the quotes is exact.
      const spec = line.slice("-A OUTPUT ".length).replaceAll('"', "").split(/\s+/)
        .filter((s) => s !== "");
      await runProgram("iptables", ["-w", "-D", "OUTPUT", ...spec]);
      log(`deleted a stale rule of dead run ${pid}: ${line}`);
      removed++;
    }
    return removed;
  }

  /** Whether rules of this object are in place. */
  get active(): boolean {
    return this.#rules.length > 0;
  }

  /** Number of rules in place. */
  get size(): number {
    return this.#rules.length;
  }

  /** Drops what processes of `d.from_uid` send on loopback (to `d.to_host` only when given). */
  async drop(d: DropSpec): Promise<void> {
    const spec = [
      "-o",
      "lo",
      ...(d.to_host === undefined ? [] : ["-d", `${d.to_host}/32`]),
      "-m",
      "owner",
      "--uid-owner",
      String(d.from_uid),
      "-m",
      "comment",
      "--comment",
      this.#tag,
      "-j",
      "DROP",
    ];
    // Remember it before adding: a failure in between must still try to delete it.
    this.#rules.push(spec);
    await runProgram("iptables", ["-w", "-I", "OUTPUT", ...spec]);
  }

  /** Packets dropped so far by this object's rules (from iptables' counters). */
  async packetsDropped(): Promise<number> {
    if (this.#rules.length === 0) return 0;
    const { stdout } = await runProgram("iptables", ["-w", "-v", "-S", "OUTPUT"]);
    let packets = 0;
    for (const line of stdout.split("\n")) {
      if (!line.includes(this.#tag)) continue;
      const m = line.match(/ -c (\d+) \d+/);
      if (m !== null) packets += Number(m[1]);
    }
    return packets;
  }

  /** Deletes every rule this object added; keeps going past failures, throws the first. */
  async heal(): Promise<void> {
    let first: unknown = null;
    while (this.#rules.length > 0) {
      const spec = this.#rules.pop()!;
      try {
        await runProgram("iptables", ["-w", "-D", "OUTPUT", ...spec]);
      } catch (e) {
        // "Bad rule" when the add itself had failed: nothing to delete.
        if (!String(e).includes("does a matching rule exist")) first ??= e;
      }
    }
    if (first !== null) throw first;
  }
}

function checkTagPrefix(tag_prefix: string): void {
  if (!/^[A-Za-z0-9:=_.-]{1,200}$/.test(tag_prefix)) {
    throw new RangeError(`Rule tag prefix "${tag_prefix}" must be 1 to 200 of [A-Za-z0-9:=_.-]`);
  }
}
