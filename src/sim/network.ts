/**
 * Simulated message network over a `SimClock`, driven by one seeded `Prng`.
 *
 * Every `send` draws, in this order and from the network's own generator: a loss decision, a
 * delay, a duplication decision and (when duplicated) the copy's delay. Delays are uniform
 * integers in [delay_min_ms, delay_max_ms], so independent delays reorder messages. A message is
 * dropped when its link is cut at send time or at delivery time, or when the receiver is not
 * registered at delivery time (a crashed node). Deliveries due at the same instant run in send
 * order. Messages go through a JSON round trip by default, so receivers never share objects
 * with senders and anything that is not JSON-serializable shows up in tests.
 *
 * Generic in the message type so the membership, router and transfer simulations share it.
 */

import { SimClock } from "./clock.ts";
import type { Prng } from "../common/prng.ts";

/** Invalid network configuration or use (bad probability, full in-flight queue…). */
export class SimNetworkError extends Error {
  override name = "SimNetworkError";
}

export type Handler<M> = (from: string, msg: M, now_ms: number) => void;

export interface LinkOptions {
  /** Probability in [0, 1] that a message is lost. */
  loss: number;
  /** Smallest one-way delay. */
  delay_min_ms: number;
  /** Largest one-way delay (inclusive). */
  delay_max_ms: number;
  /** Probability in [0, 1] that a delivered message is delivered twice. */
  duplicate: number;
}

export interface SimNetworkOptions extends Partial<LinkOptions> {
  prng: Prng;
  /** Shared clock; a new one starting at 0 when omitted. */
  clock?: SimClock;
  /** Most messages in flight at once; sending beyond it throws. Default 1,000,000. */
  in_flight_max?: number;
  /** JSON round trip on send (default true). */
  serialize?: boolean;
  /** Largest serialized message; larger sends throw. Default 16 MiB. Needs `serialize`. */
  message_bytes_max?: number;
}

export interface SimNetworkStats {
  sent: number;
  delivered: number;
  duplicated: number;
  dropped_loss: number;
  dropped_cut: number;
  dropped_down: number;
  bytes_sent: number;
}

interface Cut {
  from: ReadonlySet<string>;
  to: ReadonlySet<string>;
}

function checkProbability(p: number, what: string): void {
  if (!(p >= 0 && p <= 1)) throw new SimNetworkError(`${what} ${p} is not a probability in [0, 1]`);
}

export class SimNetwork<M> {
  readonly clock: SimClock;
  readonly stats: SimNetworkStats = {
    sent: 0,
    delivered: 0,
    duplicated: 0,
    dropped_loss: 0,
    dropped_cut: 0,
    dropped_down: 0,
    bytes_sent: 0,
  };
  #prng: Prng;
  #link: LinkOptions;
  #handlers = new Map<string, Handler<M>>();
  #cuts = new Map<number, Cut>();
  #cut_seq = 0;
  #in_flight = 0;
  readonly in_flight_max: number;
  readonly serialize: boolean;
  readonly message_bytes_max: number;

  constructor(options: SimNetworkOptions) {
    this.#prng = options.prng;
    this.clock = options.clock ?? new SimClock();
    this.in_flight_max = options.in_flight_max ?? 1_000_000;
    this.serialize = options.serialize ?? true;
    this.message_bytes_max = options.message_bytes_max ?? 16 * 1024 * 1024;
    this.#link = { loss: 0, delay_min_ms: 1, delay_max_ms: 1, duplicate: 0 };
    this.configure(options);
  }

  get now_ms(): number {
    return this.clock.now_ms;
  }

  get in_flight(): number {
    return this.#in_flight;
  }

  /** Current link behaviour (applies to every pair of nodes). */
  get link(): Readonly<LinkOptions> {
    return this.#link;
  }

