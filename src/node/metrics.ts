/**
 * The storage node's Prometheus metrics (`GET /metrics` on its HTTP port; `--metrics false`
 * turns them off). Besides those of every server (api/server_metrics.ts: gRPC requests, auth
 * refusals, process) and gossip (cluster/gossip_metrics.ts):
 *
 * | family                                       | type      | labels     | source (cost)   |
 * |----------------------------------------------|-----------|------------|-----------------|
 * | `vectordb_wal_appends_total`                 | counter   | collection | WAL stats, at scrape |
 * | `vectordb_wal_bytes_total`                   | counter   | collection | WAL stats, at scrape |
 * | `vectordb_wal_syncs_total`                   | counter   | collection | WAL stats, at scrape |
 * | `vectordb_wal_size_bytes`                    | gauge     | collection | segment sizes, at scrape |
 * | `vectordb_wal_queued_bytes`                  | gauge     | collection | appended, not yet durable |
 * | `vectordb_wal_sync_duration_seconds`         | histogram |            | one per group commit (write + fdatasync) |
 * | `vectordb_snapshot_duration_seconds`         | histogram |            | one per snapshot written |
 * | `vectordb_snapshot_size_bytes`               | histogram |            | payload bytes per snapshot |
 * | `vectordb_snapshot_last_timestamp_seconds`   | gauge     | collection | at scrape       |
 * | `vectordb_snapshot_last_size_bytes`          | gauge     | collection | at scrape       |
 * | `vectordb_index_points`                      | gauge     | collection | live points, at scrape |
 * | `vectordb_index_tombstones`                  | gauge     | collection | at scrape       |
 * | `vectordb_index_memory_bytes`                | gauge     | collection | index arrays + WASM memory, at scrape |
 * | `vectordb_collections`                       | gauge     |            | at scrape       |
 * | `vectordb_search_ef`                         | histogram |            | the ef each search used |
 * | `vectordb_search_candidates_visited`         | histogram |            | distances computed at layer 0 per search (the index counts them per expanded candidate) |
 *
 * WAL counters count since the collection was opened (a restart starts them again, as every
 * counter does; Prometheus's `rate()` handles resets).
 *
 * @module
 */
import { serverMetrics } from "../api/server_metrics.ts";
import type { RequestMetrics } from "../common/metrics.ts";
import {
  DISK_BUCKETS,
  type HistogramCell,
  type Metrics,
  powersOfTwo,
  type Sample,
} from "../common/metrics.ts";
import type { SecurityConfig } from "../api/security.ts";
import type { GossipAgent } from "../cluster/gossip_agent.ts";
import { addGossipMetrics } from "../cluster/gossip_metrics.ts";
import type { CollectionObservers } from "../storage/collection.ts";
import type { NodeStore } from "../storage/node_store.ts";
import { SOFTWARE_VERSION } from "../common/software_version.ts";

/** What the node's handlers record per search (two histogram cells). */
export interface SearchMetrics {
  ef: HistogramCell;
  visited: HistogramCell;
}

/** A storage node's metrics: made before the store opens (its observers), then watching it. */
export class NodeMetrics {
  readonly metrics: Metrics;
  readonly grpc: RequestMetrics;
  readonly observers: CollectionObservers;
  readonly search: SearchMetrics;

