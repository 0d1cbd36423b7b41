/**
 * A {@link RetryClock} for tests: sleeps only move its time forward (no real waits), and
 * `random` replays a fixed sequence.
 * @module
 */
import type { RetryClock } from "./retry.ts";

/** A fake clock starting at `start_ms`, recording every sleep in `sleeps`. */
export function fakeClock(
  randoms: number[] = [0.5],
  start_ms = 0,
): RetryClock & { sleeps: number[] } {
  let t = start_ms;
  let i = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => t,
    sleep: (ms) => {
      sleeps.push(ms);
      t += ms;
      return Promise.resolve();
    },
    random: () => randoms[i++ % randoms.length],
  };
}
