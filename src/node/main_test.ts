import assert from "node:assert/strict";
import { envName } from "../common/config.ts";
import { NODE_FLAGS, nodeHelp } from "./main.ts";

Deno.test("the node's --help lists every flag it parses, with its variable and meaning", () => {
  const help = nodeHelp();
  assert.match(help, /^Usage: server \[flags\]/);
  for (const [name, spec] of Object.entries(NODE_FLAGS)) {
    assert.match(help, new RegExp(`^  --${name}\\b.*${escape(spec.help)}$`, "m"), `--${name}`);
    assert.ok(help.includes(envName(name)), envName(name));
  }
  assert.match(
    help,
    /--data-dir DIR .*\n +\(default \.\/data\/node-<port>; env VECTORDB_DATA_DIR\)/,
  );
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
