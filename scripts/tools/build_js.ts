/**
 * Bundles the storage node and the router into plain JavaScript for Node 20, once, so that no
 * server start pays for TypeScript compilation (tsx transpiles every module at every start:
 * ~1 s of a node's start-up on this machine; see README "Start-up"), for resolving and reading
 * a few hundred files of npm packages, or, from the second start on, for compiling the bundle.
 *
 * | Entry                | Output                               | Run with                   |
 * | -------------------- | ------------------------------------ | -------------------------- |
 * | `src/node/main.ts`   | `build/js/node.cjs`, loader `build/js/node.mjs` | `node build/js/node.mjs`   |
 * | `src/router/main.ts` | `build/js/router.cjs`, loader `build/js/router.mjs` | `node build/js/router.mjs` |
 * | `src/index/graph_worker.ts` | `build/js/graph_worker.mjs` | by the node: its search and build worker threads (graph_pool.ts finds it beside the bundle) |
 * | `src/common/boot_loader.ts` | `build/js/node.mjs`, `build/js/router.mjs` | the loaders: each runs the `.cjs` of its name through V8's code cache (`<bundle>.cjs.cache`, written by the first start) |
 *
 * The bundler is esbuild (npm; tsx already depends on it, so nothing new is installed), through
 * its JavaScript API: it strips types without checking them (`deno check` does that) and
 * inlines our modules and the npm packages into one file per entry. The servers are CommonJS
 * because only a classic script can use V8's code cache under Node 20 (`vm.Script`'s
 * `cachedData`; boot_loader.ts); `import.meta.url` in them becomes the bundle's file URL. The
 * outputs sit two folders below the repository root, as every `src/<layer>/<file>.ts` does, so
 * the `new URL("../../proto/…", import.meta.url)` and `../../build/kernels.wasm` paths the
 * sources use resolve to the same files from the bundle. npm modules that find their own files
 * through `__dirname` (grpc-health-check's and @grpc/reflection's `.proto` files, grpc-js's
 * channelz and ORCA protos) get their original folder under `node_modules`, relative to the
 * bundle, so those files are still read from where npm put them. The one run-time `require` of
 * protobufjs (src/common/proto_services.ts, {@link BUNDLED_REQUIRES}) is made a static one, so
 * the bundle holds one protobufjs, the one proto-loader uses. The `.proto` files of proto/ are
 * parsed here and stored in the server bundles as protobufjs JSON (`__VDB_PROTO_JSON`, which
 * proto_services.ts takes instead of parsing the text at each start). Source maps are written beside
 * the bundles (Node's `--enable-source-maps` shows TypeScript lines in stack traces).
 *
 * Skipped when a hash of every non-test `.ts` file under `src/`, of those .proto files, the esbuild
 * version, the npm lock file and the options matches the one stored beside the outputs, so `deno task server`
 * costs one hash of the sources (~20 ms) when nothing changed. Each output is written to a
 * temporary name and renamed; a rebuilt bundle's old code cache is removed (its hash would not
 * match anyway).
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
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const srcDir = join(root, "src");
const protoDir = join(root, "proto");
const outDir = join(root, "build", "js");
const outHash = join(outDir, "bundle.hash");
const esbuildJs = join(root, "node_modules", "esbuild", "lib", "main.js");

/** How an entry is bundled: a server (CommonJS, run by a loader) or a plain ES module. */
type Kind = "server" | "module";

/** Entry (relative to the root) -> output file name in build/js and how it is built. */
export const ENTRIES: Readonly<Record<string, { file: string; kind: Kind }>> = {
  "src/node/main.ts": { file: "node.cjs", kind: "server" },
  "src/router/main.ts": { file: "router.cjs", kind: "server" },
  "src/index/graph_worker.ts": { file: "graph_worker.mjs", kind: "module" },
};

/** The loader every server bundle starts through (written as `<name>.mjs` beside `<name>.cjs`). */
const LOADER_ENTRY = "src/common/boot_loader.ts";

/**
 * Run-time `require`s the bundle makes static, by file: the exact text and what replaces it.
 * The build fails when a text is no longer found, so a changed source cannot silently load a
 * second copy of the package from node_modules.
 */