  constructor(security: SecurityConfig | null, options: { process?: boolean } = {}) {
    const s = serverMetrics("node", SOFTWARE_VERSION, security, options);
    this.metrics = s.metrics;
    this.grpc = s.grpc;
    const m = this.metrics;
    this.observers = {
      wal_sync_seconds: m.histogram(
        "vectordb_wal_sync_duration_seconds",
        "Seconds of each WAL group commit (write + fdatasync; one per batch of appends)",
        [],
        DISK_BUCKETS,
      ).labels(),
      snapshot_seconds: m.histogram(
        "vectordb_snapshot_duration_seconds",
        "Seconds to write each snapshot (image, write, fsync, rename)",
        [],
        DISK_BUCKETS,
      ).labels(),
      snapshot_bytes: m.histogram(
        "vectordb_snapshot_size_bytes",
        "Payload bytes of each snapshot written",
        [],
        powersOfTwo(1024, 2 ** 34),
      ).labels(),
    };
    this.search = {
      ef: m.histogram(
        "vectordb_search_ef",
        "The ef (candidate list size) each search used",
        [],
        [10, 16, 32, 50, 64, 100, 128, 200, 256, 500, 1000, 2000, 5000, 10000],
      ).labels(),
      visited: m.histogram(
        "vectordb_search_candidates_visited",
        "Candidates whose distance each search computed on the HNSW base layer",
        [],
        powersOfTwo(16, 2 ** 20),
      ).labels(),
    };
  }

  /** Adds the families read from the store's collections at scrape time. */
  watchStore(store: NodeStore): void {
    const m = this.metrics;
    // One pass over the collections per scrape, shared by the families below.
    let cache: { at: number; rows: Row[] } = { at: -Infinity, rows: [] };
    const rows = (): Row[] => {
      const now = performance.now();
      if (now - cache.at > 250) {
        const out: Row[] = [];
        for (const c of store.list()) {
          try {
            out.push({
              collection: c.name,
              s: c.stats(),
              last_snapshot_bytes: c.lastSnapshotBytes,
            });
          } catch {
            // Closed or dropped meanwhile: left out of this scrape.
          }
        }
        cache = { at: now, rows: out };
      }
      return cache.rows;
    };
    const per = (read: (r: Row) => number) => (): Sample[] =>
      rows().map((r) => ({ labels: { collection: r.collection }, value: read(r) }));
    m.counterFrom(
      "vectordb_wal_appends_total",
      "WAL records made durable since the collection was opened",
      per((r) => r.s.wal.records),
    );
    m.counterFrom(
      "vectordb_wal_bytes_total",
      "Bytes written to WAL segments since open (record framing included)",
      per((r) => r.s.wal.bytes),
    );
    m.counterFrom(
      "vectordb_wal_syncs_total",
      "WAL fdatasync calls for appends (one per group commit)",
      per((r) => r.s.wal.syncs),
    );
    m.gauge(
      "vectordb_wal_size_bytes",
      "Bytes of the WAL's segment files",
      per((r) => r.s.wal_bytes),
    );
    m.gauge(
      "vectordb_wal_queued_bytes",
      "Bytes appended to the WAL but not yet durable",
      per((r) => r.s.wal.queued_bytes),
    );
    m.gauge(
      "vectordb_snapshot_last_timestamp_seconds",
      "When the newest snapshot was written (Unix seconds; 0: none)",
      per((r) => r.s.last_snapshot_time_ms / 1000),
    );
    m.gauge(
      "vectordb_snapshot_last_size_bytes",
      "Payload bytes of the last snapshot this process wrote (0: none yet)",
      per((r) => r.last_snapshot_bytes),
    );
    m.gauge("vectordb_index_points", "Live points in the index", per((r) => r.s.count));
    m.gauge(
      "vectordb_index_tombstones",
      "Deleted points held as versioned tombstones",
      per((r) => r.s.tombstones),
    );
    m.gauge(
      "vectordb_index_memory_bytes",
      "Bytes the index holds (typed arrays and the WASM vector memory)",
      per((r) => r.s.memory_bytes),
    );
    m.gauge("vectordb_collections", "Collections on this node", () => [{
      value: store.list().length,
    }]);
  }

  /** Adds the gossip families. */
  watchGossip(agent: GossipAgent): void {
    addGossipMetrics(this.metrics, agent);
  }
}

interface Row {
  collection: string;
  s: ReturnType<ReturnType<NodeStore["list"]>[number]["stats"]>;
  last_snapshot_bytes: number;
}
