/**
 * Installs the npm dependencies (gRPC, AssemblyScript, tsx) with `npm ci` when `node_modules`
 * is missing or older than `package-lock.json`.
 *
 * Every task that needs them depends on this one, so a fresh clone needs no manual step:
 * `npx --yes deno@2.9.6 task test` installs, builds the kernels and runs the tests.
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const lock = join(root, "package-lock.json");
const stamp = join(root, "node_modules", ".vectordb-setup");

const want = createHash("sha256").update(readFileSync(lock)).digest("hex");
if (existsSync(stamp) && readFileSync(stamp, "utf8").trim() === want) {
  // Up to date: nothing to do.
} else {
  console.error("setup: installing npm dependencies (npm ci)");
  // Through env: Deno rewrites a child named after a node_modules/.bin entry.
  const r = spawnSync("/usr/bin/env", ["npm", "ci", "--no-audit", "--no-fund"], {
    cwd: root,
    stdio: "inherit",
  });
  if (r.status !== 0) {
    console.error(`setup: npm ci failed with exit status ${r.status}`);
    process.exit(1);
  }
  writeFileSync(stamp, want + "\n");
}
