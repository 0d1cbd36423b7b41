/**
 * The IO shell around {@link Membership}: a timer, a transport and listeners. The protocol
 * itself (SWIM + Lifeguard) stays a pure state machine in membership.ts; this file only drives
 * it with a real (or injected) clock and moves its messages.
 *
 * ```ts
 * const transport = new GrpcGossipTransport();              // gossip_transport.ts
 * const agent = new GossipAgent({
 *   id: "router-1", address: "127.0.0.1:50050", role: "router",
 *   seeds: ["127.0.0.1:50051"], transport,
 * });
 * addGossipService(server, agent);                          // same grpc.Server as the API
 * // ... after server.bindAsync succeeded:
 * agent.start();
 * const ring = new RingFollower(agent, { on_change: (c) => useRing(c.ring) });
 * // shutdown:
 * await agent.leave();                                      // others see "left"
 * agent.stop();
 * ```
 *
 * ## Agent
 *
 * - **Timer.** One timer at `membership.nextTickAt()` (at least 1 ms, at most
 *   {@link TICK_DELAY_MAX_MS} ahead); moved earlier when a received message brings the next
 *   deadline forward. Time is the clock's monotonic milliseconds (`performance.now()`).
 * - **Sending.** Each outgoing message is serialised to JSON once and put in its peer's queue.
 *   A message over `payload_bytes_max` (UTF-8) is dropped and counted; a full queue drops its
 *   oldest message (gossip goes stale; the newest is worth most) and counts it; a message to
 *   a new peer when `peers_max` peers already have queued messages is dropped and counted.
 *   Each peer has at most `in_flight_per_peer_max` sends in flight, each with a deadline of
 *   `send_timeout_ms`; a failed send is counted, never retried (the protocol repeats itself).
 * - **Receiving.** `deliver(from, message)` (the transport's server side calls it) feeds the
 *   message to `receive` and tells the transport that `from` is reachable (`heard`), so a
 *   connection to it that was backing off reconnects now. Messages are accepted between
 *   `start()` and `stop()`.
 * - **Events.** Membership events are collected during a `tick`/`receive` and handed to the
 *   `onChange` listeners after it returns (a throwing listener is counted and logged, never
 *   breaks the state machine). A member that is dead or left is `forget`-ed by the transport
 *   (its connection closed).
 * - **Leave.** `leave()` sends `left` to up to `leave_fanout` members and resolves once every
 *   queued send has finished or `leave_wait_ms` passed. Until `stop()` the agent keeps
 *   answering pings with its `left` state.
 *
 * ## Ring
 *
 * {@link RingFollower} keeps a {@link HashRing} equal to the members with role `node` that are
 * alive or suspect (a suspect still owns its data until it is declared dead), replacing it by a
 * new ring object on every change so that a request that planned on one ring keeps a
 * consistent view. {@link ringFromMembers} builds the same ring from a member list once.
 *
 * @module
 */

import { utf8Length } from "../common/utf8.ts";
import { randomInt } from "node:crypto";
import {
  type Member,
  type MemberMeta,
  type MemberRole,
  Membership,
  type MembershipEvent,
  type MembershipRandom,
  type MembershipStats,
  type MembershipTuning,
  type Outgoing,
} from "./membership.ts";
import { HashRing } from "./ring.ts";
import { Prng } from "../common/prng.ts";

/** Largest gossip payload (one membership message as JSON), in UTF-8 bytes: 64 KiB. */
export const GOSSIP_PAYLOAD_BYTES_MAX = 64 * 1024;
/** Largest sender address in an envelope, in characters. */
export const GOSSIP_FROM_CHARS_MAX = 256;
/** The timer fires at least this often, whatever `nextTickAt` says (ticking early is harmless). */
export const TICK_DELAY_MAX_MS = 1000;

/** What travels over the wire: the sender's address and one message as JSON. */
export interface GossipEnvelope {
  from: string;
  payload: string;
}

/** Moves envelopes to peers. {@link GrpcGossipTransport} is the real one. */
export interface GossipTransport {
  /** Sends one envelope to `to` (host:port); resolves when the peer took it, rejects on error. */
  send(to: string, envelope: GossipEnvelope, timeout_ms: number): Promise<void>;
  /** A message from `address` just arrived: a connection to it that is backing off may retry. */
  heard?(address: string): void;
  /** The member at `address` is dead or left: close any connection to it. */
  forget?(address: string): void;
  /** Closes every connection; later sends reject. */
  close(): void;
}

