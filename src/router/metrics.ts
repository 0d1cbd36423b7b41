/**
 * The router's Prometheus metrics (`GET /metrics` on its HTTP port; `--metrics false` turns
 * them off). Besides those of every server (api/server_metrics.ts) and gossip
 * (cluster/gossip_metrics.ts, with `--join`), read at scrape time from counters the router
 * keeps anyway:
 *
 * | family                                         | type    | labels   | meaning                       |
 * |------------------------------------------------|---------|----------|-------------------------------|
 * | `vectordb_router_searches_total`               | counter |          | searches fanned out           |
 * | `vectordb_router_search_partial_total`         | counter |          | answers that missed shards (`partial`) |
 * | `vectordb_router_search_unanswered_total`      | counter |          | searches no node answered (UNAVAILABLE) |
 * | `vectordb_router_node_searches_total`          | counter |          | per-node Search calls (all rounds, hedges and retries) |
 * | `vectordb_router_node_search_failures_total`   | counter |          | those that failed transiently |
 * | `vectordb_router_search_shard_searches_total`  | counter |          | shard (graph or exact) searches the nodes ran for client searches; ÷ searches = graph searches per query |
 * | `vectordb_router_search_hedges_total`          | counter | outcome  | hedged calls: sent / won (first answer for a shard) / skipped (no replica less busy) |
 * | `vectordb_router_search_retries_total`         | counter |          | calls sent to the next replica after a failure |
 * | `vectordb_router_search_batches_total`         | counter |          | SearchBatch calls that carried concurrent node searches (search_coalescer.ts) |
 * | `vectordb_router_search_batched_total`         | counter | outcome  | node searches sent in them / sent alone again after their batch failed on the node |
 * | `vectordb_router_node_search_latency_seconds`  | gauge   | node     | EWMA of the node's Search latency (replica selection) |
 * | `vectordb_router_node_searches_in_flight`      | gauge   | node     | Search calls to the node not settled |
 * | `vectordb_router_nodes`                        | gauge   | state    | nodes reachable / unreachable |
 * | `vectordb_hints_queued_total`                  | counter |          | hints accepted into a queue   |
 * | `vectordb_hints_delivered_total`               | counter |          | hints the node applied        |
 * | `vectordb_hints_discarded_total`               | counter |          | hints the node rejected for good |
 * | `vectordb_hints_refused_total`                 | counter |          | writes refused: queue full    |
 * | `vectordb_hints_pending`                       | gauge   | node     | hints waiting per node        |
 * | `vectordb_rebalance_active`                    | gauge   |          | 1 while rebalancing           |
 * | `vectordb_rebalance_transfers_active`          | gauge   |          | transfers running             |
 * | `vectordb_rebalance_transfers_pending`         | gauge   |          | transfers in the current plan |
 * | `vectordb_rebalance_transfers_total`           | counter | outcome  | done / failed                 |
 * | `vectordb_rebalance_points_total`              | counter | action   | scanned / copied / pruned     |
 * | `vectordb_rebalances_total`                    | counter |          | rebalances completed          |
 * | `vectordb_rebalance_shard_moves_active`        | gauge   |          | shard files streaming now     |
 * | `vectordb_rebalance_shard_moves_total`         | counter | outcome  | shard file moves: done / failed |
 * | `vectordb_rebalance_shard_bytes_total`         | counter |          | bytes of shard files moved    |
 * | `vectordb_recall`                              | gauge   | collection | rolling recall@k of sampled searches (recall_monitor.ts) |
 * | `vectordb_recall_samples`                      | gauge   | collection | samples in that rolling window |
 * | `vectordb_recall_searches_total`               | counter | outcome  | sampled searches: measured / dropped (queue full) / failed |
 *
 * The rebalance families are present (at 0) in static mode too, so dashboards need no cases.
 *
 * @module
 */
import type { Metrics } from "../common/metrics.ts";
import type { RebalanceStats } from "./rebalance/rebalancer.ts";
import type { RouterCore } from "./core.ts";

