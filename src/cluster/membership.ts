/**
 * Cluster membership: SWIM failure detection and gossip with the Lifeguard refinements, as a
 * pure state machine.
 *
 * Nothing in here owns a timer, a socket, a clock or a source of randomness. The caller drives
 * it with `tick(now_ms)` and `receive(from, msg, now_ms)`; both return the messages to send as
 * `{ to: address, msg }`. Time is whatever monotonic milliseconds the caller passes (a
 * simulation passes simulated time; a going-backwards value is treated as the latest one seen).
 * Randomness comes from the injected `random.nextInt`. `nextTickAt()` says when the next call to
 * `tick` is due; calling it more often is harmless. Membership changes of other members are
 * reported through `on_event` (the local node's own changes are not events: the caller made
 * them).
 *
 * ## Protocol
 *
 * - **Probing (SWIM).** Once per protocol period the node pings the next member of a shuffled
 *   round-robin list (alive and suspect members; reshuffled after each round; a new member is
 *   inserted at a random point of the rest of the round). No ack within the probe timeout → a
 *   `ping_req` to `indirect_probes` random alive members, which ping the target and forward its
 *   ack, or answer `nack` when it did not answer in time (Lifeguard); with fewer helpers than
 *   that (tiny clusters) the target also gets a second direct ping. No ack by the end of the
 *   period → the target becomes suspect.
 * - **Suspicion (Lifeguard).** A suspect member is declared dead when its suspicion timer runs
 *   out, unless it refutes first. The timer starts at `max` and shrinks logarithmically towards
 *   `min` as independent suspicions (distinct accusers) arrive:
 *   `min = suspicion_mult * max(1, log10(n)) * period_ms`, `max = suspicion_max_mult * min`,
 *   `timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))` where `n` counts the
 *   alive and suspect members (self included) when suspicion starts, `c` the confirmations
 *   beyond the first accuser and `k = min(suspicion_confirmations, n - 2)` (k < 1 → `min`).
 *   Every member that hears of a suspicion runs its own timer; a member whose own probe of a
 *   suspect fails adds itself as a confirmation and re-gossips it.
 * - **Incarnations and refutation.** Each member owns an incarnation number. A claim that this
 *   node is suspect, dead or left at an incarnation >= its own makes it bump its incarnation
 *   above the claim and send `alive` at once to `gossip_fanout` members (and to the sender of
 *   an ack or gossip that carried the claim), besides gossiping it. A stale claim (older
 *   incarnation) re-queues the current `alive` and answers an ack or gossip sender directly.
 *   For another member: `alive@i` beats `suspect|dead|left@j` only when i > j; `suspect@i`
 *   beats `alive@j` when i >= j; `dead|left@i` beat `alive|suspect@j` when i >= j. Any message
 *   to a member this node suspects carries that suspicion first, so the member learns of it
 *   at the first contact (Lifeguard's "buddy system", applied to pings, acks and ping_reqs).
 * - **Gossip.** Updates ride on `ping`, `ack` and `ping_req` (freshest, least-sent first, at
 *   most `piggyback_max` and `piggyback_bytes_max` per message). Each update is sent
 *   `retransmit_mult * ceil(log10(n + 1))` times, then dropped; a newer update about the same
 *   member replaces the queued one.
 * - **Push-pull.** Every `push_pull_interval_ms` (±25 % jitter) a full-state `sync` with a
 *   random alive member, who answers with its own state. In a sync, `dead` is merged as
 *   `suspect` (a stale view must not kill a live member outright), everything else as gossip.
 * - **Join and re-join.** A node with no live peer sends `sync` to up to `join_fanout` random
 *   seeds every `join_retry_ms`; otherwise, every `rejoin_interval_ms` (±25 %), it sends one to
 *   a random address among the seeds not currently alive in its view and the dead members it
 *   still remembers. After a partition heals, this is what lets the two sides — who declared
 *   each other dead and stopped probing — hear from each other again: the dead claims about
 *   themselves make each side refute with a higher incarnation, which the other accepts. When
 *   a sync *answer* makes a node refute, it pushes its state back once more (`reply: false`).
 * - **Tombstones.** Dead and left members stay in the table (as dead/left with their
 *   incarnation) for `dead_retention_ms`, so stale `alive` gossip with an old incarnation cannot
 *   bring them back; a restarted process (any incarnation: it refutes the dead claim it hears
 *   when joining) is accepted with a higher incarnation.
 * - **Leave.** `leave()` bumps the incarnation, sends `left` to up to `leave_fanout` members and
 *   from then on answers any ping, ping_req or sync only with that `left` update.
 * - **Local Health Multiplier (Lifeguard).** LHM in [0, `lhm_max`]: +1 for a failed probe
 *   without intermediaries, + (missing nacks) for a failed indirect probe, +1 for each
 *   refutation; -1 for each successful probe. The probe interval and the direct probe timeout
 *   are multiplied by `LHM + 1`, so a struggling node slows down instead of accusing healthy
 *   peers.
 * - **Limits.** Incoming messages are validated (shape, types, string lengths, list lengths,
 *   metadata size); anything malformed is ignored and counted in `stats.malformed`. The member
 *   table holds at most `members_max` entries (new members beyond it are ignored and counted),
 *   the relay table `relays_max` (further `ping_req`s are ignored and counted), and a `sync`
 *   carries at most `sync_members_max` members and `sync_bytes_max` bytes. Incarnations are
 *   bounded by `INCARNATION_MAX` (2^32 - 1, common/limits.ts): an alive update above it, or a
 *   suspect/dead/left claim at or above it (its subject could not refute it), is dropped alone
 *   and counted in `stats.incarnations_refused`; this node's own incarnation never exceeds it.
 *
 * ## Defaults
 *
 * | Option                    | Default | Why                                                     |
 * | ------------------------- | ------- | ------------------------------------------------------- |
 * | `period_ms`               | 500     | Probe rate. With 4+ probers a dead member is usually    |
 * |                           |         | probed within ~1 s of dying (worst n - 1 periods).      |
 * | `probe_timeout_ms`        | 200     | 5x the worst RTT at 1–20 ms one-way delay; leaves 300   |
 * |                           |         | ms of the period for ping_req → ping → ack/nack.        |
 * | `indirect_probes`         | 3       | SWIM's k: 3 independent paths make a false suspicion    |
 * |                           |         | from 1 % loss ~1e-6 per probe.                          |
 * | `suspicion_mult`          | 3       | min = 1.5 s for n <= 10 (3 s at 100, 4.5 s at 1000):    |
 * |                           |         | three periods for a refutation to come back.            |
 * | `suspicion_max_mult`      | 2       | max = 3 s for n <= 10: detection (0.5–2 s) + max stays  |
 * |                           |         | under the 5 s dead-everywhere target.                   |
 * | `suspicion_confirmations` | 3       | Lifeguard's K: confirmations that bring it to `min`.    |
 * | `retransmit_mult`         | 4       | Lambda: 4 sends per update for n <= 9, 8 for n <= 99.   |
 * | `lhm_max`                 | 8       | Lifeguard's S: probe interval and timeout at most 9x.   |
 * | `push_pull_interval_ms`   | 15000   | Anti-entropy for whatever gossip missed.                |
 * | `rejoin_interval_ms`      | 5000    | A healed partition merges within ~5–10 s.               |
 * | `join_retry_ms`           | 1000    | Join retry until a sync answer arrives.                 |
 * | `join_fanout`             | 3       | Seeds contacted per join attempt.                       |
 * | `dead_retention_ms`       | 300000  | Tombstones outlive any stale gossip by far.             |
 * | `piggyback_max`           | 12      | Updates per ping/ack/ping_req.                          |
 * | `piggyback_bytes_max`     | 4096    | Serialized update bytes per ping/ack/ping_req.          |
 * | `sync_members_max`        | 1024    | Members in one sync (self first).                       |
 * | `sync_bytes_max`          | 1048576 | Serialized member bytes in one sync.                    |
 * | `members_max`             | 4096    | Member table size (self excluded).                      |
 * | `relays_max`              | 1024    | Indirect probes relayed at once.                        |
 * | `updates_in_max`          | 64      | Updates accepted in one incoming message.               |
 * | `leave_fanout`            | 8       | Members told directly about a graceful leave.           |
 * | `gossip_fanout`           | 3       | Members told directly when this node declares a death   |
 * |                           |         | or refutes (the rest hear it by piggyback).             |
 * | `meta_bytes_max`          | 1024    | Serialized metadata of one member.                      |
 *
 * With these defaults the seeded simulations (tests/sim/membership_sim_test.ts) declare a
 * silent node dead at every member within 5 s and see no false death in a healthy 5-node
 * cluster with 1 % loss and 1–20 ms delay over 10 simulated minutes.
 *
 * ## Messages
 *
 * Plain JSON objects, all with `v: 1` and `from` (the sender's id); replies go to the transport
 * address the message came from.
 *
 * | type       | fields                                   | answer                          |
 * | ---------- | ---------------------------------------- | ------------------------------- |
 * | `ping`     | seq, target (id), updates                | `ack` with the same seq         |
 * | `ack`      | seq, updates                             | —                               |
 * | `ping_req` | seq, target, target_addr, updates        | `ack` (forwarded) or `nack`     |
 * | `nack`     | seq                                      | —                               |
 * | `sync`     | reply (boolean), members (full updates)  | `sync` with reply false if asked|
 * | `gossip`   | updates                                  | —                               |
 *
 * An update is `{ state, id, inc, addr?, meta?, by? }`: `alive` carries addr and meta,
 * `suspect` and `dead` carry `by` (the accuser).
 *
 * Size: this file is long (~1,400 lines) on purpose: it is one protocol state machine whose
 * probe, suspicion, refutation and dissemination steps share private state; split across files
 * they would need that state exposed. Its parts are sections below, in protocol order.
 */