export const BUNDLED_REQUIRES: Readonly<
  Record<string, readonly (readonly [string, string])[]>
> = {
  "src/common/proto_services.ts": [[
    'createRequire(requireHere.resolve("@grpc/proto-loader"))(\n  "protobufjs",\n)',
    'require("protobufjs")',
  ]],
  // Static, so bundled; inside functions, so still loaded on the first reflection call.
  "src/api/reflection.ts": [
    ['requireHere("@grpc/proto-loader")', 'require("@grpc/proto-loader")'],
    ['requireHere("@grpc/reflection")', 'require("@grpc/reflection")'],
  ],
};

/** Options common to every output (part of the hash). */
const COMMON = {
  bundle: true,
  platform: "node",
  target: "node20",
  sourcemap: true,
  logLevel: "warning",
} as const;

/** Defines `__vdbDir(rel)` (a folder relative to the root) and `import.meta.url` for a server. */
const SERVER_BANNER = [
  `const __vdbPath = require("node:path");`,
  `const __vdbRoot = __vdbPath.join(__dirname, "../..");`,
  `const __vdbDir = (rel) => __vdbPath.join(__vdbRoot, rel);`,
  `const __vdbImportMetaUrl = require("node:url").pathToFileURL(__filename).href;`,
].join("\n");

/**
 * The `.proto` files the servers load at start, relative to the root, with the `keepCase` they
 * are loaded with: proto/'s, grpc-health-check's (src/api/health.ts) and @grpc/reflection's
 * (src/api/reflection.ts).
 */
function protoFiles(): [string, boolean][] {
  const reflection = "node_modules/@grpc/reflection/build/proto/grpc/reflection";
  return [
    ...readdirSync(protoDir).filter((n) => n.endsWith(".proto")).sort()
      .map((n): [string, boolean] => [`proto/${n}`, true]),
    ["node_modules/grpc-health-check/proto/health/v1/health.proto", true],
    [`${reflection}/v1/reflection.proto`, false],
    [`${reflection}/v1alpha/reflection.proto`, false],
  ];
}

/**
 * `__VDB_PROTO_JSON` for a server bundle: every file of proto/ parsed here, once, so that a
 * server parses no `.proto` text at start (src/common/proto_services.ts takes these).
 */
async function protoBanner(): Promise<string> {
  // Loaded only to build: a run with nothing to do stays a hash of the sources.
  const { precompiledKey, protoRootJson } = await import("../../src/common/proto_services.ts");
  const roots: Record<string, unknown> = {};
  for (const [file, keepCase] of protoFiles()) {
    roots[precompiledKey(file, keepCase)] = protoRootJson(join(root, file), keepCase);
  }
  return `const __VDB_PROTO_JSON = ${JSON.stringify(roots)};`;
}

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
  // The protos are inside the server bundles, parsed (protoBanner).
  for (const [file] of protoFiles()) {
    h.update(file);
    h.update("\u0000");
    h.update(readFileSync(join(root, file)));
  }
  const pkg = JSON.parse(
    readFileSync(join(root, "node_modules", "esbuild", "package.json"), "utf8"),
  );
  h.update(String(pkg.version));
  // The npm packages are inside the bundles now: another version of one is another bundle.
  h.update(readFileSync(join(root, "package-lock.json")));
  h.update(JSON.stringify({ COMMON, SERVER_BANNER, BUNDLED_REQUIRES, ENTRIES, LOADER_ENTRY }));
  return h.digest("hex");
}

/** The files every build writes, absolute. */
function outputs(): string[] {
  const out: string[] = [];
  for (const { file, kind } of Object.values(ENTRIES)) {
    out.push(join(outDir, file));
    if (kind === "server") out.push(join(outDir, file.replace(/\.cjs$/, ".mjs")));
  }
  return out;
}

interface OnLoadArgs {
  path: string;
}
interface PluginBuild {
  onLoad(
    options: { filter: RegExp },
    callback: (args: OnLoadArgs) => { contents: string; loader: string } | undefined,
  ): void;
}
interface Esbuild {
  build(options: Record<string, unknown>): Promise<unknown>;
}

/**
 * npm modules that locate their files through `__dirname`: inside the bundle that would be
 * build/js, so each gets its own folder back, relative to the bundle ({@link SERVER_BANNER}).
 */
