/**
 * The servers as `deno task server` and `deno task router` run them: JavaScript bundles that
 * `deno task build:js` (scripts/tools/build_js.ts) writes, so no start compiles TypeScript. The
 * bundles start, serve, keep data across a restart, and a second build with unchanged sources
 * leaves them as they are.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "../src/api/client.ts";
import { TEST_NODE_TIMEOUT_MS } from "../harness/cluster.ts";
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
const NODE_CJS = "build/js/node.cjs";
const NODE_CACHE = `${NODE_CJS}.cache`;

/** What the loader would make of the node bundle's code cache now (boot_loader.ts). */
function cacheUse(): string {
  const out = new Deno.Command("node", {
    args: [
      "--input-type=module",
      "-e",
      `const m = await import("./build/js/node.mjs");` +
      `process.stdout.write(m.compileBundle(${JSON.stringify(NODE_CJS)}).cache);`,
    ],
  }).outputSync();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

async function getEight(address: string): Promise<void> {
  const direct = new ApiClient(address);
  try {
    const got = await direct.call("Get", { id: 8 });
    assert.equal(got.found, true);
    assert.deepEqual(got.vector, [0, 1, 0]);
  } finally {
    direct.close();
  }
}

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
  const code = readFileSync(NODE_CJS, "utf8");
  assert.doesNotMatch(code, /from\s+"[^"]*\.ts"/);
  assert.doesNotMatch(code, /require\("[^"]*\.ts"\)/);
  // The npm packages are inside: none is required from node_modules at run time.
  for (const pkg of ["@grpc/grpc-js", "@grpc/proto-loader", "protobufjs", "prom-client"]) {
    assert.doesNotMatch(code, new RegExp(`require\\("${pkg}"\\)`), pkg);
  }
  // With source maps on (debugging), the loader requires the bundle as Node's loader would.
  const mapped = new Deno.Command("node", {
    args: ["--enable-source-maps", "build/js/node.mjs", "--version"],
  }).outputSync();
  assert.equal(mapped.code, 0, new TextDecoder().decode(mapped.stderr));
  assert.match(new TextDecoder().decode(mapped.stdout), /^vectordb server /);
  // A rebuilt bundle starts without a cache (the old one is removed with it).
  rmSync(NODE_CACHE, { force: true });

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
      // Not the 2 s default, which a node call can exceed on a loaded machine (the cluster
      // tests' TEST_NODE_TIMEOUT_MS); below the client's 10 s.
      node_timeout_ms: TEST_NODE_TIMEOUT_MS,
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
    // The first start wrote the code cache on its way out; V8 takes it for this bundle.
    assert.equal(cacheUse(), "accepted");
    await node.start();
    await getEight(node.address);
    // A damaged cache is not used: the node compiles as without one, serves, and writes a
    // good one again.
    await node.stop();
    const damaged = readFileSync(NODE_CACHE);
    damaged[damaged.length - 100] ^= 0xff;
    writeFileSync(NODE_CACHE, damaged);
    await node.start();
    await getEight(node.address);
    await node.stop();
    assert.equal(cacheUse(), "accepted");
  } finally {
    api?.close();
    await router.stop();
    await node.close();
    rmSync(routerDir, { recursive: true, force: true });
  }
});
