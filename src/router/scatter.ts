/**
 * The router's fan-out reads over a {@link NodePort}: Search (scatter to the nodes that cover
 * the ring, gather, merge, report coverage), ListCollections (union) and the per-node part of
 * Stats. Decisions are the pure functions of plan.ts.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { describeGrpcError, type ResponseOf } from "../api/client.ts";
import {
  type CollectionInfo,
  type CollectionStats,
  type FieldIndex,
  type NodeStats,
  type SearchResult,
  vectorToWire,
} from "../api/proto.ts";
import type { ValidSearch } from "../api/validate.ts";
import { isNotFound, isTransient, type NodePort, RouterStatusError } from "./node_port.ts";
import type { NodeTable } from "./node_table.ts";
import { mergeSearchResults, searchCoverage, searchRetryTargets, searchTargets } from "./plan.ts";
import type { Placement, ShardLayout } from "../cluster/placement.ts";
import type { RingView } from "./ring_view.ts";

/** Deadline of a call that waits for a reconnecting channel: the reconnect backoff cap + 200. */
export function retryTimeoutMs(node_timeout_ms: number, reconnect_backoff_max_ms: number): number {
  return Math.min(node_timeout_ms, reconnect_backoff_max_ms + 200);
}

/** Per-node Stats as the router reports them. */
export type RouterNodeStats = NodeStats & { hints_pending: string; hints_refused: string };

/** What {@link Scatter} needs. */
export interface ScatterDeps {
  nodes: NodePort;
  table: NodeTable;
  /** Deadline of the second Search round, which waits for reconnecting channels. */
  retry_timeout_ms: number;
  /** A collection's shard layout (RouterCore.layout: the catalog, legacy when unknown). */
  layout?: (collection: string) => Promise<ShardLayout>;
  /** The placement a search reads from (RouterCore.searchPlacement). */
  search_placement?: () => Placement;
}

/** Fan-out reads. */
export class Scatter {
  /** Counters for metrics (read at scrape time). */
  readonly counts = {
    /** Searches fanned out. */
    searches: 0,
    /** Search answers that missed shards (`partial`). */
    partial: 0,
    /** Searches no storage node answered (UNAVAILABLE). */
    unanswered: 0,
    /** Node Search calls made (both rounds). */
    node_calls: 0,
    /** Node Search calls that failed transiently (unreachable, deadline). */
    node_failures: 0,
  };

  constructor(readonly deps: ScatterDeps) {}

