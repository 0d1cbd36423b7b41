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
/**
 * The same kernels over an imported shared memory (`env.memory`), so that one instance per
 * thread can work on one `WebAssembly.Memory({ shared: true })` (src/index/shared_graph.ts).
 */
const outSharedWasm = join(outDir, "kernels_shared.wasm");
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
/** Extra flags of the shared variant: atomics, an imported shared memory of up to 4 GiB. */
const sharedFlags = [
  "--enable",
  "threads",
  "--importMemory",
  "--sharedMemory",
  "--maximumMemory",
  "65536",
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
  h.update(sharedFlags.join(" "));
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
    if (readFileSync(outHash, "utf8").trim() === hash && existsSync(outSharedWasm)) return;
  }
  mkdirSync(outDir, { recursive: true });
  compile(flags, outWasm);
  compile([...flags, ...sharedFlags], outSharedWasm);
  writeFileSync(outHash, hash + "\n");
}

/** Runs asc on asm/kernels.ts with `extra` flags into `out` (through a temporary name). */
function compile(extra: string[], out: string): void {
  const tmp = `${out}.tmp`;
  // Through env: Deno rewrites a child named "node" into itself, and asc needs real Node.
  const r = spawnSync("/usr/bin/env", [
    "node",
    ascJs,
    join(asmDir, "kernels.ts"),
    ...extra,
    "-o",
    tmp,
  ], {
    stdio: "inherit",
  });
  if (r.status !== 0) {
    console.error(`build:asm: asc failed with exit status ${r.status}`);
    process.exit(1);
  }
  renameSync(tmp, out);
  console.error(`build:asm: wrote ${out}`);
}

main();
