/**
 * A cluster of storage-node processes that find each other by gossip (n0..n(count-1); every
 * node but n0 joins through n0), observed through the public `Members` RPC. Used by
 * tests/gossip_cluster_test.ts and scripts/gossip_measure.ts.
 * @module
 */

import { ApiClient } from "../../src/api/client.ts";
import type { Member } from "../../src/api/proto.ts";
import { ChildProc, freePort } from "./cluster.ts";

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A storage node process (the shared test helper, run under Node through tsx). */
type NodeProc = ChildProc;

/** Storage nodes n0..n(count-1); every node but n0 joins through n0. */
export class GossipCluster {
  readonly ports: number[];
  readonly addrs: string[];
  readonly procs: (NodeProc | null)[];
  readonly #old: NodeProc[] = [];
  readonly #clients = new Map<string, ApiClient>();

  constructor(readonly dir: string, readonly count: number) {
    this.ports = Array.from({ length: count }, () => freePort());
    this.addrs = this.ports.map((p) => `127.0.0.1:${p}`);
    this.procs = this.ports.map(() => null);
  }

  id(i: number): string {
    return `n${i}`;
  }

  async start(i: number): Promise<void> {
    const args = [
      "src/node/main.ts",
      "--port",
      `${this.ports[i]}`,
      "--data-dir",
      `${this.dir}/n${i}`,
      "--node-id",
      this.id(i),
    ];
    if (i !== 0) args.push("--join", this.addrs[0]);
    const old = this.procs[i];
    if (old !== null) this.#old.push(old);
    const p: NodeProc = new ChildProc(this.id(i), [
      "node",
      "--import",
      "./node_modules/tsx/dist/esm/index.mjs",
      ...args,
    ]);
    this.procs[i] = p;
    await p.ready;
  }

  api(i: number): ApiClient {
    let c = this.#clients.get(this.addrs[i]);
    if (c === undefined) {
      c = new ApiClient(this.addrs[i], { timeout_ms: 2000 });
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

  async close(): Promise<void> {
    for (const c of this.#clients.values()) c.close();
    await Promise.all([...this.procs, ...this.#old].map((p) => p?.stop()));
  }

  logs(): string {
    return [...this.#old, ...this.procs].map((p) => p?.log() ?? "").join("\n");
  }
}

export async function withGossipCluster(
  count: number,
  body: (c: GossipCluster) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gossip_cluster_" });
  const c = new GossipCluster(dir, count);
  try {
    await Promise.all(c.procs.map((_, i) => c.start(i)));
    await body(c);
  } catch (e) {
    console.error(c.logs());
    throw e;
  } finally {
    await c.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Polls `check` every 100 ms until it returns true; returns the elapsed ms or throws. */
export async function waitFor(
  what: string,
  timeout_ms: number,
  check: () => Promise<boolean>,
): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > timeout_ms) {
      throw new Error(`Timed out after ${timeout_ms} ms waiting until ${what}`);
    }
    await sleep(100);
  }
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
