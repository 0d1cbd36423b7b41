import assert from "node:assert/strict";
import {
  Membership,
  MEMBERSHIP_DEFAULTS,
  MembershipClockError,
  MembershipConfigError,
  type MembershipEvent,
  type MembershipMessage,
  type MembershipOptions,
  type Outgoing,
  type WireUpdate,
} from "./membership.ts";
import { Prng } from "../common/prng.ts";
import { INCARNATION_MAX } from "../common/limits.ts";

// ------------------------------------------------------------------ helpers

function node(opts: Partial<MembershipOptions> = {}) {
  const events: MembershipEvent[] = [];
  const m = new Membership({
    id: "a",
    address: "addr-a",
    meta: { role: "node" },
    seeds: ["addr-s", "addr-a"],
    random: new Prng(7),
    on_event: (e) => events.push(e),
    ...opts,
  });
  return { m, events };
}

function alive(id: string, inc = 0, role: "node" | "router" = "node"): WireUpdate {
  return { state: "alive", id, inc, addr: `addr-${id}`, meta: { role } };
}

function sync(from: string, members: WireUpdate[], reply = false): MembershipMessage {
  return { type: "sync", v: 1, from, reply, members };
}

function gossip(from: string, updates: WireUpdate[]): MembershipMessage {
  return { type: "gossip", v: 1, from, updates };
}

/** Node "a" that joined a cluster of b, c, d, e at t = 1. */
function withPeers(opts: Partial<MembershipOptions> = {}) {
  const n = node(opts);
  n.m.tick(0);
  n.m.receive("addr-b", sync("b", ["b", "c", "d", "e"].map((p) => alive(p))), 1);
  return n;
}

function ofType<T extends MembershipMessage["type"]>(out: Outgoing[], type: T) {
  return out.filter((o) => o.msg.type === type) as {
    to: string;
    msg: Extract<MembershipMessage, { type: T }>;
  }[];
}

/** Ticks at every deadline up to `until`, acking pings to anyone but `silent`. */
function drive(m: Membership, until: number, silent: ReadonlySet<string>): Outgoing[] {
  const all: Outgoing[] = [];
  for (;;) {
    const t = m.nextTickAt();
    if (t > until) break;
    const out = m.tick(t);
    all.push(...out);
    for (const o of ofType(out, "ping")) {
      if (silent.has(o.msg.target)) continue;
      const ack = { type: "ack", v: 1, from: o.msg.target, seq: o.msg.seq, updates: [] };
      all.push(...m.receive(o.to, ack, t + 1));
    }
  }
  return all;
}

/** Ticks at each deadline until a probe ping goes out. */
function nextPing(m: Membership) {
  for (;;) {
    const t0 = m.nextTickAt();
    const [ping] = ofType(m.tick(t0), "ping");
    if (ping !== undefined) return { ping, t0 };
  }
}

function states(m: Membership): Record<string, string> {
  return Object.fromEntries(m.members().map((x) => [x.id, `${x.state}@${x.incarnation}`]));
}

// ------------------------------------------------------------------ construction

Deno.test("constructor rejects invalid options with specific errors", () => {
  assert.throws(
    () => node({ probe_timeout_ms: 500 }),
    (e) => e instanceof MembershipConfigError && /Probe timeout 500 ms/.test(e.message),
  );
  assert.throws(
    () => node({ period_ms: -1 }),
    (e) => e instanceof MembershipConfigError && /period_ms -1/.test(e.message),
  );
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => node({ meta: { role: "db" } as any }),
    (e) => e instanceof MembershipConfigError && /"db"/.test(e.message),
  );
  assert.throws(() => node({ id: "" }), MembershipConfigError);
  assert.throws(() => node({ incarnation: -1 }), MembershipConfigError);
  const { m } = node();
  assert.throws(() => m.tick(NaN), MembershipClockError);
  assert.equal(m.tuning.period_ms, MEMBERSHIP_DEFAULTS.period_ms);
});

// ------------------------------------------------------------------ join

