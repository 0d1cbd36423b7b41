/**
 * Version safety of the router core, in the simulated world of router_world.ts: a client's
 * version must stay within the clock window, a failed write never moves the router's clock, and
 * reading a point held at an absurd version (written before the window existed) cannot poison it.
 */
import assert from "node:assert/strict";
import { validatePointRef, validatePutRequest, ValidationError } from "../../src/api/validate.ts";
import { VERSION_MAX, versionCeiling } from "../../src/common/version.ts";
import { simRouterCore } from "./router_world.ts";

/** A 3-node RF 2 world with no loss, its clock at a realistic wall time. */
async function setup() {
  // 2026: versions look like real ones
  const { world, core } = await simRouterCore(7, 1_780_000_000_000);
  // Runs the world until `p` has settled; rejections are kept for the caller (not unhandled).
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    const outcome = p.then((value) => ({ value }), (error) => ({ error }));
    await world.run(world.clock.now_ms + 5_000);
    const o = await outcome;
    if ("error" in o) throw o.error;
    return o.value;
  };
  const put = (id: number, version?: string) =>
    settle(core.put(validatePutRequest({ id, vector: [id, 0], collection: "c", version })));
  return { world, core, put, settle };
}

Deno.test("router versions: a client's version beyond the window is INVALID_ARGUMENT", () => {
  const now = Date.now();
  const ok = String(versionCeiling(now) - 5_000 * 1024);
  assert.equal(validatePutRequest({ id: 1, vector: [1], version: ok }).version, Number(ok));
  assert.throws(
    () => validatePutRequest({ id: 1, vector: [1], version: String(VERSION_MAX) }),
    (e: unknown) =>
      e instanceof ValidationError && e.field === "version" &&
      /^version "9007199254740991" is more than 60 minutes ahead of this server's clock/.test(
        e.message,
      ),
  );
});

Deno.test("router versions: a failed write never moves the clock; a successful one does", async () => {
  const { world, core, put } = await setup();
  const ahead = String(versionCeiling(world.clock.now_ms) - 10);
  for (const n of world.nodes.values()) n.up = false;
  await assert.rejects(put(1, ahead));
  for (const n of world.nodes.values()) n.up = true;
  const stamped = Number((await put(2)).version);
  assert.ok(stamped < Number(ahead), `the failed write moved the clock to ${stamped}`);
  assert.equal((await put(3, ahead)).version, ahead);
  const after = Number((await put(4)).version);
  assert.ok(after > Number(ahead), "a successful client version is observed");
  await core.stop();
});

Deno.test("router versions: reading a point held at an absurd version cannot poison the clock", async () => {
  const { world, core, put, settle } = await setup();
  // Held on every owner from before the window existed.
  for (const n of world.nodes.values()) {
    n.data.set(9, { version: VERSION_MAX, deleted: true, value: 0 });
  }
  world.recordApplied(9, VERSION_MAX, true, 0);
  const got = await settle(core.get(validatePointRef({ id: 9, collection: "c" })));
  assert.equal(got.version, String(VERSION_MAX), "served as it is");
  const next = Number((await put(10)).version);
  assert.ok(next <= versionCeiling(world.clock.now_ms), `the clock was pushed to ${next}`);
  await core.stop();
});
