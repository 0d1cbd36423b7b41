/**
 * Rebalancing decisions, as pure functions of two rings: which node must copy a point to which
 * new owners, and which nodes may drop it afterwards. No IO, no clock; the router's driver
 * (src/router/rebalance.ts) scans the nodes and performs what this plans, and
 * tests/sim/rebalance_sim_test.ts drives it with the nodes' copy-token rules
 * (src/server/transfer_service.ts) through seeded interleavings of copies and client writes.
 *
 * Terms. `from` is the last ring whose placement is known to be complete (the "settled" ring:
 * every point was on all its owners under it, up to hinted handoff), followed by every ring
 * published since, before `to`, the ring now in use (a rebalance interrupted by another ring
 * change leaves such intermediate rings). A point's *old owners* are the nodes that owned it
 * under EVERY ring of `from`: only they are sure to have received every write to it since the
 * settled ring. Its *new owners* are `to.owners(id, rf)`. Members of `to` are the nodes
 * believed up; the others are dead or left, and hold nothing we can read.
 *
 * For a point found on node `holder` while scanning it ({@link RebalancePlan.route}):
 *
 * - **targets**: new owners that are not old owners (they may lack the point, or hold a value older
 *   than a write they missed), except the holder itself. Only the point's *designated source*
 *   copies, so each target gets each point once: the first old owner that is still on the ring, in
 *   the order given by `source_rank` (lower first; the router ranks nodes with pending hints last,
 *   since they may lack recent writes), ties in ring order. When no old owner is on the ring (every
 *   one of them died, e.g. RF 1), every node that holds the point is a source, and copies fill
 *   only absent ids. That fallback cannot tell a stale holder from a current one (no per-write
 *   versions), so the router's driver does not use it: it leaves such points where they are.
 * - **replace**: true when the holder is an old owner (it has every write since the settled
 *   ring), so its copy may replace a value the target already holds (still never one written
 *   since the target's copy token); false in the every-holder fallback, where holders may
 *   disagree and only absent ids are filled.
 * - **prune**: true when the holder is not a new owner: once every copy of the rebalance has
 *   succeeded, the holder may delete it (its new owners have it).
 *
 * Properties (rebalance_plan_test.ts and the simulation check them): after every designated
 * source copied its points, every point held by some node on `to` is on all its new owners;
 * adding one node to a ring moves only the points it now owns (about RF/N of them) and only to
 * it; removing one copies each of its points to exactly one replacement owner.
 *
 * @module
 */

import type { HashRing } from "./ring.ts";

/** What to do with one point found on one node. */
export interface PointRoute {
  /** Nodes to copy the point to (empty unless the holder is its designated source). */
  targets: string[];
  /** Whether the copy may replace a value the target holds (see the module comment). */
  replace: boolean;
  /** Whether the holder no longer owns the point (it may delete it once the move is done). */
  prune: boolean;
}

/** Options of {@link RebalancePlan}. */
export interface RebalancePlanOptions {
  /** The settled ring, then the rings published since, oldest first (see the module comment). */
  from: HashRing | readonly HashRing[];
  /** The ring now in use. */
  to: HashRing;
  replication_factor: number;
  /** Preference among possible sources, lower first (default: all equal). */
  source_rank?: (node: string) => number;
}

/** The plan of one rebalance from `from` to `to`. */
export class RebalancePlan {
  readonly from: readonly HashRing[];
  readonly to: HashRing;
  readonly replication_factor: number;
  readonly #rank: (node: string) => number;
  readonly #old: string[] = [];
  readonly #new: string[] = [];
  readonly #tmp: string[] = [];

  constructor(options: RebalancePlanOptions) {
    const rf = options.replication_factor;
    if (!Number.isInteger(rf) || rf < 1) {
      throw new RangeError(`Replication factor ${rf} must be a positive integer`);
    }
    this.from = Array.isArray(options.from) ? options.from : [options.from as HashRing];
    if (this.from.length === 0) throw new RangeError("A rebalance plan needs a settled ring");
    this.to = options.to;
    this.replication_factor = rf;
    this.#rank = options.source_rank ?? (() => 0);
  }

  /** The nodes to scan: every node of `to` (nodes off it cannot be read). */
  sources(): string[] {
    return this.to.members();
  }

  /** Whether the two rings place every point identically (nothing to move). */
  get identical(): boolean {
    if (this.from.length !== 1) return false;
    const a = this.from[0].members();
    const b = this.to.members();
    return a.length === b.length && a.every((m, i) => m === b[i]) &&
      this.from[0].vnodes_per_member === this.to.vnodes_per_member;
  }

  /** The old owners of point `id` (owners under every ring of `from`), into `#old`. */
  #oldOwners(id: number): string[] {
    const old = this.#old;
    this.from[0].ownersInto(id, this.replication_factor, old);
    for (let r = 1; r < this.from.length && old.length > 0; r++) {
      this.from[r].ownersInto(id, this.replication_factor, this.#tmp);
      let k = 0;
      for (const o of old) if (this.#tmp.includes(o)) old[k++] = o;
      old.length = k;
    }
    return old;
  }

  /** The old owners of point `id` (see the module comment). */
  oldOwners(id: number): string[] {
    return this.#oldOwners(id).slice();
  }

  /** The designated source of point `id`, or null when no old owner is on `to`. */
  source(id: number): string | null {
    this.#oldOwners(id);
    let best: string | null = null;
    let bestRank = Infinity;
    for (const o of this.#old) {
      if (!this.to.has(o)) continue;
      const r = this.#rank(o);
      if (r < bestRank) {
        best = o;
        bestRank = r;
      }
    }
    return best;
  }

  /** The new owners of point `id` that were not old owners. */
  gained(id: number): string[] {
    this.#oldOwners(id);
    this.to.ownersInto(id, this.replication_factor, this.#new);
    return this.#new.filter((n) => !this.#old.includes(n));
  }

  /** What `holder` does with point `id` (see the module comment). */
  route(id: number, holder: string): PointRoute {
    const source = this.source(id);
    this.to.ownersInto(id, this.replication_factor, this.#new);
    const prune = !this.#new.includes(holder);
    if (source !== null && source !== holder) return { targets: [], replace: false, prune };
    const targets = this.gained(id).filter((t) => t !== holder);
    return { targets, replace: source !== null, prune };
  }
}