Deno.test("first tick asks the seeds (not itself) for state; the answer joins all", () => {
  const { m, events } = node({ seeds: ["addr-a", "addr-s1", "addr-s2"] });
  assert.equal(m.nextTickAt(), 0);
  const out = ofType(m.tick(0), "sync");
  assert.deepEqual(out.map((o) => o.to).sort(), ["addr-s1", "addr-s2"]);
  assert.equal(out[0]?.msg.reply, true);
  assert.deepEqual(out[0]?.msg.members[0], alive("a"));
  const answer = m.receive(
    "addr-s1",
    sync("s1", [alive("s1"), alive("s2", 3, "router"), alive("a")]),
    5,
  );
  assert.deepEqual(answer, []);
  assert.deepEqual(events.map((e) => `${e.type} ${e.member.id}`), ["joined s1", "joined s2"]);
  const s2 = m.member("s2");
  assert.equal(s2?.meta.role, "router");
  assert.equal(s2?.incarnation, 3);
  assert.equal(m.liveCount(), 3);
});

Deno.test("a sync request is answered with the full state", () => {
  const { m } = withPeers();
  const out = m.receive("addr-x", sync("x", [alive("x")], true), 10);
  const [reply] = ofType(out, "sync");
  assert.equal(reply?.to, "addr-x");
  assert.equal(reply?.msg.reply, false);
  assert.deepEqual(reply?.msg.members.map((u) => u.id).sort(), ["a", "b", "c", "d", "e", "x"]);
});

Deno.test("join attempts repeat every join_retry_ms until a sync answer arrives", () => {
  const { m } = node({ seeds: ["addr-s"] });
  assert.equal(ofType(m.tick(0), "sync").length, 1);
  // Gossip alone (no sync answer) does not end the join phase.
  m.receive("addr-b", gossip("b", [alive("b")]), 10);
  const t = m.nextTickAt();
  assert.ok(t <= 1250, `next tick ${t}`);
  const again = ofType(drive(m, 1250, new Set()), "sync").filter((o) => o.to === "addr-s");
  assert.equal(again.length, 1);
});

// ------------------------------------------------------------------ probing

Deno.test("ping is acked with the same seq; a ping for another id is not", () => {
  const { m } = withPeers();
  const out = m.receive("addr-b", {
    type: "ping",
    v: 1,
    from: "b",
    seq: 42,
    target: "a",
    updates: [],
  }, 5);
  const [ack] = ofType(out, "ack");
  assert.equal(ack?.to, "addr-b");
  assert.equal(ack?.msg.seq, 42);
  const wrong = m.receive("addr-b", {
    type: "ping",
    v: 1,
    from: "b",
    seq: 43,
    target: "z",
    updates: [],
  }, 6);
  assert.equal(ofType(wrong, "ack").length, 0);
  assert.equal(m.stats.misdirected, 1);
});

Deno.test("failed probe: ping_req after the timeout, suspect at period end, dead after max", () => {
  const { m, events } = withPeers();
  const { ping, t0 } = nextPing(m);
  const target = ping.msg.target;
  assert.ok(m.nextTickAt() <= t0 + 200);
  assert.deepEqual(ofType(m.tick(t0 + 199), "ping_req"), []);
  const reqs = ofType(m.tick(t0 + 200), "ping_req");
  assert.equal(reqs.length, 3);
  assert.ok(reqs.every((r) => r.msg.target === target && r.msg.seq === ping.msg.seq));
  assert.ok(!reqs.some((r) => r.to === `addr-${target}`));
  assert.ok(m.nextTickAt() <= t0 + 500);
  m.tick(t0 + 499);
  assert.equal(m.member(target)?.state, "alive");
  const next = ofType(m.tick(t0 + 500), "ping");
  assert.equal(m.member(target)?.state, "suspect");
  assert.equal(m.localHealth, 3, "three missing nacks");
  for (const o of next) {
    m.receive(
      o.to,
      { type: "ack", v: 1, from: o.msg.target, seq: o.msg.seq, updates: [] },
      t0 + 501,
    );
  }
  assert.deepEqual(events.at(-1)?.type, "suspect");
  // n = 5: min = 3 * 1 * 500 = 1500, max = 3000; no confirmation → dead at t0 + 500 + 3000.
  drive(m, t0 + 3499, new Set([target]));
  assert.equal(m.member(target)?.state, "suspect");
  const out = drive(m, t0 + 3500, new Set([target]));
  assert.equal(m.member(target)?.state, "dead");
  assert.equal(events.at(-1)?.type, "dead");
  const told = ofType(out, "gossip").filter((o) => o.msg.updates[0]?.state === "dead");
  assert.equal(told.length, 3, "gossip_fanout members told at once");
});

