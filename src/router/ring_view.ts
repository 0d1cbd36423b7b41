/**
 * The ring the router routes with, as an immutable snapshot ({@link RingView}): a request plans
 * on the view current when it starts, and writes count themselves in flight on it, so that a
 * rebalance can wait until no write planned on an older ring is still running
 * ({@link WriteViews.drainOlder}).
 *
 * @module
 */
import { HashRing } from "../cluster/ring.ts";
import { ringShards } from "../cluster/ring_shards.ts";
import { Placement } from "../cluster/placement.ts";
import type { RouterClock } from "./node_port.ts";

/** The ring the router routes with; replaced as a whole, never mutated, one per request. */
export interface RingView {
  /** Ring members: storage node addresses, sorted. */
  readonly nodes: string[];
  readonly ring: HashRing;
  readonly shards: string[][];
  /** Shard placement over the same nodes (src/cluster/placement.ts). */
  readonly placement: Placement;
  /** Writes planned on this ring still in flight. */
  writes: number;
}

/** A view of `nodes` (addresses) with replication factor `rf`. */
export function makeView(nodes: string[], rf: number, vnodes_per_member?: number): RingView {
  const ring = new HashRing({ members: nodes, vnodes_per_member });
  return {
    nodes,
    ring,
    shards: ringShards(ring, rf),
    placement: new Placement(nodes),
    writes: 0,
  };
}

/** Poll period of {@link WriteViews.drainOlder}. */
const DRAIN_POLL_MS = 20;

/** Counts writes in flight per view. */
export class WriteViews {
  /** Views with writes in flight. */
  readonly #writing = new Set<RingView>();

  /** Runs a write planned on `view`, counting it in flight. */
  async counted<T>(view: RingView, fn: () => Promise<T>): Promise<T> {
    view.writes++;
    this.#writing.add(view);
    try {
      return await fn();
    } finally {
      if (--view.writes === 0) this.#writing.delete(view);
    }
  }

  /** Waits until no write planned on a view other than `view` is in flight; false on timeout. */
  async drainOlder(
    view: RingView,
    timeout_ms: number,
    clock: RouterClock,
    stopped: () => boolean,
  ): Promise<boolean> {
    const deadline = clock.now_ms() + timeout_ms;
    for (;;) {
      let busy = false;
      for (const v of this.#writing) if (v !== view && v.writes > 0) busy = true;
      if (!busy) return true;
      if (clock.now_ms() >= deadline || stopped()) return false;
      await clock.sleep(DRAIN_POLL_MS);
    }
  }
}
