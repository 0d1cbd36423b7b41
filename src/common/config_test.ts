import assert from "node:assert/strict";
import {
  annotateError,
  ConfigError,
  describeSettings,
  editDistance,
  envName,
  type FlagTable,
  formatHelp,
  parseBoolean,
  resolveConfig,
  suggest,
  unknownFlagError,
} from "./config.ts";

const FLAGS = {
  port: { type: "string", default: "50051", arg: "PORT", help: "gRPC port" },
  "data-dir": { type: "string", arg: "DIR", default_text: "./data/node-<port>", help: "data" },
  join: { type: "string", default: "", list: true, help: "seeds" },
  insecure: { type: "boolean", default: false, help: "allow an open bind" },
  "node-id": { type: "string", help: "member id" },
} as const satisfies FlagTable;

/** resolveConfig over FLAGS with `files` as the file system. */
function resolve(
  argv: string[],
  env: Record<string, string> = {},
  files: Record<string, string> = {},
) {
  return resolveConfig({
    flags: FLAGS,
    argv,
    env,
    read_file: (p) => {
      if (!(p in files)) throw new Error(`ENOENT: no such file or directory, open '${p}'`);
      return files[p];
    },
  });
}

Deno.test("config: defaults when nothing is given", () => {
  const c = resolve([]);
  assert.equal(c.values.port, "50051");
  assert.equal(c.values["data-dir"], undefined);
  assert.equal(c.values.insecure, false);
  assert.deepEqual(c.sources.port, { kind: "default" });
  assert.equal(c.config_file, null);
  assert.equal(c.help, false);
  assert.deepEqual(c.warnings, []);
});

Deno.test("config: precedence flag > env > file > default, per flag", () => {
  const files = {
    "/c.json": JSON.stringify({
      port: 7001,
      "data-dir": "/file",
      join: ["a:1", "b:2"],
      "node-id": "f",
    }),
  };
  const env = { VECTORDB_CONFIG: "/c.json", VECTORDB_PORT: "7002", VECTORDB_DATA_DIR: "/env" };
  const c = resolve(["--port", "7003"], env, files);
  assert.equal(c.values.port, "7003");
  assert.deepEqual(c.sources.port, { kind: "flag" });
  assert.equal(c.values["data-dir"], "/env");
  assert.deepEqual(c.sources["data-dir"], { kind: "env", variable: "VECTORDB_DATA_DIR" });
  assert.equal(c.values.join, "a:1,b:2");
  assert.deepEqual(c.sources.join, { kind: "file", path: "/c.json" });
  assert.equal(c.values["node-id"], "f");
  assert.equal(c.values.insecure, false);
  assert.deepEqual(c.sources.insecure, { kind: "default" });
  assert.equal(c.config_file, "/c.json");
  assert.deepEqual(c.sources.config, { kind: "env", variable: "VECTORDB_CONFIG" });
  // --config beats VECTORDB_CONFIG.
  const files2 = { ...files, "/d.json": '{"node-id": "d"}' };
  assert.equal(resolve(["--config", "/d.json"], env, files2).values["node-id"], "d");
  assert.equal(
    describeSettings(c),
    'data-dir="/env" (VECTORDB_DATA_DIR), join="a:1,b:2" ("join" in config file /c.json), ' +
      'node-id="f" ("node-id" in config file /c.json), config="/c.json" (VECTORDB_CONFIG)',
  );
});

Deno.test("config: environment booleans, empty values, names", () => {
  assert.equal(envName("data-dir"), "VECTORDB_DATA_DIR");
  for (const [text, want] of [["1", true], ["true", true], ["TRUE", true], ["0", false]] as const) {
    assert.equal(resolve([], { VECTORDB_INSECURE: text }).values.insecure, want);
  }
  assert.equal(resolve([], { VECTORDB_INSECURE: "false" }).values.insecure, false);
  // The flag still wins over a false in the environment.
  assert.equal(resolve(["--insecure"], { VECTORDB_INSECURE: "0" }).values.insecure, true);
  assert.throws(
    () => resolve([], { VECTORDB_INSECURE: "yes" }),
    (e) =>
      e instanceof ConfigError &&
      /VECTORDB_INSECURE "yes" must be 1, true, 0 or false/.test(e.message),
  );
  assert.throws(() => parseBoolean("2", "X"), /X "2"/);
  // Empty: as if unset.
  const c = resolve([], { VECTORDB_PORT: "" });
  assert.equal(c.values.port, "50051");
  assert.deepEqual(c.sources.port, { kind: "default" });
  // Other variables are none of our business.
  assert.deepEqual(resolve([], { PATH: "/bin", HOME: "/root" }).warnings, []);
});

