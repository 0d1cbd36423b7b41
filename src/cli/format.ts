/**
 * Human-readable output of the client CLI: tables, sizes, rates and one formatter per
 * response. Pure functions of their arguments (no locale, no clock), so tests can pin them.
 *
 * @module
 */

import type {
  CollectionInfo,
  CollectionStats,
  CountResponse,
  CreateCollectionResponse,
  MembersResponse,
  SearchResponse,
  SearchResult,
  ShardStats,
  StatsResponse,
  Uint64,
} from "../api/proto.ts";
import type { ScrollPage } from "../client/mod.ts";
import { formatId, type PointId } from "../common/point_id.ts";

/** Column alignment for {@link formatTable}. */
export type Align = "left" | "right";

/** A plain-text table: header row, then rows; columns separated by two spaces. */
export function formatTable(headers: string[], rows: string[][], align: Align[] = []): string {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => align[c] === "right" ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** An integer with thousands separators: 1234567 → "1,234,567". */
export function formatCount(n: number | Uint64): string {
  const s = String(n);
  const m = /^(-?)(\d+)(\.\d+)?$/.exec(s);
  if (!m) return s;
  return m[1] + m[2].replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (m[3] ?? "");
}

/** A byte count in binary units: 0 → "0 B", 1536 → "1.5 KiB", 2^30 → "1.0 GiB". */
export function formatBytes(bytes: number | Uint64): string {
  let n = Number(bytes);
  if (!Number.isFinite(n)) return String(bytes);
  if (Math.abs(n) < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  let u = -1;
  while (Math.abs(n) >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(1)} ${units[u]}`;
}

/** A duration: 850 → "850 ms", 52300 → "52.3 s", 3_723_000 → "1 h 2 min 3 s". */
export function formatDuration(ms: number | Uint64): string {
  const n = Number(ms);
  if (!Number.isFinite(n)) return String(ms);
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60_000) return `${(n / 1000).toFixed(1)} s`;
  const total = Math.floor(n / 1000);
  const h = Math.floor(total / 3600);
  const min = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return [h ? `${h} h` : "", `${min} min`, `${s} s`].filter(Boolean).join(" ");
}

/** A time in ms since the epoch as ISO-8601 UTC, or "never" for 0. */
export function formatTime(ms: number | Uint64): string {
  const n = Number(ms);
  if (!n) return "never";
  return new Date(n).toISOString();
}

/** The shortest decimal that reads back as the same float32 (0.1f → "0.1", not 0.10000000149). */
export function formatFloat32(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const f = Math.fround(x);
  for (let p = 1; p < 9; p++) {
    const s = Number(f.toPrecision(p));
    if (Math.fround(s) === f) return String(s);
  }
  return String(Number(f.toPrecision(9)));
}

/** A vector as "[0.1, 0.2, 0.3]". */
export function formatVector(v: number[]): string {
  return `[${v.map(formatFloat32).join(", ")}]`;
}

/**
 * A search answer whose results carry PointIds (the wire's `id`/`string_id` pair made one,
 * src/common/point_id.ts).
 */
export type SearchAnswerText = Omit<SearchResponse, "results"> & {
  results: (Omit<SearchResult, "id" | "string_id"> & { id: PointId })[];
};

/**
 * Search results as a table of rank, id and distance, with a note when partial. Integer ids
 * print as digits (exact beyond 2^53), string ids JSON-quoted (`"doc-7"`), so the string "5"
 * and the integer 5 differ.
 */
export function formatSearch(res: SearchAnswerText, with_payload = false): string {
  const lines: string[] = [];
  if (res.results.length === 0) lines.push("No results");
  else if (with_payload) {
    // The payload column is the point's compact JSON, as stored ("" for none).
    lines.push(formatTable(
      ["#", "id", "distance", "payload"],
      res.results.map((r, i) => [
        String(i + 1),
        formatId(r.id),
        formatFloat32(r.distance),
        r.payload ?? "",
      ]),
      ["right", "right", "right", "left"],
    ));
  } else {
    lines.push(formatTable(
      ["#", "id", "distance"],
      res.results.map((r, i) => [String(i + 1), formatId(r.id), formatFloat32(r.distance)]),
      ["right", "right", "right"],
    ));
  }
  if (res.partial) {
    lines.push(
      `Partial results: ${res.shards_answered ?? 0} of ${res.shards_total ?? 0} shards answered`,
    );
  }
  return lines.join("\n");
}

/**
 * One Scroll page: a table of id, version (and vector when present), then the cursor of the
 * next page (left out when `all`: the CLI goes on by itself) and the coverage when partial.
 */
export function formatScroll(res: ScrollPage, all = false, with_payload = false): string {
  const lines: string[] = [];
  const vectors = res.points.some((p) => p.vector.length > 0);
  if (res.points.length === 0) lines.push("No points");
  else {
    const headers = ["id", "version"];
    const align: Align[] = ["right", "right"];
    if (vectors) {
      headers.push("vector");
      align.push("left");
    }
    if (with_payload) {
      // The point's compact JSON, as stored ("" for none).
      headers.push("payload");
      align.push("left");
    }
    lines.push(formatTable(
      headers,
      res.points.map((p) => {
        const row = [formatId(p.id), String(p.version)];
        if (vectors) row.push(formatVector(p.vector));
        if (with_payload) row.push(p.payload ?? "");
        return row;
      }),
      align,
    ));
  }
  if (!all && res.next_cursor !== "") lines.push(`Next page: --cursor ${res.next_cursor}`);
  if (res.partial) {
    lines.push(
      `Partial results: ${res.shards_answered ?? 0} of ${res.shards_total ?? 0} shards answered`,
    );
  }
  return lines.join("\n");
}

/**
 * A Count answer: `1,234 points in "c"` (`… matching the filter` with one), with the coverage
 * when partial.
 */
export function formatPointCount(
  collection: string,
  res: CountResponse,
  filtered = false,
): string {
  const n = String(res.count);
  let line = `${formatCount(n)} ${n === "1" ? "point" : "points"} in "${collection || "default"}"`;
  if (filtered) line += " matching the filter";
  if (res.partial) {
    line += ` (partial: ${res.shards_answered ?? 0} of ${res.shards_total ?? 0} shards ` +
      `answered; the count may be low)`;
  }
  return line;
}

function collectionRow(c: CollectionInfo): string[] {
  return [
    c.name,
    String(c.dimension),
    c.metric,
    String(c.m),
    String(c.ef_construction),
    (c.field_indexes ?? []).map((i) => `${i.field}:${i.type}`).join(",") || "-",
  ];
}

/** The collection list as a table. */
export function formatCollections(collections: CollectionInfo[]): string {
  if (collections.length === 0) return "No collections";
  return formatTable(
    ["name", "dimension", "metric", "m", "ef_construction", "field_indexes"],
    collections.map(collectionRow),
    ["left", "right", "left", "right", "right", "left"],
  );
}

/** The answer to CreateCollection. */
export function formatCreated(name: string, res: CreateCollectionResponse): string {
  const c = res.collection;
  const params = c
    ? ` (dimension ${c.dimension}, ${c.metric}, m ${c.m}, ef_construction ${c.ef_construction}${
      c.quantization === "int8" ? `, int8 codes, rescore ${c.rescore}` : ""
    })`
    : "";
  return res.created
    ? `Created collection "${name}"${params}`
    : `Collection "${name}" already exists with the same parameters${params}`;
}

function statsTable(collections: CollectionStats[]): string {
  if (collections.length === 0) return "No collections";
  return formatTable(
    ["collection", "count", "dim", "metric", "memory", "wal", "snapshot seq", "snapshot time"],
    collections.map((c) => [
      c.name,
      formatCount(c.count),
      String(c.dimension),
      c.metric,
      formatBytes(c.memory_bytes),
      formatBytes(c.wal_bytes),
      String(c.last_snapshot_seq),
      formatTime(c.last_snapshot_time_ms),
    ]),
    ["left", "right", "right", "left", "right", "right", "right", "left"],
  );
}

/**
 * One row per shard unit (per replica on a router: the node holding it leads the row), in
 * collection then shard order; null when no collection has more than one shard.
 */
function shardTable(units: { node?: string; collection: string; shard: ShardStats }[]) {
  if (units.length === 0) return null;
  const withNode = units.some((u) => u.node !== undefined);
  const headers = ["collection", "shard", "count", "tombstones", "last seq", "snapshot seq", "wal"];
  const align: Align[] = ["left", "right", "right", "right", "right", "right", "right"];
  return formatTable(
    withNode ? ["node", ...headers] : headers,
    units.map((u) => [
      ...(withNode ? [u.node ?? ""] : []),
      u.collection,
      String(u.shard.shard),
      formatCount(u.shard.count),
      formatCount(u.shard.tombstones),
      String(u.shard.last_seq),
      String(u.shard.last_snapshot_seq),
      formatBytes(u.shard.wal_bytes),
    ]),
    withNode ? ["left", ...align] : align,
  );
}

/** The router's shard moves and drops since it started, as one line. */
function shardTraffic(res: StatsResponse): string {
  return [
    `rebalancing ${res.rebalancing ? "yes" : "no"}`,
    `shard moves ${res.shard_moves_active ?? 0} active, ${
      formatCount(res.shard_moves_done ?? 0)
    } ` +
    `done, ${formatCount(res.shard_moves_failed ?? 0)} failed`,
    `shard drops ${formatCount(res.shard_drops_done ?? 0)} done, ` +
    `${formatCount(res.shard_drops_refused ?? 0)} refused, ` +
    `${formatCount(res.points_dropped ?? 0)} entries dropped`,
  ].join("; ");
}

/**
 * Stats: one header line for the process, a collection table, a table of shard units (a
 * node's own; on a router each node's, so each replica), and on a router a node table, a line
 * of shard moves and drops, and the collections whose nodes disagree on their layout.
 */
export function formatStats(res: StatsResponse): string {
  const role = res.is_router ? "router" : "node";
  const head = [
    `${role} ${res.node_id || "?"}`,
    res.version ? `version ${res.version}` : "",
    `up ${formatDuration(res.uptime_ms)}`,
    `rss ${formatBytes(res.rss_bytes)}`,
    `heap ${formatBytes(res.heap_used_bytes)}`,
  ].filter(Boolean).join(", ");
  const parts = [head, statsTable(res.collections)];
  const nodes = res.nodes ?? [];
  const units = res.is_router
    ? nodes.flatMap((n) =>
      n.collections.flatMap((c) =>
        (c.shards ?? []).map((shard) => ({ node: n.node_id, collection: c.name, shard }))
      )
    )
    : res.collections.flatMap((c) =>
      (c.shards ?? []).map((shard) => ({ collection: c.name, shard }))
    );
  const shards = shardTable(units);
  if (shards !== null) parts.push(shards);
  if (nodes.length > 0) {
    parts.push(formatTable(
      ["node", "address", "collections", "points", "up", "rss", "status"],
      nodes.map((n) => [
        n.node_id,
        n.address,
        String(n.collections.length),
        formatCount(n.collections.reduce((sum, c) => sum + Number(c.count), 0)),
        formatDuration(n.uptime_ms),
        formatBytes(n.rss_bytes),
        n.error ? `error: ${n.error}` : "ok",
      ]),
      ["left", "left", "right", "right", "right", "right", "left"],
    ));
  }
  if (res.is_router) {
    parts.push(shardTraffic(res));
    const conflicts = res.layout_conflicts ?? [];
    if (conflicts.length > 0) {
      parts.push(
        [
          `Layout conflicts (writes refused): ${conflicts.length}`,
          ...conflicts.map((c) => `  ${c}`),
        ]
          .join("\n"),
      );
    }
  }
  return parts.join("\n\n");
}

/** The membership view as a table; the answering process is marked with "*". */
export function formatMembers(res: MembersResponse): string {
  if (res.members.length === 0) return "No members";
  return formatTable(
    ["id", "address", "state", "incarnation", "role"],
    res.members.map((m) => [
      m.id === res.self_id ? `${m.id} *` : m.id,
      m.address,
      m.state,
      String(m.incarnation),
      m.is_router ? "router" : "storage",
    ]),
    ["left", "left", "left", "right", "left"],
  );
}

/** Progress of a load by points acknowledged, as one status line. */
export interface LoadProgress {
  /** Points acknowledged by the server. */
  acked: number;
  /** Points failed for good. */
  failed: number;
  /** Points in the file; undefined when unknown (JSON lines). */
  total: number | undefined;
  points_per_s: number;
  /** Undefined when unknown. */
  eta_ms: number | undefined;
  retries: number;
}

/**
 * A status line: `[#####-----]  50.0%  1,000 / 2,000 points  2,000 points/s  ETA 0.5 s  3 retries`
 * (with a bar when `bar_chars` > 0 and the total is known; `, 5 failed` after the points when
 * any failed).
 */
export function formatProgress(p: LoadProgress, bar_chars = 24): string {
  const parts: string[] = [];
  const done = p.acked + p.failed;
  if (p.total !== undefined) {
    const fraction = p.total > 0 ? Math.min(1, done / p.total) : 1;
    if (bar_chars > 0) {
      const filled = Math.round(fraction * bar_chars);
      parts.push(`[${"#".repeat(filled)}${"-".repeat(bar_chars - filled)}]`);
    }
    parts.push(`${(fraction * 100).toFixed(1).padStart(5)}%`);
    parts.push(`${formatCount(p.acked)} / ${formatCount(p.total)} points`);
  } else {
    parts.push(`${formatCount(p.acked)} points`);
  }
  if (p.failed > 0) parts[parts.length - 1] += `, ${formatCount(p.failed)} failed`;
  parts.push(`${formatCount(Math.round(p.points_per_s))} points/s`);
  if (p.eta_ms !== undefined) parts.push(`ETA ${formatDuration(p.eta_ms)}`);
  parts.push(`${formatCount(p.retries)} ${p.retries === 1 ? "retry" : "retries"}`);
  return parts.join("  ");
}

/** Points failed for good for one reason. */
export interface LoadFailure {
  /** gRPC status name (e.g. `INVALID_ARGUMENT`) or error class. */
  reason: string;
  points: number;
  /** The first failure's message. */
  first_message: string;
}

/** Summary of a finished load. */
export interface LoadSummary {
  file: string;
  collection: string;
  /** Points acknowledged. */
  points: number;
  batches: number;
  bytes: number;
  elapsed_ms: number;
  retries: number;
  /** Retries by reason (gRPC status name). */
  retry_reasons: Record<string, number>;
  /** Points failed for good, by reason. */
  failures: LoadFailure[];
}

/** `s` cut to `max_chars` with an ellipsis. */
export function shorten(s: string, max_chars = 120): string {
  return s.length <= max_chars ? s : s.slice(0, max_chars - 1) + "…";
}

/**
 * `Loaded 1,000 points in 2 batches from x.fvecs into "default" in 1.2 s (833 points/s, …,
 * 0 retries)`, then one line per reason of points failed for good.
 */
export function formatLoadSummary(s: LoadSummary): string {
  const seconds = s.elapsed_ms / 1000;
  const rate = seconds > 0 ? Math.round(s.points / seconds) : 0;
  const bytesRate = seconds > 0 ? s.bytes / seconds : 0;
  const lines = [
    `Loaded ${formatCount(s.points)} points in ${formatCount(s.batches)} batches from ` +
    `${s.file} into "${s.collection}" in ${formatDuration(s.elapsed_ms)} ` +
    `(${formatCount(rate)} points/s, ${formatBytes(Math.round(bytesRate))}/s, ` +
    `${formatCount(s.retries)} ${s.retries === 1 ? "retry" : "retries"}` +
    (s.retries > 0
      ? ": " + Object.entries(s.retry_reasons).map(([r, n]) => `${r} ${formatCount(n)}`).join(", ")
      : "") +
    ")",
  ];
  const failed = s.failures.reduce((n, f) => n + f.points, 0);
  if (failed > 0) {
    lines.push(`${formatCount(failed)} points failed for good:`);
    for (const f of s.failures) {
      lines.push(
        `  ${f.reason}: ${formatCount(f.points)} points (first: ` +
          `${JSON.stringify(shorten(f.first_message))})`,
      );
    }
  }
  return lines.join("\n");
}
