/**
 * Waiting with timeouts, for tests and scripts. Runtime-neutral.
 * @module
 */

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` every `interval_ms` until it returns true and resolves with the milliseconds
 * that took; throws `message` (with the last error `check` threw, if any) after `timeout_ms`.
 * A `check` that throws counts as not yet.
 */
export async function waitFor(
  check: () => Promise<boolean>,
  message: string,
  timeout_ms = 20_000,
  interval_ms = 100,
): Promise<number> {
  const t0 = performance.now();
  let last: unknown = null;
  for (;;) {
    try {
      if (await check()) return performance.now() - t0;
      last = null;
    } catch (e) {
      last = e;
    }
    if (performance.now() - t0 >= timeout_ms) break;
    await sleep(interval_ms);
  }
  throw new Error(`${message} (waited ${timeout_ms} ms${last ? `; last error: ${last}` : ""})`);
}
