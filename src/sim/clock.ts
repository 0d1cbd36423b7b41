/**
 * Simulated clock: a discrete-event scheduler over simulated milliseconds.
 *
 * Events run in order of (time, insertion sequence), so two events due at the same instant run
 * in the order they were scheduled — deterministic for a deterministic program. Time only moves
 * forward when an event runs or `runUntil` reaches its target; nothing here reads a real clock.
 */

/** Invalid scheduling request (a time in the past, a non-finite time, a full queue). */
export class SimClockError extends Error {
  override name = "SimClockError";
}

export type TimerId = number;

interface Entry {
  at_ms: number;
  seq: number;
  fn: () => void;
}

export interface SimClockOptions {
  /** Starting time; default 0. */
  start_ms?: number;
  /** Most events pending at once; scheduling beyond it throws. Default 10,000,000. */
  events_max?: number;
}

export class SimClock {
  #now_ms: number;
  #seq = 0;
  #heap: Entry[] = [];
  #cancelled = new Set<number>();
  #live = new Set<number>();
  readonly events_max: number;

  constructor(options: SimClockOptions = {}) {
    this.#now_ms = options.start_ms ?? 0;
    this.events_max = options.events_max ?? 10_000_000;
    if (!Number.isFinite(this.#now_ms)) {
      throw new SimClockError(`Start time ${this.#now_ms} ms is not finite`);
    }
  }

  get now_ms(): number {
    return this.#now_ms;
  }

  /** Number of scheduled, not yet run, not cancelled events. */
  get pending(): number {
    return this.#live.size;
  }

  /** Runs `fn` at absolute time `at_ms` (>= now). */
  at(at_ms: number, fn: () => void): TimerId {
    if (!Number.isFinite(at_ms)) throw new SimClockError(`Event time ${at_ms} ms is not finite`);
    if (at_ms < this.#now_ms) {
      throw new SimClockError(
        `Event time ${at_ms} ms is before the current time ${this.#now_ms} ms`,
      );
    }
    if (this.#heap.length >= this.events_max) {
      throw new SimClockError(`Event queue is full at ${this.events_max} events`);
    }
    const seq = this.#seq++;
    this.#live.add(seq);
    this.#push({ at_ms, seq, fn });
    return seq;
  }

  /** Runs `fn` after `delay_ms` (>= 0). */
  after(delay_ms: number, fn: () => void): TimerId {
    if (!(delay_ms >= 0)) throw new SimClockError(`Delay ${delay_ms} ms is negative or NaN`);
    return this.at(this.#now_ms + delay_ms, fn);
  }

  /** Cancels a pending event; returns false when it already ran or was cancelled. */
  cancel(id: TimerId): boolean {
    if (!this.#live.delete(id)) return false;
    this.#cancelled.add(id);
    return true;
  }

  /** Time of the next pending event, or undefined. */
  peek(): number | undefined {
    this.#dropCancelledTop();
    return this.#heap[0]?.at_ms;
  }

  /** Runs the next event (advancing time to it); false when none is pending. */
  step(): boolean {
    this.#dropCancelledTop();
    const e = this.#pop();
    if (e === undefined) return false;
    this.#live.delete(e.seq);
    this.#now_ms = e.at_ms;
    e.fn();
    return true;
  }

  /** Runs every event due at or before `t_ms`, then sets the time to `t_ms`. Returns the count. */
  runUntil(t_ms: number): number {
    if (!(t_ms >= this.#now_ms)) {
      throw new SimClockError(
        `Target time ${t_ms} ms is before the current time ${this.#now_ms} ms`,
      );
    }
    let n = 0;
    for (;;) {
      const next = this.peek();
      if (next === undefined || next > t_ms) break;
      this.step();
      n++;
    }
    this.#now_ms = t_ms;
    return n;
  }

  #dropCancelledTop(): void {
    while (this.#heap.length > 0 && this.#cancelled.has((this.#heap[0] as Entry).seq)) {
      this.#cancelled.delete((this.#pop() as Entry).seq);
    }
  }

  static #less(a: Entry, b: Entry): boolean {
    return a.at_ms < b.at_ms || (a.at_ms === b.at_ms && a.seq < b.seq);
  }

  #push(e: Entry): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!SimClock.#less(h[i] as Entry, h[p] as Entry)) break;
      [h[i], h[p]] = [h[p] as Entry, h[i] as Entry];
      i = p;
    }
  }

  #pop(): Entry | undefined {
    const h = this.#heap;
    if (h.length === 0) return undefined;
    const top = h[0] as Entry;
    const last = h.pop() as Entry;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && SimClock.#less(h[l] as Entry, h[m] as Entry)) m = l;
        if (r < h.length && SimClock.#less(h[r] as Entry, h[m] as Entry)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m] as Entry, h[i] as Entry];
        i = m;
      }
    }
    return top;
  }
}
