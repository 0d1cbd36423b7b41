/**
 * A simulated cluster of `Membership` state machines over `SimNetwork`, for the seeded
 * membership simulations. Each node is ticked exactly when its `nextTickAt()` says; crashed
 * nodes are unregistered from the network (silent), restarted nodes get a fresh state machine.
 */

import {
  Membership,
  type MembershipEvent,
  type MembershipTuning,
  type MemberState,
  type Outgoing,
} from "../../src/cluster/membership.ts";
import { SimClock, type TimerId } from "../../src/sim/clock.ts";
import { SimNetwork } from "../../src/sim/network.ts";
import { Prng } from "../../src/common/prng.ts";

export interface SimClusterOptions {
  seed: number;
  nodes: number;
  loss?: number;
  delay_min_ms?: number;
  delay_max_ms?: number;
  duplicate?: number;
  /** Node indexes whose addresses are the seed list (default [0, 1]). */
  seed_nodes?: number[];
  tuning?: Partial<MembershipTuning>;
  /** Nodes start at random times in [0, start_spread_ms] (default 0: all at once). */
  start_spread_ms?: number;
}

export interface RecordedEvent {
  observer: string;
  type: MembershipEvent["type"];
  id: string;
  inc: number;
  at_ms: number;
}

interface SimNode {
  id: string;
  address: string;
  m: Membership;
  up: boolean;
  timer: TimerId | undefined;
  timer_at: number;
}

export function nodeId(i: number): string {
  return `n${i}`;
}

export class SimCluster {
  readonly clock = new SimClock();
  readonly prng: Prng;
  readonly net: SimNetwork<unknown>;
  readonly nodes = new Map<string, SimNode>();
  readonly events: RecordedEvent[] = [];
  readonly seeds: string[];
  readonly ids: string[];
  #tuning: Partial<MembershipTuning>;
  #node_prng: Prng;

  constructor(readonly options: SimClusterOptions) {
    this.prng = new Prng(options.seed);
    this.net = new SimNetwork<unknown>({
      prng: this.prng.fork(),
      clock: this.clock,
      loss: options.loss ?? 0,
      delay_min_ms: options.delay_min_ms ?? 1,
      delay_max_ms: options.delay_max_ms ?? 20,
      duplicate: options.duplicate ?? 0,
      message_bytes_max: 2 * 1024 * 1024,
    });
    this.#node_prng = this.prng.fork();
    this.#tuning = options.tuning ?? {};
    this.ids = Array.from({ length: options.nodes }, (_, i) => nodeId(i));
    this.seeds = (options.seed_nodes ?? [0, 1]).filter((i) => i < options.nodes).map((i) =>
      this.addressOf(nodeId(i))
    );
    const spread = options.start_spread_ms ?? 0;
    for (const id of this.ids) {
      const at = spread > 0 ? this.prng.nextInt(spread + 1) : 0;
      this.clock.at(at, () => this.start(id));
    }
  }

  addressOf(id: string): string {
    return `addr-${id}`;
  }

  get now_ms(): number {
    return this.clock.now_ms;
  }

