import assert from "node:assert/strict";
import {
  GossipAgent,
  GossipAgentError,
  type GossipAgentOptions,
  type GossipClock,
  type GossipTransport,
  isRingMember,
  type MemberSource,
  type RingChange,
  RingFollower,
  ringFromMembers,
} from "./gossip_agent.ts";
import type { Member, MembershipEvent } from "./membership.ts";
import { SimClock } from "../sim/clock.ts";
import { Prng } from "../common/prng.ts";

/** An in-memory network of agents on a simulated clock; each hop takes 1 ms. */
class FakeNet {
  readonly clock = new SimClock();
  readonly agents = new Map<string, GossipAgent>();
  /** Addresses whose messages are lost (a killed process). */
  readonly down = new Set<string>();
  /** Addresses whose sends never finish. */
  readonly hang = new Set<string>();
  readonly forgotten: string[] = [];
  sends = 0;
  closed = 0;
  readonly prng = new Prng(7);

  readonly timers: GossipClock = {
    now: () => this.clock.now_ms,
    setTimer: (fn, delay_ms) => this.clock.after(delay_ms, fn),
    clearTimer: (handle) => void this.clock.cancel(handle as number),
  };

  transport(): GossipTransport {
    return {
      send: (to, envelope) => {
        this.sends++;
        return new Promise<void>((resolve, reject) => {
          if (this.hang.has(to)) return;
          this.clock.after(1, () => {
            const agent = this.agents.get(to);
            if (agent === undefined || this.down.has(to)) {
              reject(new Error(`${to} is unreachable`));
              return;
            }
            if (agent.deliver(envelope.from, JSON.parse(envelope.payload))) resolve();
            else reject(new Error(`${to} refused`));
          });
        });
      },
      forget: (address) => void this.forgotten.push(address),
      close: () => void this.closed++,
    };
  }

  add(id: string, extra: Partial<GossipAgentOptions> = {}): GossipAgent {
    const address = `${id}:1`;
    const agent = new GossipAgent({
      id,
      address,
      role: "node",
      seeds: ["n0:1"],
      transport: this.transport(),
      random: this.prng.fork(),
      clock: this.timers,
      ...extra,
    });
    this.agents.set(address, agent);
    this.down.delete(address);
    return agent;
  }

  /** Advances simulated time in 5 ms steps, letting promise callbacks run in between. */
  async run(ms: number): Promise<void> {
    const end = this.clock.now_ms + ms;
    while (this.clock.now_ms < end) {
      this.clock.runUntil(Math.min(end, this.clock.now_ms + 5));
      for (let i = 0; i < 10; i++) await Promise.resolve();
    }
  }
}

function stateOf(agent: GossipAgent, id: string): string | undefined {
  return agent.member(id)?.state;
}

Deno.test("agents converge, a silent one is declared dead everywhere and comes back after a restart", async () => {
  const net = new FakeNet();
  const [a, b, c] = ["n0", "n1", "n2"].map((id) => net.add(id));
  const events: MembershipEvent[] = [];
  a.onChange((e) => events.push(e));
  const changes: RingChange[] = [];
  const ring = new RingFollower(a, { on_change: (ch) => changes.push(ch) });
  assert.deepEqual(ring.nodeIds(), ["n0"]);
  for (const agent of [a, b, c]) agent.start();
  await net.run(3000);
  for (const agent of [a, b, c]) {
    assert.deepEqual(agent.members().map((m) => `${m.id}:${m.state}`), [
      "n0:alive",
      "n1:alive",
      "n2:alive",
    ]);
  }
  assert.deepEqual(ring.nodes(), [
    { id: "n0", address: "n0:1" },
    { id: "n1", address: "n1:1" },
    { id: "n2", address: "n2:1" },
  ]);
  const ring3 = ring.ring;
  assert.equal(ring3.size, 3);

  c.stop();
  assert.equal(net.closed, 1);
  net.down.add("n2:1");
  const killed_ms = net.clock.now_ms;
  let dead_everywhere_ms = -1;
  while (net.clock.now_ms - killed_ms < 8000) {
    await net.run(50);
    if (stateOf(a, "n2") === "dead" && stateOf(b, "n2") === "dead") {
      dead_everywhere_ms = net.clock.now_ms - killed_ms;
      break;
    }
  }
  assert.ok(dead_everywhere_ms > 0, "n2 was not declared dead within 8 s");
  assert.ok(dead_everywhere_ms <= 5000, `declared dead after ${dead_everywhere_ms} ms`);
  assert.ok(events.some((e) => e.type === "dead" && e.member.id === "n2"));
  assert.ok(net.forgotten.includes("n2:1"), "the dead member's connection was not forgotten");
  assert.deepEqual(ring.nodeIds(), ["n0", "n1"]);
  assert.notEqual(ring.ring, ring3, "the ring was mutated instead of replaced");
  assert.equal(ring3.size, 3);
  assert.deepEqual(changes.at(-1)?.removed, ["n2"]);

  const c2 = net.add("n2");
  c2.start();
  await net.run(5000);
  for (const agent of [a, b]) {
    const m = agent.member("n2")!;
    assert.equal(m.state, "alive");
    assert.ok(m.incarnation >= 1, `incarnation ${m.incarnation} did not grow`);
  }
  assert.ok(events.some((e) => e.type === "joined" && e.member.id === "n2" && e.at_ms > killed_ms));
  assert.deepEqual(ring.nodeIds(), ["n0", "n1", "n2"]);
  assert.deepEqual(changes.at(-1)?.added, ["n2"]);
  ring.close();
  for (const agent of [a, b, c2]) agent.stop();
  assert.equal(net.clock.pending, 0, "a stopped agent left a timer behind");
});

