/**
 * The storage node's hand-off when it is drained (`client drain`, the `Drain` RPC; a plain
 * SIGTERM/SIGINT stops the node with its data kept and does not hand off): after it left the
 * cluster (gossip `left`), the router scans it as a source and copies every entry it holds to
 * the entry's owners, then forgets them on this node (`Prune`,
 * src/router/rebalance/rebalancer.ts). The node waits for that before it exits, so its data is
 * placed elsewhere first (with RF 1 its points would otherwise be unavailable until it
 * returned).
 *
 * {@link waitForDrain} decides when to stop waiting: when the node holds no entries any more
 * (`"done"`), when no Transfer call arrived for `idle_ms` (`"idle"`: no router is reading it,
 * e.g. it was stopped too), at `timeout_ms` (`"timeout"`), or once `stop_now` says so
 * (`"aborted"`: SIGTERM/SIGINT during a drain ends the wait). Time and sleeping are passed in,
 * so tests drive it without real timers.
 *
 * @example
 * ```ts
 * import { waitForDrain } from "./drain_wait.ts";
 *
 * let held = 3;
 * const outcome = await waitForDrain({
 *   entries: () => held--, // a router forgets one entry per poll
 *   last_transfer_ms: () => 0,
 *   now_ms: () => 0,
 *   sleep: () => Promise.resolve(),
 *   timeout_ms: 60_000,
 *   idle_ms: 15_000,
 * });
 * // outcome.outcome === "done"
 * ```
 * @module
 */

/** Default longest wait for a hand-off. */
export const DRAIN_TIMEOUT_MS = 120_000;
/** Default: stop waiting after this long without a Transfer call. */
export const DRAIN_IDLE_MS = 30_000;
/** Pause between two checks. */
export const DRAIN_POLL_MS = 200;

/** Inputs of {@link waitForDrain}. */
export interface DrainWait {
  /** Entries (live points and tombstones) the node still holds. */
  entries: () => number;
  /** When the last Transfer call arrived (ms, the same clock as `now_ms`); 0 if none. */
  last_transfer_ms: () => number;
  now_ms: () => number;
  sleep: (ms: number) => Promise<void>;
  timeout_ms: number;
  idle_ms: number;
  /** True when the wait should end now (default never). */
  stop_now?: () => boolean;
}

/** Waits for the hand-off (see the module comment); resolves with why it stopped. */
export async function waitForDrain(
  w: DrainWait,
): Promise<
  { outcome: "done" | "idle" | "timeout" | "aborted"; entries: number; waited_ms: number }
> {
  if (!(w.timeout_ms > 0) || !(w.idle_ms > 0)) {
    throw new RangeError(
      `Hand-off timeout ${w.timeout_ms} ms and idle time ${w.idle_ms} ms must be positive`,
    );
  }
  const start = w.now_ms();
  for (;;) {
    const entries = w.entries();
    const now = w.now_ms();
    const waited_ms = now - start;
    if (entries === 0) return { outcome: "done", entries, waited_ms };
    if (waited_ms >= w.timeout_ms) return { outcome: "timeout", entries, waited_ms };
    if (w.stop_now?.()) return { outcome: "aborted", entries, waited_ms };
    if (now - Math.max(start, w.last_transfer_ms()) >= w.idle_ms) {
      return { outcome: "idle", entries, waited_ms };
    }
    await w.sleep(DRAIN_POLL_MS);
  }
}
