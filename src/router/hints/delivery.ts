/**
 * Hinted-handoff state of one storage node as the router sees it: a pure state machine (no IO,
 * no clock) driven by {@link HintDelivery.tick} and {@link HintDelivery.receive}; the router's
 * server performs the replays and probes it asks for and reports back.
 *
 * State: `pending` (hints durably queued for the node and not yet removed from its hint log),
 * `reachable` (whether the last call to it succeeded), `busy` (a replay or probe is in flight)
 * and `next_attempt_ms` (when a node believed down may be tried again).
 *
 * Routing rule, the heart of the ordering guarantee: while `pending > 0` every new write for
 * the node goes to the END of its hint queue instead of to the node ({@link route} says
 * "queue"), so no direct write overtakes a queued one; replay delivers the queued writes in the
 * order the router accepted them, up to a window of versioned point writes sent concurrently
 * (replay.ts), where a node's last-writer-wins by version makes the order irrelevant: a delete
 * can never be overtaken by an older put. Only when the queue is
 * empty again (every hint delivered AND the delivery durably recorded) do writes go directly to
 * the node again. A queued write may still count as that node's acknowledgement: when the node
 * is reachable the caller waits (up to its node timeout) for the replay to deliver it
 * ({@link waitForDelivery}).
 *
 * Actions from `tick(now_ms)`:
 * - "replay": pending > 0 and (reachable, or the retry interval has passed): deliver hints in
 *   order until the queue is empty or a delivery fails; report `replay_stopped`;
 * - "probe": the node is believed down, nothing is pending, and the retry interval has passed:
 *   make one cheap call; report `probe_result`;
 * - "none".
 *
 * @module
 */

/** Default pause between attempts to reach a node believed down. */
export const DEFAULT_RETRY_INTERVAL_MS = 500;

/** What {@link HintDelivery.tick} asks the driver to do. */
export type DeliveryAction = "none" | "replay" | "probe";

/** Events the driver reports. */
export type DeliveryEvent =
  /** `count` hints were appended durably to the node's hint log. */
  | { type: "enqueued"; count: number }
  /** `count` hints were removed from the log (delivered or discarded, durably recorded). */
  | { type: "removed"; count: number }
  /** A replay ended: the queue drained (`ok`) or a delivery failed (not `ok`). */
  | { type: "replay_stopped"; ok: boolean }
  /** A probe call ended. */
  | { type: "probe_result"; ok: boolean }
  /** A direct (not replayed) call to the node ended; `ok` false only for availability errors. */
  | { type: "direct_result"; ok: boolean };

/** Thrown when an event contradicts the state (a driver bug). */
export class DeliveryStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeliveryStateError";
  }
}

/** Options of {@link HintDelivery}. */
export interface HintDeliveryOptions {
  /** Pause between attempts to reach a node believed down; default 500 ms. */
  retry_interval_ms?: number;
  /** Hints already in the node's log when the router starts. */
  pending?: number;
}

/** Handoff state of one node. */
export class HintDelivery {
  readonly node: string;
  readonly retry_interval_ms: number;
  #pending: number;
  #reachable = true;
  #busy = false;
  #next_attempt_ms = 0;

  constructor(node: string, options: HintDeliveryOptions = {}) {
    const retry = options.retry_interval_ms ?? DEFAULT_RETRY_INTERVAL_MS;
    if (!Number.isFinite(retry) || retry <= 0) {
      throw new RangeError(`Retry interval ${retry} ms must be a positive number`);
    }
    const pending = options.pending ?? 0;
    if (!Number.isInteger(pending) || pending < 0) {
      throw new RangeError(`Pending hint count ${pending} must be a non-negative integer`);
    }
    this.node = node;
    this.retry_interval_ms = retry;
    this.#pending = pending;
  }

  /** Hints queued for the node and not yet removed. */
  get pending(): number {
    return this.#pending;
  }

  /** Whether the last call to the node succeeded. */
  get reachable(): boolean {
    return this.#reachable;
  }

  /** Whether a replay or probe is in flight. */
  get busy(): boolean {
    return this.#busy;
  }

  /** Where a new write for the node goes: straight to it, or behind its pending hints. */
  route(): "direct" | "queue" {
    return this.#pending > 0 ? "queue" : "direct";
  }

  /** Whether a write just queued for the node is worth waiting for (replay is running). */
  waitForDelivery(): boolean {
    return this.#pending > 0 && this.#reachable;
  }

  /** Decides what to do now; a "replay" or "probe" marks the state busy until reported. */
  tick(now_ms: number): DeliveryAction {
    if (this.#busy) return "none";
    const due = now_ms >= this.#next_attempt_ms;
    if (this.#pending > 0 && (this.#reachable || due)) {
      this.#busy = true;
      return "replay";
    }
    if (this.#pending === 0 && !this.#reachable && due) {
      this.#busy = true;
      return "probe";
    }
    return "none";
  }

  /** Applies an event the driver observed at `now_ms`. */
  receive(event: DeliveryEvent, now_ms: number): void {
    switch (event.type) {
      case "enqueued":
        this.#checkCount(event.count);
        this.#pending += event.count;
        return;
      case "removed":
        this.#checkCount(event.count);
        if (event.count > this.#pending) {
          throw new DeliveryStateError(
            `Node ${this.node}: ${event.count} hints removed but only ${this.#pending} pending`,
          );
        }
        this.#pending -= event.count;
        return;
      case "replay_stopped":
      case "probe_result":
        if (!this.#busy) {
          throw new DeliveryStateError(`Node ${this.node}: ${event.type} with nothing in flight`);
        }
        this.#busy = false;
        this.#mark(event.ok, now_ms);
        return;
      case "direct_result":
        this.#mark(event.ok, now_ms);
        return;
      default:
        throw new DeliveryStateError(
          `Node ${this.node}: unknown event ${JSON.stringify((event as { type: unknown }).type)}`,
        );
    }
  }

  #mark(ok: boolean, now_ms: number): void {
    if (ok) {
      this.#reachable = true;
    } else {
      this.#reachable = false;
      this.#next_attempt_ms = now_ms + this.retry_interval_ms;
    }
  }

  #checkCount(count: number): void {
    if (!Number.isInteger(count) || count < 0) {
      throw new DeliveryStateError(`Node ${this.node}: hint count ${count} is not a count`);
    }
  }
}
