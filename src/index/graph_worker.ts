/**
 * Worker entry of {@link GraphPool} (graph_pool.ts): one thread's {@link SharedGraph} handle
 * per attached index (HnswIndex's layout), answering the owner's messages. Loaded with
 * `node:worker_threads` under Deno (this file) and under Node (bundled next to the server
 * bundle as `graph_worker.mjs` by scripts/tools/build_js.ts, or through tsx in tests).
 *
 * | message in                                  | does                                        | answer                       |
 * |---------------------------------------------|---------------------------------------------|------------------------------|
 * | `{op:"attach", key, layout, lanes, thread}` | a handle on the index `key` (scratch block `thread`) | none                 |
 * | `{op:"codes", key, codes}`                  | a handle on the index's int8 codes (after training) | none                 |
 * | `{op:"detach", key}`                        | drops the handle                            | none                         |
 * | `{op:"search", key, lane, k, ef, r}`        | searches the query in lane `lane` (r > 0: over the codes, re-ranking r), writes its hits there | `{op:"done", id: lane}` |
 * | `{op:"link", key, id}`                      | links the index's batch slots until none is left | `{op:"done", id, n}`    |
 *
 * Lanes (one SharedArrayBuffer per index, laid out by graph_pool.ts): `stride` floats of query
 * per lane, then `LANE_K` ids and `LANE_K` distances per lane, then two i32 per lane (count,
 * visited). A failure answers `{op:"error", id, message}`; the worker keeps serving.
 * @module
 */
import { parentPort } from "node:worker_threads";
import { type GraphLayout, SharedGraph } from "./shared_graph.ts";
import { LANE_K, type LaneViews, laneViews } from "./graph_lanes.ts";
import { type CodeLayout, CodeThread } from "./quantizer.ts";

interface Attached {
  graph: SharedGraph;
  lanes: LaneViews;
  /** The index's int8 codes once trained (sent by the pool before the first int8 search). */
  codes: CodeThread | null;
  thread: number;
}

type Message =
  | { op: "attach"; key: number; layout: GraphLayout; lanes: SharedArrayBuffer; thread: number }
  | { op: "codes"; key: number; codes: CodeLayout }
  | { op: "detach"; key: number }
  | { op: "search"; key: number; lane: number; k: number; ef: number; r: number }
  | { op: "link"; key: number; id: number };

const indexes = new Map<number, Attached>();

function search(a: Attached, lane: number, k: number, ef: number, r: number): void {
  const g = a.graph;
  const v = a.lanes;
  g.setQuery(v.queries, lane * v.stride);
  let n: number;
  if (r > 0) {
    // int8: the codes' weights come from the stored-form (normalised) query, as on the owner.
    const c = a.codes;
    if (c === null) throw new Error("int8 search before the index's codes were attached");
    c.setQuery(g.queryF32, g.queryPtr >>> 2);
    n = g.searchQ8(c, k, ef, r);
  } else {
    n = g.search(k, ef);
  }
  const hits = g.hits;
  const base = lane * LANE_K;
  for (let j = 0; j < n; j++) {
    v.ids[base + j] = hits.ids[j];
    v.distances[base + j] = hits.distances[j];
  }
  v.meta[2 * lane] = n;
  v.meta[2 * lane + 1] = g.lastVisited;
}

if (parentPort === null) throw new Error("graph_worker.ts must run as a worker thread");
const port = parentPort;
port.on("message", (m: Message) => {
  let id = -1;
  try {
    if (m.op === "attach") {
      const graph = new SharedGraph(m.layout, m.thread);
      indexes.set(m.key, {
        graph,
        lanes: laneViews(m.lanes, m.layout.dim),
        codes: null,
        thread: m.thread,
      });
      return;
    }
    if (m.op === "codes") {
      const a = indexes.get(m.key);
      if (a === undefined) throw new Error(`index ${m.key} is not attached`);
      a.codes = new CodeThread(m.codes, a.thread);
      return;
    }
    if (m.op === "detach") {
      indexes.delete(m.key);
      return;
    }
    id = m.op === "search" ? m.lane : m.id;
    const a = indexes.get(m.key);
    if (a === undefined) throw new Error(`index ${m.key} is not attached`);
    if (m.op === "search") {
      search(a, m.lane, m.k, m.ef, m.r);
      port.postMessage({ op: "done", key: m.key, id, n: 1 });
    } else {
      port.postMessage({ op: "done", key: m.key, id, n: a.graph.linkBatch() });
    }
  } catch (e) {
    port.postMessage({
      op: "error",
      key: (m as { key?: number }).key ?? -1,
      id,
      message: e instanceof Error ? e.message : String(e),
    });
  }
});
// Loaded and listening: the pool sends searches here from now on (graph_pool.ts `ready`); until
// then the owner thread answers them, so a restart's first search does not wait for a thread's
// start-up.
port.postMessage({ op: "ready", key: -1, id: -1, n: 0 });
