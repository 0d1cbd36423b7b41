/**
 * Search lanes: the shared buffer through which {@link GraphPool} (graph_pool.ts) hands one
 * index's queries to worker threads (graph_worker.ts) and gets their hits back, so a search
 * allocates no buffers. One buffer per index, `lanes` lanes, each used by one search at a time:
 *
 * | region      | per lane            | meaning                                   |
 * |-------------|---------------------|-------------------------------------------|
 * | queries     | `stride` f32        | the query (dim floats, zero padded)       |
 * | ids         | `LANE_K` u32        | hit ids, nearest first                    |
 * | distances   | `LANE_K` f32        | their distances (squared L2 or 1 - dot)   |
 * | meta        | 2 i32               | hit count, candidates scored (metrics)    |
 * @module
 */
import { strideOf } from "./shared_graph.ts";

/** Most hits a lane returns: a search with a larger k runs on the owner's thread. */
export const LANE_K = 128;

/** Typed views of one lane buffer. */
export interface LaneViews {
  stride: number;
  lanes: number;
  queries: Float32Array;
  ids: Uint32Array;
  distances: Float32Array;
  meta: Int32Array;
}

/** Bytes of a lane buffer for `lanes` lanes of dimension `dim`. */
export function laneBytes(lanes: number, dim: number): number {
  return lanes * (strideOf(dim) * 4 + LANE_K * 8 + 8);
}

/** Views over a lane buffer made by {@link laneBytes}. */
export function laneViews(buf: SharedArrayBuffer, dim: number): LaneViews {
  const stride = strideOf(dim);
  const lanes = buf.byteLength / (stride * 4 + LANE_K * 8 + 8);
  let at = 0;
  const queries = new Float32Array(buf, at, lanes * stride);
  at += lanes * stride * 4;
  const ids = new Uint32Array(buf, at, lanes * LANE_K);
  at += lanes * LANE_K * 4;
  const distances = new Float32Array(buf, at, lanes * LANE_K);
  at += lanes * LANE_K * 4;
  const meta = new Int32Array(buf, at, lanes * 2);
  return { stride, lanes, queries, ids, distances, meta };
}
