import assert from "node:assert/strict";
import { NodeMetrics } from "./metrics.ts";

Deno.test("NodeMetrics: every family is named by the conventions, with its unit", () => {
  const nm = new NodeMetrics(null, { process: false });
  const names = nm.metrics.names();
  for (
    const expected of [
      "vectordb_build_info",
      "vectordb_grpc_requests_total",
      "vectordb_grpc_request_duration_seconds",
      "vectordb_wal_sync_duration_seconds",
      "vectordb_snapshot_duration_seconds",
      "vectordb_snapshot_size_bytes",
      "vectordb_search_ef",
      "vectordb_search_candidates_visited",
    ]
  ) assert.ok(names.includes(expected), `${expected} in ${names}`);
  // Store and gossip families need a store and an agent: their names are checked by
  // checkMetricName when made (tests/metrics_test.ts scrapes them from real processes).
  for (const n of names) assert.match(n, /^vectordb_[a-z0-9_]+$/);
});