Deno.test("leave: the others see left, and leave() waits for its messages", async () => {
  const net = new FakeNet();
  const [a, b, c] = ["n0", "n1", "n2"].map((id) => net.add(id));
  for (const agent of [a, b, c]) agent.start();
  await net.run(3000);
  let left = false;
  const leaving = b.leave().then(() => (left = true));
  assert.equal(left, false);
  await net.run(20);
  await leaving;
  assert.equal(b.self.state, "left");
  assert.equal(b.outstanding, 0);
  assert.equal(stateOf(a, "n1"), "left");
  assert.equal(stateOf(c, "n1"), "left");
  await net.run(3000);
  assert.equal(stateOf(a, "n1"), "left", "a left member came back");
  await b.leave(); // a second leave does nothing
  for (const agent of [a, b, c]) agent.stop();
});

Deno.test("leave gives up after leave_wait_ms when sends hang", async () => {
  const net = new FakeNet();
  const a = net.add("n0", { leave_wait_ms: 1000 });
  const b = net.add("n1");
  a.start();
  b.start();
  await net.run(3000);
  assert.equal(stateOf(a, "n1"), "alive");
  net.hang.add("n1:1");
  let done = false;
  const leaving = a.leave().then(() => (done = true));
  await net.run(900);
  assert.equal(done, false, "leave() returned before its message went out");
  await net.run(200);
  assert.equal(done, true, "leave() did not give up after leave_wait_ms");
  await leaving;
  a.stop();
  b.stop();
});

Deno.test("a peer's queue is bounded: the oldest message is dropped and counted", async () => {
  const net = new FakeNet();
  net.hang.add("n0:1");
  const a = net.add("n1", { queue_max: 4, in_flight_per_peer_max: 2 });
  a.start();
  await net.run(12_000); // join retries to the hanging seed, about one a second
  assert.equal(net.sends, 2, "more sends than in_flight_per_peer_max were started");
  assert.equal(a.outstanding, 6);
  assert.ok(a.stats.dropped_queue_full >= 3, `dropped ${a.stats.dropped_queue_full}`);
  a.stop();
  assert.equal(a.outstanding, 2, "stop() kept queued messages");
});

Deno.test("a message over payload_bytes_max is dropped and counted, never sent", async () => {
  const net = new FakeNet();
  net.add("n0");
  const a = net.add("n1", { meta: { blob: "é".repeat(150) }, payload_bytes_max: 300 });
  a.start();
  await net.run(3000);
  assert.equal(net.sends, 0);
  assert.ok(a.stats.dropped_oversize >= 2, `dropped ${a.stats.dropped_oversize}`);
  a.stop();
});

Deno.test("deliver: refused unless running; malformed messages are counted", async () => {
  const net = new FakeNet();
  const a = net.add("n0", { seeds: [] });
  assert.equal(a.deliver("x:1", { v: 1 }), false);
  a.stop();
  assert.throws(() => a.start(), GossipAgentError);
  const b = net.add("n1", { seeds: [] });
  b.start();
  assert.throws(() => b.start(), GossipAgentError);
  assert.equal(b.deliver("x:1", { v: 1, type: "ping" }), true);
  assert.equal(b.membership.stats.malformed, 1);
  assert.equal(b.stats.received, 1);
  await net.run(100);
  b.stop();
  assert.equal(b.deliver("x:1", { v: 1 }), false);
  assert.equal(b.stats.refused, 1);
  assert.equal(a.stats.refused, 1);
  assert.equal(net.clock.pending, 0);
});

