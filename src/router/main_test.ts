import assert from "node:assert/strict";
import { envName } from "../common/config.ts";
import { parseRouterArgs, ROUTER_FLAGS, routerHelp, RouterUsageError } from "./main.ts";

Deno.test("the router's defaults are those of the original quickstart", () => {
  const o = parseRouterArgs([]);
  assert.equal(o.port, 50050);
  assert.equal(o.host, "127.0.0.1");
  assert.deepEqual(o.nodes, ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]);
  assert.equal(o.replication_factor, 2);
  assert.equal(o.consistency, "quorum");
  assert.equal(o.node_timeout_ms, 2000);
  assert.equal(o.data_dir, "./data/router");
  assert.equal(o.dead_grace_ms, 30_000);
  assert.equal(parseRouterArgs(["--dead-grace-s", "0"]).dead_grace_ms, 0);
  assert.throws(() => parseRouterArgs(["--dead-grace-s", "1.5"]), /--dead-grace-s "1.5"/);
});

Deno.test("router flags, with the leading -- that deno task passes", () => {
  const o = parseRouterArgs([
    "--",
    "--port",
    "6000",
    "--nodes",
    "127.0.0.1:1, 127.0.0.1:2",
    "--replication-factor",
    "1",
    "--consistency",
    "all",
    "--node-timeout-ms",
    "300",
    "--data-dir",
    "/tmp/r",
  ]);
  assert.equal(o.port, 6000);
  assert.deepEqual(o.nodes, ["127.0.0.1:1", "127.0.0.1:2"]);
  assert.equal(o.replication_factor, 1);
  assert.equal(o.consistency, "all");
  assert.equal(o.node_timeout_ms, 300);
  assert.equal(o.data_dir, "/tmp/r");
});

Deno.test("bad router flags quote the value", () => {
  assert.throws(
    () => parseRouterArgs(["--port", "70000"]),
    /--port "70000" must be an integer between 0 and 65535/,
  );
  assert.throws(() => parseRouterArgs(["--consistency", "most"]), /Consistency "most"/);
  assert.throws(() => parseRouterArgs(["--nodes", "localhost"]), /"localhost" must be host:port/);
  assert.throws(() => parseRouterArgs(["--replication-factor", "0"]), RouterUsageError);
  assert.throws(() => parseRouterArgs(["--bogus"]), RouterUsageError);
});

Deno.test("--join needs no --nodes; both may be given; bad seeds quote the value", () => {
  const g = parseRouterArgs(["--join", "127.0.0.1:1,127.0.0.1:2", "--node-id", "r1"]);
  assert.deepEqual(g.join, ["127.0.0.1:1", "127.0.0.1:2"]);
  assert.deepEqual(g.nodes, []);
  assert.equal(g.node_id, "r1");
  assert.equal(g.advertise, undefined);
  const both = parseRouterArgs([
    "--join",
    "127.0.0.1:1",
    "--nodes",
    "127.0.0.1:5",
    "--advertise",
    "10.0.0.1:50050",
  ]);
  assert.deepEqual(both.nodes, ["127.0.0.1:5"]);
  assert.equal(both.advertise, "10.0.0.1:50050");
  assert.deepEqual(parseRouterArgs([]).join, []);
  assert.throws(() => parseRouterArgs(["--join", "nohost"]), /--join entry "nohost" must be/);
  assert.throws(
    () => parseRouterArgs(["--join", "127.0.0.1:1", "--advertise", "x:0"]),
    /--advertise entry "x:0" must be host:port/,
  );
  assert.throws(() => parseRouterArgs(["--nodes", ""]), /--nodes "" names no node/);
});

