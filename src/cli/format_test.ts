import assert from "node:assert/strict";
import {
  formatBytes,
  formatCollections,
  formatCount,
  formatCreated,
  formatDuration,
  formatFloat32,
  formatLoadSummary,
  formatMembers,
  formatPointCount,
  formatProgress,
  formatScroll,
  formatSearch,
  formatStats,
  formatTable,
  formatTime,
  formatVector,
} from "./format.ts";

Deno.test("numbers, sizes, durations, times", () => {
  assert.equal(formatCount(0), "0");
  assert.equal(formatCount(999), "999");
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(formatCount("18446744073709551615"), "18,446,744,073,709,551,615");
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes("1073741824"), "1.0 GiB");
  assert.equal(formatDuration(850), "850 ms");
  assert.equal(formatDuration(52_300), "52.3 s");
  assert.equal(formatDuration(3_723_000), "1 h 2 min 3 s");
  assert.equal(formatDuration("61000"), "1 min 1 s");
  assert.equal(formatTime(0), "never");
  assert.equal(formatTime("1700000000000"), "2023-11-14T22:13:20.000Z");
});

Deno.test("float32 values print in their shortest form", () => {
  assert.equal(formatFloat32(Math.fround(0.1)), "0.1");
  assert.equal(formatFloat32(Math.fround(-2.5e-7)), "-2.5e-7");
  assert.equal(formatFloat32(0), "0");
  assert.equal(formatFloat32(Math.fround(1 / 3)), "0.33333334");
  assert.equal(formatVector([Math.fround(0.1), Math.fround(0.2), 3]), "[0.1, 0.2, 3]");
});

Deno.test("tables align columns", () => {
  assert.equal(
    formatTable(["name", "n"], [["a", "1"], ["long", "100"]], ["left", "right"]),
    "name    n\na       1\nlong  100",
  );
});

Deno.test("search results", () => {
  assert.equal(
    formatSearch({
      results: [{ id: 100, distance: 0 }, { id: 7, distance: Math.fround(0.25) }],
      partial: false,
      shards_answered: 1,
      shards_total: 1,
    }),
    "#   id  distance\n1  100         0\n2    7      0.25",
  );
  assert.equal(
    formatSearch({ results: [], partial: true, shards_answered: 2, shards_total: 3 }),
    "No results\nPartial results: 2 of 3 shards answered",
  );
});

Deno.test("collections, stats and members", () => {
  const info = { name: "c", dimension: 100, metric: "cosine", m: 16, ef_construction: 200 };
  assert.equal(
    formatCollections([info]),
    "name  dimension  metric   m  ef_construction  field_indexes\n" +
      "c           100  cosine  16              200  -",
  );
  assert.equal(
    formatCollections([{
      ...info,
      field_indexes: [{ field: "meta.lang", type: "keyword" }, { field: "year", type: "integer" }],
    }]).split("\n")[1],
    "c           100  cosine  16              200  meta.lang:keyword,year:integer",
  );
  assert.equal(formatCollections([]), "No collections");
  assert.equal(
    formatCreated("c", { created: true, collection: info }),
    'Created collection "c" (dimension 100, cosine, m 16, ef_construction 200)',
  );
  assert.match(formatCreated("c", { created: false, collection: info }), /already exists/);

  const stats = formatStats({
    node_id: "n1",
    version: "0.1.0",
    uptime_ms: "61000",
    rss_bytes: "2048",
    heap_used_bytes: "1024",
    is_router: false,
    collections: [{
      name: "default",
      count: "1234",
      dimension: 3,
      metric: "l2",
      memory_bytes: "1536",
      wal_bytes: "0",
      last_snapshot_seq: "17",
      last_snapshot_time_ms: "1700000000000",
    }],
    nodes: [],
  });
  assert.equal(
    stats,
    "node n1, version 0.1.0, up 1 min 1 s, rss 2.0 KiB, heap 1.0 KiB\n\n" +
      "collection  count  dim  metric   memory  wal  snapshot seq  snapshot time\n" +
      "default     1,234    3  l2      1.5 KiB  0 B            17  2023-11-14T22:13:20.000Z",
  );
  const routerStats = formatStats({
    node_id: "r",
    uptime_ms: 0,
    rss_bytes: 0,
    heap_used_bytes: 0,
    is_router: true,
    collections: [],
    nodes: [{
      node_id: "n2",
      address: "h:1",
      collections: [],
      uptime_ms: 0,
      rss_bytes: 0,
      heap_used_bytes: 0,
      error: "UNAVAILABLE: down",
    }],
  });
  assert.match(routerStats, /^router r, up 0 ms/);
  assert.match(routerStats, /n2 +h:1 +0 +0 +0 ms +0 B +error: UNAVAILABLE: down/);

  assert.equal(
    formatMembers({
      self_id: "a",
      members: [
        { id: "a", address: "h:1", state: "alive", incarnation: 2, is_router: true },
        { id: "b", address: "h:2", state: "suspect", incarnation: 10, is_router: false },
      ],
    }),
    "id   address  state    incarnation  role\n" +
      "a *  h:1      alive              2  router\n" +
      "b    h:2      suspect           10  storage",
  );
});

