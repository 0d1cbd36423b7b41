/**
 * Crash test through the server: a storage node SIGKILLed at 50+ seeded-random moments under
 * writes from 16 clients must keep every acknowledged write and invent none. The work is done by
 * `helpers/server_crash_run.ts` in a Node child process (see there why not under Deno).
 *
 * `CRASH_SEED=<seed>` replays a run's choices; `CRASH_ITERATIONS=200` runs longer.
 */
import assert from "node:assert/strict";
import { runProcess } from "../harness/process.ts";
import { scriptCommand } from "../harness/servers.ts";

Deno.test("storage node keeps every acknowledged write across SIGKILLs", async () => {
  const seed = Deno.env.get("CRASH_SEED") ?? String(Math.floor(Math.random() * 2 ** 31));
  const iterations = Deno.env.get("CRASH_ITERATIONS") ?? "50";
  // The driver runs under Node through tsx, like a server (see server_crash_run.ts).
  const [command, ...args] = scriptCommand("tests/helpers/server_crash_run.ts", []);
  const out = await runProcess(command, args, {
    env: { CRASH_SEED: seed, CRASH_ITERATIONS: iterations },
  });
  console.log(out.stdout.trim());
  assert.equal(
    out.code,
    0,
    `The crash test failed (replay: CRASH_SEED=${seed} CRASH_ITERATIONS=${iterations}):\n` +
      out.stderr,
  );
  assert.match(out.stdout, /kill points/);
});
