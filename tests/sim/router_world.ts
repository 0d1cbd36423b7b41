/**
 * A simulated world for the router core (src/router/core.ts): storage nodes that apply writes
 * last-writer-wins by version with tombstones (as src/storage/collection.ts does), behind a
 * lossy, reordering network on a {@link SimClock}, and an oracle that sees every node's state.
 * The router core runs unchanged on top: its {@link NodePort} is {@link SimNodePort}, its clock
 * {@link SimRouterClock}, its hint queues {@link MemoryHintQueue}s.
 *
 * Network model, per call: a node that is down answers UNAVAILABLE at once; otherwise the request
 * is lost with probability `loss`, or arrives after 1–`latency_max_ms` ms (sometimes much later,
 * past the caller's deadline) and is applied on arrival if the node is still up; the reply is
 * lost with probability `loss`, or arrives 1–`latency_max_ms` ms later. The caller gets
 * DEADLINE_EXCEEDED at its deadline when nothing came back. So writes can be applied after the
 * router gave up on them (and hinted them), arrive out of order, and be applied with the client
 * never told.
 *
 * Driving: everything async in the core waits on promises that only clock events resolve, so
 * {@link World.run} alternates "drain all microtasks" and "run the next clock event": a replayable
 * schedule for a given seed.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { setImmediate } from "node:timers";
import type { RequestOf, ResponseOf } from "../../src/api/client.ts";
import type { MethodName } from "../../src/api/proto.ts";
import type { EntriesResponse } from "../../src/api/transfer.ts";
import { Prng } from "../../src/common/prng.ts";
import { RouterCore } from "../../src/router/core.ts";
import { MemoryHintQueue } from "../../src/router/hints/queue.ts";
import {
  type NodeCallOptions,
  type NodePort,
  NodeStatusError,
  type RouterClock,
} from "../../src/router/node_port.ts";
import type { TransferEntry, TransferPort } from "../../src/router/rebalance/rebalancer.ts";
import { SimClock } from "../../src/sim/clock.ts";

/** One entry a node holds: the version of the last write to the id and what it wrote. */
export interface Held {
  version: number;
  deleted: boolean;
  /** The value written (vector[0]); 0 for a tombstone. */
  value: number;
}

/** A simulated storage node (collection "c" only, created on demand). */
export class SimNode {
  readonly data = new Map<number, Held>();
  up = true;
  /** When set, writes are refused with RESOURCE_EXHAUSTED and this message (a full disk). */
  refuse_writes: string | null = null;
  /** Collections created by CreateCollection (besides "c"), with the request that made them. */
  readonly created = new Map<string, Record<string, unknown>>();
  /** ListCollections calls answered. */
  list_calls = 0;
  /** Every CreateCollection request received, in order. */
  readonly create_requests: Record<string, unknown>[] = [];

  constructor(readonly address: string, readonly world: World) {}

  /** Applies an entry last-writer-wins; true when it changed the node. */
  apply(id: number, version: number, deleted: boolean, value: number): boolean {
    const held = this.data.get(id);
    if (held !== undefined && held.version >= version) return false;
    this.data.set(id, { version, deleted, value });
    this.world.recordApplied(id, version, deleted, value);
    return true;
  }