Deno.test("independent suspicions shrink the suspicion timeout towards min", () => {
  for (
    const [confirmers, expected] of [[[], 3000], [["c"], 2250], [["c", "d"], 1811], [
      ["c", "d", "e"],
      1500,
    ]] as const
  ) {
    const { m } = withPeers();
    const t0 = 100;
    m.tick(0.5);
    m.receive("addr-b", gossip("b", [{ state: "suspect", id: "x", inc: 0, by: "b" }]), t0);
    m.receive("addr-x", sync("x", [alive("x")]), t0);
    m.receive("addr-b", gossip("b", [{ state: "suspect", id: "x", inc: 0, by: "b" }]), t0);
    assert.equal(m.member("x")?.state, "suspect");
    for (const c of confirmers) {
      m.receive(`addr-${c}`, gossip(c, [{ state: "suspect", id: "x", inc: 0, by: c }]), t0 + 10);
    }
    // n = 6 (a, b, c, d, e, x): k = min(3, 4) = 3.
    // x answers its pings (this node never accuses it itself), but cannot refute.
    drive(m, t0 + expected - 1, new Set());
    assert.equal(m.member("x")?.state, "suspect", `${confirmers.length} confirmations`);
    drive(m, t0 + expected, new Set());
    assert.equal(m.member("x")?.state, "dead", `${confirmers.length} confirmations`);
  }
});

Deno.test("nacks from intermediaries keep the local health multiplier down", () => {
  const { m } = withPeers();
  const { ping, t0 } = nextPing(m);
  const reqs = ofType(m.tick(t0 + 200), "ping_req");
  for (const r of reqs.slice(0, 2)) {
    const helper = r.to.slice("addr-".length);
    m.receive(r.to, { type: "nack", v: 1, from: helper, seq: ping!.msg.seq }, t0 + 400);
  }
  m.tick(t0 + 500);
  assert.equal(m.localHealth, 1, "one nack missing");
});

Deno.test("LHM scales the probe interval and timeout, and acks bring it back down", () => {
  const { m } = withPeers({ lhm_max: 2 });
  const first = nextPing(m);
  const t0 = first.t0 + 500;
  const [ping] = ofType(m.tick(t0), "ping");
  assert.equal(m.localHealth, 2, "three missing nacks, capped at lhm_max");
  assert.ok(ping);
  assert.deepEqual(ofType(m.tick(t0 + 599), "ping_req"), []);
  assert.equal(ofType(m.tick(t0 + 600), "ping_req").length, 2, "probe timeout x3");
  m.receive(
    ping.to,
    { type: "ack", v: 1, from: ping.msg.target, seq: ping.msg.seq, updates: [] },
    t0 + 5,
  );
  assert.equal(m.localHealth, 1);
  let next = m.nextTickAt();
  while (ofType(m.tick(next), "ping").length === 0) next = m.nextTickAt();
  assert.equal(next, t0 + 1500, "period x3 chosen when the probe started");
});

Deno.test("ping_req: the intermediary forwards the ack, or nacks after the probe timeout", () => {
  const { m } = withPeers();
  m.tick(0.5);
  const req = {
    type: "ping_req",
    v: 1,
    from: "b",
    seq: 7,
    target: "c",
    target_addr: "addr-c",
    updates: [],
  };
  const [ping] = ofType(m.receive("addr-b", req, 10), "ping");
  assert.equal(ping?.to, "addr-c");
  const fwd = m.receive(
    "addr-c",
    { type: "ack", v: 1, from: "c", seq: ping!.msg.seq, updates: [] },
    20,
  );
  const [ack] = ofType(fwd, "ack");
  assert.deepEqual([ack?.to, ack?.msg.seq], ["addr-b", 7]);

  const [ping2] = ofType(m.receive("addr-b", { ...req, seq: 8 }, 30), "ping");
  assert.ok(ping2);
  assert.equal(ofType(m.tick(229), "nack").length, 0);
  const [nack] = ofType(m.tick(230), "nack");
  assert.deepEqual([nack?.to, nack?.msg.seq], ["addr-b", 8]);
});

// ------------------------------------------------------------------ incarnations

