/**
 * The storage nodes as the router core holds them: per node, its hint queue, its hint-delivery
 * state machine (hints/delivery.ts) and whether it is on the ring. A node off the ring keeps its
 * entry (and its pending hints) until it returns; an idle one is retired after
 * {@link LINK_RETIRE_MS}. A node that left on purpose stays reachable for its hand-off (the
 * rebalancer scans it as a source) for at most {@link LEAVER_TTL_MS}.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { describeGrpcError } from "../api/client.ts";
import { HintDelivery } from "./hints/delivery.ts";
import type { HintQueue } from "./hints/queue.ts";
import { type Background, isTransient, type RouterClock, RouterStatusError } from "./node_port.ts";

/**
 * A node off the ring with no pending hints keeps its hint queue open this long (a request
 * planned on an older ring may still queue a hint for it), then the queue is closed.
 */
export const LINK_RETIRE_MS = 30_000;
/** Longest a node that left is kept as a rebalancing source (its hand-off). */
export const LEAVER_TTL_MS = 5 * 60_000;

/** One storage node as the router holds it. */
export interface NodeState {
  readonly address: string;
  readonly hints: HintQueue;
  readonly delivery: HintDelivery;
  /** Whether the node is on the router's ring (and its channels open). */
  active: boolean;
  /** When it went off the ring. */
  inactive_since_ms: number;
  /**
   * When it left the cluster on purpose while its channels stayed open for the hand-off: it is
   * scanned as a source, never a target, until a run settles or {@link LEAVER_TTL_MS} passes;
   * 0 when not leaving.
   */
  leaving_since_ms: number;
  /** Writes refused because its hint queue was full. */
  refused: number;
  /** Hints discarded because the node rejected them for good. */
  discarded: number;
  last_full_log_ms: number;
  last_error: string;
}

/** What a {@link NodeTable} needs. */
export interface NodeTableDeps {
  openHints(address: string): Promise<HintQueue>;
  clock: RouterClock;
  log(message: string): void;
  background: Background;
  retry_interval_ms: number;
}

/** The router's storage nodes, by address. */
export class NodeTable {
  readonly #nodes = new Map<string, NodeState>();
  /** Hint queues of retired nodes still closing, by address. */
  readonly #retiring = new Map<string, Promise<void>>();

  constructor(readonly deps: NodeTableDeps) {}

  /** The node's state; UNAVAILABLE when the router no longer knows it. */
  get(address: string): NodeState {
    const s = this.#nodes.get(address);
    if (s === undefined) {
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `Node ${address} is no longer one of the router's nodes`,
      );
    }
    return s;
  }

  find(address: string): NodeState | undefined {
    return this.#nodes.get(address);
  }

  all(): IterableIterator<NodeState> {
    return this.#nodes.values();
  }

  /** Opens a node's hint queue and makes its (active) state; not yet added. */
  async open(address: string): Promise<NodeState> {
    await this.#retiring.get(address);
    const hints = await this.deps.openHints(address);
    return {
      address,
      hints,
      delivery: new HintDelivery(address, {
        retry_interval_ms: this.deps.retry_interval_ms,
        pending: hints.pending,
      }),
      active: true,
      inactive_since_ms: 0,
      leaving_since_ms: 0,
      refused: 0,
      discarded: 0,
      last_full_log_ms: 0,
      last_error: "",
    };
  }

  add(state: NodeState): void {
    this.#nodes.set(state.address, state);
  }

  /** Records the outcome of a direct call for the node's reachability. */
  observe(state: NodeState, error: unknown): void {
    const ok = error === null || !isTransient(error);
    const was = state.delivery.reachable;
    state.delivery.receive({ type: "direct_result", ok }, this.deps.clock.now_ms());
    if (was && !ok) {
      state.last_error = describeGrpcError(error);
      this.deps.log(`node ${state.address} is unreachable: ${state.last_error}`);
    } else if (!was && ok) {
      this.deps.log(`node ${state.address} is reachable again`);
    }
  }

  /** Closes the hint queue of each node off the ring with nothing pending, after a grace time. */
  retireIdle(): void {
    const now = this.deps.clock.now_ms();
    for (const [address, s] of this.#nodes) {
      if (
        s.active || s.leaving_since_ms > 0 || s.hints.pending > 0 || s.delivery.busy ||
        now - s.inactive_since_ms < LINK_RETIRE_MS
      ) continue;
      this.#nodes.delete(address);
      const closing = s.hints.close().finally(() => this.#retiring.delete(address));
      this.#retiring.set(address, closing);
      this.deps.background.track(`closing the hint queue of ${address}`, closing);
    }
  }

  /**
   * Nodes that left on purpose and still wait for their hand-off; those past
   * {@link LEAVER_TTL_MS} are handed to `expire` (which closes their channels).
   */
  leavers(expire: (s: NodeState) => void): string[] {
    const now = this.deps.clock.now_ms();
    const out: string[] = [];
    for (const [a, s] of this.#nodes) {
      if (s.active || s.leaving_since_ms === 0) continue;
      if (now - s.leaving_since_ms > LEAVER_TTL_MS) {
        this.deps.log(`node ${a} left ${LEAVER_TTL_MS} ms ago; no longer waiting for its hand-off`);
        expire(s);
        continue;
      }
      out.push(a);
    }
    return out.sort();
  }

  /** Pending hints per node, nodes off the ring included. */
  pendingHints(): Map<string, number> {
    return new Map([...this.#nodes].map(([a, s]) => [a, s.hints.pending]));
  }

  /** Closes every hint queue (after background work settled). */
  async closeAll(): Promise<void> {
    await Promise.allSettled([...this.#retiring.values()]);
    for (const s of this.#nodes.values()) await s.hints.close();
  }
}
