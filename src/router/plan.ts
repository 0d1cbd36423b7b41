/**
 * Routing decisions of the router, as pure functions: no IO, no clock, no randomness. The
 * router core (core.ts, replication.ts, scatter.ts) performs the calls these functions plan and
 * feeds the outcomes back in, so every decision can be unit-tested or driven by a simulation.
 *
 * Writes (Put, PutBatch, Delete, and the collection RPCs fanned out to every node):
 *
 * - the owners of a point are the replicas of its shard, `placement.owners(collection, layout,
 *   id)` (src/cluster/placement.ts; the layout is the collection's, from the catalog), primary
 *   first;
 * - a write is sent to every owner in parallel; the reply waits until EVERY owner has settled
 *   (acknowledged, failed, or its copy was durably queued as a hint), never just the first
 *   `required` ones: a client that waits for a write's reply before sending the next one thus
 *   knows the first is acknowledged or queued everywhere, which is what keeps per-owner order
 *   (see replication.ts and hints/);
 * - `consistency` decides how many acknowledgements are enough ({@link requiredAcks}):
 *   `one` 1, `quorum` ⌊n/2⌋+1, `all` n, where n is the number of owners;
 * - too few acknowledgements is UNAVAILABLE with "k of n owners acknowledged"
 *   ({@link decideWrite}); a batch must meet the level for every point's owner set
 *   ({@link decideBatch}).
 *
 * Search reads ONE replica of each shard of the collection (the placement's replica lists,
 * src/cluster/placement.ts): search_plan.ts ranks each shard's replicas (down last, then by
 * recent latency × calls in flight, equals taking turns) and groups the chosen shards into one
 * request per node (`SearchRequest.shards`); scatter.ts retries a failed shard on its next
 * replica, hedges a slow one, and asks the replicas believed down last, waiting for their
 * channels. Answers are merged by distance with duplicates removed ({@link mergeSearchResults}:
 * shards are disjoint by id, but during a move a point may come from two shards' replicas; the
 * nearer copy is kept); a shard counts as answered when one of its replicas answered.
 *
 * Scroll and Count (points_read.ts) still ask every node believed up, plus the owners of any
 * ring shard (a distinct replica set of ring ranges, see ring_shards.ts) with no owner believed
 * up ({@link searchTargets}), then unasked owners of shards still uncovered
 * ({@link searchRetryTargets}); coverage is {@link searchCoverage}.
 *
 * @module
 */

import { type Consistency, CONSISTENCY_LEVELS } from "../common/limits.ts";
import type { Point, SearchResult } from "../api/proto.ts";
import { ownersIn, type Placement, type ShardLayout } from "../cluster/placement.ts";
import { compareIds, formatId, idFromWire, type PointId } from "../common/point_id.ts";

/** Consistency when neither the request nor the router's flag names one. */
export const DEFAULT_CONSISTENCY: Consistency = "quorum";

/** Thrown for a planning argument that breaks a rule (bad level, bad k, unknown owner…). */
export class PlanError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "PlanError";
  }
}

/** A consistency level from a flag or request field; "" or undefined gives `fallback`. */
export function parseConsistency(
  value: string | undefined,
  fallback: Consistency = DEFAULT_CONSISTENCY,
): Consistency {
  if (value === undefined || value === "") return fallback;
  if (!(CONSISTENCY_LEVELS as readonly string[]).includes(value)) {
    throw new PlanError(
      `Consistency ${JSON.stringify(value)} must be one of ${
        CONSISTENCY_LEVELS.map((c) => `"${c}"`).join(", ")
      }`,
    );
  }
  return value as Consistency;
}

/** Acknowledgements a write to `owners` owners needs at `consistency` (0 owners needs 1). */
export function requiredAcks(consistency: Consistency, owners: number): number {
  if (!Number.isInteger(owners) || owners < 0) {
    throw new PlanError(`Owner count ${owners} must be a non-negative integer`);
  }
  // With no owners at all (empty ring) nothing can acknowledge: ask for 1 so the write fails.
  if (owners === 0) return 1;
  switch (consistency) {
    case "one":
      return 1;
    case "quorum":
      return Math.floor(owners / 2) + 1;
    case "all":
      return owners;
    default:
      throw new PlanError(`Consistency ${JSON.stringify(consistency)} is unknown`);
  }
}

/** The outcome of a write. */
export type WriteDecision =
  | { ok: true; acked: number; owners: number; required: number }
  | { ok: false; acked: number; owners: number; required: number; message: string };

