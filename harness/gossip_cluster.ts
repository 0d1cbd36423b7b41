/**
 * A cluster of storage-node processes that find each other by gossip (n0..n(count-1); every
 * node but n0 joins through n0; no router), observed through the public `Members` RPC. Used by
 * tests/gossip_cluster_test.ts and scripts/bench/gossip_measure.ts.
 *
 * Runtime-neutral (node: APIs only).
 * @module
 */
import { ApiClient } from "../src/api/client.ts";
import type { Member } from "../src/api/proto.ts";
import { withStarted } from "./cluster.ts";
import { freePort } from "./ports.ts";
import { type ChildProc, ProcGroup } from "./process.ts";
import { NODE_ENTRY, nodeFlags, spawnServer } from "./servers.ts";

/** Storage nodes n0..n(count-1); every node but n0 joins through n0. */
export class GossipCluster {
  readonly addrs: string[];
  /** The current process of each node; null before its first start. */
  readonly procs: (ChildProc | null)[];
  /** Every process started, earlier starts included. */
  readonly group: ProcGroup = new ProcGroup();
  readonly #clients = new Map<string, ApiClient>();

  private constructor(readonly dir: string, readonly ports: number[]) {
    this.addrs = ports.map((p) => `127.0.0.1:${p}`);
    this.procs = ports.map(() => null);
  }

  /** `count` nodes on free ports in `dir`; none started yet. */
  static async create(dir: string, count: number): Promise<GossipCluster> {
    return new GossipCluster(
      dir,
      await Promise.all(Array.from({ length: count }, () => freePort())),
    );
  }

  get count(): number {
    return this.ports.length;
  }

  id(i: number): string {
    return `n${i}`;
  }

  /** Starts node `i` (same id, port and data directory every time) and waits for READY. */
  async start(i: number): Promise<void> {
    const p = spawnServer({
      name: this.id(i),
      entry: NODE_ENTRY,
      flags: nodeFlags({
        port: this.ports[i],
        data_dir: `${this.dir}/n${i}`,
        node_id: this.id(i),
        join: i === 0 ? undefined : [this.addrs[0]],
      }),
      group: this.group,
    });
    this.procs[i] = p;
    await p.ready;
  }

  api(i: number): ApiClient {
    let c = this.#clients.get(this.addrs[i]);
    if (c === undefined) {
      // 10 s, not 2: a Members call on a loaded machine can take seconds, and view() reads any
      // failure as "does not answer", so a slow answer was lost. A stopped node's calls fail at
      // once (connection refused) whatever the deadline; only a wait that fails anyway can
      // end later, by at most one call.
      c = new ApiClient(this.addrs[i], { timeout_ms: 10_000 });
      this.#clients.set(this.addrs[i], c);
    }
    return c;
  }

  /** Node i's view, by id; undefined when it does not answer. */
  async view(i: number): Promise<Map<string, Member> | undefined> {
    try {
      const r = await this.api(i).call("Members", {});
      return new Map(r.members.map((m) => [m.id, m]));
    } catch {
      return undefined;
    }
  }

  /** Starts every node, each waited for until ready. */
  async startAll(): Promise<void> {
    await Promise.all(this.procs.map((_, i) => this.start(i)));
  }

  /** Closes the clients and stops every node (SIGTERM, then SIGKILL). */
  async stop(): Promise<void> {
    for (const c of this.#clients.values()) c.close();
    await this.group.stopAll();
  }

  /** Every process's kept output. */
  log(): string {
    return this.group.log();
  }
}

/** Starts `count` nodes, runs `body`, and always stops them and removes their directory. */
export function withGossipCluster(
  count: number,
  body: (c: GossipCluster) => Promise<void>,
): Promise<void> {
  return withStarted("gossip_cluster_", (dir) => GossipCluster.create(dir, count), body);
}

/** Whether every listed observer sees member `id` in `state` (and `pred`, when given). */
export async function allSee(
  c: GossipCluster,
  observers: number[],
  id: string,
  state: string,
  pred: (m: Member) => boolean = () => true,
): Promise<boolean> {
  const views = await Promise.all(observers.map((i) => c.view(i)));
  return views.every((v) => v?.get(id)?.state === state && pred(v.get(id)!));
}
