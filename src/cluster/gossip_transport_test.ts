import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import {
  addGossipService,
  GOSSIP_CHANNEL_OPTIONS,
  GOSSIP_EXCHANGE_BYTES_MAX,
  GossipEnvelopeError,
  gossipService,
  GossipTransportClosedError,
  GrpcGossipTransport,
  parseEnvelope,
} from "./gossip_transport.ts";
import { GOSSIP_PAYLOAD_BYTES_MAX } from "./gossip_agent.ts";

function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function rejectsWith(code: grpc.status, request: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseEnvelope(request),
    (e: unknown) => {
      assert.ok(e instanceof GossipEnvelopeError);
      assert.equal(grpc.status[e.code], grpc.status[code]);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

Deno.test("parseEnvelope accepts a JSON object from an address", () => {
  const r = parseEnvelope({ from: "127.0.0.1:5", payload: '{"v":1,"type":"ping"}' });
  assert.equal(r.from, "127.0.0.1:5");
  assert.deepEqual(r.message, { v: 1, type: "ping" });
  const big = JSON.stringify({ pad: "x".repeat(GOSSIP_PAYLOAD_BYTES_MAX - 10) });
  assert.equal(big.length, GOSSIP_PAYLOAD_BYTES_MAX);
  assert.equal(parseEnvelope({ from: "a:1", payload: big }).from, "a:1");
});

Deno.test("parseEnvelope rejects bad senders, non-objects and oversize payloads", () => {
  const INVALID = grpc.status.INVALID_ARGUMENT;
  rejectsWith(INVALID, { from: "", payload: "{}" }, /sender address ""/);
  rejectsWith(INVALID, { from: "a".repeat(257), payload: "{}" }, /1 to 256 characters/);
  rejectsWith(INVALID, { payload: "{}" }, /sender address "undefined"/);
  rejectsWith(INVALID, { from: "a:1" }, /payload is missing/);
  rejectsWith(INVALID, { from: "a:1", payload: "not json" }, /"not json" is not a JSON object/);
  rejectsWith(INVALID, { from: "a:1", payload: "[1]" }, /not a JSON object/);
  rejectsWith(INVALID, { from: "a:1", payload: "null" }, /not a JSON object/);
  const over = JSON.stringify({ pad: "x".repeat(GOSSIP_PAYLOAD_BYTES_MAX - 9) });
  rejectsWith(grpc.status.RESOURCE_EXHAUSTED, { from: "a:1", payload: over }, /65537 bytes/);
  // Counted in UTF-8 bytes, not characters.
  const wide = JSON.stringify({ pad: "é".repeat(GOSSIP_PAYLOAD_BYTES_MAX / 2) });
  rejectsWith(grpc.status.RESOURCE_EXHAUSTED, { from: "a:1", payload: wide }, /over the 65536/);
});

Deno.test("GrpcGossipTransport: fails fast to a closed port, caps its clients, rejects once closed", async () => {
  const t = new GrpcGossipTransport({ peers_max: 2 });
  const ports = [closedPort(), closedPort(), closedPort()];
  try {
    for (const port of ports) {
      await assert.rejects(
        t.send(`127.0.0.1:${port}`, { from: "me:1", payload: "{}" }, 2000),
        (e: unknown) => {
          const code = (e as grpc.ServiceError).code;
          assert.ok(
            code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED,
            `unexpected status ${grpc.status[code]}`,
          );
          return true;
        },
      );
    }
    assert.equal(t.size, 2);
    assert.equal(t.stats.clients_opened, 3);
    assert.equal(t.stats.clients_evicted, 1);
    t.heard(`127.0.0.1:${ports[2]}`); // its channel is backing off: replaced
    t.forget(`127.0.0.1:${ports[1]}`);
    assert.equal(t.size, 2 - t.stats.clients_reset - 1);
  } finally {
    t.close();
  }
  assert.equal(t.size, 0);
  await assert.rejects(
    t.send("127.0.0.1:1", { from: "me:1", payload: "{}" }, 100),
    GossipTransportClosedError,
  );
  assert.throws(() => new GrpcGossipTransport({ idle_ms: 0 }), /idle_ms 0/);
});

Deno.test("Gossip Exchange: raw requests over the size limit or malformed are refused before decoding; the server keeps serving", async () => {
  assert.equal(GOSSIP_EXCHANGE_BYTES_MAX, GOSSIP_CHANNEL_OPTIONS["grpc.max_send_message_length"]);
  const delivered: string[] = [];
  const server = new grpc.Server();
  addGossipService(server, {
    deliver: (from) => {
      delivered.push(from);
      return true;
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => (e ? reject(e) : resolve(p)),
    )
  );
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const raw = (bytes: Uint8Array) =>
    new Promise<{ code: grpc.status; details: string }>((resolve) => {
      client.makeUnaryRequest(
        gossipService.Exchange.path,
        (b: Uint8Array) => Buffer.from(b),
        (b: Buffer) => b,
        bytes,
        { deadline: Date.now() + 5000 },
        (e) => resolve(e ? { code: e.code, details: e.details } : { code: 0, details: "" }),
      );
    });
  try {
    const big = await raw(new Uint8Array(GOSSIP_EXCHANGE_BYTES_MAX + 1));
    assert.equal(big.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      big.details,
      `Exchange message of ${GOSSIP_EXCHANGE_BYTES_MAX + 1} bytes exceeds the limit of ` +
        `${GOSSIP_EXCHANGE_BYTES_MAX} bytes`,
    );
    const bad = await raw(new Uint8Array([0x0a, 0x40, 0x61]));
    assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
    assert.match(bad.details, /^Exchange message of 3 bytes is not valid protobuf: field 1 runs/);
    const many = await raw(new Uint8Array(200).fill(0).map((_, i) => (i % 2 ? 0 : 0x12)));
    assert.equal(many.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(many.details, /^Exchange message has more than 64 wire fields/);
    assert.deepEqual(delivered, []);
    const ok = gossipService.Exchange.requestSerialize({ from: "a:1", payload: "{}" });
    assert.deepEqual(await raw(ok), { code: 0, details: "" });
    assert.deepEqual(delivered, ["a:1"]);
  } finally {
    client.close();
    server.forceShutdown();
  }
});