/** Takes messages from the transport's server side; {@link GossipAgent} is one. */
export interface GossipReceiver {
  /** Handles one message from transport address `from`; false when not accepted (stopped). */
  deliver(from: string, message: unknown): boolean;
}

/** Clock and timer; the default is `performance.now()` and `setTimeout`. */
export interface GossipClock {
  now(): number;
  setTimer(fn: () => void, delay_ms: number): unknown;
  clearTimer(handle: unknown): void;
}

/** `performance.now()` and `setTimeout` (works under Node and Deno). */
export const SYSTEM_CLOCK: GossipClock = {
  now: () => performance.now(),
  setTimer: (fn, delay_ms) => setTimeout(fn, delay_ms),
  clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface GossipAgentOptions {
  /** Member id (a storage node uses its node id). */
  id: string;
  /** This member's gossip address (host:port others can reach: the gRPC port). */
  address: string;
  role: MemberRole;
  /** Extra metadata gossiped with this member (string values; `role` is set from `role`). */
  meta?: Readonly<Record<string, string>>;
  /** Addresses to join through; this member's own address is skipped. */
  seeds?: readonly string[];
  transport: GossipTransport;
  /** Default: a {@link Prng} seeded from `node:crypto`. */
  random?: MembershipRandom;
  /** Default {@link SYSTEM_CLOCK}. */
  clock?: GossipClock;
  /** Starting incarnation (default 0; a restarted member refutes upwards). */
  incarnation?: number;
  /** Protocol tuning passed to {@link Membership}; `sync_bytes_max` defaults to fit a payload. */
  tuning?: Partial<MembershipTuning>;
  /** Deadline of one send; default 500 ms. */
  send_timeout_ms?: number;
  /** Messages queued per peer; default 64. */
  queue_max?: number;
  /** Sends in flight per peer; default 4. */
  in_flight_per_peer_max?: number;
  /** Peers with queued or in-flight messages at once; default 1024. */
  peers_max?: number;
  /** Largest payload sent; default {@link GOSSIP_PAYLOAD_BYTES_MAX}. */
  payload_bytes_max?: number;
  /** How long `leave()` waits for its messages to go out; default 1000 ms. */
  leave_wait_ms?: number;
  logger?: (message: string) => void;
}

/** Counters of the IO shell (the protocol's own are in `membership.stats`). */
export interface GossipAgentStats {
  /** Sends the peer accepted. */
  sent: number;
  /** Sends that failed (unreachable, deadline, rejected). */
  send_failed: number;
  /** Messages dropped because their peer's queue was full (the oldest is dropped). */
  dropped_queue_full: number;
  /** Messages dropped because they serialise to more than `payload_bytes_max`. */
  dropped_oversize: number;
  /** Messages dropped because `peers_max` peers already had messages queued. */
  dropped_peers_max: number;
  /** Messages delivered to the state machine. */
  received: number;
  /** Messages refused because the agent was not running. */
  refused: number;
  /** Listener callbacks that threw. */
  listener_errors: number;
}

/** Invalid agent options or a call in the wrong state. */
export class GossipAgentError extends Error {
  override name = "GossipAgentError";
}

interface PeerQueue {
  pending: string[];
  in_flight: number;
}

function positiveInt(name: string, v: number | undefined, fallback: number): number {
  const x = v ?? fallback;
  if (!Number.isSafeInteger(x) || x <= 0) {
    throw new GossipAgentError(`Option ${name} ${x} is not a positive integer`);
  }
  return x;
}

/** The membership of one process, driven by a timer and a transport. */
export class GossipAgent implements GossipReceiver {
  readonly id: string;
  readonly address: string;
  /** The state machine (read its `stats`, `localHealth`; do not drive it directly). */
  readonly membership: Membership;
  readonly stats: GossipAgentStats = {
    sent: 0,
    send_failed: 0,
    dropped_queue_full: 0,
    dropped_oversize: 0,
    dropped_peers_max: 0,
    received: 0,
    refused: 0,
    listener_errors: 0,
  };
  readonly send_timeout_ms: number;
  readonly queue_max: number;
  readonly in_flight_per_peer_max: number;
  readonly peers_max: number;
  readonly payload_bytes_max: number;
  readonly leave_wait_ms: number;

  #transport: GossipTransport;
  #clock: GossipClock;
  #log: (message: string) => void;
  #state: "new" | "running" | "stopped" = "new";
  #timer: unknown = undefined;
  #timer_due_ms = Infinity;
  #peers = new Map<string, PeerQueue>();
  /** Messages queued or in flight over all peers. */
  #outstanding = 0;
  #drain_waiters: (() => void)[] = [];
  #events: MembershipEvent[] = [];
  #listeners = new Set<(event: MembershipEvent) => void>();

  constructor(options: GossipAgentOptions) {
    this.send_timeout_ms = positiveInt("send_timeout_ms", options.send_timeout_ms, 500);
    this.queue_max = positiveInt("queue_max", options.queue_max, 64);
    this.in_flight_per_peer_max = positiveInt(
      "in_flight_per_peer_max",
      options.in_flight_per_peer_max,
      4,
    );
    this.peers_max = positiveInt("peers_max", options.peers_max, 1024);
    this.payload_bytes_max = positiveInt(
      "payload_bytes_max",
      options.payload_bytes_max,
      GOSSIP_PAYLOAD_BYTES_MAX,
    );
    this.leave_wait_ms = positiveInt("leave_wait_ms", options.leave_wait_ms, 1000);
    if (typeof options.address !== "string" || options.address.length > GOSSIP_FROM_CHARS_MAX) {
      throw new GossipAgentError(`Address "${options.address}" is longer than 256 characters`);
    }
    const meta = { ...options.meta, role: options.role } as MemberMeta;
    // A full sync must fit one payload: leave room for the envelope of the member list and
    // for this member's own entry, which the byte count in Membership does not include.
    const sync_bytes_max = Math.max(1, this.payload_bytes_max - 8 * 1024);
    this.membership = new Membership({
      sync_bytes_max,
      ...options.tuning,
      id: options.id,
      address: options.address,
      meta,
      seeds: options.seeds ?? [],
      random: options.random ?? new Prng(randomInt(0x1_0000_0000)),
      incarnation: options.incarnation,
      on_event: (e) => this.#events.push(e),
    });
    this.id = options.id;
    this.address = options.address;
    this.#transport = options.transport;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#log = options.logger ?? (() => {});
  }

  /** Whether the agent is between `start()` and `stop()`. */
  get running(): boolean {
    return this.#state === "running";
  }

  /** This member as it sees itself (state alive, or left after `leave()`). */
  get self(): Member {
    return this.membership.member(this.id)!;
  }

  /** Every member known, itself included (dead and left ones until reaped), sorted by id. */
  members(): Member[] {
    return this.membership.members().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** One member by id, or undefined. */
  member(id: string): Member | undefined {
    return this.membership.member(id);
  }

  /** Messages queued or in flight to all peers. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /**
   * Calls `listener` with every change in this member's view of the others (joined, alive,
   * suspect, dead, left, updated), after the state machine has applied it. Returns an
   * unsubscribe function.
   */
  onChange(listener: (event: MembershipEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts the timer (call once the transport's server side is serving). */
  start(): void {
    if (this.#state !== "new") {
      throw new GossipAgentError(`Cannot start a gossip agent that is ${this.#state}`);
    }
    this.#state = "running";
    this.#onTimer();
  }

  deliver(from: string, message: unknown): boolean {
    if (this.#state !== "running") {
      this.stats.refused++;
      return false;
    }
    this.stats.received++;
    this.#transport.heard?.(from);
    const out = this.membership.receive(from, message, this.#clock.now());
    this.#afterStep(out);
    return true;
  }

  /**
   * Leaves the cluster gracefully: others will see this member `left`. Resolves when the
   * messages went out or after `leave_wait_ms`; never rejects. Does nothing unless running.
   */
  async leave(): Promise<void> {
    if (this.#state !== "running" || this.membership.hasLeft) return;
    const out = this.membership.leave(this.#clock.now());
    this.#afterStep(out);
    if (this.#outstanding === 0) return;
    let handle: unknown;
    await new Promise<void>((resolve) => {
      handle = this.#clock.setTimer(resolve, this.leave_wait_ms);
      this.#drain_waiters.push(resolve);
    });
    this.#clock.clearTimer(handle);
  }

  /** Stops the timer, drops queued messages and closes the transport. Idempotent. */
  stop(): void {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    for (const q of this.#peers.values()) {
      this.#outstanding -= q.pending.length;
      q.pending.length = 0;
    }
    this.#transport.close();
    this.#wakeDrainWaiters();
  }

  // ---------------------------------------------------------------- internals

  #onTimer(): void {
    this.#timer = undefined;
    this.#timer_due_ms = Infinity;
    if (this.#state !== "running") return;
    const out = this.membership.tick(this.#clock.now());
    this.#afterStep(out);
  }

  #afterStep(out: Outgoing[]): void {
    for (const o of out) this.#enqueue(o);
    this.#dispatchEvents();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#state !== "running") return;
    const at = this.membership.nextTickAt();
    if (at === Infinity) return; // left: nothing to do until stopped
    const now = this.#clock.now();
    const delay = Math.min(TICK_DELAY_MAX_MS, Math.max(1, Math.ceil(at - now)));
    const due = now + delay;
    if (this.#timer !== undefined) {
      if (this.#timer_due_ms <= due) return;
      this.#clock.clearTimer(this.#timer);
    }
    this.#timer_due_ms = due;
    this.#timer = this.#clock.setTimer(() => this.#onTimer(), delay);
  }

  #dispatchEvents(): void {
    if (this.#events.length === 0) return;
    const events = this.#events;
    this.#events = [];
    for (const e of events) {
      if (e.type === "dead" || e.type === "left") this.#transport.forget?.(e.member.address);
      for (const listener of this.#listeners) {
        try {
          listener(e);
        } catch (err) {
          this.stats.listener_errors++;
          this.#log(`gossip: a membership listener threw: ${(err as Error)?.stack ?? err}`);
        }
      }
    }
  }

  #enqueue(o: Outgoing): void {
    const payload = JSON.stringify(o.msg);
    if (
      payload.length > this.payload_bytes_max / 3 && utf8Length(payload) > this.payload_bytes_max
    ) {
      this.stats.dropped_oversize++;
      this.#log(
        `gossip: dropped a ${o.msg.type} message to ${o.to}: ${utf8Length(payload)} bytes is ` +
          `over the ${this.payload_bytes_max} byte limit`,
      );
      return;
    }
    let q = this.#peers.get(o.to);
    if (q === undefined) {
      if (this.#peers.size >= this.peers_max) {
        this.stats.dropped_peers_max++;
        return;
      }
      q = { pending: [], in_flight: 0 };
      this.#peers.set(o.to, q);
    }
    if (q.pending.length >= this.queue_max) {
      q.pending.shift();
      this.#outstanding--;
      this.stats.dropped_queue_full++;
    }
    q.pending.push(payload);
    this.#outstanding++;
    this.#pump(o.to, q);
  }

  #pump(to: string, q: PeerQueue): void {
    while (
      this.#state === "running" && q.in_flight < this.in_flight_per_peer_max &&
      q.pending.length > 0
    ) {
      const payload = q.pending.shift()!;
      q.in_flight++;
      let sending: Promise<void>;
      try {
        sending = this.#transport.send(
          to,
          { from: this.address, payload },
          this.send_timeout_ms,
        );
      } catch (e) {
        sending = Promise.reject(e);
      }
      sending.then(
        () => this.stats.sent++,
        () => this.stats.send_failed++,
      ).finally(() => {
        q.in_flight--;
        this.#outstanding--;
        if (q.pending.length > 0 && this.#state === "running") this.#pump(to, q);
        else if (q.in_flight === 0 && this.#peers.get(to) === q) this.#peers.delete(to);
        if (this.#outstanding === 0) this.#wakeDrainWaiters();
      });
    }
  }

  #wakeDrainWaiters(): void {
    const waiters = this.#drain_waiters;
    this.#drain_waiters = [];
    for (const w of waiters) w();
  }
}

/** Stats of a {@link GossipAgent} and its state machine together, for a metrics endpoint. */
export function gossipStats(agent: GossipAgent): GossipAgentStats & MembershipStats {
  return { ...agent.stats, ...agent.membership.stats };
}

// ------------------------------------------------------------------------------------ ring

/** Whether `m` holds data on the ring: role `node`, state alive or suspect. */
export function isRingMember(m: Member): boolean {
  return m.meta.role === "node" && (m.state === "alive" || m.state === "suspect");
}

/** Options of {@link ringFromMembers} and {@link RingFollower}. */
export interface RingFollowerOptions {
  /** Virtual nodes per member (default: the ring's default). */
  vnodes_per_member?: number;
  /** Called after every change of the ring's members or of a ring member's address. */
  on_change?: (change: RingChange) => void;
}

/** A hash ring over the ids of the members with role `node` that are alive or suspect. */
export function ringFromMembers(
  members: readonly Member[],
  options: RingFollowerOptions = {},
): HashRing {
  return new HashRing({
    vnodes_per_member: options.vnodes_per_member,
    members: members.filter(isRingMember).map((m) => m.id),
  });
}

/** What changed in a {@link RingFollower}. */
export interface RingChange {
  /** Ids that joined the ring, sorted. */
  added: string[];
  /** Ids that left the ring (dead or left), sorted. */
  removed: string[];
  /** Ring members whose address changed, sorted. */
  readdressed: string[];
  /** The new ring (a new object when members changed). */
  ring: HashRing;
}

/** Anything with members and change events: a {@link GossipAgent}, or a fake in tests. */
export interface MemberSource {
  members(): Member[];
  onChange(listener: (event: MembershipEvent) => void): () => void;
}

/**
 * Keeps a {@link HashRing} equal to the source's ring members ({@link isRingMember}) and their
 * addresses. The ring object is replaced, never mutated, so a reference taken for one request
 * stays consistent.
 */
export class RingFollower {
  #source: MemberSource;
  #ring: HashRing;
  #addresses = new Map<string, string>();
  #listeners = new Set<(change: RingChange) => void>();
  #unsubscribe: () => void;
  readonly #vnodes: number | undefined;

  constructor(source: MemberSource, options: RingFollowerOptions = {}) {
    this.#source = source;
    this.#vnodes = options.vnodes_per_member;
    this.#ring = new HashRing({ vnodes_per_member: this.#vnodes });
    if (options.on_change) this.#listeners.add(options.on_change);
    this.#unsubscribe = source.onChange(() => this.refresh());
    this.refresh();
  }

  /** The current ring (replace your reference on change; never mutate it). */
  get ring(): HashRing {
    return this.#ring;
  }

  /** Ring member ids, sorted. */
  nodeIds(): string[] {
    return this.#ring.members();
  }

  /** The address of ring member `id`, or undefined when it is not on the ring. */
  addressOf(id: string): string | undefined {
    return this.#addresses.get(id);
  }

  /** Ring members as `{ id, address }`, sorted by id. */
  nodes(): { id: string; address: string }[] {
    return this.#ring.members().map((id) => ({ id, address: this.#addresses.get(id)! }));
  }

  /** Calls `listener` after each change; returns an unsubscribe function. */
  onChange(listener: (change: RingChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Recomputes from the source (done on every source event; harmless to call any time). */
  refresh(): void {
    const target = new Map<string, string>();
    for (const m of this.#source.members()) if (isRingMember(m)) target.set(m.id, m.address);
    const added: string[] = [];
    const removed: string[] = [];
    const readdressed: string[] = [];
    for (const [id, address] of target) {
      const old = this.#addresses.get(id);
      if (old === undefined) added.push(id);
      else if (old !== address) readdressed.push(id);
    }
    for (const id of this.#addresses.keys()) if (!target.has(id)) removed.push(id);
    if (added.length + removed.length + readdressed.length === 0) return;
    if (added.length + removed.length > 0) {
      const next = this.#ring.clone();
      for (const id of removed) next.removeMember(id);
      for (const id of added) next.addMember(id);
      this.#ring = next;
    }
    this.#addresses = target;
    const change: RingChange = {
      added: added.sort(),
      removed: removed.sort(),
      readdressed: readdressed.sort(),
      ring: this.#ring,
    };
    for (const listener of this.#listeners) listener(change);
  }

  /** Stops following the source. */
  close(): void {
    this.#unsubscribe();
    this.#listeners.clear();
  }
}
