/**
 * Configuration, `--help`, `--version` and JSON logs of the real programs (src/common/config.ts,
 * src/common/log.ts): a storage node configured by flags, environment variables and a config file
 * at once takes each value from the right source and logs JSON lines; `--help` and `--version`
 * exit 0; an unknown flag or config key exits 2 with the nearest name.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "../src/api/client.ts";
import { NODE_FLAGS } from "../src/node/main.ts";
import { ROUTER_FLAGS } from "../src/router/main.ts";
import { envName } from "../src/common/config.ts";
import { SOFTWARE_VERSION } from "../src/common/software_version.ts";
import { NodeProcess } from "../harness/node.ts";
import { runProcess } from "../harness/process.ts";
import { NODE_ENTRY, ROUTER_ENTRY, runCli, scriptCommand } from "../harness/servers.ts";

/** Runs a server entry point to its end (for --help, --version and refused starts). */
function runServer(entry: string, flags: string[], env: Record<string, string> = {}) {
  const [command, ...args] = scriptCommand(entry, flags);
  return runProcess(command, args, { env });
}

Deno.test({
  name: "server config: flags > env > config file; JSON log lines; Stats shows the values",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = mkdtempSync(join(tmpdir(), "vectordb_config_"));
    const file = join(dir, "node.json");
    writeFileSync(
      file,
      JSON.stringify({
        "node-id": "from-file", // the environment's wins
        "log-level": "debug", // only the file sets it
        "snapshot-every-ops": 5,
        join: [],
      }),
    );
    const node = await NodeProcess.start({
      // The harness gives --port and --data-dir as flags: they beat the environment's.
      args: ["--config", file],
      env: {
        VECTORDB_PORT: "1",
        VECTORDB_DATA_DIR: join(dir, "not-used"),
        VECTORDB_NODE_ID: "from-env",
        VECTORDB_LOG_FORMAT: "json",
        VECTORDB_NO_SUCH_FLAG: "x",
      },
    });
    const api = new ApiClient(node.address);
    try {
      const stats = await api.call("Stats", {});
      assert.equal(stats.node_id, "from-env");
      assert.equal(stats.version, SOFTWARE_VERSION);

      const lines = node.stderr.split("\n").filter((l) => l !== "");
      assert.ok(lines.length >= 2, node.stderr);
      const records = lines.map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          assert.fail(`not a JSON line: ${l}`);
        }
      });
      for (const r of records) {
        assert.match(r.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.ok(["debug", "info", "warn", "error"].includes(r.level), JSON.stringify(r));
        assert.equal(r.component, "node");
        assert.equal(r.node, "from-env");
        assert.equal(typeof r.msg, "string");
      }
      const warn = records.find((r) => r.level === "warn");
      assert.match(warn?.msg ?? "", /ignoring environment variable VECTORDB_NO_SUCH_FLAG/);
      const settings = records.find((r) => r.msg.startsWith("settings from"));
      assert.match(settings?.msg ?? "", /node-id="from-env" \(VECTORDB_NODE_ID\)/);
      assert.match(settings?.msg ?? "", /log-level="debug" \("log-level" in config file /);
      assert.match(settings?.msg ?? "", /snapshot-every-ops="5" \("snapshot-every-ops" in/);
      assert.doesNotMatch(settings?.msg ?? "", /port=|data-dir=/);
      assert.ok(
        records.some((r) => r.level === "info" && r.msg.startsWith(`opened ${node.data_dir}`)),
        node.stderr,
      );
    } finally {
      api.close();
      await node.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
});

Deno.test("server config: --help and --version of the node, the router and the client", async () => {
  for (
    const [entry, flags, program] of [
      [NODE_ENTRY, NODE_FLAGS, "server"],
      [ROUTER_ENTRY, ROUTER_FLAGS, "router"],
    ] as const
  ) {
    const help = await runServer(entry, ["--help"], { VECTORDB_PORT: "not checked" });
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, new RegExp(`^Usage: ${program} \\[flags\\]`));
    for (const name of Object.keys(flags)) {
      assert.ok(help.stdout.includes(`--${name}`), `--${name} missing from ${program} --help`);
      assert.ok(help.stdout.includes(envName(name)), `${envName(name)} missing`);
    }
    assert.match(help.stdout, /--config FILE/);
    const version = await runServer(entry, ["--version"]);
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout, `vectordb ${program} ${SOFTWARE_VERSION}\n`);
  }
  const cli = await runCli(["--version"]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(cli.stdout, `vectordb client ${SOFTWARE_VERSION}\n`);
});

Deno.test("server config: unknown flags and config keys exit 2 with the nearest name", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vectordb_config_"));
  try {
    const node = await runServer(NODE_ENTRY, ["--data-dri", join(dir, "x")]);
    assert.equal(node.code, 2, node.stderr);
    assert.equal(node.stderr, "server: unknown flag --data-dri; did you mean --data-dir?\n");

    const file = join(dir, "router.json");
    writeFileSync(file, '{"replication-factr": 3}');
    const router = await runServer(ROUTER_ENTRY, [], { VECTORDB_CONFIG: file });
    assert.equal(router.code, 2, router.stderr);
    assert.equal(
      router.stderr,
      `router: config file ${file}: unknown key "replication-factr"; ` +
        `did you mean "replication-factor"?\n`,
    );

    const bad = await runServer(NODE_ENTRY, ["--data-dir", join(dir, "n")], {
      VECTORDB_SNAPSHOT_EVERY_S: "soon",
    });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(
      bad.stderr,
      /server: --snapshot-every-s "soon" must be a positive integer \(set by VECTORDB_SNAPSHOT_EVERY_S\)/,
    );

    const cli = await runCli(["serach", "--vector", "1"]);
    assert.equal(cli.code, 2, cli.stderr);
    assert.match(cli.stderr, /Unknown command "serach"; did you mean "search"\?/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
