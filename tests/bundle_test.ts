/**
 * The servers as `deno task server` and `deno task router` run them: JavaScript bundles that
 * `deno task build:js` (scripts/tools/build_js.ts) writes, so no start compiles TypeScript. The
 * bundles start, serve, keep data across a restart, and a second build with unchanged sources
 * leaves them as they are.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "../src/api/client.ts";
import { NodeProcess } from "../harness/node.ts";
import { freePort } from "../harness/ports.ts";
import {
  buildBundles,
  BUNDLES,
  ROUTER_ENTRY,
  routerFlags,
  spawnServer,
} from "../harness/servers.ts";

const build = buildBundles;

Deno.test("bundles: build:js writes them once; the node and the router start from them and serve", async () => {
  build();
  const nodeBundle = BUNDLES["src/node/main.ts"];
  const before = statSync(nodeBundle).mtimeMs;
  const hash = readFileSync("build/js/bundle.hash", "utf8");
  build(); // unchanged sources: nothing rewritten
  assert.equal(statSync(nodeBundle).mtimeMs, before);
  assert.equal(readFileSync("build/js/bundle.hash", "utf8"), hash);
  // The bundle holds our modules (no import of a .ts file is left) and nothing of src/ is
  // fetched at run time.
  const code = readFileSync(nodeBundle, "utf8");
  assert.doesNotMatch(code, /from\s+"[^"]*\.ts"/);

  const node = await NodeProcess.start({ runtime: "bundle" });
  const routerDir = mkdtempSync(join(tmpdir(), "vectordb_bundle_router_"));
  const routerPort = await freePort();
  const router = spawnServer({
    name: "router",
    entry: ROUTER_ENTRY,
    runtime: "bundle",
    flags: routerFlags({
      port: routerPort,
      nodes: [node.address],
      replication_factor: 1,
      data_dir: routerDir,
    }),
  });
  let api: ApiClient | null = null;
  try {
    await router.ready;
    api = new ApiClient(`127.0.0.1:${routerPort}`);
    await api.call("Put", { id: 7, vector: [1, 0, 0], payload: '{"lang":"en"}' });
    await api.call("Put", { id: 8, vector: [0, 1, 0] });
    const found = await api.call("Search", { vector: [0.9, 0.1, 0], k: 1, with_payload: true });
    assert.equal(Number(found.results[0].id), 7);
    assert.equal(found.results[0].payload, '{"lang":"en"}');
    // Closed before the node goes away (denoland/deno#36788: a Deno client under a dying
    // server can abort the runtime).
    api.close();
    api = null;
    await node.stop();
    await node.start();
    const direct = new ApiClient(node.address);
    try {
      const got = await direct.call("Get", { id: 8 });
      assert.equal(got.found, true);
      assert.deepEqual(got.vector, [0, 1, 0]);
    } finally {
      direct.close();
    }
  } finally {
    api?.close();
    await router.stop();
    await node.close();
    rmSync(routerDir, { recursive: true, force: true });
  }
});
