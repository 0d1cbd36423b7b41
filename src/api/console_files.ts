/**
 * The web console's static files (the `console/` folder at the repository root: plain HTML,
 * CSS and JavaScript modules, no build step), read once when the HTTP API starts and served
 * from memory at `GET /` (index.html) and `GET /console/{file}`.
 *
 * Only names read at start are served: a request names one file of the folder by its exact
 * name (letters, digits, `_`, `-`, one extension from {@link CONTENT_TYPES}), so no path can
 * reach outside it (`..`, `/`, `%2f`, NUL never match). The folder is not re-read: files
 * changed on disk show after a restart.
 *
 * | limit                 | value                          |
 * |-----------------------|--------------------------------|
 * | one file              | {@link CONSOLE_FILE_BYTES_MAX} |
 * | all files             | {@link CONSOLE_BYTES_MAX}      |
 * | files                 | {@link CONSOLE_FILES_MAX}      |
 *
 * Every answer carries {@link CONSOLE_HEADERS}: a Content-Security-Policy that allows only this
 * origin's scripts, styles and fetches (no inline script, no eval, no framing), nosniff and no
 * referrer.
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Content type by extension: only these are served. */
export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
};

/** Largest console file read, total bytes and file count. */
export const CONSOLE_FILE_BYTES_MAX = 1024 * 1024;
export const CONSOLE_BYTES_MAX = 8 * 1024 * 1024;
export const CONSOLE_FILES_MAX = 64;

/** Headers of every console file answer. */
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-cache",
};

/** A file name the console may serve. */
const NAME = /^[A-Za-z0-9_-]{1,64}\.([a-z]{1,8})$/;

/** The console folder of this checkout (`console/` at the repository root). */
export function defaultConsoleDir(): string {
  return join(fileURLToPath(new URL("../../console/", import.meta.url)));
}

/** One file ready to send. */
export interface ConsoleFile {
  body: Uint8Array;
  type: string;
}

/** The console's files, read once. */
export class ConsoleFiles {
  readonly #files = new Map<string, ConsoleFile>();

  /**
   * Reads the servable files of `dir` (others are skipped); an absent folder gives no files
   * (the console answers 404). Throws a RangeError when a limit is passed.
   */
  static load(dir: string): ConsoleFiles {
    const out = new ConsoleFiles();
    if (!existsSync(dir)) return out;
    let total = 0;
    for (const name of readdirSync(dir).sort()) {
      const m = NAME.exec(name);
      if (m === null || CONTENT_TYPES[m[1]] === undefined) continue;
      const path = join(dir, name);
      const st = statSync(path);
      if (!st.isFile()) continue;
      if (st.size > CONSOLE_FILE_BYTES_MAX) {
        throw new RangeError(
          `Console file ${path} has ${st.size} bytes; the limit is ${CONSOLE_FILE_BYTES_MAX}`,
        );
      }
      total += st.size;
      if (total > CONSOLE_BYTES_MAX || out.#files.size >= CONSOLE_FILES_MAX) {
        throw new RangeError(
          `The console folder ${dir} holds more than ${CONSOLE_FILES_MAX} files or ` +
            `${CONSOLE_BYTES_MAX} bytes`,
        );
      }
      out.#files.set(name, { body: readFileSync(path), type: CONTENT_TYPES[m[1]] });
    }
    return out;
  }

  /** Names served, sorted. */
  names(): string[] {
    return [...this.#files.keys()];
  }

  /** The file named exactly `name`, or null. */
  get(name: string): ConsoleFile | null {
    if (!NAME.test(name)) return null;
    return this.#files.get(name) ?? null;
  }
}