Deno.test("a suspicion about itself is refuted with a higher incarnation", () => {
  const { m } = withPeers();
  m.tick(0.5);
  const out = m.receive(
    "addr-b",
    gossip("b", [{ state: "suspect", id: "a", inc: 0, by: "b" }]),
    10,
  );
  assert.equal(m.incarnation, 1);
  assert.equal(m.stats.refutations, 1);
  assert.equal(m.localHealth, 1);
  const told = ofType(out, "gossip");
  assert.ok(told.some((o) => o.to === "addr-b"), "the accuser hears the refutation directly");
  assert.equal(told.length, 1 + MEMBERSHIP_DEFAULTS.gossip_fanout, "and gossip_fanout others");
  for (const o of told) assert.deepEqual(o.msg.updates, [alive("a", 1)]);
  // A dead claim from the future is refuted too; a stale one only re-queues the alive.
  m.receive("addr-c", gossip("c", [{ state: "dead", id: "a", inc: 5, by: "c" }]), 11);
  assert.equal(m.incarnation, 6);
  m.receive("addr-c", gossip("c", [{ state: "suspect", id: "a", inc: 2, by: "c" }]), 12);
  assert.equal(m.incarnation, 6);
  const ack = ofType(
    m.receive("addr-d", { type: "ping", v: 1, from: "d", seq: 1, target: "a", updates: [] }, 13),
    "ack",
  )[0];
  assert.deepEqual(ack?.msg.updates[0], alive("a", 6));
});

Deno.test("incarnation rules: who beats whom", () => {
  const { m, events } = withPeers();
  events.length = 0;
  const at = (u: WireUpdate) => m.receive("addr-b", gossip("b", [u]), 10);
  at({ state: "suspect", id: "c", inc: 0, by: "b" });
  assert.equal(m.member("c")?.state, "suspect");
  at(alive("c", 0));
  assert.equal(m.member("c")?.state, "suspect", "alive needs a higher incarnation");
  at(alive("c", 1));
  assert.equal(m.member("c")?.state, "alive");
  at({ state: "suspect", id: "c", inc: 0, by: "b" });
  assert.equal(m.member("c")?.state, "alive", "stale suspicion");
  at({ state: "dead", id: "c", inc: 1, by: "b" });
  assert.equal(m.member("c")?.state, "dead");
  at(alive("c", 1));
  at({ state: "suspect", id: "c", inc: 1, by: "b" });
  assert.equal(m.member("c")?.state, "dead", "no resurrection at the same incarnation");
  at(alive("c", 2, "router"));
  assert.equal(m.member("c")?.state, "alive");
  assert.deepEqual(
    events.filter((e) => e.member.id === "c").map((e) => `${e.type}@${e.member.incarnation}`),
    ["suspect@0", "alive@1", "dead@1", "joined@2"],
  );
  at({ state: "suspect", id: "unknown", inc: 0, by: "b" });
  at({ state: "dead", id: "unknown2", inc: 0, by: "b" });
  assert.equal(m.member("unknown"), undefined);
  assert.equal(m.member("unknown2"), undefined);
});

Deno.test("incarnations above what the subject can answer are dropped and counted", () => {
  const { m, events } = withPeers();
  events.length = 0;
  const at = (u: WireUpdate, now = 10) => m.receive("addr-b", gossip("b", [u, alive("e", 3)]), now);
  // A forged dead claim at 2^53 - 1 about this node: dropped; the node stays alive, unrefuted.
  at({ state: "dead", id: "a", inc: Number.MAX_SAFE_INTEGER, by: "b" });
  assert.equal(m.stats.incarnations_refused, 1);
  assert.equal(m.stats.malformed, 0, "only the update is dropped, not the message");
  assert.equal(m.member("e")?.incarnation, 3, "the rest of the message applies");
  assert.equal(m.incarnation, 0);
  assert.equal(m.stats.refutations, 0);
  assert.equal(m.member("a")?.state, "alive");
  // About another member: it stays alive, where before it was dead for good.
  at({ state: "dead", id: "c", inc: Number.MAX_SAFE_INTEGER, by: "b" });
  at({ state: "left", id: "c", inc: INCARNATION_MAX, by: "b" });
  at({ state: "suspect", id: "c", inc: INCARNATION_MAX, by: "b" });
  at(alive("d", INCARNATION_MAX + 1));
  assert.equal(m.stats.incarnations_refused, 5);
  assert.equal(m.member("c")?.state, "alive");
  assert.equal(m.member("d")?.incarnation, 0);
  // An alive update may reach INCARNATION_MAX: a member that refuted up to it.
  at(alive("d", INCARNATION_MAX));
  assert.equal(m.member("d")?.incarnation, INCARNATION_MAX);
  assert.equal(m.stats.incarnations_refused, 5);
  assert.deepEqual(events.map((e) => `${e.type}:${e.member.id}`), []);
});

