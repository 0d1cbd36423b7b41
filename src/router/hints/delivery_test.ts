import assert from "node:assert/strict";
import { DeliveryStateError, HintDelivery } from "./delivery.ts";

Deno.test("writes go direct until a hint is queued, then behind the hints until removed", () => {
  const h = new HintDelivery("n1");
  assert.equal(h.route(), "direct");
  h.receive({ type: "direct_result", ok: false }, 1000);
  assert.equal(h.reachable, false);
  h.receive({ type: "enqueued", count: 1 }, 1000);
  assert.equal(h.route(), "queue");
  assert.equal(h.waitForDelivery(), false, "the node is down: do not wait");
  h.receive({ type: "enqueued", count: 2 }, 1001);
  assert.equal(h.pending, 3);
  h.receive({ type: "removed", count: 3 }, 1002);
  assert.equal(h.route(), "direct");
  assert.throws(() => h.receive({ type: "removed", count: 1 }, 1003), DeliveryStateError);
  assert.throws(() => h.receive({ type: "enqueued", count: -1 }, 1003), DeliveryStateError);
});

Deno.test("a down node is retried every interval; a reachable one is replayed at once", () => {
  const h = new HintDelivery("n1", { retry_interval_ms: 500, pending: 2 });
  assert.equal(h.tick(0), "replay", "hints loaded at start are replayed at once");
  assert.equal(h.tick(1), "none", "one replay at a time");
  h.receive({ type: "replay_stopped", ok: false }, 10);
  assert.equal(h.reachable, false);
  assert.equal(h.tick(100), "none");
  assert.equal(h.tick(509), "none");
  assert.equal(h.tick(510), "replay");
  h.receive({ type: "removed", count: 1 }, 520);
  h.receive({ type: "replay_stopped", ok: true }, 520);
  assert.equal(h.reachable, true);
  assert.equal(h.waitForDelivery(), true, "one hint left, node up: waiting is worthwhile");
  assert.equal(h.tick(521), "replay", "reachable: no pause");
  h.receive({ type: "removed", count: 1 }, 530);
  h.receive({ type: "replay_stopped", ok: true }, 530);
  assert.equal(h.tick(531), "none", "nothing pending, node up");
});

Deno.test("a down node with no hints is probed each interval until it answers", () => {
  const h = new HintDelivery("n1", { retry_interval_ms: 200 });
  h.receive({ type: "direct_result", ok: false }, 0);
  assert.equal(h.tick(199), "none");
  assert.equal(h.tick(200), "probe");
  assert.equal(h.tick(201), "none");
  h.receive({ type: "probe_result", ok: false }, 250);
  assert.equal(h.tick(449), "none");
  assert.equal(h.tick(450), "probe");
  h.receive({ type: "probe_result", ok: true }, 460);
  assert.equal(h.reachable, true);
  assert.equal(h.tick(10_000), "none");
});

Deno.test("handoff rejects reports with nothing in flight and bad options", () => {
  const h = new HintDelivery("n1");
  assert.throws(
    () => h.receive({ type: "replay_stopped", ok: true }, 0),
    /Node n1: replay_stopped with nothing in flight/,
  );
  assert.throws(() => new HintDelivery("n", { retry_interval_ms: 0 }), /Retry interval 0 ms/);
  assert.throws(() => new HintDelivery("n", { pending: 1.5 }), /Pending hint count 1.5/);
});
