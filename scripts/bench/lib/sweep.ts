/**
 * The measurement both implementations go through: build once, then for each ef run every
 * query one at a time (single-threaded) and record recall@10, queries/s and latency.
 * Runtime-neutral, so the hnswlib side can run it under Node.
 * @module
 */
import { cpuUsage, hrtime } from "node:process";
import type { Matrix } from "./fvecs.ts";

export interface Engine {
  impl: string;
  /** Inserts every base vector (row number = id). */
  build(base: Matrix<Float32Array>): void;
  /** Prepares per-query inputs outside the timed loop. */
  prepareQueries(queries: Matrix<Float32Array>): unknown[];
  setEf(ef: number): void;
  /** Ids of the k nearest, nearest first. */
  search(query: unknown, k: number): ArrayLike<number>;
  bytesPerVector(n: number): number | null;
}

export interface Row {
  impl: string;
  dataset: string;
  n: number;
  dim: number;
  metric: string;
  M: number;
  ef_construction: number;
  ef: number;
  recall_at_10: number;
  qps: number;
  mean_ms: number;
  p99_ms: number;
  build_s: number;
  /** CPU seconds of the whole process (every thread) over the build. */
  build_cpu_s: number;
  inserts_per_s: number;
  bytes_per_vector: number | null;
  /** Threads that linked the graph (`deno task bench --build-threads`); absent: one, in order. */
  build_threads?: number;
}

export interface SweepConfig {
  dataset: string;
  metric: string;
  M: number;
  efConstruction: number;
  efs: number[];
  k: number;
}

function nowNs(): bigint {
  return hrtime.bigint();
}

/** Builds, sweeps ef, and calls `emit` with one row per ef. */
export function sweep(
  engine: Engine,
  base: Matrix<Float32Array>,
  queries: Matrix<Float32Array>,
  gt: Matrix<Int32Array>,
  cfg: SweepConfig,
  emit: (row: Row) => void,
): void {
  const t0 = nowNs();
  const c0 = cpuUsage();
  engine.build(base);
  const buildS = Number(nowNs() - t0) / 1e9;
  const c1 = cpuUsage(c0);
  const buildCpuS = (c1.user + c1.system) / 1e6;
  const bytesPerVector = engine.bytesPerVector(base.n);
  const prepared = engine.prepareQueries(queries);
  const k = cfg.k;
  const lat = new Float64Array(queries.n);
  const truth: Set<number>[] = [];
  for (let q = 0; q < queries.n; q++) {
    truth.push(new Set(gt.data.subarray(q * gt.dim, q * gt.dim + k)));
  }
  for (const ef of cfg.efs) {
    engine.setEf(Math.max(ef, k));
    // Warm-up: a tenth of the queries, untimed.
    for (let q = 0; q < Math.min(100, queries.n); q++) engine.search(prepared[q], k);
    let hits = 0;
    const s0 = nowNs();
    for (let q = 0; q < queries.n; q++) {
      const a = nowNs();
      const ids = engine.search(prepared[q], k);
      lat[q] = Number(nowNs() - a) / 1e6;
      const t = truth[q];
      for (let i = 0; i < ids.length; i++) if (t.has(ids[i])) hits++;
    }
    const totalS = Number(nowNs() - s0) / 1e9;
    const sorted = Array.from(lat).sort((x, y) => x - y);
    const mean = sorted.reduce((s, x) => s + x, 0) / sorted.length;
    emit({
      impl: engine.impl,
      dataset: cfg.dataset,
      n: base.n,
      dim: base.dim,
      metric: cfg.metric,
      M: cfg.M,
      ef_construction: cfg.efConstruction,
      ef,
      recall_at_10: hits / (queries.n * k),
      qps: queries.n / totalS,
      mean_ms: mean,
      p99_ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))],
      build_s: buildS,
      build_cpu_s: buildCpuS,
      inserts_per_s: base.n / buildS,
      bytes_per_vector: bytesPerVector,
    });
  }
}