Deno.test("config: unknown VECTORDB_ variables warn with the nearest name, never fail", () => {
  const c = resolve([], { VECTORDB_DATA_DRI: "/x", VECTORDB_API_KEY: "k", VECTORDB_HELP: "1" });
  assert.equal(c.values["data-dir"], undefined);
  assert.deepEqual(c.warnings, [
    "ignoring environment variable VECTORDB_API_KEY: it sets no flag of this program",
    "ignoring environment variable VECTORDB_DATA_DRI: it sets no flag of this program; " +
    "did you mean VECTORDB_DATA_DIR?",
    "ignoring environment variable VECTORDB_HELP: it sets no flag of this program",
  ]);
});

Deno.test("config: unknown flags are errors with the nearest flag", () => {
  const err = (argv: string[]) => {
    try {
      resolve(argv);
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.message;
    }
    assert.fail(`${argv} was accepted`);
  };
  assert.equal(err(["--data-dri", "/x"]), "unknown flag --data-dri; did you mean --data-dir?");
  assert.equal(err(["--prot=1"]), "unknown flag --prot; did you mean --port?");
  assert.equal(err(["--zzzzzzzz"]), "unknown flag --zzzzzzzz");
  assert.equal(err(["-x"]), "unknown flag -x");
  assert.match(err(["--port"]), /--port/);
  assert.match(err(["stray"]), /stray/);
  assert.match(err(["--insecure=yes"]), /--insecure/);
});

Deno.test("config: --help and --version return before reading the environment or the file", () => {
  const c = resolve(["--help"], { VECTORDB_INSECURE: "maybe", VECTORDB_CONFIG: "/missing" });
  assert.equal(c.help, true);
  assert.equal(resolve(["-h"]).help, true);
  assert.equal(resolve(["--version"], { VECTORDB_CONFIG: "/missing" }).version, true);
});

Deno.test("config: config file errors name the file and the key", () => {
  const err = (files: Record<string, string>, argv = ["--config", "/c.json"]) => {
    try {
      resolve(argv, {}, files);
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.message;
    }
    assert.fail("accepted");
  };
  assert.match(err({}), /^cannot read config file \/c\.json: ENOENT/);
  assert.match(err({ "/c.json": "{port: 1}" }), /^config file \/c\.json is not valid JSON: /);
  assert.equal(
    err({ "/c.json": "[1]" }),
    'config file /c.json must hold a JSON object of flag names to values, not "an array"',
  );
  assert.equal(
    err({ "/c.json": '{"data-dri": "/x"}' }),
    'config file /c.json: unknown key "data-dri"; did you mean "data-dir"?',
  );
  assert.equal(
    err({ "/c.json": '{"--port": "1"}' }),
    'config file /c.json: unknown key "--port"; did you mean "port"?',
  );
  assert.equal(
    err({ "/c.json": '{"config": "/other.json"}' }),
    'config file /c.json: unknown key "config" (--config is only a command-line flag)',
  );
  assert.equal(
    err({ "/c.json": '{"insecure": "yes"}' }),
    'config file /c.json: key "insecure" must be true or false, not "yes"',
  );
  assert.equal(
    err({ "/c.json": '{"port": true}' }),
    'config file /c.json: key "port" must be a string or a number, not true',
  );
  assert.equal(
    err({ "/c.json": '{"port": ["1"]}' }),
    'config file /c.json: key "port" must be a string or a number, not ["1"]',
  );
  assert.equal(
    err({ "/c.json": '{"join": [{"a": 1}]}' }),
    'config file /c.json: key "join" must be a string or an array of strings, not [{"a":1}]',
  );
});

