/**
 * Request limits before decoding, against a real storage node process (Node 20 through tsx):
 * raw requests sent with an identity serializer, so the test controls every byte.
 *
 * - a PutBatch of 7.8 million tiny points (15.6 MB) → RESOURCE_EXHAUSTED naming the field and
 *   the limit, answered without decoding (the node's RSS barely moves);
 * - an oversized request of each service (VectorDB Get, Transfer CopyBatch, Gossip Exchange) →
 *   RESOURCE_EXHAUSTED naming the method, the size and the limit;
 * - malformed protobuf → INVALID_ARGUMENT;
 * - and the node keeps serving: a Put and a Get afterwards succeed.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createClient, vectorDbService } from "../src/api/proto.ts";
import { transferService } from "../src/api/transfer.ts";
import { GOSSIP_EXCHANGE_BYTES_MAX, gossipService } from "../src/cluster/gossip_transport.ts";
import {
  BATCH_POINTS_MAX,
  COPY_BATCH_BYTES_MAX,
  SMALL_REQUEST_BYTES_MAX,
} from "../src/common/limits.ts";
import { formatBytes } from "../src/common/wire_limits.ts";
import { withNode } from "../harness/node.ts";

type Answer = { code: grpc.status; details: string; response?: Buffer };

/** Sends `bytes` as the request of `path` and resolves with the status. */
function raw(client: grpc.Client, path: string, bytes: Uint8Array): Promise<Answer> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
      (b: Buffer) => b,
      bytes,
      { deadline: Date.now() + 30_000 },
      (e, response) =>
        resolve(
          e
            ? { code: e.code, details: e.details }
            : { code: grpc.status.OK, details: "", response },
        ),
    );
  });
}

function unary<Req, Res>(
  client: ReturnType<typeof createClient>,
  method: "Put" | "Get" | "Stats",
  request: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client[method] as unknown as (
      r: Req,
      o: Partial<grpc.CallOptions>,
      cb: (e: grpc.ServiceError | null, r?: Res) => void,
    ) => void)(request, { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(e) : resolve(r!)));
  });
}

Deno.test({
  name:
    "request limits: a real node refuses oversized and malformed raw requests and keeps serving",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withNode({}, async (node) => {
      const client = new grpc.Client(node.address, grpc.credentials.createInsecure(), {
        "grpc.max_send_message_length": 64 * 2 ** 20,
      });
      const api = createClient(node.address);
      try {
        const rssBefore = Number(
          (await unary<object, { rss_bytes: string }>(api, "Stats", {})).rss_bytes,
        );

        // 7.8 million empty points: 15.6 MB that protobufjs would turn into 7.8 million objects.
        const points = Buffer.alloc(2 * 7_800_000);
        for (let i = 0; i < points.length; i += 2) points[i] = 0x0a;
        const t0 = performance.now();
        const batch = await raw(client, vectorDbService.PutBatch.path, points);
        const ms = performance.now() - t0;
        assert.equal(batch.code, grpc.status.RESOURCE_EXHAUSTED, batch.details);
        assert.equal(
          batch.details,
          `PutBatch.points has more than ${BATCH_POINTS_MAX} points (the limit) in a message ` +
            `of ${formatBytes(points.length)}`,
        );
        console.log(`request limits: 7.8M-point PutBatch refused in ${ms.toFixed(0)} ms`);

        const get = await raw(
          client,
          vectorDbService.Get.path,
          new Uint8Array(SMALL_REQUEST_BYTES_MAX + 100),
        );
        assert.equal(get.code, grpc.status.RESOURCE_EXHAUSTED);
        assert.equal(get.details, "Get message of 4.1 KiB exceeds the limit of 4 KiB");

        const copy = await raw(
          client,
          transferService.CopyBatch.path,
          new Uint8Array(COPY_BATCH_BYTES_MAX + 2 ** 20),
        );
        assert.equal(copy.code, grpc.status.RESOURCE_EXHAUSTED);
        assert.equal(copy.details, "CopyBatch message of 17 MiB exceeds the limit of 16 MiB");

        const gossip = await raw(
          client,
          gossipService.Exchange.path,
          new Uint8Array(GOSSIP_EXCHANGE_BYTES_MAX + 4096),
        );
        assert.equal(gossip.code, grpc.status.RESOURCE_EXHAUSTED);
        assert.match(gossip.details, /^Exchange message of 69\.1 KiB exceeds the limit of /);

        const truncated = await raw(client, vectorDbService.Put.path, new Uint8Array([0x12, 9]));
        assert.equal(truncated.code, grpc.status.INVALID_ARGUMENT);
        assert.match(truncated.details, /^Put message of 2 bytes is not valid protobuf: /);
        const undecodable = await raw(
          client,
          vectorDbService.Put.path,
          new Uint8Array([0x12, 3, 1, 2, 3]),
        );
        assert.equal(undecodable.code, grpc.status.INVALID_ARGUMENT);
        assert.match(undecodable.details, /^Put message of 5 bytes could not be decoded: /);
        const prune = await raw(client, transferService.Prune.path, new Uint8Array([0x0b]));
        assert.equal(prune.code, grpc.status.INVALID_ARGUMENT);
        assert.match(prune.details, /wire type 3 of field 1 \(groups are not used\)/);

        // Still serving, and the refused batch never grew the heap by gigabytes.
        await unary(api, "Put", { id: 7, vector: [1, 2, 3] });
        const got = await unary<object, { found: boolean; vector: number[] }>(api, "Get", {
          id: 7,
        });
        assert.deepEqual(got.vector, [1, 2, 3]);
        const rssAfter = Number(
          (await unary<object, { rss_bytes: string }>(api, "Stats", {})).rss_bytes,
        );
        console.log(
          `request limits: node RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, ` +
            `${(rssAfter / 2 ** 20).toFixed(0)} MiB after`,
        );
        assert.ok(rssAfter - rssBefore < 512 * 2 ** 20, `RSS grew by ${rssAfter - rssBefore}`);
        assert.equal(node.unexpected_exits.length, 0);
      } finally {
        client.close();
        api.close();
      }
    }),
});