  /**
   * `v.filter_json`: a filter's JSON text for the nodes (checked by the router); "" none.
   * `counted` false: the router's own search (the recall monitor's exact one), left out of the
   * `searches` counter so the client search rate stays the clients'.
   */
  async search(
    view: RingView,
    v: ValidSearch & { filter_json?: string },
    counted = true,
  ): Promise<ResponseOf<"Search">> {
    const { nodes, table } = this.deps;
    const down = new Set<string>();
    for (const s of table.all()) if (!s.delivery.reachable) down.add(s.address);
    const request = {
      // Packed when the client sent it packed: forwarded without per-value work.
      ...vectorToWire(v.vector),
      k: v.k,
      ef: v.ef,
      collection: v.collection,
      with_payload: v.with_payload,
      with_vector: v.with_vector,
      filter: v.filter_json ?? "",
      exact: v.exact === true,
    };
    const answered = new Set<string>();
    const asked = new Set<string>();
    const lists: SearchResult[][] = [];
    let verdict: unknown = null;
    let notFound: unknown = null;
    const errors: string[] = [];
    const counts = this.counts;
    if (counted) counts.searches++;
    const round = async (targets: string[], wait_for_ready: boolean) => {
      for (const t of targets) asked.add(t);
      counts.node_calls += targets.length;
      const settled = await Promise.allSettled(
        targets.map((t) =>
          nodes.call(
            t,
            "Search",
            request,
            wait_for_ready ? { wait_for_ready, timeout_ms: this.deps.retry_timeout_ms } : {},
          )
        ),
      );
      settled.forEach((s, i) => {
        const state = table.find(targets[i]);
        if (s.status === "fulfilled") {
          if (state !== undefined) table.observe(state, null);
          answered.add(targets[i]);
          lists.push(s.value.results);
          return;
        }
        if (state !== undefined) table.observe(state, s.reason);
        if (isTransient(s.reason)) {
          counts.node_failures++;
          errors.push(`${targets[i]}: ${describeGrpcError(s.reason)}`);
        } else if (isNotFound(s.reason)) {
          // The node has no such collection: it answered, with nothing.
          answered.add(targets[i]);
          notFound ??= s.reason;
        } else {
          verdict ??= s.reason;
        }
      });
    };
    await round(searchTargets(view.nodes, view.shards, down), false);
    // A node believed down may be back while its channel still waits out its reconnect
    // backoff (up to 1 s); the second round waits for the channel, for a bounded time.
    const retry = searchRetryTargets(view.nodes, view.shards, answered, asked);
    if (retry.length > 0 && verdict === null) await round(retry, true);
    if (verdict !== null) throw verdict;
    if (lists.length === 0) {
      if (notFound !== null) throw notFound;
      counts.unanswered++;
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `No storage node answered the search (${asked.size} asked): ${errors.join("; ")}`,
      );
    }
    const results = mergeSearchResults(lists, v.k);
    const coverage = searchCoverage(view.shards, answered);
    if (coverage.partial) counts.partial++;
    return { results, ...coverage, nodes_answered: [...answered].sort() };
  }

  /** The union of the collections `nodes` report; UNAVAILABLE when none answered. */
  async listCollections(nodes: readonly string[]): Promise<ResponseOf<"ListCollections">> {
    const settled = await Promise.allSettled(
      nodes.map((n) => this.deps.nodes.call(n, "ListCollections", {})),
    );
    const byName = new Map<string, CollectionInfo>();
    const errors: string[] = [];
    settled.forEach((s, i) => {
      const state = this.deps.table.find(nodes[i]);
      if (s.status === "rejected") {
        if (state !== undefined) this.deps.table.observe(state, s.reason);
        errors.push(`${nodes[i]}: ${describeGrpcError(s.reason)}`);
        return;
      }
      if (state !== undefined) this.deps.table.observe(state, null);
      for (const c of s.value.collections) {
        const seen = byName.get(c.name);
        if (seen === undefined) byName.set(c.name, { ...c, field_indexes: c.field_indexes ?? [] });
        else seen.field_indexes = mergeFieldIndexes(seen.field_indexes ?? [], c.field_indexes);
      }
    });
    if (nodes.length > 0 && errors.length === nodes.length) {
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `No storage node answered ListCollections: ${errors.join("; ")}`,
      );
    }
    const collections = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { collections };
  }

  /** Names of the collections `nodes` report (union; nodes that fail are skipped). */
  async collectionNames(nodes: readonly string[]): Promise<string[]> {
    const settled = await Promise.allSettled(
      nodes.map((n) => this.deps.nodes.call(n, "ListCollections", {})),
    );
    const names = new Set<string>();
    for (const s of settled) {
      if (s.status === "fulfilled") { for (const c of s.value.collections) names.add(c.name); }
    }
    return [...names].sort();
  }

  /**
   * Stats of each node on the ring (with its hint counts; an error line for one that failed),
   * then of each node off the ring whose hints wait for it; and the collections summed.
   */
  async nodeStats(
    nodes: readonly string[],
  ): Promise<{ per: RouterNodeStats[]; collections: CollectionStats[] }> {
    const { table } = this.deps;
    const settled = await Promise.allSettled(
      nodes.map((n) => this.deps.nodes.call(n, "Stats", {})),
    );
    const sums = new Map<string, CollectionStats>();
    const per: RouterNodeStats[] = [];
    const empty = { node_id: "", collections: [], uptime_ms: 0, rss_bytes: 0, heap_used_bytes: 0 };
    settled.forEach((s, i) => {
      const state = table.find(nodes[i]);
      const hints = {
        hints_pending: String(state?.hints.pending ?? 0),
        hints_refused: String(state?.refused ?? 0),
      };
      if (s.status === "rejected") {
        if (state !== undefined) table.observe(state, s.reason);
        per.push({ ...empty, address: nodes[i], error: describeGrpcError(s.reason), ...hints });
        return;
      }
      if (state !== undefined) table.observe(state, null);
      const r = s.value;
      per.push({
        node_id: r.node_id,
        address: nodes[i],
        collections: r.collections,
        uptime_ms: r.uptime_ms,
        rss_bytes: r.rss_bytes,
        heap_used_bytes: r.heap_used_bytes,
        error: "",
        ...hints,
      });
      for (const c of r.collections) {
        const sum = sums.get(c.name);
        if (sum === undefined) {
          sums.set(c.name, { ...c });
          continue;
        }
        sum.count = (BigInt(sum.count) + BigInt(c.count)).toString();
        sum.memory_bytes = (BigInt(sum.memory_bytes) + BigInt(c.memory_bytes)).toString();
        sum.wal_bytes = (BigInt(sum.wal_bytes) + BigInt(c.wal_bytes)).toString();
        sum.tombstones = (BigInt(sum.tombstones ?? 0) + BigInt(c.tombstones ?? 0)).toString();
        sum.last_snapshot_seq = maxOf(sum.last_snapshot_seq, c.last_snapshot_seq);
        sum.last_snapshot_time_ms = maxOf(sum.last_snapshot_time_ms, c.last_snapshot_time_ms);
      }
    });
    for (const s of table.all()) {
      if (s.active || s.hints.pending === 0) continue;
      per.push({
        ...empty,
        address: s.address,
        error: "not on the ring (dead or left); its hints wait for it to come back",
        hints_pending: String(s.hints.pending),
        hints_refused: String(s.refused),
      });
    }
    const collections = [...sums.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { per, collections };
  }
}

function maxOf(a: string | number | undefined, b: string | number | undefined): string {
  const x = BigInt(a === undefined || a === "" ? 0 : a);
  const y = BigInt(b === undefined || b === "" ? 0 : b);
  return (x > y ? x : y).toString();
}

/**
 * The union of two nodes' payload indexes of a collection, sorted by field: an index a node
 * lacks (it was down for the creation, or a drop reached only some) still shows, so the
 * operator sees it and can retry; at one field with two types, the first one seen is kept.
 */
export function mergeFieldIndexes(
  a: readonly FieldIndex[],
  b: readonly FieldIndex[] | undefined,
): FieldIndex[] {
  const byField = new Map<string, FieldIndex>();
  for (const f of a) byField.set(f.field, f);
  for (const f of b ?? []) if (!byField.has(f.field)) byField.set(f.field, f);
  return [...byField.values()].sort((x, y) => (x.field < y.field ? -1 : x.field > y.field ? 1 : 0));
}