Deno.test("the router reads VECTORDB_* and a config file under its flags", () => {
  const files: Record<string, string> = {
    "/r.json": JSON.stringify({ join: ["127.0.0.1:1", "127.0.0.1:2"], "dead-grace-s": 5, port: 1 }),
  };
  const read = (p: string) => files[p];
  const o = parseRouterArgs(
    ["--port", "7000", "--config", "/r.json"],
    { VECTORDB_PORT: "7001", VECTORDB_CONSISTENCY: "all", VECTORDB_LOG_FORMAT: "json" },
    read,
  );
  assert.equal(o.port, 7000);
  assert.equal(o.consistency, "all");
  assert.deepEqual(o.join, ["127.0.0.1:1", "127.0.0.1:2"]);
  assert.deepEqual(o.nodes, []);
  assert.equal(o.dead_grace_ms, 5000);
  assert.equal(o.log_format, "json");
  assert.equal(o.log_level, "info");
  assert.equal(parseRouterArgs([], { VECTORDB_INSECURE: "1" }).security_flags.insecure, true);
  assert.throws(
    () => parseRouterArgs([], { VECTORDB_REPLICATION_FACTOR: "0" }),
    (e) =>
      e instanceof RouterUsageError &&
      e.message === '--replication-factor "0" must be an integer between 1 and 64 ' +
          "(set by VECTORDB_REPLICATION_FACTOR)",
  );
  assert.throws(
    () => parseRouterArgs(["--config", "/r.json"], {}, () => '{"nodez": "a:1"}'),
    /config file \/r\.json: unknown key "nodez"; did you mean "nodes"\?/,
  );
  assert.throws(() => parseRouterArgs(["--log-level", "loud"]), RouterUsageError);
  assert.throws(
    () => parseRouterArgs(["--replication-factr", "3"]),
    /unknown flag --replication-factr; did you mean --replication-factor\?/,
  );
});

Deno.test("the router's --help lists every flag it parses", () => {
  const help = routerHelp();
  for (const name of Object.keys(ROUTER_FLAGS)) {
    assert.ok(help.includes(`--${name} `) || help.includes(`--${name}\n`), `--${name}`);
    assert.ok(help.includes(envName(name)), envName(name));
  }
});

Deno.test("the recall monitor's flags: fractions between 0 and 1", () => {
  const o = parseRouterArgs([]);
  assert.equal(o.recall_sample_rate, 0.01);
  assert.equal(o.recall_warn_below, 0.9);
  const p = parseRouterArgs(["--recall-sample-rate", "0", "--recall-warn-below", "0.95"]);
  assert.equal(p.recall_sample_rate, 0);
  assert.equal(p.recall_warn_below, 0.95);
  for (const [flag, value] of [["recall-sample-rate", "1.5"], ["recall-warn-below", "x"]]) {
    assert.throws(
      () => parseRouterArgs([`--${flag}`, value]),
      (e) =>
        e instanceof RouterUsageError &&
        e.message.includes(`--${flag} "${value}" must be a number between 0 and 1`),
    );
  }
});

Deno.test("the search flags: hedge floor (0 off), factor, hedges per search, batch size (0 off), batch affinity (0 off)", () => {
  assert.deepEqual(parseRouterArgs([]).search, {
    hedge_ms: 20,
    hedge_factor: 3,
    hedges_max: 2,
    batch_max: 32,
    batch_affinity: 2,
  });
  const p = parseRouterArgs([
    "--search-hedge-ms",
    "0",
    "--search-hedge-factor",
    "1.5",
    "--search-hedges-max",
    "0",
    "--search-batch-max",
    "100",
    "--search-batch-affinity",
    "1.5",
  ]);
  assert.deepEqual(p.search, {
    hedge_ms: 0,
    hedge_factor: 1.5,
    hedges_max: 0,
    batch_max: 100,
    batch_affinity: 1.5,
  });
  assert.equal(parseRouterArgs(["--search-batch-affinity", "0"]).search!.batch_affinity, 0);
  for (const bad of ["0.5", "101", "x", ""]) {
    assert.throws(
      () => parseRouterArgs(["--search-batch-affinity", bad]),
      new RegExp(`--search-batch-affinity "${bad}" must be 0 \\(off\\) or a number from 1 to 100`),
    );
  }
  // A batch of one is a lone Search: 1 is off, as 0 is.
  assert.equal(parseRouterArgs(["--search-batch-max", "1"]).search!.batch_max, 0);
  assert.equal(parseRouterArgs(["--search-batch-max", "0"]).search!.batch_max, 0);
  assert.throws(
    () => parseRouterArgs(["--search-batch-max", "101"]),
    /--search-batch-max "101" must be an integer between 0 and 100/,
  );
  assert.throws(() => parseRouterArgs(["--search-hedge-ms=-1"]), /--search-hedge-ms "-1"/);
  assert.throws(
    () => parseRouterArgs(["--search-hedge-factor", "0"]),
    /--search-hedge-factor "0" must be a number above 0/,
  );
  assert.throws(() => parseRouterArgs(["--search-hedges-max", "x"]), /--search-hedges-max "x"/);
});