/**
 * Whether a write to `owners` succeeded given the owners that acknowledged it. Duplicate
 * acknowledgements and acknowledgements from non-owners are ignored.
 */
export function decideWrite(
  owners: readonly string[],
  acked: ReadonlySet<string>,
  consistency: Consistency,
  what = "the write",
): WriteDecision {
  const required = requiredAcks(consistency, owners.length);
  let count = 0;
  const seen = new Set<string>();
  for (const o of owners) {
    if (seen.has(o)) continue;
    seen.add(o);
    if (acked.has(o)) count++;
  }
  const n = seen.size;
  if (count >= required) return { ok: true, acked: count, owners: n, required };
  return {
    ok: false,
    acked: count,
    owners: n,
    required,
    message: `Only ${count} of ${n} owners acknowledged ${what}; consistency "${consistency}" ` +
      `needs ${required}`,
  };
}

/**
 * Whether a batch succeeded: every distinct owner set of its points must meet `consistency`.
 * Returns the first failing set's decision (sets in the order given), or the success with the
 * smallest acknowledgement count.
 */
export function decideBatch(
  owner_sets: readonly (readonly string[])[],
  acked: ReadonlySet<string>,
  consistency: Consistency,
): WriteDecision {
  let worst: WriteDecision | null = null;
  for (const owners of owner_sets) {
    const d = decideWrite(owners, acked, consistency, `points owned by ${owners.join(", ")}`);
    if (!d.ok) return d;
    if (worst === null || d.acked < worst.acked) worst = d;
  }
  if (worst === null) {
    return decideWrite([], acked, consistency, "the batch");
  }
  return worst;
}

/** A PutBatch split by owner. */
export interface BatchSplit {
  /** Each owner's points, in request order (so "the later point wins" still holds). */
  per_owner: Map<string, Point[]>;
  /** The distinct owner lists of the batch's points, primary first, in first-seen order. */
  owner_sets: string[][];
}

/**
 * Splits a batch's points by owner (the replicas of each point's shard of `collection` under
 * `placement`): each owner gets every point it owns, in order.
 */
export function splitBatch(
  placement: Placement,
  collection: string,
  layout: ShardLayout,
  points: readonly Point[],
): BatchSplit {
  const per_owner = new Map<string, Point[]>();
  // Replica lists are shared per shard by the placement: the list itself is a cheap key.
  const sets = new Set<readonly string[]>();
  // Resolved once per batch, not per point (Placement.shards builds a cache key per call).
  const shards = placement.shards(collection, layout);
  for (const p of points) {
    const owners = ownersIn(shards, idFromWire(p.id, p.string_id));
    sets.add(owners);
    for (const o of owners) {
      let list = per_owner.get(o);
      if (list === undefined) per_owner.set(o, list = []);
      list.push(p);
    }
  }
  return { per_owner, owner_sets: distinctSets(sets) };
}

/**
 * The distinct owner lists among `lists` (two shards may share a replica set), copied, in
 * first-seen order.
 */
export function distinctSets(lists: Iterable<readonly string[]>): string[][] {
  const out = new Map<string, string[]>();
  for (const l of lists) {
    const key = l.join("\n");
    if (!out.has(key)) out.set(key, l.slice());
  }
  return [...out.values()];
}

/** The id of a search result (its wire pair `id`/`string_id`). */
export function resultId(r: SearchResult): PointId {
  return idFromWire(r.id, r.string_id);
}

/** Orders search results: distance ascending, then id ascending (`compareIds`). */
export function compareResults(a: SearchResult, b: SearchResult): number {
  return a.distance - b.distance || compareIds(resultId(a), resultId(b));
}

/**
 * Merges per-node answers into the global top `k`: replica duplicates (same id) keep the
 * smaller distance; ties in distance are ordered by id.
 */
export function mergeSearchResults(
  answers: readonly (readonly SearchResult[])[],
  k: number,
): SearchResult[] {
  if (!Number.isInteger(k) || k < 1) throw new PlanError(`k ${k} must be a positive integer`);
  // The result objects are kept as the nodes sent them, so a payload or vector asked for
  // (with_payload, with_vector) comes along with the copy that won.
  // Keyed by the canonical id, so the integer 5 sent as "5" or 5 is one point, the string "5"
  // another.
  const best = new Map<PointId, SearchResult>();
  for (const list of answers) {
    for (const r of list) {
      const id = resultId(r);
      if (Number.isNaN(r.distance)) {
        throw new PlanError(`Search result for id ${formatId(id)} has distance NaN`);
      }
      const d = best.get(id);
      if (d === undefined || r.distance < d.distance) best.set(id, r);
    }
  }
  const merged = [...best].map(([id, r]) => ({ id, r }));
  merged.sort((a, b) => a.r.distance - b.r.distance || compareIds(a.id, b.id));
  if (merged.length > k) merged.length = k;
  return merged.map((m) => m.r);
}

