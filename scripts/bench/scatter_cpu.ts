/**
 * CPU cost of the router's own Search work (a script, not a test): `Scatter.search` over node
 * ports that answer at once with fixed hits, so what is timed is planning, replica stats,
 * hedging bookkeeping, merging (and, with `--batch`, the coalescer); no gRPC. Per layout, the
 * µs per search of `--searches` searches run `--concurrency` at a time.
 *
 * ```sh
 * deno run -A scripts/bench/scatter_cpu.ts --searches 200000 --concurrency 16
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { RequestOf, ResponseOf } from "../../src/api/client.ts";
import type { MethodName, SearchRequest, SearchResult } from "../../src/api/proto.ts";
import { Placement, type ShardLayout } from "../../src/cluster/placement.ts";
import { Background, type NodePort, SYSTEM_CLOCK } from "../../src/router/node_port.ts";
import { NodeTable } from "../../src/router/node_table.ts";
import { makeView } from "../../src/router/ring_view.ts";
import { Scatter } from "../../src/router/scatter.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    searches: { type: "string", default: "100000" },
    concurrency: { type: "string", default: "16" },
    batch: { type: "string", default: "0" },
  },
  strict: true,
});
const SEARCHES = Number(flags.searches);
const CONCURRENCY = Number(flags.concurrency);

const HITS: SearchResult[] = Array.from({ length: 10 }, (_, i) => ({ id: String(i), distance: i }));

/** Answers every Search at once with the same 10 hits (SearchBatch: one answer per search). */
class InstantNodes implements NodePort {
  call<K extends MethodName>(
    _node: string,
    method: K,
    request: RequestOf<K>,
  ): Promise<ResponseOf<K>> {
    const one = (r: SearchRequest) => ({
      results: HITS,
      partial: false,
      shards_answered: 1,
      shards_total: 1,
      nodes_answered: [],
      shard_searches: Math.max(1, r.shards?.length ?? 1),
    });
    if (method === "SearchBatch") {
      const list = (request as RequestOf<"SearchBatch">).searches;
      return Promise.resolve({ results: list.map(one) } as unknown as ResponseOf<K>);
    }
    return Promise.resolve(one(request as SearchRequest) as unknown as ResponseOf<K>);
  }
  entries(): never {
    throw new Error("not used");
  }
  transfer(): null {
    return null;
  }
  open(): void {}
  close(): void {}
}

async function measure(nodes: string[], layout: ShardLayout): Promise<number> {
  const placement = new Placement(nodes);
  const table = new NodeTable({
    openHints: () => Promise.reject(new Error("no hints")),
    log: () => {},
    clock: SYSTEM_CLOCK,
    background: new Background(() => {}),
    retry_interval_ms: 100,
  });
  const scatter = new Scatter({
    nodes: new InstantNodes(),
    table,
    retry_timeout_ms: 500,
    replication_factor: layout.replication_factor,
    layout: () => Promise.resolve(layout),
    search_placement: () => placement,
    search: { batch_max: Number(flags.batch) },
  });
  const view = makeView(nodes, layout.replication_factor);
  const q = {
    vector: Array.from({ length: 100 }, (_, i) => i / 100),
    k: 10,
    ef: 128,
    collection: "c",
    with_payload: false,
    with_vector: false,
  };
  let left = SEARCHES;
  const worker = async () => {
    while (left-- > 0) await scatter.search(view, q);
  };
  // Warm-up, then the timed run.
  left = 5000;
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  left = SEARCHES;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return ((performance.now() - t0) * 1000) / SEARCHES;
}

for (
  const [name, nodes, layout] of [
    ["1 node, 1 shard", ["n1:1"], { shard_number: 1, replication_factor: 1 }],
    ["3 nodes, 1 shard RF 3", ["n1:1", "n2:1", "n3:1"], { shard_number: 1, replication_factor: 3 }],
    ["3 nodes, 3 shards RF 2", ["n1:1", "n2:1", "n3:1"], {
      shard_number: 3,
      replication_factor: 2,
    }],
  ] as const
) {
  const us = await measure([...nodes], layout);
  console.log(`${name}: ${us.toFixed(2)} µs per search (loadavg ${Deno.loadavg()[0].toFixed(2)})`);
}