Deno.test("a claim at INCARNATION_MAX - 1 is still refutable; the incarnation never passes the max", () => {
  const { m } = withPeers();
  m.receive(
    "addr-b",
    gossip("b", [{ state: "dead", id: "a", inc: INCARNATION_MAX - 1, by: "b" }]),
    10,
  );
  assert.equal(m.stats.incarnations_refused, 0);
  assert.equal(m.stats.refutations, 1);
  assert.equal(m.incarnation, INCARNATION_MAX);
  // The others accept the refutation: alive at INCARNATION_MAX beats dead at INCARNATION_MAX - 1.
  const other = withPeers({ id: "x", address: "addr-x" }).m;
  other.receive("addr-b", gossip("b", [alive("a", 0)]), 10);
  other.receive(
    "addr-b",
    gossip("b", [{ state: "dead", id: "a", inc: INCARNATION_MAX - 1, by: "b" }]),
    11,
  );
  assert.equal(other.member("a")?.state, "dead");
  other.receive("addr-a", gossip("a", [alive("a", INCARNATION_MAX)]), 12);
  assert.equal(other.member("a")?.state, "alive");
  // At the max, further bumps stay there: a stale claim, a metadata change, an old life's alive.
  m.receive("addr-c", gossip("c", [{ state: "suspect", id: "a", inc: 7, by: "c" }]), 13);
  m.updateMeta({ role: "node", zone: "z1" });
  m.receive("addr-c", gossip("c", [alive("a", INCARNATION_MAX)]), 14);
  assert.equal(m.incarnation, INCARNATION_MAX);
  m.leave(15);
  assert.equal(m.incarnation, INCARNATION_MAX);
  assert.throws(
    () => node({ incarnation: INCARNATION_MAX + 1 }),
    (e: unknown) => e instanceof MembershipConfigError && /at most 4294967295/.test(e.message),
  );
});

Deno.test("metadata changes are gossiped as a new incarnation and reported as updated", () => {
  const a = withPeers();
  a.m.updateMeta({ role: "router", zone: "z1" });
  assert.equal(a.m.incarnation, 1);
  const ack = ofType(
    a.m.receive("addr-b", { type: "ping", v: 1, from: "b", seq: 1, target: "a", updates: [] }, 5),
    "ack",
  )[0];
  const update = ack?.msg.updates.find((u) => u.id === "a");
  assert.deepEqual(update, {
    state: "alive",
    id: "a",
    inc: 1,
    addr: "addr-a",
    meta: { role: "router", zone: "z1" },
  });
  const other = node({ id: "b", address: "addr-b" });
  other.m.receive("addr-a", gossip("a", [alive("a")]), 1);
  other.m.receive("addr-a", gossip("a", [update!]), 2);
  assert.deepEqual(other.events.map((e) => e.type), ["joined", "updated"]);
  assert.equal(other.m.member("a")?.meta.zone, "z1");
});

Deno.test("a sync's dead entries are merged as suspicions, its left entries as left", () => {
  const { m } = withPeers();
  m.receive(
    "addr-x",
    sync("x", [
      { state: "dead", id: "c", inc: 0 },
      { state: "left", id: "d", inc: 1 },
    ]),
    10,
  );
  assert.equal(m.member("c")?.state, "suspect");
  assert.equal(m.member("d")?.state, "left");
});