Deno.test("load progress and summary", () => {
  const p = { acked: 1000, failed: 0, total: 2000, points_per_s: 2000, eta_ms: 500, retries: 3 };
  assert.equal(
    formatProgress(p, 10),
    "[#####-----]   50.0%  1,000 / 2,000 points  2,000 points/s  ETA 500 ms  3 retries",
  );
  assert.equal(
    formatProgress({ ...p, failed: 500, retries: 1 }, 0),
    " 75.0%  1,000 / 2,000 points, 500 failed  2,000 points/s  ETA 500 ms  1 retry",
  );
  assert.equal(
    formatProgress({ ...p, total: undefined, eta_ms: undefined, retries: 0 }, 4),
    "1,000 points  2,000 points/s  0 retries",
  );
  const summary = {
    file: "x.fvecs",
    collection: "default",
    points: 20000,
    batches: 20,
    bytes: 2 * 1024 * 1024,
    elapsed_ms: 2000,
    retries: 2,
    retry_reasons: { UNAVAILABLE: 1, DEADLINE_EXCEEDED: 1 },
    failures: [],
  };
  assert.equal(
    formatLoadSummary(summary),
    'Loaded 20,000 points in 20 batches from x.fvecs into "default" in 2.0 s ' +
      "(10,000 points/s, 1.0 MiB/s, 2 retries: UNAVAILABLE 1, DEADLINE_EXCEEDED 1)",
  );
  assert.equal(
    formatLoadSummary({
      ...summary,
      retries: 1,
      retry_reasons: { UNAVAILABLE: 1 },
      failures: [
        { reason: "INVALID_ARGUMENT", points: 10, first_message: "x".repeat(200) },
        { reason: "UNAVAILABLE", points: 5, first_message: "UNAVAILABLE: down" },
      ],
    }),
    'Loaded 20,000 points in 20 batches from x.fvecs into "default" in 2.0 s ' +
      "(10,000 points/s, 1.0 MiB/s, 1 retry: UNAVAILABLE 1)\n" +
      "15 points failed for good:\n" +
      `  INVALID_ARGUMENT: 10 points (first: "${"x".repeat(119)}…")\n` +
      '  UNAVAILABLE: 5 points (first: "UNAVAILABLE: down")',
  );
});

Deno.test("scroll pages and counts", () => {
  const page = {
    points: [{ id: 3, vector: [], version: "17" }, { id: 12, vector: [], version: "5" }],
    next_cursor: "v1:12",
  };
  assert.equal(
    formatScroll(page),
    "id  version\n 3       17\n12        5\nNext page: --cursor v1:12",
  );
  assert.equal(formatScroll(page, true), "id  version\n 3       17\n12        5");
  assert.equal(
    formatScroll({
      points: [{ id: 1, vector: [0.5, 1], version: "2" }],
      next_cursor: "",
      partial: true,
      shards_answered: 2,
      shards_total: 3,
    }),
    "id  version  vector\n 1        2  [0.5, 1]\nPartial results: 2 of 3 shards answered",
  );
  assert.equal(formatScroll({ points: [], next_cursor: "" }), "No points");
  assert.equal(formatPointCount("", { count: "1" }), '1 point in "default"');
  assert.equal(
    formatPointCount("c", { count: "1200" }, true),
    '1,200 points in "c" matching the filter',
  );
  assert.equal(
    formatScroll(
      {
        points: [
          { id: 3, vector: [], version: "17", payload: '{"tenant":"a"}' },
          { id: 12, vector: [], version: "5", payload: "" },
        ],
        next_cursor: "",
      },
      false,
      true,
    ),
    'id  version  payload\n 3       17  {"tenant":"a"}\n12        5',
  );
  assert.equal(formatPointCount("c", { count: "12345" }), '12,345 points in "c"');
  assert.equal(
    formatPointCount("c", { count: "7", partial: true, shards_answered: 1, shards_total: 2 }),
    '7 points in "c" (partial: 1 of 2 shards answered; the count may be low)',
  );
});