import { INCARNATION_MAX } from "../common/limits.ts";

/** Membership state of a member. */
export type MemberState = "alive" | "suspect" | "dead" | "left";

/** What a member does in the cluster. */
export type MemberRole = "node" | "router";

/** Member metadata: string values, `role` required. */
export interface MemberMeta {
  readonly role: MemberRole;
  readonly [key: string]: string;
}

/** A snapshot of one member as this node sees it. */
export interface Member {
  readonly id: string;
  readonly address: string;
  readonly state: MemberState;
  readonly incarnation: number;
  readonly meta: MemberMeta;
  /** When this node last changed the member's state (the caller's clock). */
  readonly state_since_ms: number;
}

export type MembershipEventType = "joined" | "alive" | "suspect" | "dead" | "left" | "updated";

/**
 * A change in this node's view of another member. `joined`: first seen, or back after dead or
 * left (a restart); `alive`: a suspicion was refuted; `updated`: address or metadata changed.
 */
export interface MembershipEvent {
  readonly type: MembershipEventType;
  readonly member: Member;
  readonly at_ms: number;
}

/** One piece of gossip about a member. */
export interface WireUpdate {
  state: MemberState;
  id: string;
  inc: number;
  addr?: string;
  meta?: MemberMeta;
  by?: string;
}

export interface PingMessage {
  type: "ping";
  v: 1;
  from: string;
  seq: number;
  target: string;
  updates: WireUpdate[];
}

export interface AckMessage {
  type: "ack";
  v: 1;
  from: string;
  seq: number;
  updates: WireUpdate[];
}

export interface PingReqMessage {
  type: "ping_req";
  v: 1;
  from: string;
  seq: number;
  target: string;
  target_addr: string;
  updates: WireUpdate[];
}

export interface NackMessage {
  type: "nack";
  v: 1;
  from: string;
  seq: number;
}

export interface SyncMessage {
  type: "sync";
  v: 1;
  from: string;
  reply: boolean;
  members: WireUpdate[];
}

export interface GossipMessage {
  type: "gossip";
  v: 1;
  from: string;
  updates: WireUpdate[];
}

export type MembershipMessage =
  | PingMessage
  | AckMessage
  | PingReqMessage
  | NackMessage
  | SyncMessage
  | GossipMessage;

/** A message to send. */
export interface Outgoing {
  readonly to: string;
  readonly msg: MembershipMessage;
}

/** Source of randomness: a uniform integer in [0, n). `Prng` from src/common/prng.ts fits. */
export interface MembershipRandom {
  nextInt(n: number): number;
}

export interface MembershipTuning {
  period_ms: number;
  probe_timeout_ms: number;
  indirect_probes: number;
  suspicion_mult: number;
  suspicion_max_mult: number;
  suspicion_confirmations: number;
  retransmit_mult: number;
  lhm_max: number;
  push_pull_interval_ms: number;
  rejoin_interval_ms: number;
  join_retry_ms: number;
  join_fanout: number;
  dead_retention_ms: number;
  piggyback_max: number;
  piggyback_bytes_max: number;
  sync_members_max: number;
  sync_bytes_max: number;
  members_max: number;
  relays_max: number;
  updates_in_max: number;
  leave_fanout: number;
  gossip_fanout: number;
  meta_bytes_max: number;
}

