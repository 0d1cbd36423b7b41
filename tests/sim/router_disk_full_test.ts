/**
 * The router core when storage nodes refuse writes because their disk is full
 * (RESOURCE_EXHAUSTED naming the data directory), in the simulated world of router_world.ts.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { validatePutRequest } from "../../src/api/validate.ts";
import type { RouterStatusError } from "../../src/router/node_port.ts";
import { simRouterCore } from "./router_world.ts";

Deno.test("router disk full: owners refusing with RESOURCE_EXHAUSTED are passed on as RESOURCE_EXHAUSTED", async () => {
  const { world, core } = await simRouterCore(11);
  const put = async (id: number) => {
    const p = core.put(validatePutRequest({ id, vector: [id, 0], collection: "c" }));
    const outcome = p.then((value) => ({ value }), (error) => ({ error }));
    await world.run(world.clock.now_ms + 5_000);
    return await outcome;
  };
  for (const n of world.nodes.values()) {
    n.refuse_writes = `No space left on device in data directory /data/${n.address}: write ` +
      `refused, nothing applied; writes resume once space is freed`;
  }
  const refused = await put(1);
  assert.ok("error" in refused, "the write must fail");
  const e = refused.error as RouterStatusError;
  assert.equal(e.code, grpc.status.RESOURCE_EXHAUSTED, e.message);
  assert.match(e.message, /RESOURCE_EXHAUSTED: No space left on device in data directory \/data\//);
  for (const n of world.nodes.values()) assert.equal(n.data.has(1), false);
  const again = await put(3);
  assert.ok("error" in again);
  assert.equal((again.error as RouterStatusError).code, grpc.status.RESOURCE_EXHAUSTED);

  // With every owner down instead, the client still hears UNAVAILABLE.
  for (const n of world.nodes.values()) n.up = false;
  const down = await put(2);
  assert.ok("error" in down);
  assert.equal((down.error as RouterStatusError).code, grpc.status.UNAVAILABLE);
  await core.stop();
});