  node(id: string): Membership {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`Node ${id} was never started`);
    return n.m;
  }

  isUp(id: string): boolean {
    return this.nodes.get(id)?.up ?? false;
  }

  /** Starts (or restarts, with a fresh state machine) node `id`. */
  start(id: string, incarnation = 0): void {
    const old = this.nodes.get(id);
    if (old?.up) throw new Error(`Node ${id} is already running`);
    const address = this.addressOf(id);
    const m = new Membership({
      id,
      address,
      meta: { role: "node" },
      seeds: this.seeds,
      random: this.#node_prng.fork(),
      incarnation,
      on_event: (e) => this.#record(id, e),
      ...this.#tuning,
    });
    const node: SimNode = { id, address, m, up: true, timer: undefined, timer_at: Infinity };
    this.nodes.set(id, node);
    this.net.register(address, (from, msg, now) => {
      if (!node.up) return;
      this.#send(node, node.m.receive(from, msg, now));
      this.#reschedule(node);
    });
    this.#reschedule(node);
  }

  /** Crashes node `id`: it stops ticking and every message to it is dropped. */
  kill(id: string): void {
    const n = this.nodes.get(id);
    if (n === undefined || !n.up) throw new Error(`Node ${id} is not running`);
    n.up = false;
    if (n.timer !== undefined) this.clock.cancel(n.timer);
    n.timer = undefined;
    this.net.unregister(n.address);
  }

  /** Graceful leave of node `id`; it keeps answering (with `left`) until killed. */
  leave(id: string): void {
    const n = this.nodes.get(id);
    if (n === undefined || !n.up) throw new Error(`Node ${id} is not running`);
    this.#send(n, n.m.leave(this.now_ms));
    this.#reschedule(n);
  }

  run(until_ms: number): void {
    this.clock.runUntil(until_ms);
  }

  /** Runs in `step_ms` slices until `pred` holds (returns the time) or `deadline_ms` passes. */
  runUntil(pred: () => boolean, deadline_ms: number, step_ms = 50): number | undefined {
    for (;;) {
      if (pred()) return this.now_ms;
      if (this.now_ms >= deadline_ms) return undefined;
      this.run(Math.min(deadline_ms, this.now_ms + step_ms));
    }
  }

  /** State of `target` as seen by `observer` (undefined when unknown). */
  stateOf(observer: string, target: string): MemberState | undefined {
    return this.node(observer).member(target)?.state;
  }

  /** Running nodes that have not left. */
  liveIds(): string[] {
    return this.ids.filter((id) => this.isUp(id) && !this.node(id).hasLeft);
  }

  /** Every running, non-left node sees exactly the running, non-left nodes as alive. */
  converged(): boolean {
    if (this.nodes.size < this.ids.length) return false;
    const live = this.liveIds();
    const want = new Set(live);
    for (const id of live) {
      const alive = this.node(id).members().filter((m) => m.state === "alive");
      if (alive.length !== want.size || !alive.every((m) => want.has(m.id))) return false;
    }
    return true;
  }

  /** A compact, deterministic description of everything observable, for replay checks. */
  trace(): string[] {
    const lines = this.events.map((e) => `${e.at_ms} ${e.observer} ${e.type} ${e.id}@${e.inc}`);
    lines.push(`net ${JSON.stringify(this.net.stats)}`);
    for (const id of this.ids) {
      const n = this.nodes.get(id);
      if (n === undefined) continue;
      lines.push(
        `${id} lhm=${n.m.localHealth} inc=${n.m.incarnation} stats=${JSON.stringify(n.m.stats)}`,
      );
    }
    return lines;
  }

  /** Renders a failure context: the last events and every node's view. */
  describe(): string {
    const lines = [`t=${this.now_ms} ms`];
    for (const id of this.ids) {
      const n = this.nodes.get(id);
      if (n === undefined) continue;
      const view = n.m.members().map((m) => `${m.id}:${m.state}@${m.incarnation}`).join(" ");
      lines.push(`  ${id} up=${n.up} lhm=${n.m.localHealth} view: ${view}`);
    }
    lines.push("  last events:");
    for (const e of this.events.slice(-25)) {
      lines.push(`    ${e.at_ms} ${e.observer} ${e.type} ${e.id}@${e.inc}`);
    }
    return lines.join("\n");
  }

  #record(observer: string, e: MembershipEvent): void {
    this.events.push({
      observer,
      type: e.type,
      id: e.member.id,
      inc: e.member.incarnation,
      at_ms: e.at_ms,
    });
  }

  #send(from: SimNode, out: Outgoing[]): void {
    for (const o of out) this.net.send(from.address, o.to, o.msg);
  }

  #reschedule(node: SimNode): void {
    if (!node.up) return;
    const at = Math.max(this.now_ms, node.m.nextTickAt());
    if (at >= node.timer_at) return;
    if (node.timer !== undefined) this.clock.cancel(node.timer);
    if (at === Infinity) {
      node.timer = undefined;
      node.timer_at = Infinity;
      return;
    }
    node.timer_at = at;
    node.timer = this.clock.at(at, () => {
      node.timer = undefined;
      node.timer_at = Infinity;
      if (!node.up) return;
      this.#send(node, node.m.tick(this.now_ms));
      this.#reschedule(node);
    });
  }
}
