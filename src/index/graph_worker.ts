/**
 * Worker entry of {@link ThreadedHnsw} (threaded_hnsw.ts): one thread's {@link SharedGraph}
 * over the shared layout, answering the owner's messages. Loaded with `node:worker_threads`
 * under Deno (this file) and under Node (bundled next to the server bundle as
 * `graph_worker.mjs` by scripts/tools/build_js.ts, or through tsx in tests).
 *
 * | message in                                   | does                                  | answer                   |
 * |----------------------------------------------|---------------------------------------|--------------------------|
 * | `{op:"init", layout, thread}`                | builds the thread's graph handle      | `{op:"ready"}`           |
 * | `{op:"link", id}`                            | links batch slots until none is left  | `{op:"done", id, n}`     |
 * | `{op:"search", id, queries, from, to, k, ef, ids, distances, counts}` | searches queries `from..to-1` (dim floats each) into the shared result arrays (`k` per query) | `{op:"done", id, n}` |
 *
 * A failure answers `{op:"error", id, message}`; the worker keeps serving.
 * @module
 */
import { parentPort } from "node:worker_threads";
import { type GraphLayout, SharedGraph } from "./shared_graph.ts";

interface SearchMessage {
  op: "search";
  id: number;
  queries: Float32Array;
  from: number;
  to: number;
  k: number;
  ef: number;
  ids: Uint32Array;
  distances: Float32Array;
  counts: Int32Array;
}

type Message =
  | { op: "init"; layout: GraphLayout; thread: number }
  | { op: "link"; id: number }
  | SearchMessage;

let graph: SharedGraph | null = null;

function search(g: SharedGraph, m: SearchMessage): number {
  const dim = g.dim;
  const hits = g.hits;
  for (let i = m.from; i < m.to; i++) {
    g.setQuery(m.queries, i * dim);
    const n = g.search(m.k, m.ef);
    const base = i * m.k;
    for (let j = 0; j < n; j++) {
      m.ids[base + j] = hits.ids[j];
      m.distances[base + j] = hits.distances[j];
    }
    m.counts[i] = n;
  }
  return m.to - m.from;
}

if (parentPort === null) throw new Error("graph_worker.ts must run as a worker thread");
const port = parentPort;
port.on("message", (m: Message) => {
  try {
    if (m.op === "init") {
      graph = new SharedGraph(m.layout, m.thread);
      port.postMessage({ op: "ready" });
      return;
    }
    if (graph === null) throw new Error(`message "${m.op}" before init`);
    const n = m.op === "link" ? graph.linkBatch() : search(graph, m);
    port.postMessage({ op: "done", id: m.id, n });
  } catch (e) {
    const id = (m as { id?: number }).id ?? -1;
    port.postMessage({ op: "error", id, message: e instanceof Error ? e.message : String(e) });
  }
});
