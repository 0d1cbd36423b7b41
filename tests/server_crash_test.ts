/**
 * Crash test through the server: a storage node SIGKILLed at 50+ seeded-random moments under
 * writes from 16 clients must keep every acknowledged write and invent none. The work is done by
 * `helpers/server_crash_run.ts` in a Node child process (see there why not under Deno).
 *
 * `CRASH_SEED=<seed>` replays a run's choices; `CRASH_ITERATIONS=200` runs longer. A second run
 * does the same with a collection of 3 shards (one unit per shard on the node).
 */
import assert from "node:assert/strict";
import { runProcess } from "../harness/process.ts";
import { scriptCommand } from "../harness/servers.ts";

/** Runs the driver for a collection of `shards` shards; `iterations` unless CRASH_ITERATIONS. */
async function crashRun(shards: number, iterations_default: string): Promise<void> {
  const seed = Deno.env.get("CRASH_SEED") ?? String(Math.floor(Math.random() * 2 ** 31));
  const iterations = Deno.env.get("CRASH_ITERATIONS") ?? iterations_default;
  // The driver runs under Node through tsx, like a server (see server_crash_run.ts).
  const [command, ...args] = scriptCommand("tests/helpers/server_crash_run.ts", []);
  const out = await runProcess(command, args, {
    env: { CRASH_SEED: seed, CRASH_ITERATIONS: iterations, CRASH_SHARDS: String(shards) },
  });
  console.log(out.stdout.trim());
  assert.equal(
    out.code,
    0,
    `The crash test failed (replay: CRASH_SEED=${seed} CRASH_ITERATIONS=${iterations} ` +
      `CRASH_SHARDS=${shards}):\n` +
      out.stderr,
  );
  assert.match(out.stdout, new RegExp(`${shards} shards: \\d+ kill points`));
}

Deno.test("storage node keeps every acknowledged write across SIGKILLs", async () => {
  await crashRun(1, "50");
});

Deno.test("storage node keeps every acknowledged write of a 3-shard collection across SIGKILLs", async () => {
  // Each shard is its own unit (WAL, snapshots): batches span units, recovery opens each.
  await crashRun(3, "20");
});