Deno.test("a restarted member (incarnation 0) refutes its tombstone and is accepted", () => {
  const old = withPeers();
  old.m.receive("addr-b", gossip("b", [{ state: "dead", id: "c", inc: 4, by: "b" }]), 10);
  old.m.receive("addr-b", gossip("b", [alive("c", 4)]), 10);
  assert.equal(old.m.member("c")?.state, "dead");
  // c restarts at incarnation 0 and joins through a.
  const c = node({ id: "c", address: "addr-c", seeds: ["addr-a"] });
  const [join] = ofType(c.m.tick(20), "sync");
  const [answer] = ofType(old.m.receive("addr-c", join!.msg, 21), "sync");
  assert.equal(old.m.member("c")?.state, "dead", "alive@0 does not beat dead@4");
  const [push] = ofType(c.m.receive("addr-a", answer!.msg, 22), "sync");
  assert.equal(c.m.incarnation, 5, "refuted the tombstone");
  assert.equal(push?.to, "addr-a");
  old.m.receive("addr-c", push!.msg, 23);
  assert.equal(old.m.member("c")?.state, "alive");
  assert.equal(old.m.member("c")?.incarnation, 5);
  assert.equal(old.events.at(-1)?.type, "joined");
});

// ------------------------------------------------------------------ leave, gossip, limits

Deno.test("leave tells the peers, then answers only with its left update", () => {
  const { m } = withPeers();
  m.tick(0.5);
  const out = m.leave(10);
  assert.equal(m.hasLeft, true);
  assert.deepEqual(out.map((o) => o.to).sort(), ["addr-b", "addr-c", "addr-d", "addr-e"]);
  const left = ofType(out, "gossip")[0]?.msg.updates[0];
  assert.deepEqual(left, { state: "left", id: "a", inc: 1 });
  assert.deepEqual(m.tick(10_000), []);
  assert.equal(m.nextTickAt(), Infinity);
  const reply = m.receive("addr-b", {
    type: "ping",
    v: 1,
    from: "b",
    seq: 1,
    target: "a",
    updates: [],
  }, 11);
  assert.deepEqual(reply.map((o) => o.msg.type), ["gossip"]);

  const b = node({ id: "b", address: "addr-b" });
  b.m.receive("addr-a", gossip("a", [alive("a")]), 1);
  b.m.receive("addr-a", gossip("a", [left!]), 2);
  b.m.receive("addr-x", gossip("x", [alive("a", 1)]), 3);
  assert.equal(b.m.member("a")?.state, "left");
  assert.deepEqual(b.events.map((e) => e.type), ["joined", "left"]);
});

Deno.test("each update is piggybacked retransmit_mult * ceil(log10(n + 1)) times", () => {
  const { m } = withPeers({ piggyback_max: 100 });
  m.tick(0.5);
  const ids = Array.from({ length: 20 }, (_, i) => `p${i}`);
  m.receive("addr-b", sync("b", ids.map((p) => alive(p))), 2);
  // n = 25 → 4 * ceil(log10(26)) = 8 sends per update.
  const counts = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const out = m.receive("addr-b", {
      type: "ping",
      v: 1,
      from: "b",
      seq: i,
      target: "a",
      updates: [],
    }, 3);
    for (const u of ofType(out, "ack")[0]!.msg.updates) {
      counts.set(u.id, (counts.get(u.id) ?? 0) + 1);
    }
  }
  for (const id of ids) assert.equal(counts.get(id), 8, id);
});

Deno.test("piggybacked updates are capped by count and bytes", () => {
  const { m } = withPeers({ piggyback_max: 5 });
  m.receive("addr-b", sync("b", Array.from({ length: 30 }, (_, i) => alive(`p${i}`))), 2);
  const ping = { type: "ping", v: 1, from: "b", seq: 1, target: "a", updates: [] };
  assert.equal(ofType(m.receive("addr-b", ping, 3), "ack")[0]?.msg.updates.length, 5);
  const small = withPeers({ piggyback_bytes_max: 200 });
  small.m.receive("addr-b", sync("b", Array.from({ length: 30 }, (_, i) => alive(`p${i}`))), 2);
  const ack = ofType(small.m.receive("addr-b", ping, 3), "ack")[0];
  assert.ok(JSON.stringify(ack?.msg.updates).length <= 200 + 10);
  assert.ok((ack?.msg.updates.length ?? 0) >= 2);
});

