import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { SOFTWARE_VERSION, versionLine } from "./software_version.ts";

Deno.test("software version: equals package.json's version", () => {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
  assert.equal(SOFTWARE_VERSION, pkg.version);
  assert.equal(versionLine("router"), `vectordb router ${pkg.version}`);
});