export const MEMBERSHIP_DEFAULTS: Readonly<MembershipTuning> = Object.freeze({
  period_ms: 500,
  probe_timeout_ms: 200,
  indirect_probes: 3,
  suspicion_mult: 3,
  suspicion_max_mult: 2,
  suspicion_confirmations: 3,
  retransmit_mult: 4,
  lhm_max: 8,
  push_pull_interval_ms: 15_000,
  rejoin_interval_ms: 5_000,
  join_retry_ms: 1_000,
  join_fanout: 3,
  dead_retention_ms: 300_000,
  piggyback_max: 12,
  piggyback_bytes_max: 4096,
  sync_members_max: 1024,
  sync_bytes_max: 1024 * 1024,
  members_max: 4096,
  relays_max: 1024,
  updates_in_max: 64,
  leave_fanout: 8,
  gossip_fanout: 3,
  meta_bytes_max: 1024,
});

export interface MembershipOptions extends Partial<MembershipTuning> {
  /** This node's unique id. */
  id: string;
  /** This node's transport address (what others send to). */
  address: string;
  meta: MemberMeta;
  /** Addresses to join through (may include this node's own address, which is skipped). */
  seeds?: readonly string[];
  random: MembershipRandom;
  /** Starting incarnation (default 0). A restart may start anywhere: it refutes upwards. */
  incarnation?: number;
  on_event?: (event: MembershipEvent) => void;
}

/** Counters for the caller's metrics. */
export interface MembershipStats {
  malformed: number;
  misdirected: number;
  stale_acks: number;
  probes: number;
  probes_failed: number;
  indirect_probes: number;
  refutations: number;
  members_rejected: number;
  relays_rejected: number;
  syncs_sent: number;
  /** Members this node came to hold suspect (from alive), by its own probe or others' word. */
  suspicions: number;
  /** Updates dropped because their incarnation was above what their subject can answer. */
  incarnations_refused: number;
}

/** Invalid construction options or arguments. */
export class MembershipConfigError extends Error {
  override name = "MembershipConfigError";
}

/** A non-finite time passed in by the caller. */
export class MembershipClockError extends Error {
  override name = "MembershipClockError";
}

const ID_CHARS_MAX = 256;
const META_KEYS_MAX = 32;
const META_KEY_CHARS_MAX = 64;
const META_VALUE_CHARS_MAX = 256;
const SEEDS_MAX = 1024;
const ROLES: ReadonlySet<string> = new Set(["node", "router"]);
const STATES: ReadonlySet<string> = new Set(["alive", "suspect", "dead", "left"]);

interface MemberRecord {
  id: string;
  address: string;
  state: MemberState;
  incarnation: number;
  meta: MemberMeta;
  state_since_ms: number;
}

interface Suspicion {
  inc: number;
  start_ms: number;
  accusers: Set<string>;
  k: number;
  min_ms: number;
  max_ms: number;
}

interface QueuedUpdate {
  update: WireUpdate;
  bytes: number;
  transmits: number;
  seq: number;
}

interface Probe {
  seq: number;
  target: string;
  target_addr: string;
  inc: number;
  direct_deadline_ms: number;
  end_ms: number;
  acked: boolean;
  indirect_sent: boolean;
  nacks_expected: number;
  nacks: number;
  done: boolean;
}

interface Relay {
  requester_id: string;
  requester_addr: string;
  requester_seq: number;
  nack_at_ms: number;
  expire_ms: number;
  nacked: boolean;
}

