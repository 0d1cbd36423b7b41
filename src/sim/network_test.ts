import assert from "node:assert/strict";
import { SimNetwork, SimNetworkError } from "./network.ts";
import { Prng } from "../common/prng.ts";

type Msg = { n: number };

function net(seed = 1, opts: Partial<ConstructorParameters<typeof SimNetwork<Msg>>[0]> = {}) {
  const n = new SimNetwork<Msg>({ prng: new Prng(seed), ...opts });
  const got: string[] = [];
  for (const a of ["a", "b", "c"]) {
    n.register(a, (from, msg, now) => got.push(`${now} ${from}->${a} ${msg.n}`));
  }
  return { n, got };
}

Deno.test("messages arrive after a delay within the range, as copies", () => {
  const { n } = net(1, { delay_min_ms: 5, delay_max_ms: 9 });
  const seen: number[] = [];
  const sent = { n: 1 };
  n.unregister("b");
  n.register("b", (_from, msg, now) => {
    assert.notEqual(msg, sent);
    seen.push(now);
  });
  for (let i = 0; i < 200; i++) n.send("a", "b", sent);
  n.runUntil(100);
  assert.equal(seen.length, 200);
  assert.ok(seen.every((t) => t >= 5 && t <= 9));
  assert.ok(new Set(seen).size > 1, "no delay variation");
  assert.equal(n.stats.delivered, 200);
});

Deno.test("random delays reorder messages; same-instant deliveries keep send order", () => {
  const { n, got } = net(2, { delay_min_ms: 1, delay_max_ms: 50 });
  for (let i = 0; i < 50; i++) n.send("a", "b", { n: i });
  n.runUntil(100);
  const order = got.map((g) => Number(g.split(" ")[2]));
  assert.notDeepEqual(order, [...order].sort((x, y) => x - y));
  const fixed = net(2, { delay_min_ms: 3, delay_max_ms: 3 });
  for (let i = 0; i < 20; i++) fixed.n.send("a", "b", { n: i });
  fixed.n.runUntil(10);
  assert.deepEqual(
    fixed.got.map((g) => Number(g.split(" ")[2])),
    Array.from({ length: 20 }, (_, i) => i),
  );
});

Deno.test("loss and duplication happen at about their configured rates", () => {
  const { n } = net(3, { loss: 0.2, duplicate: 0.1 });
  for (let i = 0; i < 10_000; i++) n.send("a", "b", { n: i });
  n.runUntil(1000);
  const s = n.stats;
  assert.ok(s.dropped_loss > 1700 && s.dropped_loss < 2300, `lost ${s.dropped_loss}`);
  assert.ok(s.duplicated > 600 && s.duplicated < 1000, `duplicated ${s.duplicated}`);
  assert.equal(s.delivered, 10_000 - s.dropped_loss + s.duplicated);
});

Deno.test("cuts block both ways or one way, at send and at delivery; restore and heal", () => {
  const { n, got } = net(4, { delay_min_ms: 10, delay_max_ms: 10 });
  const id = n.cut(["a"], ["b"]);
  n.send("a", "b", { n: 1 });
  n.send("b", "a", { n: 2 });
  n.send("a", "c", { n: 3 });
  n.restore(id);
  n.cut(["a"], ["b"], { one_way: true });
  n.send("a", "b", { n: 4 });
  n.send("b", "a", { n: 5 });
  n.heal();
  n.send("a", "b", { n: 6 });
  n.cut(["a"], ["b"], { one_way: true }); // cut while 6 is in flight
  n.runUntil(100);
  assert.deepEqual(got.map((g) => g.split(" ").slice(1).join(" ")), ["a->c 3", "b->a 5"]);
  assert.equal(n.stats.dropped_cut, 4);
  assert.equal(n.isCut("a", "b"), true);
  assert.equal(n.isCut("a", "c"), false);
});

Deno.test("messages to an unregistered node are dropped", () => {
  const { n, got } = net(5);
  n.send("a", "b", { n: 1 });
  n.unregister("b");
  n.send("a", "b", { n: 2 });
  n.runUntil(100);
  assert.deepEqual(got, []);
  assert.equal(n.stats.dropped_down, 2);
});

Deno.test("the same seed gives the same deliveries", () => {
  const run = (seed: number) => {
    const { n, got } = net(seed, { loss: 0.1, duplicate: 0.1, delay_max_ms: 30 });
    for (let i = 0; i < 300; i++) {
      n.send(["a", "b", "c"][i % 3]!, ["b", "c", "a"][i % 3]!, { n: i });
    }
    n.runUntil(1000);
    return got;
  };
  assert.deepEqual(run(9), run(9));
  assert.notDeepEqual(run(9), run(10));
});

Deno.test("limits and bad configuration are errors", () => {
  assert.throws(
    () => net(1, { loss: 1.5 }),
    (e) => e instanceof SimNetworkError && /1.5/.test(e.message),
  );
  assert.throws(() => net(1, { delay_min_ms: 5, delay_max_ms: 2 }), SimNetworkError);
  const { n } = net(1, { in_flight_max: 2, message_bytes_max: 20 });
  assert.throws(() => n.register("a", () => {}), /already registered/);
  n.send("a", "b", { n: 1 });
  n.send("a", "b", { n: 2 });
  assert.throws(() => n.send("a", "b", { n: 3 }), /full at 2/);
  assert.throws(() => n.send("a", "b", { n: 1e20 }), /exceeds the limit of 20 bytes/);
});
