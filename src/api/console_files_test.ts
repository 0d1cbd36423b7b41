import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CONSOLE_FILE_BYTES_MAX,
  CONSOLE_HEADERS,
  ConsoleFiles,
  defaultConsoleDir,
} from "./console_files.ts";

Deno.test("ConsoleFiles: serves only the folder's files of known types, by exact name", () => {
  const dir = mkdtempSync(join(tmpdir(), "vdb-console-"));
  try {
    writeFileSync(join(dir, "index.html"), "<!doctype html>");
    writeFileSync(join(dir, "app.js"), "export {};");
    writeFileSync(join(dir, "style.css"), "body{}");
    writeFileSync(join(dir, "notes.md"), "not served");
    writeFileSync(join(dir, ".hidden.js"), "not served");
    mkdirSync(join(dir, "sub.js")); // a folder with a servable name
    writeFileSync(join(dir, "..", "outside.js"), "never");
    const files = ConsoleFiles.load(dir);
    assert.deepEqual(files.names(), ["app.js", "index.html", "style.css"]);
    assert.equal(files.get("app.js")?.type, "text/javascript; charset=utf-8");
    assert.equal(files.get("index.html")?.type, "text/html; charset=utf-8");
    assert.equal(new TextDecoder().decode(files.get("style.css")!.body), "body{}");
    for (
      const name of [
        "notes.md",
        ".hidden.js",
        "sub.js",
        "../outside.js",
        "..%2Foutside.js",
        "app.js\0",
        "APP.JS",
        "",
        "a/app.js",
      ]
    ) {
      assert.equal(files.get(name), null, JSON.stringify(name));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(dir, "..", "outside.js"), { force: true });
  }
});

Deno.test("ConsoleFiles: an absent folder serves nothing; an oversized file is refused naming it", () => {
  assert.deepEqual(ConsoleFiles.load("/nonexistent/console").names(), []);
  const dir = mkdtempSync(join(tmpdir(), "vdb-console-"));
  try {
    writeFileSync(join(dir, "big.js"), new Uint8Array(CONSOLE_FILE_BYTES_MAX + 1));
    assert.throws(() => ConsoleFiles.load(dir), /big\.js has 1048577 bytes; the limit is 1048576/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("ConsoleFiles: the repository's console loads, and its CSP allows only this origin", () => {
  const files = ConsoleFiles.load(defaultConsoleDir());
  for (const name of ["index.html", "app.js", "api.js", "charts.js", "style.css"]) {
    assert.ok(files.get(name) !== null, name);
  }
  const csp = CONSOLE_HEADERS["content-security-policy"];
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
});
