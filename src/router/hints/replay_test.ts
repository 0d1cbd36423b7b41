/**
 * HintReplay over a fake NodePort whose collection "c" has 5 shards and which, like a node
 * (src/node/service.ts checkShardNumber), refuses a write whose shard_number is another count.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import type { RequestOf, ResponseOf } from "../../api/client.ts";
import type { MethodName } from "../../api/proto.ts";
import type { WalRecord } from "../../common/records.ts";
import { Background, NodeStatusError } from "../node_port.ts";
import type { NodeState } from "../node_table.ts";
import { deleteBatchRecord } from "../points_batch.ts";
import { HintDelivery } from "./delivery.ts";
import { MemoryHintQueue } from "./queue.ts";
import { HintReplay } from "./replay.ts";
import { CallOnlyPort } from "../node_port_testing.ts";

class LayoutNode extends CallOnlyPort {
  readonly calls: { method: string; shard_number: unknown }[] = [];
  applied = 0;
  call<K extends MethodName>(
    _node: string,
    method: K,
    request: RequestOf<K>,
  ): Promise<ResponseOf<K>> {
    const shards = (request as { shard_number?: number }).shard_number;
    this.calls.push({ method, shard_number: shards });
    if (shards !== undefined && shards !== 0 && shards !== 5) {
      return Promise.reject(
        new NodeStatusError(
          grpc.status.FAILED_PRECONDITION,
          `collection "c" has 5 shards on this node, not ${shards} as the request's ` +
            `shard_number says`,
        ),
      );
    }
    this.applied++;
    return Promise.resolve({} as ResponseOf<K>);
  }
}

Deno.test("hint replay: a point hint carries the shard count it was accepted with; a node with another refuses it and it is discarded", async () => {
  const nodes = new LayoutNode();
  const logs: string[] = [];
  const hints = new MemoryHintQueue("n1");
  const state = {
    address: "n1",
    hints,
    delivery: new HintDelivery("n1"),
    active: true,
    inactive_since_ms: 0,
    leaving_since_ms: 0,
    refused: 0,
    discarded: 0,
    last_full_log_ms: 0,
    last_error: "",
  } as NodeState;
  const vector = Float32Array.from([1, 2]);
  // Accepted while "c" had 3 shards (then dropped and made again with 5 elsewhere), and with
  // the 5 shards it has now; one from an older router carries none.
  const at = (shard_number: number | undefined): WalRecord[] => [
    { kind: "put", collection: "c", id: 1, vector, version: 10, shard_number },
    { kind: "delete", collection: "c", id: 2, version: 11, shard_number },
    {
      kind: "put_batch",
      collection: "c",
      dimension: 2,
      ids: Uint32Array.from([3, 4]),
      vectors: Float32Array.from([1, 2, 3, 4]),
      versions: Float64Array.from([12, 12]),
      shard_number,
    },
    { ...deleteBatchRecord("c", [5, 6], 13), shard_number } as WalRecord,
  ];
  const records = [...at(3), ...at(5), at(undefined)[0]];
  for (const r of records) {
    await hints.append(r);
    state.delivery.receive({ type: "enqueued", count: 1 }, 0);
  }
  const background = new Background((m) => logs.push(m));
  const replay = new HintReplay({
    nodes,
    clock: { now_ms: () => 0, sleep: () => Promise.resolve() },
    log: (m) => logs.push(m),
    background,
    node_timeout_ms: 1000,
    retry_interval_ms: 100,
    stopped: () => false,
  });
  replay.tick(state);
  await background.drain();
  assert.equal(hints.pending, 0);
  assert.deepEqual(
    nodes.calls.map((c) => `${c.method} ${c.shard_number}`),
    [
      ...["Put", "Delete", "PutBatch", "DeleteBatch"].map((m) => `${m} 3`),
      ...["Put", "Delete", "PutBatch", "DeleteBatch"].map((m) => `${m} 5`),
      "Put 0",
    ],
  );
  assert.deepEqual(replay.counts, { delivered: 5, discarded: 4 });
  assert.equal(nodes.applied, 5);
  assert.equal(logs.filter((l) => /FAILED_PRECONDITION/.test(l)).length, 4, logs.join("\n"));
});