function isText(x: unknown, max: number): x is string {
  return typeof x === "string" && x.length > 0 && x.length <= max;
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

/**
 * The most an update's incarnation may be (common/limits.ts {@link INCARNATION_MAX}): an alive
 * update up to it; a claim (suspect, dead, left) only below it, so that its subject can always
 * refute it with one more.
 */
function incarnationCeiling(state: string): number {
  return state === "alive" ? INCARNATION_MAX : INCARNATION_MAX - 1;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** A frozen, validated copy of `x`, or undefined when `x` is not valid metadata. */
function parseMeta(x: unknown, bytes_max: number): MemberMeta | undefined {
  if (!isPlainObject(x)) return undefined;
  const keys = Object.keys(x);
  if (keys.length > META_KEYS_MAX) return undefined;
  const out: Record<string, string> = {};
  let bytes = 2;
  for (const k of keys.sort()) {
    const v = x[k];
    if (
      !isText(k, META_KEY_CHARS_MAX) || typeof v !== "string" || v.length > META_VALUE_CHARS_MAX
    ) {
      return undefined;
    }
    bytes += k.length + v.length + 6;
    out[k] = v;
  }
  if (bytes > bytes_max || !ROLES.has(out.role ?? "")) return undefined;
  return Object.freeze(out) as MemberMeta;
}

function sameMeta(a: MemberMeta, b: MemberMeta): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

export class Membership {
  readonly id: string;
  readonly tuning: Readonly<MembershipTuning>;
  readonly stats: MembershipStats = {
    malformed: 0,
    misdirected: 0,
    stale_acks: 0,
    probes: 0,
    probes_failed: 0,
    indirect_probes: 0,
    refutations: 0,
    members_rejected: 0,
    relays_rejected: 0,
    syncs_sent: 0,
    suspicions: 0,
    incarnations_refused: 0,
  };

  #address: string;
  #meta: MemberMeta;
  #inc: number;
  #left = false;
  #since_ms = 0;
  #seeds: readonly string[];
  #random: MembershipRandom;
  #on_event: ((event: MembershipEvent) => void) | undefined;

  #members = new Map<string, MemberRecord>();
  #live_others = 0;
  #suspicions = new Map<string, Suspicion>();
  #queue = new Map<string, QueuedUpdate>();
  #queue_seq = 0;
  #probe_list: string[] = [];
  #probe_idx = 0;
  #probe: Probe | undefined;
  #relays = new Map<number, Relay>();
  #seq = 0;
  #lhm = 0;

  #started = false;
  /** A full-state sync answer has arrived (until then, join attempts repeat). */
  #synced = false;
  #now_ms = -Infinity;
  #next_probe_ms = 0;
  #next_push_pull_ms = 0;
  #next_rejoin_ms = 0;
  #next_reap_ms = 0;
  #next_stranger_sync_ms = 0;
  /** Set while handling a message that carried a suspect/dead/left claim about this node. */
  #claim_seen = false;
  /** Set while handling a message that made this node refute (bump its incarnation). */
  #refuted = false;

  constructor(options: MembershipOptions) {
    const tuning = { ...MEMBERSHIP_DEFAULTS };
    for (const key of Object.keys(MEMBERSHIP_DEFAULTS) as (keyof MembershipTuning)[]) {
      const v = options[key];
      if (v === undefined) continue;
      if (!Number.isSafeInteger(v) || v < 0 || (v === 0 && key !== "lhm_max")) {
        throw new MembershipConfigError(`Option ${key} ${v} is not a positive integer`);
      }
      tuning[key] = v;
    }
    if (tuning.probe_timeout_ms >= tuning.period_ms) {
      throw new MembershipConfigError(
        `Probe timeout ${tuning.probe_timeout_ms} ms is not below the protocol period ` +
          `${tuning.period_ms} ms`,
      );
    }
    this.tuning = Object.freeze(tuning);
    if (!isText(options.id, ID_CHARS_MAX)) {
      throw new MembershipConfigError(`Member id "${options.id}" is empty or too long`);
    }
    if (!isText(options.address, ID_CHARS_MAX)) {
      throw new MembershipConfigError(`Address "${options.address}" is empty or too long`);
    }
    const meta = parseMeta(options.meta, tuning.meta_bytes_max);
    if (meta === undefined) {
      throw new MembershipConfigError(
        `Metadata ${JSON.stringify(options.meta)} is invalid (needs role "node" or "router", ` +
          `string values, at most ${tuning.meta_bytes_max} bytes)`,
      );
    }
    const seeds = options.seeds ?? [];
    if (seeds.length > SEEDS_MAX || !seeds.every((s) => isText(s, ID_CHARS_MAX))) {
      throw new MembershipConfigError(`Seed list ${JSON.stringify(seeds)} is invalid`);
    }
    const inc = options.incarnation ?? 0;
    if (!isCount(inc) || inc > INCARNATION_MAX) {
      throw new MembershipConfigError(
        `Incarnation ${inc} is not a count of at most ${INCARNATION_MAX}`,
      );
    }
    this.id = options.id;
    this.#address = options.address;
    this.#meta = meta;
    this.#inc = inc;
    this.#seeds = [...new Set(seeds)].filter((s) => s !== options.address);
    this.#random = options.random;
    this.#on_event = options.on_event;
  }

  // ---------------------------------------------------------------- queries

  get address(): string {
    return this.#address;
  }

  get incarnation(): number {
    return this.#inc;
  }

  /** Local Health Multiplier in [0, lhm_max]. */
  get localHealth(): number {
    return this.#lhm;
  }

  get hasLeft(): boolean {
    return this.#left;
  }

  /** Every member this node knows, itself first (dead and left ones until reaped). */
  members(): Member[] {
    const out: Member[] = [this.#selfSnapshot()];
    for (const r of this.#members.values()) out.push(this.#snapshot(r));
    return out;
  }

  /** One member by id (this node included), or undefined. */
  member(id: string): Member | undefined {
    if (id === this.id) return this.#selfSnapshot();
    const r = this.#members.get(id);
    return r === undefined ? undefined : this.#snapshot(r);
  }

  /** Members in state alive or suspect, this node included unless it left. */
  liveCount(): number {
    return this.#live_others + (this.#left ? 0 : 1);
  }

  /** When `tick` next has work to do (the caller may tick earlier or more often). */
  nextTickAt(): number {
    if (this.#left) return Infinity;
    if (!this.#started) return this.#now_ms === -Infinity ? 0 : this.#now_ms;
    let t = Math.min(
      this.#next_probe_ms,
      this.#next_push_pull_ms,
      this.#next_rejoin_ms,
      this.#next_reap_ms,
    );
    const p = this.#probe;
    if (p !== undefined && !p.done) {
      t = Math.min(t, !p.acked && !p.indirect_sent ? p.direct_deadline_ms : p.end_ms);
    }
    for (const r of this.#relays.values()) t = Math.min(t, r.nacked ? r.expire_ms : r.nack_at_ms);
    for (const s of this.#suspicions.values()) t = Math.min(t, this.#suspicionDeadline(s));
    return t;
  }

  // ---------------------------------------------------------------- commands

  /** Advances timers: probes, indirect probes, suspicion timeouts, push-pull, re-join, reaping. */
  tick(now_ms: number): Outgoing[] {
    const now = this.#advance(now_ms);
    const out: Outgoing[] = [];
    if (this.#left) return out;
    if (!this.#started) {
      this.#started = true;
      this.#next_probe_ms = now + this.#random.nextInt(this.tuning.period_ms);
      this.#next_push_pull_ms = now + this.#jitter(this.tuning.push_pull_interval_ms);
      this.#next_rejoin_ms = now;
      this.#next_reap_ms = now + this.tuning.period_ms;
      this.#enqueue(this.#selfUpdate());
    }
    const p = this.#probe;
    if (p !== undefined && !p.done) {
      if (!p.acked && !p.indirect_sent && now >= p.direct_deadline_ms) this.#sendIndirect(p, out);
      if (now >= p.end_ms) this.#finishProbe(p, now);
    }
    for (const [seq, r] of this.#relays) {
      if (!r.nacked && now >= r.nack_at_ms) {
        r.nacked = true;
        out.push({
          to: r.requester_addr,
          msg: { type: "nack", v: 1, from: this.id, seq: r.requester_seq },
        });
      }
      if (now >= r.expire_ms) this.#relays.delete(seq);
    }
    for (const [id, s] of this.#suspicions) {
      if (now >= this.#suspicionDeadline(s)) this.#declareDead(id, s, now, out);
    }
    if (now >= this.#next_probe_ms) this.#startProbe(now, out);
    if (now >= this.#next_push_pull_ms) {
      this.#next_push_pull_ms = now + this.#jitter(this.tuning.push_pull_interval_ms);
      const peers = this.#others("alive");
      if (peers.length > 0) {
        const peer = peers[this.#random.nextInt(peers.length)] as MemberRecord;
        out.push({ to: peer.address, msg: this.#syncMessage(true) });
        this.stats.syncs_sent++;
      }
    }
    if (now >= this.#next_rejoin_ms) this.#rejoin(now, out);
    if (now >= this.#next_reap_ms) {
      this.#next_reap_ms = now + this.tuning.period_ms;
      this.#reap(now);
    }
    return out;
  }

  /** Handles one message that arrived from transport address `from`. */
  receive(from: string, raw: unknown, now_ms: number): Outgoing[] {
    const now = this.#advance(now_ms);
    const out: Outgoing[] = [];
    const msg = this.#parse(raw);
    if (msg === undefined) {
      this.stats.malformed++;
      return out;
    }
    if (msg.from === this.id) {
      this.stats.misdirected++;
      return out;
    }
    if (this.#left) {
      if (msg.type === "ping" || msg.type === "ping_req" || (msg.type === "sync" && msg.reply)) {
        out.push({
          to: from,
          msg: { type: "gossip", v: 1, from: this.id, updates: [this.#selfUpdate()] },
        });
      }
      return out;
    }
    this.#claim_seen = false;
    this.#refuted = false;
    this.#dispatch(msg, from, now, out);
    if (msg.type !== "sync" && msg.type !== "gossip") this.#greetStranger(msg.from, from, now, out);
    const targets = new Set<string>();
    // No answer would carry the refutation back to whoever still doubts us: send it.
    if (this.#claim_seen && (msg.type === "ack" || msg.type === "gossip")) targets.add(from);
    if (this.#refuted) {
      // Suspicion timers are running everywhere: tell a few members at once, not by piggyback.
      const peers = this.#others("alive", "suspect").filter((r) => r.address !== from);
      for (const r of this.#sample(peers, this.tuning.gossip_fanout)) targets.add(r.address);
    }
    if (targets.size > 0) {
      const update = this.#selfUpdate();
      for (const to of targets) {
        out.push({ to, msg: { type: "gossip", v: 1, from: this.id, updates: [update] } });
      }
    }
    return out;
  }

  #dispatch(msg: MembershipMessage, from: string, now: number, out: Outgoing[]): void {
    switch (msg.type) {
      case "ping": {
        this.#applyAll(msg.updates, now);
        if (msg.target !== this.id) {
          this.stats.misdirected++;
          break;
        }
        out.push({ to: from, msg: this.#ack(msg.seq, msg.from) });
        break;
      }
      case "ack": {
        this.#applyAll(msg.updates, now);
        const p = this.#probe;
        if (p !== undefined && p.seq === msg.seq && !p.done) {
          if (!p.acked) {
            p.acked = true;
            p.done = true;
            this.#adjustHealth(-1);
          }
          break;
        }
        const r = this.#relays.get(msg.seq);
        if (r !== undefined) {
          this.#relays.delete(msg.seq);
          out.push({ to: r.requester_addr, msg: this.#ack(r.requester_seq, r.requester_id) });
          break;
        }
        this.stats.stale_acks++;
        break;
      }
      case "nack": {
        const p = this.#probe;
        if (p !== undefined && p.seq === msg.seq && !p.done) p.nacks++;
        else this.stats.stale_acks++;
        break;
      }
      case "ping_req": {
        this.#applyAll(msg.updates, now);
        if (msg.target === this.id) {
          out.push({ to: from, msg: this.#ack(msg.seq, msg.from) });
          break;
        }
        if (this.#relays.size >= this.tuning.relays_max) {
          this.stats.relays_rejected++;
          break;
        }
        const seq = this.#seq++;
        this.#relays.set(seq, {
          requester_id: msg.from,
          requester_addr: from,
          requester_seq: msg.seq,
          nack_at_ms: now + this.tuning.probe_timeout_ms,
          expire_ms: now + 2 * this.tuning.probe_timeout_ms,
          nacked: false,
        });
        out.push({ to: msg.target_addr, msg: this.#ping(seq, msg.target) });
        break;
      }
      case "sync": {
        const inc_before = this.#inc;
        if (!msg.reply) this.#synced = true;
        this.#merge(msg.from, msg.members, now);
        if (msg.reply || this.#inc !== inc_before) {
          out.push({ to: from, msg: this.#syncMessage(false) });
          this.stats.syncs_sent++;
        }
        break;
      }
      case "gossip": {
        this.#applyAll(msg.updates, now);
        break;
      }
    }
  }

  /**
   * Leaves gracefully: bumps the incarnation and tells up to `leave_fanout` members. Afterwards
   * `tick` does nothing and incoming pings are answered with the `left` update only.
   */
  leave(now_ms: number): Outgoing[] {
    const now = this.#advance(now_ms);
    if (this.#left) return [];
    this.#left = true;
    this.#inc = Math.min(this.#inc + 1, INCARNATION_MAX);
    this.#since_ms = now;
    this.#probe = undefined;
    this.#relays.clear();
    const peers = this.#sample(this.#others("alive", "suspect"), this.tuning.leave_fanout);
    const update = this.#selfUpdate();
    return peers.map((r) => ({
      to: r.address,
      msg: { type: "gossip", v: 1, from: this.id, updates: [update] },
    }));
  }

  /** Replaces this node's metadata; gossiped with a new incarnation. */
  updateMeta(meta: MemberMeta): void {
    const parsed = parseMeta(meta, this.tuning.meta_bytes_max);
    if (parsed === undefined) {
      throw new MembershipConfigError(`Metadata ${JSON.stringify(meta)} is invalid`);
    }
    if (this.#left) return;
    this.#meta = parsed;
    this.#inc = Math.min(this.#inc + 1, INCARNATION_MAX);
    this.#enqueue(this.#selfUpdate());
  }

  // ---------------------------------------------------------------- probing

  #startProbe(now: number, out: Outgoing[]): void {
    const prev = this.#probe;
    if (prev !== undefined && !prev.done) this.#finishProbe(prev, now);
    const scale = this.#lhm + 1;
    this.#next_probe_ms = now + this.tuning.period_ms * scale;
    const target = this.#nextProbeTarget();
    if (target === undefined) {
      this.#probe = undefined;
      return;
    }
    const seq = this.#seq++;
    this.#probe = {
      seq,
      target: target.id,
      target_addr: target.address,
      inc: target.incarnation,
      direct_deadline_ms: now + this.tuning.probe_timeout_ms * scale,
      end_ms: this.#next_probe_ms,
      acked: false,
      indirect_sent: false,
      nacks_expected: 0,
      nacks: 0,
      done: false,
    };
    this.stats.probes++;
    out.push({ to: target.address, msg: this.#ping(seq, target.id) });
  }

  #sendIndirect(p: Probe, out: Outgoing[]): void {
    p.indirect_sent = true;
    const helpers = this.#sample(
      this.#others("alive").filter((r) => r.id !== p.target),
      this.tuning.indirect_probes,
    );
    p.nacks_expected = helpers.length;
    if (helpers.length < this.tuning.indirect_probes) {
      // Too few intermediaries (a tiny cluster): give the direct path a second chance.
      out.push({ to: p.target_addr, msg: this.#ping(p.seq, p.target) });
    }
    for (const h of helpers) {
      this.stats.indirect_probes++;
      out.push({
        to: h.address,
        msg: {
          type: "ping_req",
          v: 1,
          from: this.id,
          seq: p.seq,
          target: p.target,
          target_addr: p.target_addr,
          updates: this.#piggyback(h.id),
        },
      });
    }
  }

  #finishProbe(p: Probe, now: number): void {
    p.done = true;
    if (p.acked) return;
    const t = this.#members.get(p.target);
    if (t === undefined || (t.state !== "alive" && t.state !== "suspect")) return;
    this.stats.probes_failed++;
    this.#adjustHealth(p.nacks_expected > 0 ? Math.max(0, p.nacks_expected - p.nacks) : 1);
    this.#applySuspect({ state: "suspect", id: p.target, inc: p.inc, by: this.id }, now);
  }

  #nextProbeTarget(): MemberRecord | undefined {
    let rebuilds = 0;
    for (;;) {
      if (this.#probe_idx >= this.#probe_list.length) {
        if (rebuilds++ > 0) return undefined;
        this.#probe_list = this.#nextRound();
        this.#probe_idx = 0;
        if (this.#probe_list.length === 0) return undefined;
      }
      const id = this.#probe_list[this.#probe_idx++] as string;
      const r = this.#members.get(id);
      if (r !== undefined && (r.state === "alive" || r.state === "suspect")) return r;
    }
  }

  /**
   * The next round keeps the previous order (live members only, once each) with any missing
   * live member inserted at a random place: each member is probed exactly once per round, so
   * one prober's gap between two probes of a member is at most n - 1 periods (a reshuffle per
   * round allows 2n - 2), while orders stay independent across probers.
   */
  #nextRound(): string[] {
    const seen = new Set<string>();
    const next: string[] = [];
    for (const id of this.#probe_list) {
      const r = this.#members.get(id);
      if (r === undefined || seen.has(id) || (r.state !== "alive" && r.state !== "suspect")) {
        continue;
      }
      seen.add(id);
      next.push(id);
    }
    const missing = this.#others("alive", "suspect").filter((r) => !seen.has(r.id));
    for (const r of missing) next.splice(this.#random.nextInt(next.length + 1), 0, r.id);
    return next;
  }

  /** Puts a new (or returning) member somewhere in the rest of the current probe round. */
  #addToProbeRound(id: string): void {
    const rest = this.#probe_list.length - this.#probe_idx;
    const at = this.#probe_idx + this.#random.nextInt(rest + 1);
    this.#probe_list.splice(at, 0, id);
  }

  #adjustHealth(delta: number): void {
    this.#lhm = Math.min(this.tuning.lhm_max, Math.max(0, this.#lhm + delta));
  }

  // ---------------------------------------------------------------- join, push-pull, reap

  #rejoin(now: number, out: Outgoing[]): void {
    const isolated = this.#live_others === 0 || !this.#synced;
    this.#next_rejoin_ms = now +
      this.#jitter(isolated ? this.tuning.join_retry_ms : this.tuning.rejoin_interval_ms);
    const live = new Set<string>();
    const candidates = new Set<string>();
    for (const r of this.#members.values()) {
      if (r.state === "alive" || r.state === "suspect") live.add(r.address);
    }
    for (const r of this.#members.values()) {
      if (r.state === "dead" && !live.has(r.address)) candidates.add(r.address);
    }
    for (const s of this.#seeds) if (!live.has(s) || !this.#synced) candidates.add(s);
    if (candidates.size === 0 && !this.#synced) {
      for (const a of live) candidates.add(a);
    }
    const targets = this.#sample([...candidates], isolated ? this.tuning.join_fanout : 1);
    if (targets.length === 0) return;
    const msg = this.#syncMessage(true);
    for (const to of targets) {
      out.push({ to, msg });
      this.stats.syncs_sent++;
    }
  }

  /**
   * A probe message from a member this node does not know, or believes dead or left, means the
   * two views differ: push-pull with the sender (at most once per period).
   */
  #greetStranger(id: string, address: string, now: number, out: Outgoing[]): void {
    const r = this.#members.get(id);
    if (r !== undefined && (r.state === "alive" || r.state === "suspect")) return;
    if (now < this.#next_stranger_sync_ms) return;
    this.#next_stranger_sync_ms = now + this.tuning.period_ms;
    out.push({ to: address, msg: this.#syncMessage(true) });
    this.stats.syncs_sent++;
  }

  #reap(now: number): void {
    for (const [id, r] of this.#members) {
      if (
        (r.state === "dead" || r.state === "left") &&
        now - r.state_since_ms >= this.tuning.dead_retention_ms
      ) {
        this.#members.delete(id);
        this.#queue.delete(id);
      }
    }
  }

  #syncMessage(reply: boolean): SyncMessage {
    const members: WireUpdate[] = [this.#selfUpdate()];
    let bytes = 0;
    for (const r of this.#members.values()) {
      if (members.length >= this.tuning.sync_members_max) break;
      const u: WireUpdate = {
        state: r.state,
        id: r.id,
        inc: r.incarnation,
        addr: r.address,
        meta: r.meta,
      };
      bytes += JSON.stringify(u).length;
      if (bytes > this.tuning.sync_bytes_max) break;
      members.push(u);
    }
    return { type: "sync", v: 1, from: this.id, reply, members };
  }

  #merge(from_id: string, members: WireUpdate[], now: number): void {
    for (const u of members) {
      if (u.state === "alive") this.#applyAlive(u, now);
      else if (u.state === "left") this.#applyDown(u, now);
      else this.#applySuspect({ state: "suspect", id: u.id, inc: u.inc, by: from_id }, now);
    }
  }

  // ---------------------------------------------------------------- state changes

  #applyAll(updates: WireUpdate[], now: number): void {
    for (const u of updates) {
      if (u.state === "alive") this.#applyAlive(u, now);
      else if (u.state === "suspect") this.#applySuspect(u, now);
      else this.#applyDown(u, now);
    }
  }

  #refute(claimed_inc: number): void {
    this.#refuted = true;
    // Claims above INCARNATION_MAX - 1 were dropped when parsed, so this stays within it.
    this.#inc = Math.min(Math.max(this.#inc, claimed_inc) + 1, INCARNATION_MAX);
    this.stats.refutations++;
    this.#adjustHealth(1);
    this.#enqueue(this.#selfUpdate());
  }

  /**
   * A suspect, dead or left claim about this node: refute it when current; when stale (the
   * sender missed an earlier refutation), re-queue the current alive so it goes out again.
   */
  #answerClaim(claimed_inc: number): void {
    if (this.#left) return;
    this.#claim_seen = true;
    if (claimed_inc >= this.#inc) this.#refute(claimed_inc);
    else this.#enqueue(this.#selfUpdate());
  }

  #applyAlive(u: WireUpdate, now: number): void {
    const addr = u.addr as string;
    const meta = u.meta as MemberMeta;
    if (u.id === this.id) {
      // A claim from an older life of this node, or an impostor: outbid it.
      if (
        !this.#left &&
        (u.inc > this.#inc ||
          (u.inc === this.#inc && (addr !== this.#address || !sameMeta(meta, this.#meta))))
      ) {
        this.#inc = Math.min(u.inc + 1, INCARNATION_MAX);
        this.#enqueue(this.#selfUpdate());
      }
      return;
    }
    const r = this.#members.get(u.id);
    if (r === undefined) {
      if (this.#members.size >= this.tuning.members_max) {
        this.stats.members_rejected++;
        return;
      }
      const rec: MemberRecord = {
        id: u.id,
        address: addr,
        state: "alive",
        incarnation: u.inc,
        meta,
        state_since_ms: now,
      };
      this.#members.set(u.id, rec);
      this.#live_others++;
      this.#addToProbeRound(u.id);
      this.#enqueue(u);
      this.#emit("joined", rec, now);
      return;
    }
    if (u.inc <= r.incarnation) return;
    const prev = r.state;
    const changed = addr !== r.address || !sameMeta(meta, r.meta);
    r.incarnation = u.inc;
    r.address = addr;
    r.meta = meta;
    this.#suspicions.delete(u.id);
    this.#enqueue(u);
    if (prev !== "alive") this.#setState(r, "alive", now);
    if (prev === "dead" || prev === "left") {
      this.#addToProbeRound(u.id);
      this.#emit("joined", r, now);
      return;
    }
    if (prev === "suspect") this.#emit("alive", r, now);
    if (changed) this.#emit("updated", r, now);
  }

  #applySuspect(u: WireUpdate, now: number): void {
    const by = u.by ?? this.id;
    if (u.id === this.id) {
      this.#answerClaim(u.inc);
      return;
    }
    const r = this.#members.get(u.id);
    if (r === undefined || u.inc < r.incarnation) return;
    if (r.state === "dead" || r.state === "left") return;
    if (r.state === "suspect" && u.inc === r.incarnation) {
      const s = this.#suspicions.get(u.id);
      if (s !== undefined && !s.accusers.has(by) && s.accusers.size <= s.k) {
        s.accusers.add(by);
        this.#enqueue({ state: "suspect", id: u.id, inc: u.inc, by });
      }
      return;
    }
    // alive@j with i >= j, or suspect@j with i > j: a fresh suspicion.
    const was_suspect = r.state === "suspect";
    r.incarnation = u.inc;
    this.#setState(r, "suspect", now);
    const n = this.liveCount();
    const min_ms = Math.floor(
      this.tuning.suspicion_mult * Math.max(1, Math.log10(Math.max(1, n))) * this.tuning.period_ms,
    );
    this.#suspicions.set(u.id, {
      inc: u.inc,
      start_ms: now,
      accusers: new Set([by]),
      k: Math.min(this.tuning.suspicion_confirmations, n - 2),
      min_ms,
      max_ms: min_ms * this.tuning.suspicion_max_mult,
    });
    this.#enqueue({ state: "suspect", id: u.id, inc: u.inc, by });
    if (!was_suspect) {
      this.stats.suspicions++;
      this.#emit("suspect", r, now);
    }
  }

  /** dead or left. */
  #applyDown(u: WireUpdate, now: number): void {
    const state = u.state as "dead" | "left";
    if (u.id === this.id) {
      this.#answerClaim(u.inc);
      return;
    }
    const r = this.#members.get(u.id);
    if (r === undefined || u.inc < r.incarnation) return;
    if (r.state === "left" || r.state === state) return;
    r.incarnation = u.inc;
    this.#suspicions.delete(u.id);
    this.#setState(r, state, now);
    this.#enqueue(
      state === "dead"
        ? { state, id: u.id, inc: u.inc, by: u.by ?? this.id }
        : { state, id: u.id, inc: u.inc },
    );
    this.#emit(state, r, now);
  }

  /** Suspicion timeout: dead, and `gossip_fanout` members are told at once. */
  #declareDead(id: string, s: Suspicion, now: number, out: Outgoing[]): void {
    this.#suspicions.delete(id);
    const r = this.#members.get(id);
    if (r === undefined || r.state !== "suspect" || r.incarnation !== s.inc) return;
    const update: WireUpdate = { state: "dead", id, inc: s.inc, by: this.id };
    this.#applyDown(update, now);
    for (const peer of this.#sample(this.#others("alive"), this.tuning.gossip_fanout)) {
      out.push({
        to: peer.address,
        msg: { type: "gossip", v: 1, from: this.id, updates: [update] },
      });
    }
  }

  #suspicionDeadline(s: Suspicion): number {
    const c = s.accusers.size - 1;
    if (s.k < 1 || c >= s.k) return s.start_ms + s.min_ms;
    const frac = Math.log(c + 1) / Math.log(s.k + 1);
    return s.start_ms + Math.max(s.min_ms, Math.floor(s.max_ms - (s.max_ms - s.min_ms) * frac));
  }

  #setState(r: MemberRecord, state: MemberState, now: number): void {
    const live_before = r.state === "alive" || r.state === "suspect";
    const live_after = state === "alive" || state === "suspect";
    if (live_before !== live_after) this.#live_others += live_after ? 1 : -1;
    r.state = state;
    r.state_since_ms = now;
  }

  // ---------------------------------------------------------------- gossip queue

  #enqueue(update: WireUpdate): void {
    this.#queue.set(update.id, {
      update,
      bytes: JSON.stringify(update).length,
      transmits: 0,
      seq: this.#queue_seq++,
    });
  }

  /**
   * Updates to ride on a message to member `to_id`. When this node suspects the recipient, the
   * suspicion goes first (Lifeguard's buddy system, applied to every message kind) so a live
   * member learns of it, and refutes, at the first contact.
   */
  #piggyback(to_id: string): WireUpdate[] {
    const out: WireUpdate[] = [];
    let bytes = 0;
    const t = this.#members.get(to_id);
    const first: WireUpdate | undefined = t !== undefined && t.state === "suspect"
      ? { state: "suspect", id: t.id, inc: t.incarnation, by: this.id }
      : undefined;
    if (first !== undefined) {
      out.push(first);
      bytes += JSON.stringify(first).length;
    }
    if (this.#queue.size === 0) return out;
    const limit = this.tuning.retransmit_mult * Math.ceil(Math.log10(this.liveCount() + 1));
    const entries = [...this.#queue.values()].sort((a, b) =>
      a.transmits - b.transmits || b.seq - a.seq
    );
    for (const e of entries) {
      if (out.length >= this.tuning.piggyback_max) break;
      if (first !== undefined && e.update.id === first.id) continue;
      if (bytes + e.bytes > this.tuning.piggyback_bytes_max) continue;
      out.push(e.update);
      bytes += e.bytes;
      if (++e.transmits >= limit) this.#queue.delete(e.update.id);
    }
    return out;
  }

  #ping(seq: number, target_id: string): PingMessage {
    return {
      type: "ping",
      v: 1,
      from: this.id,
      seq,
      target: target_id,
      updates: this.#piggyback(target_id),
    };
  }

  #ack(seq: number, to_id: string): AckMessage {
    return { type: "ack", v: 1, from: this.id, seq, updates: this.#piggyback(to_id) };
  }

  // ---------------------------------------------------------------- helpers

  #advance(now_ms: number): number {
    if (!Number.isFinite(now_ms)) throw new MembershipClockError(`Time ${now_ms} ms is not finite`);
    if (now_ms > this.#now_ms) this.#now_ms = now_ms;
    return this.#now_ms;
  }

  #others(...states: MemberState[]): MemberRecord[] {
    const out: MemberRecord[] = [];
    for (const r of this.#members.values()) if (states.includes(r.state)) out.push(r);
    return out;
  }

  /** Up to `k` distinct random elements (partial Fisher–Yates on a copy). */
  #sample<T>(arr: readonly T[], k: number): T[] {
    const a = [...arr];
    const n = Math.min(k, a.length);
    for (let i = 0; i < n; i++) {
      const j = i + this.#random.nextInt(a.length - i);
      const tmp = a[i] as T;
      a[i] = a[j] as T;
      a[j] = tmp;
    }
    return a.slice(0, n);
  }

  /** interval ± 25 %. */
  #jitter(interval_ms: number): number {
    const spread = Math.floor(interval_ms / 2);
    return interval_ms - Math.floor(spread / 2) + this.#random.nextInt(spread + 1);
  }

  #selfUpdate(): WireUpdate {
    return this.#left
      ? { state: "left", id: this.id, inc: this.#inc }
      : { state: "alive", id: this.id, inc: this.#inc, addr: this.#address, meta: this.#meta };
  }

  #selfSnapshot(): Member {
    return {
      id: this.id,
      address: this.#address,
      state: this.#left ? "left" : "alive",
      incarnation: this.#inc,
      meta: this.#meta,
      state_since_ms: this.#since_ms,
    };
  }

  #snapshot(r: MemberRecord): Member {
    return {
      id: r.id,
      address: r.address,
      state: r.state,
      incarnation: r.incarnation,
      meta: r.meta,
      state_since_ms: r.state_since_ms,
    };
  }

  #emit(type: MembershipEventType, r: MemberRecord, now: number): void {
    this.#on_event?.({ type, member: this.#snapshot(r), at_ms: now });
  }

  // ---------------------------------------------------------------- validation

  /** In gossip, suspect and dead name their accuser (`by`); in a sync the sender is it. */
  /**
   * undefined: malformed (the whole message is dropped); null: a well-formed update whose
   * incarnation is above {@link incarnationCeiling} (only it is dropped, and counted).
   */
  #parseUpdate(x: unknown, in_sync: boolean): WireUpdate | null | undefined {
    if (!isPlainObject(x)) return undefined;
    const { state, id, inc, addr, meta, by } = x;
    if (typeof state !== "string" || !STATES.has(state)) return undefined;
    if (!isText(id, ID_CHARS_MAX) || !isCount(inc)) return undefined;
    const u: WireUpdate = { state: state as MemberState, id, inc };
    if (addr !== undefined) {
      if (!isText(addr, ID_CHARS_MAX)) return undefined;
      u.addr = addr;
    }
    if (meta !== undefined) {
      const m = parseMeta(meta, this.tuning.meta_bytes_max);
      if (m === undefined) return undefined;
      u.meta = m;
    }
    if (by !== undefined) {
      if (!isText(by, ID_CHARS_MAX)) return undefined;
      u.by = by;
    }
    if (state === "alive" && (u.addr === undefined || u.meta === undefined)) return undefined;
    if (!in_sync && (state === "suspect" || state === "dead") && u.by === undefined) {
      return undefined;
    }
    if (inc > incarnationCeiling(state)) return null;
    return u;
  }

  #parseUpdates(x: unknown, max: number, in_sync = false): WireUpdate[] | undefined {
    if (!Array.isArray(x) || x.length > max) return undefined;
    const out: WireUpdate[] = [];
    for (const item of x) {
      const u = this.#parseUpdate(item, in_sync);
      if (u === undefined) return undefined;
      if (u === null) this.stats.incarnations_refused++;
      else out.push(u);
    }
    return out;
  }

  #parse(raw: unknown): MembershipMessage | undefined {
    if (!isPlainObject(raw) || raw.v !== 1 || !isText(raw.from, ID_CHARS_MAX)) return undefined;
    const from = raw.from;
    const updates_max = this.tuning.updates_in_max;
    switch (raw.type) {
      case "ping": {
        const updates = this.#parseUpdates(raw.updates, updates_max);
        if (!isCount(raw.seq) || !isText(raw.target, ID_CHARS_MAX) || !updates) return undefined;
        return { type: "ping", v: 1, from, seq: raw.seq, target: raw.target, updates };
      }
      case "ack": {
        const updates = this.#parseUpdates(raw.updates, updates_max);
        if (!isCount(raw.seq) || !updates) return undefined;
        return { type: "ack", v: 1, from, seq: raw.seq, updates };
      }
      case "ping_req": {
        const updates = this.#parseUpdates(raw.updates, updates_max);
        if (
          !isCount(raw.seq) || !isText(raw.target, ID_CHARS_MAX) ||
          !isText(raw.target_addr, ID_CHARS_MAX) || !updates
        ) {
          return undefined;
        }
        return {
          type: "ping_req",
          v: 1,
          from,
          seq: raw.seq,
          target: raw.target,
          target_addr: raw.target_addr,
          updates,
        };
      }
      case "nack": {
        if (!isCount(raw.seq)) return undefined;
        return { type: "nack", v: 1, from, seq: raw.seq };
      }
      case "sync": {
        const members = this.#parseUpdates(raw.members, this.tuning.sync_members_max, true);
        if (typeof raw.reply !== "boolean" || !members) return undefined;
        return { type: "sync", v: 1, from, reply: raw.reply, members };
      }
      case "gossip": {
        const updates = this.#parseUpdates(raw.updates, updates_max);
        if (!updates) return undefined;
        return { type: "gossip", v: 1, from, updates };
      }
      default:
        return undefined;
    }
  }
}