const dirnamePlugin = {
  name: "vdb-dirname",
  setup(build: PluginBuild) {
    build.onLoad({ filter: /[\\/]node_modules[\\/].*\.js$/ }, (args) => {
      const code = readFileSync(args.path, "utf8");
      if (!code.includes("__dirname")) return undefined;
      const rel = relative(root, dirname(args.path)).split("\\").join("/");
      return {
        contents: code.replaceAll("__dirname", `__vdbDir(${JSON.stringify(rel)})`),
        loader: "js",
      };
    });
  },
};

/** {@link BUNDLED_REQUIRES} applied. */
const requirePlugin = {
  name: "vdb-bundled-requires",
  setup(build: PluginBuild) {
    build.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, (args) => {
      const rel = relative(root, args.path).split("\\").join("/");
      const swaps = BUNDLED_REQUIRES[rel];
      if (swaps === undefined) return undefined;
      let code = readFileSync(args.path, "utf8");
      for (const [from, to] of swaps) {
        if (!code.includes(from)) {
          throw new Error(`build:js: ${rel} no longer holds ${JSON.stringify(from)}`);
        }
        code = code.replace(from, to);
      }
      return { contents: code, loader: "ts" };
    });
  },
};

/** esbuild writes `tmp` (and `tmp.map`); both are renamed to `out`, the map pointed at it. */
function moveInto(tmp: string, out: string, sourcemap: boolean): void {
  const file = out.slice(outDir.length + 1);
  if (sourcemap) {
    // The map names the temporary file; point it at the final one.
    const map = JSON.parse(readFileSync(`${tmp}.map`, "utf8"));
    map.file = file;
    writeFileSync(`${out}.map`, JSON.stringify(map));
    rmSync(`${tmp}.map`);
    const code = readFileSync(tmp, "utf8").replace(
      /\/\/# sourceMappingURL=.*\n?$/,
      `//# sourceMappingURL=${file}.map\n`,
    );
    writeFileSync(tmp, code);
  }
  renameSync(tmp, out);
}

async function main(): Promise<void> {
  if (!existsSync(esbuildJs)) {
    console.error(`build:js: esbuild is not installed (no ${esbuildJs}); run "npm ci" first.`);
    process.exit(1);
  }
  const force = process.argv.includes("--force");
  const hash = sourceHash();
  const outs = outputs();
  if (!force && outs.every(existsSync) && existsSync(outHash)) {
    if (readFileSync(outHash, "utf8").trim() === hash) return;
  }
  mkdirSync(outDir, { recursive: true });
  const esbuild = createRequire(import.meta.url)(esbuildJs) as Esbuild;
  const build = async (entry: string, out: string, options: Record<string, unknown>) => {
    const tmp = join(outDir, `.${out.slice(outDir.length + 1)}.tmp`);
    try {
      await esbuild.build({
        ...COMMON,
        ...options,
        entryPoints: [join(root, entry)],
        outfile: tmp,
      });
    } catch (e) {
      console.error(`build:js: esbuild failed on ${entry}: ${(e as Error).message}`);
      process.exit(1);
    }
    moveInto(tmp, out, options.sourcemap !== false);
  };
  for (const [entry, { file, kind }] of Object.entries(ENTRIES)) {
    const out = join(outDir, file);
    if (kind === "module") {
      await build(entry, out, { format: "esm", plugins: [dirnamePlugin, requirePlugin] });
      continue;
    }
    await build(entry, out, {
      format: "cjs",
      plugins: [dirnamePlugin, requirePlugin],
      banner: { js: `${SERVER_BANNER}\n${await protoBanner()}` },
      define: { "import.meta.url": "__vdbImportMetaUrl" },
    });
    // The previous bundle's code cache: its hash no longer matches, so it is only clutter.
    rmSync(`${out}.cache`, { force: true });
    await build(LOADER_ENTRY, out.replace(/\.cjs$/, ".mjs"), { format: "esm", sourcemap: false });
  }
  writeFileSync(outHash, hash + "\n");
  console.error(`build:js: wrote ${outs.map((o) => relative(root, o)).join(", ")}`);
}

if (import.meta.main) await main();