Deno.test("malformed messages are ignored and counted", () => {
  const { m } = withPeers();
  const before = states(m);
  const bad: unknown[] = [
    null,
    "ping",
    [],
    { type: "ping", v: 2, from: "b", seq: 1, target: "a", updates: [] },
    { type: "ping", v: 1, from: "b", seq: -1, target: "a", updates: [] },
    { type: "ping", v: 1, from: "b", seq: 1.5, target: "a", updates: [] },
    { type: "ping", v: 1, from: "", seq: 1, target: "a", updates: [] },
    { type: "ping", v: 1, from: "b", seq: 1, target: "a" },
    { type: "ack", v: 1, from: "b", seq: 1, updates: [{ state: "alive", id: "z", inc: 0 }] },
    { type: "ack", v: 1, from: "b", seq: 1, updates: [{ ...alive("z"), meta: { role: "x" } }] },
    {
      type: "ack",
      v: 1,
      from: "b",
      seq: 1,
      updates: [{ ...alive("z"), meta: { role: "node", n: 1 } }],
    },
    { type: "ack", v: 1, from: "b", seq: 1, updates: [{ state: "zombie", id: "z", inc: 0 }] },
    { type: "ack", v: 1, from: "b", seq: 1, updates: [{ state: "suspect", id: "c", inc: 0 }] },
    { type: "ack", v: 1, from: "b", seq: 1, updates: Array(65).fill(alive("z")) },
    { type: "gossip", v: 1, from: "b", updates: [alive("x".repeat(300))] },
    { type: "sync", v: 1, from: "b", members: [] },
    { type: "ping_req", v: 1, from: "b", seq: 1, target: "c", updates: [] },
    { type: "teleport", v: 1, from: "b" },
  ];
  for (const raw of bad) assert.deepEqual(m.receive("addr-b", raw, 5), []);
  assert.equal(m.stats.malformed, bad.length);
  assert.deepEqual(states(m), before);
});

Deno.test("the member table, relay table and sync size are bounded", () => {
  const { m } = withPeers({ members_max: 6, relays_max: 2, sync_members_max: 4 });
  m.receive("addr-b", sync("b", ["p1", "p2", "p3"].map((p) => alive(p))), 2);
  assert.equal(m.members().length, 7, "self + 6");
  assert.equal(m.stats.members_rejected, 1);
  for (let i = 0; i < 3; i++) {
    const req = {
      type: "ping_req",
      v: 1,
      from: "b",
      seq: i,
      target: "c",
      target_addr: "addr-c",
      updates: [],
    };
    m.receive("addr-b", req, 3);
  }
  assert.equal(m.stats.relays_rejected, 1);
  const [reply] = ofType(m.receive("addr-b", sync("b", [], true), 4), "sync");
  assert.equal(reply?.msg.members.length, 4);
  assert.equal(reply?.msg.members[0]?.id, "a", "self first");
});

Deno.test("tombstones are reaped after dead_retention_ms", () => {
  const { m } = withPeers({ dead_retention_ms: 10_000 });
  m.receive("addr-b", gossip("b", [{ state: "dead", id: "c", inc: 0, by: "b" }]), 100);
  drive(m, 10_000, new Set(["c"]));
  assert.equal(m.member("c")?.state, "dead");
  drive(m, 10_700, new Set(["c"]));
  assert.equal(m.member("c"), undefined);
});

Deno.test("a ping from a node believed dead triggers a push-pull, at most once a period", () => {
  const { m } = withPeers();
  m.tick(0.5);
  m.receive("addr-b", gossip("b", [{ state: "dead", id: "c", inc: 0, by: "b" }]), 5);
  const ping = { type: "ping", v: 1, from: "c", seq: 1, target: "a", updates: [] };
  const out = m.receive("addr-c", ping, 10);
  assert.deepEqual(out.map((o) => o.msg.type).sort(), ["ack", "sync"]);
  assert.deepEqual(m.receive("addr-c", { ...ping, seq: 2 }, 20).map((o) => o.msg.type), ["ack"]);
  const [s] = ofType(m.receive("addr-z", { ...ping, from: "z", seq: 3 }, 600), "sync");
  assert.equal(s?.to, "addr-z", "a stranger");
});

Deno.test("every message is plain JSON", () => {
  const { m } = withPeers();
  const all = [
    ...drive(m, 20_000, new Set(["c"])),
    ...m.receive("addr-b", sync("b", [], true), 20_001),
    ...m.leave(20_002),
  ];
  assert.ok(new Set(all.map((o) => o.msg.type)).size >= 4);
  for (const o of all) assert.deepEqual(JSON.parse(JSON.stringify(o.msg)), o.msg);
});