  /** Answers one call (on arrival). Throws a status error for a verdict. */
  handle(method: MethodName, request: unknown): unknown {
    const r = request as Record<string, unknown>;
    const version = Number(r.version ?? 0);
    const write = method === "Put" || method === "PutBatch" || method === "Delete";
    if (write && this.refuse_writes !== null) {
      throw new NodeStatusError(grpc.status.RESOURCE_EXHAUSTED, this.refuse_writes);
    }
    // The shard_number guard of src/node/service.ts, for collection "c".
    const shards = this.world.options.layout?.shard_number ?? 1;
    const asked = Number(r.shard_number ?? 0);
    if (write && (r.collection ?? "c") === "c" && asked !== 0 && asked !== shards) {
      throw new NodeStatusError(
        grpc.status.FAILED_PRECONDITION,
        `collection "c" has ${shards} shards on this node, not ${asked} as the request's ` +
          `shard_number says (the sender's layout of the collection is stale)`,
      );
    }
    switch (method) {
      case "Put": {
        const v = r.vector as number[];
        this.apply(r.id as number, version, false, v[0]);
        return { ok: true, seq: "1", replicas_acked: 1, version: String(version) };
      }
      case "PutBatch": {
        const points = r.points as { id: number; vector: number[] }[];
        for (const p of points) this.apply(p.id, version, false, p.vector[0]);
        return { count: points.length, seq: "1", version: String(version) };
      }
      case "Delete": {
        const held = this.data.get(r.id as number);
        const live = held !== undefined && !held.deleted && held.version < version;
        this.apply(r.id as number, version, true, 0);
        return { deleted: live, seq: "1", version: String(version) };
      }
      case "Get": {
        const held = this.data.get(r.id as number);
        if (held === undefined) return { found: false, vector: [], version: "0", deleted: false };
        return {
          found: !held.deleted,
          vector: held.deleted ? [] : [held.value, 0],
          version: String(held.version),
          deleted: held.deleted,
        };
      }
      case "ListCollections":
        this.list_calls++;
        return {
          collections: [...this.created.values()].map((c) => ({ ...c })).concat([{
            name: "c",
            dimension: 2,
            metric: "l2",
            m: 16,
            ef_construction: 200,
            ...this.world.options.layout,
          }]),
        };
      case "CreateCollection": {
        const name = r.name as string;
        this.create_requests.push({ ...r });
        if (name === "c" || this.created.has(name)) return { created: false, collection: null };
        this.created.set(name, { ...r });
        return { created: true, collection: null };
      }
      case "DropCollection":
        return { dropped: this.created.delete(r.name as string) };
      default:
        throw new NodeStatusError(grpc.status.UNIMPLEMENTED, `${method} is not simulated`);
    }
  }
}

/** Network and fault parameters of one world. */
export interface WorldOptions {
  rng: Prng;
  nodes: number;
  /** Probability that a request, or a reply, is lost. */
  loss: number;
  latency_max_ms: number;
  /** Probability that a request is delayed past any deadline (applied late). */
  late: number;
  node_timeout_ms: number;
  /** The layout nodes report for collection "c" (absent: none, a collection from before shards). */
  layout?: { shard_number: number; replication_factor: number };
}

/** Every version a node ever applied for an id, with its content (for phantom checks). */
type Applied = Map<number, Map<number, { deleted: boolean; value: number }>>;

/** The simulated world: clock, nodes, network, oracle. */
export class World {
  readonly clock = new SimClock();
  readonly nodes = new Map<string, SimNode>();
  readonly addresses: string[];
  readonly applied: Applied = new Map();
  /** Calls made, lost and failed (for the closing summary). */
  readonly counts = { calls: 0, lost: 0, late: 0, unavailable: 0 };
  loss: number;
  late: number;
  /** Set while a client Get makes its node calls: every call made then is attributed to it. */
  tag: ((node: string, ok: boolean) => void) | null = null;

  constructor(readonly options: WorldOptions) {
    this.loss = options.loss;
    this.late = options.late;
    this.addresses = [];
    for (let i = 0; i < options.nodes; i++) {
      const a = `10.0.0.${i + 1}:7000`;
      this.addresses.push(a);
      this.nodes.set(a, new SimNode(a, this));
    }
  }

  recordApplied(id: number, version: number, deleted: boolean, value: number): void {
    let m = this.applied.get(id);
    if (m === undefined) this.applied.set(id, m = new Map());
    const seen = m.get(version);
    if (seen !== undefined && (seen.deleted !== deleted || seen.value !== value)) {
      throw new Error(
        `Version ${version} of id ${id} was applied with two contents: ` +
          `${JSON.stringify(seen)} and ${JSON.stringify({ deleted, value })}`,
      );
    }
    m.set(version, { deleted, value });
  }

  /** Runs clock events (draining microtasks between them) until `until_ms` or nothing is due. */
  async run(until_ms: number): Promise<void> {
    for (;;) {
      await flush();
      const next = this.clock.peek();
      if (next === undefined || next > until_ms) break;
      this.clock.step();
    }
    await flush();
  }

