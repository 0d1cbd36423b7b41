/**
 * Search measurements of the cluster benchmark (scripts/bench/bench_cluster.ts): recall@k against
 * exact ground truth, and queries/s with latency percentiles at a given number of concurrent
 * clients. Each client has its own gRPC channel (a local subchannel pool, so grpc-js does not
 * share one connection between them) and sends one request at a time.
 *
 * @module
 */

import { ApiClient } from "../../../src/api/client.ts";
import type { Matrix } from "./fvecs.ts";

/** Channel options that give every ApiClient its own connection. */
export const OWN_CHANNEL = { "grpc.use_local_subchannel_pool": 1 } as const;

/** A new client of `addr` on its own channel. */
export function ownClient(addr: string, timeout_ms: number): ApiClient {
  return new ApiClient(addr, { timeout_ms, client_options: OWN_CHANNEL });
}

/** Row `i` of `m` as a plain number array (the form the gRPC client encodes). */
export function row(m: Matrix<Float32Array>, i: number): number[] {
  return Array.from(m.data.subarray(i * m.dim, (i + 1) * m.dim));
}

/** The value at quantile `q` (0..1) of `sorted` (ascending), nearest rank; NaN when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}

/** Latency summary of a run, in milliseconds. */
export interface LatencySummary {
  count: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  mean_ms: number;
}

/** Summarises latencies (milliseconds, any order). */
export function summarise(latencies_ms: readonly number[]): LatencySummary {
  const s = Float64Array.from(latencies_ms).sort();
  let sum = 0;
  for (const x of s) sum += x;
  return {
    count: s.length,
    p50_ms: quantile(s, 0.5),
    p99_ms: quantile(s, 0.99),
    max_ms: s.length > 0 ? s[s.length - 1] : NaN,
    mean_ms: s.length > 0 ? sum / s.length : NaN,
  };
}

/** What every search of a run asks for. */
export interface SearchSpec {
  collection: string;
  k: number;
  ef: number;
}

/**
 * Recall@k of searches of every query against `gt` (row numbers = point ids), `concurrency`
 * searches in flight. Returns the mean recall and how many responses were partial.
 */
export async function measureRecall(
  addr: string,
  queries: Matrix<Float32Array>,
  gt: Matrix<Int32Array>,
  spec: SearchSpec,
  concurrency: number,
  timeout_ms: number,
): Promise<{ recall: number; partial: number }> {
  const clients = Array.from({ length: concurrency }, () => ownClient(addr, timeout_ms));
  let next = 0;
  let hits = 0;
  let partial = 0;
  try {
    await Promise.all(clients.map(async (c) => {
      while (next < queries.n) {
        const q = next++;
        const res = await c.call("Search", { vector: row(queries, q), ...spec });
        if (res.partial) partial++;
        const truth = new Set(gt.data.subarray(q * gt.dim, q * gt.dim + spec.k));
        for (const r of res.results) if (truth.has(Number(r.id))) hits++;
      }
    }));
  } finally {
    for (const c of clients) c.close();
  }
  return { recall: hits / (queries.n * spec.k), partial };
}

/** Result of {@link measureThroughput}. */
export interface ThroughputResult extends LatencySummary {
  clients: number;
  qps: number;
  wall_s: number;
  errors: number;
  partial: number;
}

/**
 * `total` searches (cycling through the queries) by `clients` clients, each on its own channel
 * with one request at a time; `warmup` untimed searches per client first. Queries/s is
 * `total / wall time`; latency is per request as the client sees it.
 */
export async function measureThroughput(
  addr: string,
  queries: Matrix<Float32Array>,
  spec: SearchSpec,
  clients_n: number,
  total: number,
  warmup: number,
  timeout_ms: number,
): Promise<ThroughputResult> {
  const vectors = Array.from({ length: queries.n }, (_, i) => row(queries, i));
  const clients = Array.from({ length: clients_n }, () => ownClient(addr, timeout_ms));
  try {
    // Warm-up: opens every channel and warms the servers' JIT.
    await Promise.all(clients.map(async (c, j) => {
      for (let i = 0; i < warmup; i++) {
        await c.call("Search", { vector: vectors[(j * warmup + i) % vectors.length], ...spec });
      }
    }));
    const latencies: number[] = [];
    let next = 0;
    let errors = 0;
    let partial = 0;
    const t0 = performance.now();
    await Promise.all(clients.map(async (c) => {
      while (next < total) {
        const q = next++ % vectors.length;
        const a = performance.now();
        try {
          const res = await c.call("Search", { vector: vectors[q], ...spec });
          latencies.push(performance.now() - a);
          if (res.partial) partial++;
        } catch {
          errors++;
        }
      }
    }));
    const wall_s = (performance.now() - t0) / 1000;
    return {
      clients: clients_n,
      qps: latencies.length / wall_s,
      wall_s,
      errors,
      partial,
      ...summarise(latencies),
    };
  } finally {
    for (const c of clients) c.close();
  }
}
