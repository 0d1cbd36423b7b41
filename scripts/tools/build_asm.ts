/**
 * Compiles the AssemblyScript kernels in `asm/` to `build/kernels.wasm`.
 *
 * Runs before `server`, `test` and `bench` (a task dependency in deno.json). It is skipped when
 * a hash of the sources, the compiler version and the flags matches the one stored beside the
 * output, so the usual cost is one directory read. The compiler is the `assemblyscript` npm
 * package, run under Node (it is a Node program).
 *
 * @example
 * ```sh
 * deno task build:asm          # builds if asm/ changed
 * deno task build:asm --force  # always builds
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
  writeFileSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const asmDir = join(root, "asm");
const outDir = join(root, "build");
const outWasm = join(outDir, "kernels.wasm");
const outHash = join(outDir, "kernels.wasm.hash");
const ascJs = join(root, "node_modules", "assemblyscript", "bin", "asc.js");

// SIMD is required; relaxed SIMD is not used because Node 20 (which may host the server)
// does not enable it by default.
const flags = [
  "-O3",
  "--runtime",
  "stub",
  "--enable",
  "simd",
  "--noAssert",
  "--initialMemory",
  "2",
];

function sourceHash(): string {
  const h = createHash("sha256");
  const files = readdirSync(asmDir).filter((f) => f.endsWith(".ts")).sort();
  for (const f of files) {
    h.update(f);
    h.update(readFileSync(join(asmDir, f)));
  }
  const pkg = JSON.parse(
    readFileSync(join(root, "node_modules", "assemblyscript", "package.json"), "utf8"),
  );
  h.update(String(pkg.version));
  h.update(flags.join(" "));
  return h.digest("hex");
}

function main(): void {
  if (!existsSync(ascJs)) {
    console.error(
      `build:asm: AssemblyScript is not installed (no ${ascJs}); run "npm ci" first.`,
    );
    process.exit(1);
  }
  const force = process.argv.includes("--force");
  const hash = sourceHash();
  if (!force && existsSync(outWasm) && existsSync(outHash)) {
    if (readFileSync(outHash, "utf8").trim() === hash) return;
  }
  mkdirSync(outDir, { recursive: true });
  const tmp = `${outWasm}.tmp`;
  // Through env: Deno rewrites a child named "node" into itself, and asc needs real Node.
  const r = spawnSync("/usr/bin/env", [
    "node",
    ascJs,
    join(asmDir, "kernels.ts"),
    ...flags,
    "-o",
    tmp,
  ], {
    stdio: "inherit",
  });
  if (r.status !== 0) {
    console.error(`build:asm: asc failed with exit status ${r.status}`);
    process.exit(1);
  }
  renameSync(tmp, outWasm);
  writeFileSync(outHash, hash + "\n");
  console.error(`build:asm: wrote ${outWasm}`);
}

main();