/**
 * Nodes a Search asks: every node believed up, plus, for each shard whose owners are all
 * believed down, all of its owners anyway (they may be back; asking costs one fast failure).
 * Returns node ids in `nodes` order.
 */
export function searchTargets(
  nodes: readonly string[],
  shards: readonly (readonly string[])[],
  down: ReadonlySet<string>,
): string[] {
  const ask = new Set<string>();
  for (const n of nodes) if (!down.has(n)) ask.add(n);
  for (const shard of shards) {
    if (!shard.some((o) => ask.has(o))) { for (const o of shard) ask.add(o); }
  }
  return nodes.filter((n) => ask.has(n));
}

/**
 * Second round of a Search: the owners, not asked yet, of shards no answer covered (a node
 * believed down may be back). Returns node ids in `nodes` order; empty when nothing helps.
 */
export function searchRetryTargets(
  nodes: readonly string[],
  shards: readonly (readonly string[])[],
  answered: ReadonlySet<string>,
  asked: ReadonlySet<string>,
): string[] {
  const ask = new Set<string>();
  for (const shard of shards) {
    if (shard.some((o) => answered.has(o))) continue;
    for (const o of shard) if (!asked.has(o)) ask.add(o);
  }
  return nodes.filter((n) => ask.has(n));
}

/** How much of the ring a Search covered. */
export interface SearchCoverage {
  shards_answered: number;
  shards_total: number;
  /** True when some shard had no owner answer: results may miss true neighbours. */
  partial: boolean;
}

/** Coverage of a Search: a shard is answered when at least one of its owners answered. */
export function searchCoverage(
  shards: readonly (readonly string[])[],
  answered: ReadonlySet<string>,
): SearchCoverage {
  let count = 0;
  for (const shard of shards) if (shard.some((o) => answered.has(o))) count++;
  return { shards_answered: count, shards_total: shards.length, partial: count < shards.length };
}

/** One node's answer to a Get: the version it holds (0: none) and whether the point is live. */
export interface ReadAnswer {
  node: string;
  version: number;
  found: boolean;
}

/**
 * The answer a Get returns among several nodes' answers, and the owners to repair: the highest
 * version wins (a delete's tombstone included); at equal versions a live point beats an absent
 * one (only for version 0, from before versions existed). `stale` lists the given `owners` that
 * answered with a lower version. Returns index -1 when there is no answer.
 */
export function newestRead(
  answers: readonly ReadAnswer[],
  owners: readonly string[],
): { index: number; version: number; stale: string[] } {
  let index = -1;
  for (let i = 0; i < answers.length; i++) {
    const a = answers[i];
    if (
      index < 0 || a.version > answers[index].version ||
      (a.version === answers[index].version && a.found && !answers[index].found)
    ) index = i;
  }
  if (index < 0) return { index, version: 0, stale: [] };
  const version = answers[index].version;
  const held = new Map(answers.map((a) => [a.node, a.version]));
  const stale = version > 0 ? owners.filter((o) => held.has(o) && held.get(o)! < version) : [];
  return { index, version, stale };
}

/**
 * The storage nodes the router's ring is made of: the addresses of the gossip ring members
 * (storage nodes alive or suspect; two members claiming one address are one endpoint), plus
 * each static `--nodes` address that gossip has never reported (`seen`: addresses gossip has
 * reported a storage node at, in any state). A static node is thus presumed on the ring until
 * gossip says something about it, so a partial gossip view while the router joins does not
 * shrink the ring, and gossip alone decides for a node once it knows it (dead or left: off).
 * Ring member ids are node ADDRESSES in both cases, so that static and gossip placement agree
 * and hint queues are found again. Sorted.
 */
export function ringNodes(
  static_nodes: readonly string[],
  gossip_nodes: readonly { id: string; address: string }[],
  seen: ReadonlySet<string>,
): string[] {
  const out = new Set(gossip_nodes.map((n) => n.address));
  for (const a of static_nodes) if (!seen.has(a)) out.add(a);
  return [...out].sort();
}