Deno.test("config: errors from later checks say where a value came from", () => {
  const c = resolve([], { VECTORDB_PORT: "x" }, { "/c.json": '{"node-id": ""}' });
  assert.equal(
    annotateError('--port "x" must be a positive integer', c),
    '--port "x" must be a positive integer (set by VECTORDB_PORT)',
  );
  const f = resolve(["--config", "/c.json"], {}, { "/c.json": '{"node-id": ""}' });
  assert.equal(
    annotateError('--node-id "" must not be empty', f),
    '--node-id "" must not be empty (set by "node-id" in config file /c.json)',
  );
  const flag = resolve(["--port", "x"]);
  assert.equal(annotateError('--port "x" is bad', flag), '--port "x" is bad');
  assert.equal(annotateError("no flag here", flag), "no flag here");
});

Deno.test("config: suggestions", () => {
  assert.equal(editDistance("data-dri", "data-dir"), 1);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(suggest("serach", ["put", "search", "stats"]), "search");
  assert.equal(suggest("prot", ["port", "host"]), "port");
  assert.equal(suggest("zzzz", ["port", "host"]), undefined);
  assert.equal(suggest("--snapshot", ["--snapshot-every-ops", "--port"]), "--snapshot-every-ops");
  assert.equal(suggest("x", ["k", "m"]), undefined);
  const e = unknownFlagError(["--adr", "h:1"], { addr: { type: "string" } });
  assert.equal(e?.message, "unknown flag --adr; did you mean --addr?");
  assert.equal(unknownFlagError(["--addr", "h:1"], { addr: { type: "string" } }), null);
});

Deno.test("config: help lists every flag with its default, variable and meaning", () => {
  const help = formatHelp(FLAGS, { usage: "server [flags]", about: "A storage node." });
  assert.match(help, /^Usage: server \[flags\]\n\nA storage node\.\n/);
  for (const [name, spec] of Object.entries(FLAGS)) {
    const line = help.split("\n").findIndex((l) => l.startsWith(`  --${name}`));
    assert.ok(line >= 0, `--${name} missing from\n${help}`);
    const block = help.split("\n").slice(line, line + 2).join("\n");
    assert.ok(block.includes(spec.help), block);
    assert.ok(block.includes(envName(name)), block);
  }
  assert.match(help, /--port PORT +gRPC port\n +\(default 50051; env VECTORDB_PORT\)/);
  assert.match(
    help,
    /--data-dir DIR +data\n +\(default \.\/data\/node-<port>; env VECTORDB_DATA_DIR\)/,
  );
  assert.match(help, /--insecure +allow an open bind\n +\(env VECTORDB_INSECURE\)/);
  assert.match(help, /--config FILE .*\n +\(env VECTORDB_CONFIG\)/);
  assert.match(help, /-h, --help +print this help and exit\n/);
  assert.match(help, /--version +print the version and exit/);
  assert.doesNotMatch(help, /VECTORDB_HELP|VECTORDB_VERSION/);
});

Deno.test("config: a table may not define the built-in flags", () => {
  assert.throws(
    () => resolveConfig({ flags: { help: { type: "boolean", help: "x" } }, argv: [] }),
    /must not define --help/,
  );
});

Deno.test("config: suggestions compare names without the shared prefix", () => {
  const c = resolve([], { VECTORDB_BOGUS: "1", VECTORDB_PROT: "1" });
  assert.deepEqual(c.warnings, [
    "ignoring environment variable VECTORDB_BOGUS: it sets no flag of this program",
    "ignoring environment variable VECTORDB_PROT: it sets no flag of this program; " +
    "did you mean VECTORDB_PORT?",
  ]);
  assert.throws(() => resolve(["--zzzz"]), /^ConfigError: unknown flag --zzzz$/);
  assert.throws(
    () => resolve(["--nodeid", "x"]),
    /unknown flag --nodeid; did you mean --node-id\?/,
  );
});
