import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  GossipEnvelopeError,
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
