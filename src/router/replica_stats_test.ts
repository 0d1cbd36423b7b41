import assert from "node:assert/strict";
import { ReplicaStats } from "./replica_stats.ts";

Deno.test("ReplicaStats: EWMA of successful calls, in-flight count, cost = ewma × (1 + in flight)", () => {
  const s = new ReplicaStats({ alpha: 0.5 });
  assert.equal(s.cost("a"), 0, "a node never measured costs 0 (tried first)");
  s.begin("a");
  s.end("a", 10, true, 0);
  assert.equal(s.get("a")!.ewma_ms, 10, "the first sample is the average");
  s.begin("a");
  s.end("a", 20, true, 1);
  assert.equal(s.get("a")!.ewma_ms, 15);
  s.begin("a");
  s.begin("a");
  assert.equal(s.get("a")!.in_flight, 2);
  assert.equal(s.cost("a"), 15 * 3);
  s.end("a", 1000, false, 5);
  assert.equal(s.get("a")!.ewma_ms, 15, "a failure does not move the latency average");
  assert.equal(s.get("a")!.in_flight, 1);
  assert.equal(s.failedRecently("a", 5 + 999, 1000), true);
  assert.equal(s.failedRecently("a", 5 + 1000, 1000), false);
  assert.equal(s.failedRecently("b", 0, 1000), false);
  assert.equal(s.typical_ms, 15, "the all-nodes average saw 10 then 20");
  s.begin("a");
  s.end("a", 5000, true, 6, false);
  assert.equal(s.get("a")!.ewma_ms, 15, "an exact search's latency is not sampled");
  assert.equal(s.get("a")!.in_flight, 1, "its end is counted");
});

Deno.test("ReplicaStats: passed-over nodes decay toward being tried again; memory is bounded", () => {
  const s = new ReplicaStats({ decay: 0.5, nodes_max: 2 });
  s.begin("a");
  s.end("a", 8, true, 0);
  s.passedOver("a");
  s.passedOver("a");
  assert.equal(s.get("a")!.ewma_ms, 2);
  s.passedOver("zzz");
  assert.equal(s.get("zzz"), undefined, "passing over an unknown node records nothing");
  s.begin("b");
  s.begin("c");
  assert.equal(s.size, 2);
  assert.equal(s.get("a"), undefined, "the oldest entry went first");
  s.retain(["c"]);
  assert.deepEqual([...s.entries()].map(([n]) => n), ["c"]);
  assert.throws(() => new ReplicaStats({ alpha: 0 }), /alpha 0/);
  assert.throws(() => new ReplicaStats({ nodes_max: 0 }), /nodes_max 0/);
});
