/**
 * Bundles the storage node and the router into plain JavaScript for Node 20, once, so that no
 * server start pays for TypeScript compilation (tsx transpiles every module at every start:
 * ~1 s of a node's start-up on this machine, against ~0.3 s for the bundle; see README
 * "Start-up").
 *
 * | Entry                | Output                | Run with                   |
 * | -------------------- | --------------------- | -------------------------- |
 * | `src/node/main.ts`   | `build/js/node.mjs`   | `node build/js/node.mjs`   |
 * | `src/router/main.ts` | `build/js/router.mjs` | `node build/js/router.mjs` |
 * | `src/index/graph_worker.ts` | `build/js/graph_worker.mjs` | by the node: its search and build worker threads (graph_pool.ts finds it beside the bundle) |
 *
 * The bundler is esbuild (npm; tsx already depends on it, so nothing new is installed): it
 * strips types without checking them (`deno check` does that) and inlines our modules into
 * one ES module per entry; npm packages stay external and load from `node_modules`. The outputs
 * sit two folders below the repository root, as every `src/<layer>/<file>.ts` does, so the
 * `new URL("../../proto/…", import.meta.url)` and `../../build/kernels.wasm` paths the sources
 * use resolve to the same files from the bundle. Source maps are written beside the bundles
 * (Node's `--enable-source-maps` shows TypeScript lines in stack traces).
 *
 * Skipped when a hash of every non-test `.ts` file under `src/`, the esbuild version and the
 * flags matches the one stored beside the outputs, so `deno task server` costs one hash of the
 * sources (~20 ms) when nothing changed. The bundle is written to a temporary name and renamed.
 *
 * @example
 * ```sh
 * deno task build:js          # bundles if src/ changed
 * deno task build:js --force  # always bundles
 * node build/js/node.mjs --port 50051 --data-dir /tmp/n1
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const srcDir = join(root, "src");
const outDir = join(root, "build", "js");
const outHash = join(outDir, "bundle.hash");
const esbuildJs = join(root, "node_modules", "esbuild", "bin", "esbuild");

/** Entry (relative to the root) -> output file name in build/js. */
export const ENTRIES: Readonly<Record<string, string>> = {
  "src/node/main.ts": "node.mjs",
  "src/router/main.ts": "router.mjs",
  "src/index/graph_worker.ts": "graph_worker.mjs",
};

const flags = [
  "--bundle",
  "--platform=node",
  "--format=esm",
  "--target=node20",
  "--packages=external",
  "--sourcemap",
  "--log-level=warning",
];

/** Every non-test TypeScript file under `dir`, sorted (relative paths). */
function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sources(path, out);
    else if (name.endsWith(".ts") && !name.endsWith("_test.ts")) out.push(path);
  }
  return out;
}

function sourceHash(): string {
  const h = createHash("sha256");
  for (const f of sources(srcDir)) {
    h.update(relative(root, f));
    h.update("\u0000");
    h.update(readFileSync(f));
  }
  const pkg = JSON.parse(
    readFileSync(join(root, "node_modules", "esbuild", "package.json"), "utf8"),
  );
  h.update(String(pkg.version));
  h.update(flags.join(" "));
  h.update(JSON.stringify(ENTRIES));
  return h.digest("hex");
}

function main(): void {
  if (!existsSync(esbuildJs)) {
    console.error(`build:js: esbuild is not installed (no ${esbuildJs}); run "npm ci" first.`);
    process.exit(1);
  }
  const force = process.argv.includes("--force");
  const hash = sourceHash();
  const outputs = Object.values(ENTRIES).map((f) => join(outDir, f));
  if (!force && outputs.every(existsSync) && existsSync(outHash)) {
    if (readFileSync(outHash, "utf8").trim() === hash) return;
  }
  mkdirSync(outDir, { recursive: true });
  for (const [entry, file] of Object.entries(ENTRIES)) {
    const out = join(outDir, file);
    const tmp = join(outDir, `.${file}.tmp.mjs`);
    // bin/esbuild is the native binary after esbuild's install step, else a Node launcher with
    // a `#!/usr/bin/env node` line: executable either way.
    const r = spawnSync(esbuildJs, [
      join(root, entry),
      ...flags,
      `--outfile=${tmp}`,
    ], { stdio: "inherit" });
    if (r.status !== 0) {
      console.error(`build:js: esbuild failed on ${entry} with exit status ${r.status}`);
      process.exit(1);
    }
    // The map names the temporary file; point it at the final one.
    const map = JSON.parse(readFileSync(`${tmp}.map`, "utf8"));
    map.file = file;
    writeFileSync(`${out}.map`, JSON.stringify(map));
    unlinkSync(`${tmp}.map`);
    const code = readFileSync(tmp, "utf8").replace(
      /\/\/# sourceMappingURL=.*\n?$/,
      `//# sourceMappingURL=${file}.map\n`,
    );
    writeFileSync(tmp, code);
    renameSync(tmp, out);
  }
  writeFileSync(outHash, hash + "\n");
  console.error(`build:js: wrote ${outputs.map((o) => relative(root, o)).join(", ")}`);
}

if (import.meta.main) main();