Deno.test("a throwing listener is counted and the agent keeps working", async () => {
  const net = new FakeNet();
  const logged: string[] = [];
  const a = net.add("n0", { logger: (m) => logged.push(m) });
  const b = net.add("n1");
  a.onChange(() => {
    throw new Error("listener bug");
  });
  const seen: string[] = [];
  const unsubscribe = a.onChange((e) => seen.push(`${e.type} ${e.member.id}`));
  a.start();
  b.start();
  await net.run(2000);
  assert.ok(a.stats.listener_errors >= 1);
  assert.ok(logged.some((m) => m.includes("listener bug")));
  assert.deepEqual(seen, ["joined n1"]);
  unsubscribe();
  assert.equal(stateOf(a, "n1"), "alive");
  a.stop();
  b.stop();
});

Deno.test("bad options are rejected with the value quoted", () => {
  const net = new FakeNet();
  assert.throws(
    () => net.add("n0", { queue_max: 0 }),
    (e: unknown) => e instanceof GossipAgentError && /queue_max 0/.test(e.message),
  );
  assert.throws(() => net.add("n0", { send_timeout_ms: 1.5 }), GossipAgentError);
});

function member(id: string, state: Member["state"], role: "node" | "router", address = `${id}:1`) {
  return { id, address, state, incarnation: 0, meta: { role }, state_since_ms: 0 } as Member;
}

class FakeSource implements MemberSource {
  list: Member[] = [];
  #listeners = new Set<(e: MembershipEvent) => void>();
  members(): Member[] {
    return this.list.slice();
  }
  onChange(listener: (e: MembershipEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  emit(m: Member): void {
    for (const l of this.#listeners) l({ type: "updated", member: m, at_ms: 0 });
  }
  get listeners(): number {
    return this.#listeners.size;
  }
}

Deno.test("RingFollower: alive and suspect nodes only; changes reported; routers ignored", () => {
  const src = new FakeSource();
  src.list = [
    member("r1", "alive", "router"),
    member("a", "alive", "node"),
    member("b", "suspect", "node"),
    member("c", "dead", "node"),
    member("d", "left", "node"),
  ];
  const changes: RingChange[] = [];
  const f = new RingFollower(src, { vnodes_per_member: 16, on_change: (c) => changes.push(c) });
  assert.deepEqual(f.nodeIds(), ["a", "b"]);
  assert.equal(f.ring.vnodes_per_member, 16);
  assert.deepEqual(changes.map((c) => [c.added, c.removed]), [[["a", "b"], []]]);
  assert.equal(f.addressOf("a"), "a:1");
  assert.equal(f.addressOf("r1"), undefined);
  const expected = ringFromMembers(src.list, { vnodes_per_member: 16 });
  for (let id = 0; id < 200; id++) assert.deepEqual(f.ring.owners(id, 2), expected.owners(id, 2));

  const before = f.ring;
  src.emit(src.list[0]); // nothing changed for the ring
  assert.equal(changes.length, 1);
  assert.equal(f.ring, before);

  src.list = [member("a", "alive", "node", "a:2"), member("c", "alive", "node")];
  src.emit(src.list[0]);
  assert.equal(changes.length, 2);
  assert.deepEqual(changes[1].added, ["c"]);
  assert.deepEqual(changes[1].removed, ["b"]);
  assert.deepEqual(changes[1].readdressed, ["a"]);
  assert.deepEqual(f.nodes(), [{ id: "a", address: "a:2" }, { id: "c", address: "c:1" }]);
  assert.equal(before.size, 2, "the old ring was mutated");
  assert.ok(changes[1].ring === f.ring);

  src.list = [member("a", "alive", "node", "a:3"), member("c", "alive", "node")];
  src.emit(src.list[0]);
  assert.deepEqual(changes[2].readdressed, ["a"]);
  assert.equal(changes[2].ring, changes[1].ring, "an address change rebuilt the ring");

  f.close();
  assert.equal(src.listeners, 0);
  assert.ok(isRingMember(member("x", "suspect", "node")));
  assert.ok(!isRingMember(member("x", "alive", "router")));
});
