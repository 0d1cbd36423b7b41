/**
 * Crash test through the server: a storage node SIGKILLed at 50+ seeded-random moments under
 * writes from 16 clients must keep every acknowledged write and invent none. The work is done by
 * `helpers/server_crash_run.ts` in a Node child process (see there why not under Deno).
 *
 * `CRASH_SEED=<seed>` replays a run's choices; `CRASH_ITERATIONS=200` runs longer.
 */
import assert from "node:assert/strict";
import { REPO_ROOT } from "./helpers/node_process.ts";

Deno.test("storage node keeps every acknowledged write across SIGKILLs", async () => {
  const seed = Deno.env.get("CRASH_SEED") ?? String(Math.floor(Math.random() * 2 ** 31));
  const iterations = Deno.env.get("CRASH_ITERATIONS") ?? "50";
  const out = await new Deno.Command("node", {
    args: [
      "--import",
      "./node_modules/tsx/dist/esm/index.mjs",
      "tests/helpers/server_crash_run.ts",
    ],
    cwd: REPO_ROOT,
    env: { CRASH_SEED: seed, CRASH_ITERATIONS: iterations },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  console.log(stdout.trim());
  assert.equal(
    out.code,
    0,
    `The crash test failed (replay: CRASH_SEED=${seed} CRASH_ITERATIONS=${iterations}):\n` +
      stderr,
  );
  assert.match(stdout, /kill points/);
});
