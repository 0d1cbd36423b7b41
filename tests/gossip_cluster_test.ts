/**
 * Gossip membership between real storage-node processes (Node 20 through tsx, like production)
 * on free loopback ports, observed through the public `Members` RPC:
 *
 * - three nodes started with `--join` of the first converge to the same 3-member view;
 * - the Gossip service rejects malformed and oversize envelopes with the documented statuses;
 * - a SIGKILLed node is declared `dead` by the others (the test allows 8 s; the target is 5 s
 *   and the measured time is printed);
 * - restarted with the same id and port it is `alive` again with a higher incarnation;
 * - a SIGTERMed node is seen `left` and exits 0.
 *
 * `GOSSIP_MEASURE=1` also runs the measurement (ignored otherwise): dead-everywhere times over
 * several SIGKILL trials and false deaths in a healthy 5-node cluster under light load
 * (`GOSSIP_MEASURE_HEALTHY_S`, default 120 s).
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { ApiClient } from "../src/api/client.ts";
import type { Member } from "../src/api/proto.ts";
import { GOSSIP_PAYLOAD_BYTES_MAX } from "../src/cluster/gossip_agent.ts";
import { GossipClient } from "../src/cluster/gossip_transport.ts";
import { ChildProc, freePort } from "./helpers/cluster.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A storage node process (the shared test helper, run under Node through tsx). */
type NodeProc = ChildProc;