/** Adds the router's families, reading `core` and `rebalance()` at scrape time. */
export function addRouterMetrics(
  metrics: Metrics,
  core: RouterCore,
  rebalance: () => RebalanceStats | null,
): void {
  const one = (name: string, help: string, read: () => number) =>
    metrics.counterFrom(name, help, () => [{ value: read() }]);
  const sc = core.scatter.counts;
  one("vectordb_router_searches_total", "Searches fanned out to the nodes", () => sc.searches);
  one(
    "vectordb_router_search_partial_total",
    "Search answers that missed shards (partial: true)",
    () => sc.partial,
  );
  one(
    "vectordb_router_search_unanswered_total",
    "Searches no storage node answered (UNAVAILABLE)",
    () => sc.unanswered,
  );
  one(
    "vectordb_router_node_searches_total",
    "Search calls made to storage nodes (all rounds, hedges and retries included)",
    () => sc.node_calls,
  );
  one(
    "vectordb_router_node_search_failures_total",
    "Search calls to storage nodes that failed transiently (unreachable, deadline)",
    () => sc.node_failures,
  );
  one(
    "vectordb_router_search_shard_searches_total",
    "Shard searches (graph or exact) the storage nodes ran for client searches; " +
      "divided by vectordb_router_searches_total: graph searches per query",
    () => sc.shard_searches,
  );
  metrics.counterFrom(
    "vectordb_router_search_hedges_total",
    "Hedged Search calls (a slow node's shards asked of other replicas), by outcome",
    () => [
      { labels: { outcome: "sent" }, value: sc.hedges },
      { labels: { outcome: "won" }, value: sc.hedges_won },
      { labels: { outcome: "skipped" }, value: sc.hedges_skipped },
    ],
  );
  one(
    "vectordb_router_search_retries_total",
    "Search calls sent to a shard's next replica after a call failed",
    () => sc.retries,
  );
  const co = core.scatter.coalescer?.counts ?? { batches: 0, batched: 0, resent: 0 };
  one(
    "vectordb_router_search_batches_total",
    "SearchBatch calls that carried concurrent node searches bound for one node",
    () => co.batches,
  );
  metrics.counterFrom(
    "vectordb_router_search_batched_total",
    "Node searches sent in SearchBatch calls (batched), and those sent alone again after " +
      "their batch failed on the node (resent)",
    () => [
      { labels: { outcome: "batched" }, value: co.batched },
      { labels: { outcome: "resent" }, value: co.resent },
    ],
  );
  metrics.gauge(
    "vectordb_router_node_search_latency_seconds",
    "Moving average of each storage node's Search latency (adaptive replica selection)",
    () =>
      [...core.scatter.stats.entries()].map(([node, s]) => ({
        labels: { node },
        value: s.ewma_ms / 1000,
      })),
  );
  metrics.gauge(
    "vectordb_router_node_searches_in_flight",
    "Search calls to each storage node not settled yet",
    () =>
      [...core.scatter.stats.entries()].map(([node, s]) => ({
        labels: { node },
        value: s.in_flight,
      })),
  );
  metrics.gauge("vectordb_router_nodes", "Storage nodes the router tracks, by state", () => {
    let up = 0;
    let down = 0;
    for (const s of core.table.all()) {
      if (s.delivery.reachable) up++;
      else down++;
    }
    return [
      { labels: { state: "reachable" }, value: up },
      { labels: { state: "unreachable" }, value: down },
    ];
  });
  const rc = core.replication.counts;
  const hc = core.replay.counts;
  one(
    "vectordb_hints_queued_total",
    "Hints accepted into a node's hint queue",
    () => rc.hints_queued,
  );
  one(
    "vectordb_hints_delivered_total",
    "Hints replayed to and applied by their node",
    () => hc.delivered,
  );
  one(
    "vectordb_hints_discarded_total",
    "Hints their node rejected for good (dropped)",
    () => hc.discarded,
  );
  one(
    "vectordb_hints_refused_total",
    "Writes whose hint was refused because the node's hint queue was full",
    () => rc.hints_refused,
  );
  metrics.gauge(
    "vectordb_hints_pending",
    "Hints waiting for delivery, per node",
    () => [...core.pendingHints()].map(([node, value]) => ({ labels: { node }, value })),
  );
  const r = (read: (s: RebalanceStats) => number) => () => {
    const s = rebalance();
    return [{ value: s === null ? 0 : read(s) }];
  };
  metrics.gauge(
    "vectordb_rebalance_active",
    "1 while points are being moved after a ring change",
    r((s) => (s.rebalancing ? 1 : 0)),
  );
  metrics.gauge(
    "vectordb_rebalance_transfers_active",
    "Rebalance transfers running",
    r((s) => s.transfers_active),
  );
  metrics.gauge(
    "vectordb_rebalance_transfers_pending",
    "Rebalance transfers in the current plan",
    r((s) => s.transfers_pending),
  );
  metrics.counterFrom(
    "vectordb_rebalance_transfers_total",
    "Rebalance transfers, by outcome",
    () => {
      const s = rebalance();
      return [
        { labels: { outcome: "done" }, value: s?.transfers_done ?? 0 },
        { labels: { outcome: "failed" }, value: s?.transfers_failed ?? 0 },
      ];
    },
  );
  metrics.counterFrom(
    "vectordb_rebalance_points_total",
    "Entries handled by rebalancing, by action (scanned, copied to a new owner, pruned, " +
      "dropped with a lost shard's unit)",
    () => {
      const s = rebalance();
      return [
        { labels: { action: "scanned" }, value: s?.points_scanned ?? 0 },
        { labels: { action: "copied" }, value: s?.points_copied ?? 0 },
        { labels: { action: "pruned" }, value: s?.points_pruned ?? 0 },
        { labels: { action: "dropped" }, value: s?.points_dropped ?? 0 },
      ];
    },
  );
  metrics.counterFrom(
    "vectordb_rebalances_total",
    "Rebalances completed",
    r((s) => s.rebalances_done),
  );
  metrics.gauge(
    "vectordb_rebalance_shard_moves_active",
    "Shard files streaming to nodes that gained the shard",
    r((s) => s.shard_moves_active),
  );
  metrics.counterFrom(
    "vectordb_rebalance_shard_moves_total",
    "Shard file moves, by outcome",
    () => {
      const s = rebalance();
      return [
        { labels: { outcome: "done" }, value: s?.shard_moves_done ?? 0 },
        { labels: { outcome: "failed" }, value: s?.shard_moves_failed ?? 0 },
      ];
    },
  );
  metrics.counterFrom(
    "vectordb_rebalance_shard_drops_total",
    "Shard units of nodes that lost the shard emptied wholesale (ShardDrop), by outcome " +
      "(refused: written since its digest was read)",
    () => {
      const s = rebalance();
      return [
        { labels: { outcome: "done" }, value: s?.shard_drops_done ?? 0 },
        { labels: { outcome: "refused" }, value: s?.shard_drops_refused ?? 0 },
      ];
    },
  );
  metrics.counterFrom(
    "vectordb_rebalance_shard_bytes_total",
    "Bytes of shard files moved",
    r((s) => s.shard_bytes_moved),
  );
  const figures = () => (core.recall?.figures() ?? []).filter((f) => f.samples > 0);
  metrics.gauge(
    "vectordb_recall",
    "Rolling recall@k per collection: sampled searches against their exact top-k",
    () => figures().map((f) => ({ labels: { collection: f.collection }, value: f.recall })),
  );
  metrics.gauge(
    "vectordb_recall_samples",
    "Sampled searches in the rolling recall window, per collection",
    () => figures().map((f) => ({ labels: { collection: f.collection }, value: f.samples })),
  );
  metrics.counterFrom(
    "vectordb_recall_searches_total",
    "Searches sampled by the recall monitor, by outcome",
    () => {
      const c = core.recall?.counts;
      return [
        { labels: { outcome: "measured" }, value: c?.measured ?? 0 },
        { labels: { outcome: "dropped" }, value: c?.dropped ?? 0 },
        { labels: { outcome: "failed" }, value: c?.failed ?? 0 },
      ];
    },
  );
}