  /**
   * Sends one call through the network: `handle` runs on the node on arrival. The promise
   * settles on the reply, or with DEADLINE_EXCEEDED at the deadline, or UNAVAILABLE when the
   * node is down.
   */
  send<T>(node: string, timeout_ms: number, handle: (n: SimNode) => T): Promise<T> {
    const rng = this.options.rng;
    const n = this.nodes.get(node);
    this.counts.calls++;
    const tag = this.tag;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (ok: boolean, fn: () => void) => {
        if (settled) return;
        settled = true;
        tag?.(node, ok);
        fn();
      };
      if (n === undefined || !n.up) {
        this.counts.unavailable++;
        this.clock.after(
          1,
          () =>
            finish(
              false,
              () => reject(new NodeStatusError(grpc.status.UNAVAILABLE, `node ${node} is down`)),
            ),
        );
        return;
      }
      this.clock.after(
        timeout_ms,
        () =>
          finish(
            false,
            () =>
              reject(new NodeStatusError(grpc.status.DEADLINE_EXCEEDED, `no reply from ${node}`)),
          ),
      );
      if (rng.chance(this.loss)) {
        this.counts.lost++;
        return;
      }
      const late = rng.chance(this.late);
      if (late) this.counts.late++;
      const there_ms = late
        ? timeout_ms + rng.intBetween(1, 3 * timeout_ms)
        : rng.intBetween(1, this.options.latency_max_ms);
      const replyLost = rng.chance(this.loss);
      const back_ms = rng.intBetween(1, this.options.latency_max_ms);
      this.clock.after(there_ms, () => {
        if (!n.up) return; // died with the request in flight: the caller times out
        let result: T;
        try {
          result = handle(n);
        } catch (e) {
          if (!replyLost) this.clock.after(back_ms, () => finish(false, () => reject(e)));
          return;
        }
        if (replyLost) {
          this.counts.lost++;
          return;
        }
        this.clock.after(back_ms, () => finish(true, () => resolve(result)));
      });
    });
  }
}

/** Drains every queued microtask (a macrotask runs only once they are all done). */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The router core's clock in a world. */
export class SimRouterClock implements RouterClock {
  constructor(readonly world: World) {}
  now_ms(): number {
    return this.world.clock.now_ms;
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.world.clock.after(Math.max(0, ms), resolve));
  }
}

/** The router core's view of the nodes in a world. */
export class SimNodePort implements NodePort {
  readonly #open = new Set<string>();

  constructor(readonly world: World) {}

  call<K extends MethodName>(
    node: string,
    method: K,
    request: RequestOf<K>,
    options: NodeCallOptions = {},
  ): Promise<ResponseOf<K>> {
    if (!this.#open.has(node)) {
      return Promise.reject(new NodeStatusError(grpc.status.UNAVAILABLE, `no channel to ${node}`));
    }
    const timeout_ms = options.timeout_ms ?? this.world.options.node_timeout_ms;
    return this.world.send(node, timeout_ms, (n) => n.handle(method, request) as ResponseOf<K>);
  }

  entries(): Promise<EntriesResponse> {
    return Promise.reject(new NodeStatusError(grpc.status.UNIMPLEMENTED, "not simulated here"));
  }

  transfer(node: string): TransferPort | null {
    if (!this.#open.has(node)) return null;
    const timeout_ms = this.world.options.node_timeout_ms;
    const copy = (entries: TransferEntry[]) =>
      this.world.send(node, timeout_ms, (n) => {
        let applied = 0;
        for (const e of entries) {
          // The simulated nodes hold integer ids only.
          if (n.apply(e.id as number, e.version, e.deleted, e.deleted ? 0 : e.vector[0])) applied++;
        }
        return { applied, skipped: entries.length - applied };
      });
    return {
      scan: () => Promise.reject(new Error("scan is not simulated here")),
      copy: (_collection, entries) => copy(entries),
      prune: () => Promise.reject(new Error("prune is not simulated here")),
    };
  }

  open(node: string): void {
    this.#open.add(node);
  }

  close(node: string): void {
    this.#open.delete(node);
  }
}

/**
 * A 3-node RF 2 quorum router core over a loss-free world (5 ms latency, 200 ms node timeout,
 * hints in memory), on the ring of all three nodes; `start_ms` moves the world's clock first
 * (e.g. to a realistic wall time, so versions look like real ones).
 */
export async function simRouterCore(
  seed: number,
  start_ms = 0,
  layout?: WorldOptions["layout"],
): Promise<{ world: World; core: RouterCore }> {
  const world = new World({
    layout,
    rng: new Prng(seed),
    nodes: 3,
    loss: 0,
    latency_max_ms: 5,
    late: 0,
    node_timeout_ms: 200,
  });
  if (start_ms > 0) world.clock.runUntil(start_ms);
  const core = new RouterCore({
    nodes: new SimNodePort(world),
    clock: new SimRouterClock(world),
    openHints: (a) => Promise.resolve(new MemoryHintQueue(a)),
    log: () => {},
    replication_factor: 2,
    consistency: "quorum",
    node_timeout_ms: 200,
    retry_interval_ms: 100,
    retry_timeout_ms: 200,
  });
  await core.followRing([...world.addresses].sort(), new Set(), true);
  return { world, core };
}