Deno.test("formatSearch and formatScroll print 64-bit ids exactly and string ids quoted", () => {
  const big = 18446744073709551615n;
  assert.equal(
    formatSearch({ results: [{ id: big, distance: 0 }, { id: "5", distance: 0.5 }] }),
    '#                    id  distance\n1  18446744073709551615         0\n2                   "5"       0.5',
  );
  assert.equal(
    formatScroll({
      points: [{ id: 5, vector: [], version: "1" }, { id: "doc-7", vector: [], version: "2" }],
      next_cursor: "",
    }),
    '     id  version\n      5        1\n"doc-7"        2',
  );
});

Deno.test("stats: shard units per node, shard drops and layout conflicts", () => {
  const unit = (shard: number, count: string, tombstones: string, last_seq: string) => ({
    shard,
    count,
    tombstones,
    last_seq,
    last_snapshot_seq: "0",
    wal_bytes: "2048",
  });
  const collection = (shards: ReturnType<typeof unit>[]) => ({
    name: "docs",
    count: "5",
    dimension: 2,
    metric: "l2",
    memory_bytes: "0",
    wal_bytes: "0",
    last_snapshot_seq: "0",
    last_snapshot_time_ms: "0",
    shards,
  });
  // A storage node: its own units, no node column, no router lines.
  const node = formatStats({
    node_id: "n1",
    uptime_ms: 0,
    rss_bytes: 0,
    heap_used_bytes: 0,
    is_router: false,
    collections: [collection([unit(0, "1234", "2", "9"), unit(1, "3", "0", "4")])],
  });
  assert.ok(
    node.endsWith(
      "collection  shard  count  tombstones  last seq  snapshot seq      wal\n" +
        "docs            0  1,234           2         9             0  2.0 KiB\n" +
        "docs            1      3           0         4             0  2.0 KiB",
    ),
    node,
  );
  assert.doesNotMatch(node, /shard drops|Layout conflicts/);
  // A 1-shard collection has no units: no shard table.
  assert.doesNotMatch(
    formatStats({
      node_id: "n1",
      uptime_ms: 0,
      rss_bytes: 0,
      heap_used_bytes: 0,
      collections: [collection([])],
    }),
    /tombstones/,
  );
  // A router: each node's units (each replica), then moves and drops, then the conflicts.
  const nodeStats = (node_id: string, shards: ReturnType<typeof unit>[]) => ({
    node_id,
    address: `${node_id}:1`,
    collections: [collection(shards)],
    uptime_ms: 0,
    rss_bytes: 0,
    heap_used_bytes: 0,
  });
  const router = formatStats({
    node_id: "r",
    uptime_ms: 0,
    rss_bytes: 0,
    heap_used_bytes: 0,
    is_router: true,
    collections: [],
    nodes: [nodeStats("n1", [unit(0, "7", "1", "3")]), nodeStats("n2", [unit(0, "6", "0", "2")])],
    rebalancing: true,
    shard_moves_active: 1,
    shard_moves_done: "2",
    shard_moves_failed: "0",
    shard_drops_done: "1200",
    shard_drops_refused: "3",
    points_dropped: "45000",
    layout_conflicts: ['Collection "d" has two layouts: …'],
  });
  assert.match(
    router,
    new RegExp(
      "node  collection  shard  count  tombstones  last seq  snapshot seq      wal\n" +
        "n1    docs            0      7           1         3             0  2\\.0 KiB\n" +
        "n2    docs            0      6           0         2             0  2\\.0 KiB\n",
    ),
  );
  assert.match(
    router,
    /rebalancing yes; shard moves 1 active, 2 done, 0 failed; shard drops 1,200 done, 3 refused, 45,000 entries dropped/,
  );
  assert.ok(
    router.endsWith('Layout conflicts (writes refused): 1\n  Collection "d" has two layouts: …'),
    router,
  );
});
