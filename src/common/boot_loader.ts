/**
 * The start of a server bundle under Node 20: `build/js/node.mjs` and `build/js/router.mjs` are
 * this module (scripts/tools/build_js.ts compiles it once and writes it under both names); each
 * runs the CommonJS bundle of the same name beside it (`node.cjs`, `router.cjs`) through V8's
 * code cache, so a restart does not compile the ~2 MB of JavaScript again (Node 20 has no
 * `module.enableCompileCache`; the cache is what `vm.Script`'s `cachedData` offers).
 *
 * The cache file (`<bundle>.cache`, beside the bundle):
 *
 * | bytes | field                                                                   |
 * | ----- | ----------------------------------------------------------------------- |
 * | 8     | magic `VDBCODE1`                                                        |
 * | 32    | SHA-256 of the bundle's bytes, Node's version and V8's version          |
 * | 4     | CRC-32 of the data (little endian)                                      |
 * | rest  | V8's cached data                                                        |
 *
 * A cache whose magic, hash or CRC does not match, or that V8 rejects, is ignored: the bundle
 * compiles as without one. A start that used no cache writes one 3 s after it began, or at its
 * exit if sooner (the functions compiled by then — the whole start-up and the first requests —
 * are in it), to a temporary name, renamed into place; a directory that cannot be written leaves things as
 * they are. V8 checks only the length of the source it was given, so the hash is what keeps a
 * rebuilt bundle from running an old bundle's code.
 *
 * Under `--enable-source-maps` the bundle is required as Node requires any `.cjs` file, without
 * the cache: Node maps the stack traces of what its module loader compiled, not of a
 * `vm.Script`. Only Node's built-in modules are imported here, so the loader itself costs a few
 * milliseconds.
 * @module
 */
import { createHash } from "node:crypto";
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { crc32 } from "node:zlib";

const MAGIC = Buffer.from("VDBCODE1", "latin1");
const HEADER_BYTES = MAGIC.length + 32 + 4;
/** After this long, a start without a usable cache writes one. */
const WRITE_CACHE_AFTER_MS = 3000;

/** The hash a cache of `code` must carry. */
export function codeCacheKey(code: Buffer): Buffer {
  return createHash("sha256")
    .update(code)
    .update(`\0node ${process.version}\0v8 ${process.versions.v8}`)
    .digest();
}

/** The V8 data in `file` when its header matches `key`, else null. */
export function readCodeCache(file: Buffer, key: Buffer): Buffer | null {
  if (file.length < HEADER_BYTES) return null;
  if (!file.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  if (!file.subarray(MAGIC.length, MAGIC.length + 32).equals(key)) return null;
  const data = file.subarray(HEADER_BYTES);
  if (file.readUInt32LE(MAGIC.length + 32) !== crc32(data)) return null;
  return data;
}

/** A cache file of `data` for the bundle hashed to `key`. */
export function encodeCodeCache(data: Buffer, key: Buffer): Buffer {
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(data));
  return Buffer.concat([MAGIC, key, crc, data]);
}

/** What became of the code cache when a bundle was compiled. */
export type CacheUse = "accepted" | "rejected" | "none";

/** A bundle compiled (not yet run), with its code cache when there was a valid one. */
export interface CompiledBundle {
  script: vm.Script;
  cache: CacheUse;
  cache_path: string;
  key: Buffer;
}

/** Compiles the CommonJS bundle `bundlePath` with the code cache beside it when valid. */
export function compileBundle(bundlePath: string): CompiledBundle {
  const code = readFileSync(bundlePath);
  const key = codeCacheKey(code);
  const cachePath = `${bundlePath}.cache`;
  let cached: Buffer | null = null;
  try {
    cached = readCodeCache(readFileSync(cachePath), key);
  } catch {
    // No cache yet (first start after a build): compiled as without one.
  }
  // Module.wrap's parameters: the bundle is a CommonJS module of its own file.
  const script = new vm.Script(
    `(function (exports, require, module, __filename, __dirname) {${code.toString("utf8")}\n})`,
    { filename: bundlePath, cachedData: cached ?? undefined },
  );
  const cache = cached === null
    ? "none"
    : script.cachedDataRejected === true
    ? "rejected"
    : "accepted";
  return { script, cache, cache_path: cachePath, key };
}

/**
 * Runs the CommonJS bundle `bundlePath` as Node would run a `.cjs` file, with the code cache
 * beside it when valid, and writes a cache when there was none to use.
 */
export function runBundle(bundlePath: string): void {
  // Node maps stack traces only of modules its own loaders compiled, not of a vm.Script: with
  // `--enable-source-maps` (debugging) the bundle is required as usual, without the cache.
  if ((process as { sourceMapsEnabled?: boolean }).sourceMapsEnabled === true) {
    createRequire(bundlePath)(bundlePath);
    return;
  }
  const { script, cache, cache_path, key } = compileBundle(bundlePath);
  if (cache !== "accepted") {
    let written = false;
    const write = () => {
      if (written) return;
      written = true;
      writeCache(script, cache_path, key);
    };
    setTimeout(write, WRITE_CACHE_AFTER_MS).unref();
    // A node stopped sooner (a test, a restart) writes it on its way out.
    process.once("exit", write);
  }
  const module = { exports: {} as unknown };
  const fn = script.runInThisContext() as (
    exports: unknown,
    require: NodeJS.Require,
    module: { exports: unknown },
    filename: string,
    dirname: string,
  ) => void;
  fn(module.exports, createRequire(bundlePath), module, bundlePath, dirname(bundlePath));
}

function writeCache(script: vm.Script, cachePath: string, key: Buffer): void {
  const tmp = `${cachePath}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, encodeCodeCache(script.createCachedData(), key));
    renameSync(tmp, cachePath);
  } catch {
    // A read-only installation runs without a cache: each start compiles, as before.
    try {
      unlinkSync(tmp);
    } catch {
      // Never written.
    }
  }
}

// `node build/js/node.mjs` runs build/js/node.cjs; an import of the loader by a check (no
// script named on the command line) runs nothing.
const self = fileURLToPath(import.meta.url);
if (self.endsWith(".mjs") && process.argv[1] !== undefined) {
  runBundle(self.slice(0, -".mjs".length) + ".cjs");
}