/** Storage nodes n0..n(count-1); every node but n0 joins through n0. */
class GossipCluster {
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
      "src/server/main.ts",
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

async function withGossipCluster(
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
async function waitFor(
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
async function allSee(
  c: GossipCluster,
  observers: number[],
  id: string,
  state: string,
  pred: (m: Member) => boolean = () => true,
): Promise<boolean> {
  const views = await Promise.all(observers.map((i) => c.view(i)));
  return views.every((v) => v?.get(id)?.state === state && pred(v.get(id)!));
}

function exchange(address: string, envelope: { from: string; payload: string }) {
  const client = new GossipClient(address, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": 4 * GOSSIP_PAYLOAD_BYTES_MAX,
  });
  return new Promise<grpc.status>((resolve) => {
    client.Exchange(envelope, { deadline: Date.now() + 5000 }, (err) => {
      client.close();
      resolve(err ? err.code : grpc.status.OK);
    });
  });
}

Deno.test({
  name: "gossip: 3 nodes converge; SIGKILL → dead; restart → alive again; SIGTERM → left",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withGossipCluster(3, async (c) => {
      const ids = [0, 1, 2].map((i) => c.id(i));
      await waitFor("all 3 nodes see 3 alive members", 15_000, async () => {
        const views = await Promise.all([0, 1, 2].map((i) => c.view(i)));
        return views.every((v) =>
          v !== undefined && v.size === 3 && ids.every((id) => v.get(id)?.state === "alive")
        );
      });
      const view = (await c.view(1))!;
      assert.deepEqual([...view.keys()], ids, "Members is not sorted by id");
      assert.equal(view.get("n2")!.address, c.addrs[2]);
      assert.equal(view.get("n2")!.is_router, false);

      // The Gossip service checks its envelopes.
      const ok = JSON.stringify({ v: 1, type: "gossip", from: "test", updates: [] });
      assert.equal(await exchange(c.addrs[0], { from: "127.0.0.1:1", payload: ok }), 0);
      assert.equal(
        await exchange(c.addrs[0], { from: "127.0.0.1:1", payload: "nope" }),
        grpc.status.INVALID_ARGUMENT,
      );
      assert.equal(
        await exchange(c.addrs[0], { from: "", payload: ok }),
        grpc.status.INVALID_ARGUMENT,
      );
      assert.equal(
        await exchange(c.addrs[0], {
          from: "127.0.0.1:1",
          payload: JSON.stringify({ pad: "x".repeat(GOSSIP_PAYLOAD_BYTES_MAX) }),
        }),
        grpc.status.RESOURCE_EXHAUSTED,
      );

      // SIGKILL n2: n0 and n1 declare it dead.
      const inc_before = view.get("n2")!.incarnation;
      c.procs[2]!.signal("SIGKILL");
      await c.procs[2]!.done;
      const dead_ms = await waitFor("n0 and n1 see n2 dead", 8000, () =>
        allSee(c, [0, 1], "n2", "dead"));
      console.log(`gossip: SIGKILLed n2 seen dead by n0 and n1 after ${Math.round(dead_ms)} ms`);

      // Restart n2 (same id, port, data): alive again everywhere with a higher incarnation.
      await c.start(2);
      const back_ms = await waitFor(
        "n0 and n1 see n2 alive with a higher incarnation",
        10_000,
        () =>
          allSee(c, [0, 1], "n2", "alive", (m) =>
            m.incarnation > inc_before),
      );
      console.log(`gossip: restarted n2 seen alive again after ${Math.round(back_ms)} ms`);
      await waitFor("n2 sees n0 and n1 alive", 10_000, async () => {
        const v = await c.view(2);
        return v?.get("n0")?.state === "alive" && v?.get("n1")?.state === "alive";
      });

      // SIGTERM n1: it leaves, exits 0, and the others see it left.
      c.procs[1]!.signal("SIGTERM");
      const left_ms = await waitFor("n0 and n2 see n1 left", 8000, () =>
        allSee(c, [0, 2], "n1", "left"));
      console.log(`gossip: SIGTERMed n1 seen left after ${Math.round(left_ms)} ms`);
      assert.equal((await c.procs[1]!.done).code, 0);
      const v0 = (await c.view(0))!;
      assert.equal(v0.get("n0")!.state, "alive");
      assert.equal(v0.get("n2")!.state, "alive");
    }),
});

// ------------------------------------------------------------------ measurement (opt-in)

const MEASURE = Deno.env.get("GOSSIP_MEASURE") === "1";

Deno.test({
  name: "gossip measurement: SIGKILL detection time and false deaths in a healthy 5-node cluster",
  ignore: !MEASURE,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withGossipCluster(5, async (c) => {
      const all = [0, 1, 2, 3, 4];
      const converge = () =>
        waitFor("all 5 see 5 alive", 30_000, async () => {
          const views = await Promise.all(all.map((i) => c.view(i)));
          return views.every((v) =>
            v !== undefined && all.every((j) => v.get(c.id(j))?.state === "alive")
          );
        });
      await converge();

      // Healthy cluster under light load: a few writes and searches a second, polling views.
      const healthy_s = Number(Deno.env.get("GOSSIP_MEASURE_HEALTHY_S") ?? "120");
      const bad: string[] = [];
      let requests = 0;
      const t_end = performance.now() + healthy_s * 1000;
      let id = 0;
      while (performance.now() < t_end) {
        const i = id % 5;
        const vector = [Math.random(), Math.random(), Math.random(), Math.random()];
        await c.api(i).call("Put", { id: id++, vector });
        await c.api(i).call("Search", { vector, k: 5 });
        requests += 2;
        const views = await Promise.all(all.map((j) => c.view(j)));
        for (const [j, v] of views.entries()) {
          for (const m of v?.values() ?? []) {
            if (m.state !== "alive") bad.push(`${c.id(j)} saw ${m.id} ${m.state}`);
          }
        }
        await sleep(100);
      }
      const suspicions = c.logs().split("\n").filter((l) => / (suspect|dead),/.test(l));
      console.log(
        `gossip: healthy 5-node cluster for ${healthy_s} s with ${requests} requests: ` +
          `${bad.length} non-alive observations, ${suspicions.length} suspect/dead log lines`,
      );
      for (const s of new Set([...bad, ...suspicions])) console.log(`  ${s}`);

      // SIGKILL trials: time until every other member sees the victim dead.
      const trials = Number(Deno.env.get("GOSSIP_MEASURE_TRIALS") ?? "6");
      const times: number[] = [];
      for (let t = 0; t < trials; t++) {
        const victim = 1 + (t % 4);
        const others = all.filter((j) => j !== victim);
        c.procs[victim]!.signal("SIGKILL");
        await c.procs[victim]!.done;
        const ms = await waitFor(
          `all see n${victim} dead`,
          15_000,
          () => allSee(c, others, c.id(victim), "dead"),
        );
        times.push(Math.round(ms));
        await c.start(victim);
        await converge();
      }
      times.sort((a, b) => a - b);
      console.log(`gossip: SIGKILL → dead at every member, ms (sorted): ${times.join(", ")}`);
      assert.equal(bad.length, 0, `false suspicions or deaths: ${bad.slice(0, 5).join("; ")}`);
    }),
});