  /** Changes loss, delay or duplication for messages sent from now on. */
  configure(options: Partial<LinkOptions>): void {
    const next = { ...this.#link };
    for (const k of ["loss", "delay_min_ms", "delay_max_ms", "duplicate"] as const) {
      const v = options[k];
      if (v !== undefined) next[k] = v;
    }
    checkProbability(next.loss, "Loss");
    checkProbability(next.duplicate, "Duplication probability");
    if (
      !Number.isInteger(next.delay_min_ms) || !Number.isInteger(next.delay_max_ms) ||
      next.delay_min_ms < 0 || next.delay_max_ms < next.delay_min_ms
    ) {
      throw new SimNetworkError(
        `Delay range [${next.delay_min_ms}, ${next.delay_max_ms}] ms is not an integer range ` +
          `with 0 <= min <= max`,
      );
    }
    this.#link = next;
  }

  /** Attaches a node; messages to `address` are delivered to `handler`. */
  register(address: string, handler: Handler<M>): void {
    if (this.#handlers.has(address)) {
      throw new SimNetworkError(`Address "${address}" is already registered`);
    }
    this.#handlers.set(address, handler);
  }

  /** Detaches a node (a crash): messages in flight to it and later ones are dropped. */
  unregister(address: string): boolean {
    return this.#handlers.delete(address);
  }

  isRegistered(address: string): boolean {
    return this.#handlers.has(address);
  }

  /**
   * Blocks messages from every node in `a` to every node in `b`, and from `b` to `a` unless
   * `one_way`. Returns an id for `restore`. Cuts stack; a link is open when no cut blocks it.
   */
  cut(a: Iterable<string>, b: Iterable<string>, options: { one_way?: boolean } = {}): number {
    const sa = new Set(a);
    const sb = new Set(b);
    const id = this.#cut_seq++;
    this.#cuts.set(id, { from: sa, to: sb });
    if (!options.one_way) this.#cuts.set(this.#cut_seq++, { from: sb, to: sa });
    return id;
  }

  /** Removes the cut `id` returned by `cut` (both directions). */
  restore(id: number): void {
    this.#cuts.delete(id);
    this.#cuts.delete(id + 1);
  }

  /** Removes every cut. */
  heal(): void {
    this.#cuts.clear();
  }

  isCut(from: string, to: string): boolean {
    for (const c of this.#cuts.values()) {
      if (c.from.has(from) && c.to.has(to)) return true;
    }
    return false;
  }

  /** Sends `msg`; delivery (or loss) happens later on the clock. */
  send(from: string, to: string, msg: M): void {
    let payload = msg;
    let bytes = 0;
    if (this.serialize) {
      const text = JSON.stringify(msg);
      if (text === undefined) throw new SimNetworkError(`Message from "${from}" is not JSON`);
      bytes = text.length;
      if (bytes > this.message_bytes_max) {
        throw new SimNetworkError(
          `Message of ${bytes} bytes from "${from}" to "${to}" exceeds the limit of ` +
            `${this.message_bytes_max} bytes`,
        );
      }
      payload = JSON.parse(text) as M;
    }
    this.stats.sent++;
    this.stats.bytes_sent += bytes;
    const link = this.#link;
    if (this.#prng.chance(link.loss)) {
      this.stats.dropped_loss++;
      return;
    }
    if (this.isCut(from, to)) {
      this.stats.dropped_cut++;
      return;
    }
    this.#schedule(from, to, payload, this.#delay());
    if (this.#prng.chance(link.duplicate)) {
      this.stats.duplicated++;
      const copy = this.serialize ? JSON.parse(JSON.stringify(payload)) as M : payload;
      this.#schedule(from, to, copy, this.#delay());
    }
  }

  /** Runs the next clock event (a delivery or anything else scheduled on the clock). */
  step(): boolean {
    return this.clock.step();
  }

  /** Runs every clock event due at or before `t_ms`. */
  runUntil(t_ms: number): number {
    return this.clock.runUntil(t_ms);
  }

  #delay(): number {
    return this.#prng.intBetween(this.#link.delay_min_ms, this.#link.delay_max_ms);
  }

  #schedule(from: string, to: string, msg: M, delay_ms: number): void {
    if (this.#in_flight >= this.in_flight_max) {
      throw new SimNetworkError(`In-flight queue is full at ${this.in_flight_max} messages`);
    }
    this.#in_flight++;
    this.clock.after(delay_ms, () => {
      this.#in_flight--;
      if (this.isCut(from, to)) {
        this.stats.dropped_cut++;
        return;
      }
      const h = this.#handlers.get(to);
      if (h === undefined) {
        this.stats.dropped_down++;
        return;
      }
      this.stats.delivered++;
      h(from, msg, this.clock.now_ms);
    });
  }
}
