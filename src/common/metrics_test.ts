import assert from "node:assert/strict";
import {
  checkMetricName,
  HistogramCell,
  MetricNameError,
  Metrics,
  RequestMetrics,
} from "./metrics.ts";

Deno.test("checkMetricName: vectordb_ prefix, snake case, _total only on counters, base units", () => {
  checkMetricName("vectordb_wal_appends_total", "counter");
  checkMetricName("vectordb_wal_sync_duration_seconds", "histogram");
  checkMetricName("vectordb_index_memory_bytes", "gauge");
  for (
    const [name, type] of [
      ["wal_appends_total", "counter"],
      ["vectordb_WalAppends_total", "counter"],
      ["vectordb_wal_appends", "counter"],
      ["vectordb_index_points_total", "gauge"],
      ["vectordb_sync_ms", "histogram"],
      ["vectordb_memory_mb", "gauge"],
      ["vectordb__x", "gauge"],
    ] as const
  ) {
    assert.throws(() => checkMetricName(name, type), MetricNameError, `${name} (${type})`);
  }
});

Deno.test("HistogramCell: per-bucket counts, sum, count; the exposition is cumulative", async () => {
  const m = new Metrics();
  const h = m.histogram("vectordb_test_seconds", "test", ["method"], [0.1, 1]);
  const cell = h.labels("Search");
  assert.equal(h.labels("Search"), cell, "the same cell for the same labels");
  for (const v of [0.05, 0.1, 0.5, 2]) cell.observe(v);
  assert.deepEqual([...cell.counts], [2, 1, 1]);
  assert.equal(cell.count, 4);
  assert.equal(cell.sum, 2.65);
  const text = await m.text();
  assert.match(text, /# TYPE vectordb_test_seconds histogram/);
  assert.match(text, /vectordb_test_seconds_bucket\{method="Search",le="0.1"\} 2\n/);
  assert.match(text, /vectordb_test_seconds_bucket\{method="Search",le="1"\} 3\n/);
  assert.match(text, /vectordb_test_seconds_bucket\{method="Search",le="\+Inf"\} 4\n/);
  assert.match(text, /vectordb_test_seconds_count\{method="Search"\} 4\n/);
  assert.ok(new HistogramCell(Float64Array.of(1)).counts.length === 2);
});

Deno.test("RequestMetrics: counts and latency by method and status name; collected families", async () => {
  const m = new Metrics();
  const r = new RequestMetrics(m, "vectordb_grpc", "gRPC requests", (c) => (c === 0 ? "OK" : "X"));
  const put = r.method("Put");
  put(0, 0.001);
  put(0, 0.002);
  put(5, 0.003);
  let n = 7;
  m.counterFrom("vectordb_things_total", "things", () => [{ labels: { kind: "a" }, value: n }]);
  m.gauge("vectordb_level", "level", () => [{ value: 3 }, { value: NaN, labels: { bad: "1" } }]);
  n = 9;
  const text = await m.text();
  assert.match(text, /vectordb_grpc_requests_total\{method="Put",code="OK"\} 2\n/);
  assert.match(text, /vectordb_grpc_requests_total\{method="Put",code="X"\} 1\n/);
  assert.match(text, /vectordb_grpc_request_duration_seconds_count\{method="Put",code="OK"\} 2/);
  assert.match(text, /# TYPE vectordb_things_total counter\nvectordb_things_total\{kind="a"\} 9/);
  assert.match(text, /vectordb_level 3\n/);
  assert.doesNotMatch(text, /bad=/, "a non-finite value is left out");
  assert.throws(() => m.gauge("vectordb_level", "again", () => []), MetricNameError);
});
