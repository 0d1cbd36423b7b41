import assert from "node:assert/strict";
import { SOFTWARE_VERSION } from "../common/software_version.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DEFAULT_ADDR,
  filterFlag,
  formatBackups,
  main,
  parseCli,
  parseIds,
  parseVector,
} from "./cli.ts";
import { type CliIo, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from "./io.ts";
import * as grpc from "@grpc/grpc-js";
import { CHANNEL_OPTIONS, vectorDbService } from "../api/proto.ts";
import { shardOf } from "../common/shard.ts";
import { withNode } from "../node/handlers_testing.ts";

const CLI_PATH = fileURLToPath(new URL("./cli.ts", import.meta.url));

/** A loopback port that nothing listens on (bound, then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function captureIo(): CliIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    stderr_is_tty: false,
    now: () => performance.now(),
  };
}

const command = (argv: string[]) => parseCli(argv).command;

Deno.test("parses every command", () => {
  assert.deepEqual(parseCli(["put", "--id", "100", "--vector", "0.1,0.2,0.3"]), {
    global: { addr: DEFAULT_ADDR, json: false, timeout_ms: 10_000 },
    command: {
      kind: "put",
      id: 100,
      vector: [0.1, 0.2, 0.3],
      collection: "",
      consistency: undefined,
    },
  });
  assert.deepEqual(command(["get", "--id", "4294967295", "--collection", "c"]), {
    kind: "get",
    id: 4294967295,
    collection: "c",
  });
  assert.deepEqual(command(["delete", "--id", "1", "--consistency", "all"]), {
    kind: "delete",
    id: 1,
    collection: "",
    consistency: "all",
  });
  assert.deepEqual(command(["search", "--vector", "1,2"]), {
    kind: "search",
    vector: [1, 2],
    k: 10,
    ef: 0,
    collection: "",
  });
  assert.deepEqual(command(["search", "--vector", "[1, 2]", "--k", "1", "--ef", "64"]), {
    kind: "search",
    vector: [1, 2],
    k: 1,
    ef: 64,
    collection: "",
  });
  assert.deepEqual(
    command(["collections", "create", "--name", "c", "--dimension", "100", "--metric", "cosine"]),
    {
      kind: "collections-create",
      name: "c",
      dimension: 100,
      metric: "cosine",
      m: 16,
      ef_construction: 200,
    },
  );
  assert.deepEqual(
    command([
      "collections",
      "create",
      "--name=c",
      "--dimension=8",
      "--m",
      "8",
      "--ef-construction",
      "40",
    ]),
    {
      kind: "collections-create",
      name: "c",
      dimension: 8,
      metric: "l2",
      m: 8,
      ef_construction: 40,
    },
  );
  assert.deepEqual(command(["collections", "list"]), { kind: "collections-list" });
  assert.deepEqual(command(["collections", "drop", "--name", "c"]), {
    kind: "collections-drop",
    name: "c",
  });
  assert.deepEqual(command(["stats"]), { kind: "stats" });
  assert.deepEqual(command(["members"]), { kind: "members" });
  assert.deepEqual(command(["drain"]), { kind: "drain" });
  assert.deepEqual(command(["backup", "create", "--collection", "c", "--name", "b1"]), {
    kind: "backup-create",
    collection: "c",
    name: "b1",
  });
  assert.deepEqual(command(["backup", "list"]), { kind: "backup-list" });
  assert.deepEqual(command(["backup", "restore", "--name", "b1", "--collection", "c2"]), {
    kind: "backup-restore",
    name: "b1",
    collection: "c2",
  });
  assert.deepEqual(command(["backup", "delete", "--name", "b1"]), {
    kind: "backup-delete",
    name: "b1",
  });
  assert.deepEqual(command(["load", "--file", "x.fvecs"]), {
    kind: "load",
    file: "x.fvecs",
    batch: 1000,
    start_id: 0,
    concurrency: 4,
    attempts: 12,
    collection: "",
    consistency: undefined,
  });
  assert.deepEqual(
    command([
      "load",
      "--file",
      "x.fvecs",
      "--batch",
      "500",
      "--start-id",
      "7",
      "--concurrency",
      "2",
      "--attempts",
      "3",
    ]),
    {
      kind: "load",
      file: "x.fvecs",
      batch: 500,
      start_id: 7,
      concurrency: 2,
      attempts: 3,
      collection: "",
      consistency: undefined,
    },
  );
  assert.deepEqual(command(["--help"]), { kind: "help", requested: true });
  assert.deepEqual(command([]), { kind: "help", requested: false });
});

Deno.test("global flags go before or after the command", () => {
  const p = parseCli(["--addr", "10.0.0.1:6000", "stats", "--json", "--timeout-ms", "250"]);
  assert.deepEqual(p.global, { addr: "10.0.0.1:6000", json: true, timeout_ms: 250 });
});

Deno.test("vectors: negative values, spaces, exponents", () => {
  assert.deepEqual(command(["search", "--vector", "-0.5,1"]).kind, "search");
  assert.deepEqual(
    (command(["search", "--vector", "-0.5,1"]) as { vector: number[] }).vector,
    [-0.5, 1],
  );
  assert.deepEqual(parseVector(" 1 , -2.5e-3,+3,.5 "), [1, -0.0025, 3, 0.5]);
  assert.throws(() => parseVector("1,,2"), /--vector\[1\] "" is not a number/);
  assert.throws(() => parseVector("1,abc"), /--vector\[1\] "abc" is not a number/);
  assert.throws(() => parseVector("NaN"), /--vector\[0\] "NaN" is not a number/);
  assert.throws(() => parseVector("0x10"), /is not a number/);
  assert.throws(() => parseVector("1,1e39"), /--vector\[1\] 1e\+39 is outside the float32 range/);
  assert.throws(() => parseVector(""), /--vector is empty/);
  assert.throws(() => parseVector("[]"), /--vector is empty/);
});

Deno.test("parses scroll and count", () => {
  assert.deepEqual(command(["scroll"]), {
    kind: "scroll",
    collection: "",
    limit: 0,
    cursor: "",
    all: false,
    with_vector: false,
  });
  assert.deepEqual(
    command([
      "scroll",
      "--collection",
      "c",
      "--limit",
      "50",
      "--cursor",
      "v1:9",
      "--all",
      "--with-vector",
    ]),
    { kind: "scroll", collection: "c", limit: 50, cursor: "v1:9", all: true, with_vector: true },
  );
  assert.deepEqual(command(["count", "--collection", "c"]), { kind: "count", collection: "c" });
});

Deno.test("bad command lines throw UsageError with a clear message", () => {
  const cases: [string[], RegExp][] = [
    [["scroll", "--limit", "0"], /--limit 0 must be between 1 and 10000/],
    [["scroll", "--limit", "10001"], /--limit 10001 must be between 1 and 10000/],
    [["scroll", "--cursor", "abc"], /--cursor "abc" is not a cursor this server handed out/],
    [["count", "--limit", "3"], /--limit is not a flag of "count"/],
    [["frobnicate"], /Unknown command "frobnicate"/],
    [["collections"], /"collections" needs create, list, drop or index/],
    [["collections", "rename"], /Unknown command "collections rename"/],
    [["put", "--id", "1"], /"put" needs --vector/],
    [["get", "--id", "1", "--k", "3"], /--k is not a flag of "get"/],
    [["get", "--id", "18446744073709551616"], /--id 18446744073709551616 is not an integer/],
    [["get", "--id", "x".repeat(129)], /--id "x{61}\.\.\." is over 128 bytes of UTF-8/],
    [["get", "--id", '"abc'], /--id "abc is not a JSON string/],
    [["get", "--id", " "], /--id is empty/],
    [["get", "--id", "1", "extra"], /Unexpected argument "extra"/],
    [["search", "--vector", "1", "--k", "0"], /--k 0 must be between 1 and 10000/],
    [["search", "--vector", "1", "--k", "20000"], /--k 20000 must be between 1 and 10000/],
    [["put", "--id", "1", "--vector", "1", "--collection", "a/b"], /--collection "a\/b" must be/],
    [["put", "--id", "1", "--vector", "1", "--consistency", "most"], /--consistency "most"/],
    [["collections", "create", "--name", "c", "--dimension", "0"], /dimension 0 must be/],
    [["collections", "create", "--name", "c", "--dimension", "3", "--metric", "x"], /metric "x"/],
    [["load", "--file", "x.csv"], /unknown extension/],
    [["load", "--file", "x.jsonl", "--start-id", "3"], /--start-id applies only to \.fvecs/],
    [
      ["load", "--file", "x.fvecs", "--batch", "20000"],
      /--batch 20000 must be between 1 and 10000/,
    ],
    [["--addr", "localhost", "stats"], /--addr "localhost" must be host:port/],
    [["--timeout-ms", "0", "stats"], /--timeout-ms 0 must be between 1 and 86400000/],
    [["stats", "--bogus"], /^unknown flag --bogus$/],
    [["--adr", "h:1", "stats"], /^unknown flag --adr; did you mean --addr\?$/],
    [["search", "--vectr", "1"], /^unknown flag --vectr; did you mean --vector\?$/],
    [["serach", "--vector", "1"], /^Unknown command "serach"; did you mean "search"\?$/],
    [
      ["collections", "lst"],
      /^Unknown command "collections lst"; did you mean "collections list"\?$/,
    ],
    [
      ["get", "--id", "1", "--collectoin", "c"],
      /unknown flag --collectoin; did you mean --collection\?/,
    ],
    [["get", "--id", "1", "--ef", "3"], /^--ef is not a flag of "get"$/],
    [["backup"], /"backup" needs create, list, restore or delete/],
    [["backup", "delete"], /"backup delete" needs --name/],
    [["backup", "delete", "--name", "../x"], /--name "\.\.\/x" must be/],
    [["backup", "create", "--name", "b"], /"backup create" needs --collection/],
    [["backup", "create", "--collection", "c", "--name", "a/b"], /--name "a\/b" must be/],
    [["backup", "restore", "--name", "b", "--collection", ""], /--collection "" must be/],
    [
      ["put", "--id", "1", "--vector", "1", "--payload", "{x"],
      /^--payload "\{x" is not valid JSON/,
    ],
    [
      ["put", "--id", "1", "--vector", "1", "--payload", "7"],
      /--payload "7" must be a JSON object/,
    ],
    [["get", "--id", "1", "--payload", "{}"], /--payload is not a flag of "get"/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseCli(argv), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${argv.join(" ")}: ${e}`);
      assert.match(e.message, message, argv.join(" "));
      return true;
    });
  }
});

Deno.test("main: usage errors are one line and exit 2; help exits 0", async () => {
  const io = captureIo();
  assert.equal(await main(["get", "--id", "99999999999999999999"], io), EXIT_USAGE);
  assert.deepEqual(io.out, []);
  assert.deepEqual(io.err, [
    "error: --id 99999999999999999999 is not an integer between 0 and 2^64 - 1 " +
    "(run with --help for usage)\n",
  ]);

  const help = captureIo();
  assert.equal(await main(["--help"], help), EXIT_OK);
  assert.match(help.out.join(""), /^Usage: client/);

  const version = captureIo();
  assert.equal(await main(["--version"], version), EXIT_OK);
  assert.deepEqual(version.out, [`vectordb client ${SOFTWARE_VERSION}\n`]);
  assert.deepEqual(parseCli(["--version", "stats"]).command, { kind: "version" });

  const bare = captureIo();
  assert.equal(await main([], bare), EXIT_USAGE);
  assert.match(bare.err.join(""), /^Usage: client/);
});

Deno.test("main: an unreachable server gives one gRPC error line and exit 1", async () => {
  const io = captureIo();
  const code = await main(
    ["--addr", `127.0.0.1:${closedPort()}`, "--timeout-ms", "3000", "search", "--vector", "1,2"],
    io,
  );
  assert.equal(code, EXIT_FAILURE);
  assert.deepEqual(io.out, []);
  assert.equal(io.err.length, 1);
  assert.match(io.err[0], /^error: (UNAVAILABLE|DEADLINE_EXCEEDED): [^\n]+\n$/);
});

Deno.test("main: load checks the message size; unreachable points fail for good", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    const big = join(dir, "big.fvecs");
    const record = new DataView(new ArrayBuffer(4 + 4 * 2000));
    record.setInt32(0, 2000, true);
    await Deno.writeFile(big, new Uint8Array(record.buffer));
    const io = captureIo();
    const addr = `127.0.0.1:${closedPort()}`;
    assert.equal(
      await main(["--addr", addr, "load", "--file", big, "--batch", "10000"], io),
      EXIT_USAGE,
    );
    assert.match(
      io.err[0],
      new RegExp(
        "^error: --batch 10000 of dimension 2000 exceeds the 64 MiB message limit; " +
          "use --batch 8369 or less",
      ),
    );

    const lines = join(dir, "p.jsonl");
    await Deno.writeTextFile(lines, '{"id": 1, "vector": [1, 2]}\n');
    const io2 = captureIo();
    const waits: number[] = [];
    io2.sleep = (ms) => {
      waits.push(ms);
      return Promise.resolve();
    };
    io2.random = () => 0.5;
    assert.equal(
      await main(
        ["--addr", addr, "--timeout-ms", "3000", "load", "--file", lines, "--attempts", "3"],
        io2,
      ),
      EXIT_FAILURE,
    );
    // Two retries with growing waits, then the point failed for good, counted by reason.
    assert.deepEqual(waits, [125, 250]);
    assert.match(io2.out.join(""), /^Loaded 0 points in 3 batches .*, 2 retries: [A-Z_]+ 2\)\n/);
    assert.match(
      io2.out.join(""),
      /\n1 points failed for good:\n {2}(UNAVAILABLE|DEADLINE_EXCEEDED): 1 points \(first: "/,
    );
    assert.equal(io2.err.length, 1);
    assert.match(io2.err[0], /^error: 1 points failed for good; first: [A-Z_]+: /);

    const io3 = captureIo();
    assert.equal(
      await main(["--addr", addr, "load", "--file", join(dir, "none.jsonl")], io3),
      EXIT_FAILURE,
    );
    assert.match(io3.err[0], /^error: Cannot read .*none\.jsonl/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the CLI process exits 1 with one line on stderr when the server is down", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CLI_PATH,
      "--addr",
      `127.0.0.1:${closedPort()}`,
      "--timeout-ms",
      "3000",
      "get",
      "--id",
      "1",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, EXIT_FAILURE, stderr);
  assert.equal(new TextDecoder().decode(out.stdout), "");
  assert.match(stderr, /^error: (UNAVAILABLE|DEADLINE_EXCEEDED): [^\n]+\n$/);
});

Deno.test("cli: formatBackups shows a router's node count and incomplete backups", () => {
  const collection = { name: "c", dimension: 2, metric: "l2", m: 16, ef_construction: 200 };
  const node = {
    name: "b1",
    collection,
    points: "3",
    bytes: "10",
    created_ms: "0",
    seq: "4",
    sha256: "ab",
  };
  assert.equal(
    formatBackups([node]),
    "b1  collection=c  points=3  bytes=10  created=1970-01-01T00:00:00.000Z",
  );
  const routed = {
    ...node,
    points: "6",
    complete: false,
    nodes: [
      { address: "a:1", backup: node, error: "" },
      { address: "a:2", backup: null, error: "UNAVAILABLE: down" },
    ],
  };
  assert.equal(
    formatBackups([routed]),
    "b1  collection=c  points=6  bytes=10  created=1970-01-01T00:00:00.000Z  nodes=1/2 INCOMPLETE",
  );
});

Deno.test("payload flags: put --payload, search --with-payload", () => {
  assert.deepEqual(command(["put", "--id", "1", "--vector", "1,2", "--payload", '{"a": 1}']), {
    kind: "put",
    id: 1,
    vector: [1, 2],
    collection: "",
    consistency: undefined,
    payload: '{"a": 1}',
  });
  assert.deepEqual(command(["search", "--vector", "1", "--with-payload"]), {
    kind: "search",
    vector: [1],
    k: 10,
    ef: 0,
    collection: "",
    with_payload: true,
  });
});

Deno.test("filter, ids and index flags", () => {
  const f = '{"must":[{"key":"tenant","match":{"value":"a"}}]}';
  assert.deepEqual(command(["search", "--vector", "1,2", "--filter", f, "--with-payload"]), {
    kind: "search",
    vector: [1, 2],
    k: 10,
    ef: 0,
    collection: "",
    with_payload: true,
    filter: f,
  });
  // Pretty-printed JSON goes out compact.
  assert.deepEqual(command(["count", "--filter", '{ "must": [ {"has_id": [1]} ] }']), {
    kind: "count",
    collection: "",
    filter: '{"must":[{"has_id":[1]}]}',
  });
  assert.deepEqual(command(["scroll", "--filter", f, "--with-payload", "--limit", "5"]), {
    kind: "scroll",
    collection: "",
    limit: 5,
    cursor: "",
    all: false,
    with_vector: false,
    with_payload: true,
    filter: f,
  });
  assert.deepEqual(command(["get", "--ids", "1, 2,3", "--collection", "c"]), {
    kind: "get-batch",
    ids: [1, 2, 3],
    collection: "c",
  });
  assert.deepEqual(command(["delete", "--ids", "7,8", "--consistency", "all"]), {
    kind: "delete-batch",
    ids: [7, 8],
    collection: "",
    consistency: "all",
  });
  assert.deepEqual(command(["delete", "--filter", f]), {
    kind: "delete-filter",
    filter: f,
    collection: "",
    consistency: undefined,
  });
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(join(dir, "f.json"), `${f}\n`);
    assert.deepEqual(command(["delete", "--filter-file", join(dir, "f.json")]), {
      kind: "delete-filter",
      filter: f,
      collection: "",
      consistency: undefined,
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  assert.deepEqual(
    command(["collections", "index", "--name", "c", "--field", "meta.lang", "--type", "keyword"]),
    { kind: "collections-index", name: "c", field: "meta.lang", type: "keyword" },
  );
  assert.deepEqual(command(["collections", "index", "--name", "c", "--field", "x", "--drop"]), {
    kind: "collections-unindex",
    name: "c",
    field: "x",
  });
  assert.deepEqual(parseIds("0,4294967295"), [0, 4294967295]);
  // All digits: an integer id (a bigint above 2^53 - 1); anything else, or JSON-quoted, a string.
  assert.deepEqual(
    parseIds('7, doc-7,18446744073709551615,"123","a,b",3f2c5a9e-0b7d-4e1a,-1, 0009'),
    [7, "doc-7", 18446744073709551615n, "123", "a,b", "3f2c5a9e-0b7d-4e1a", "-1", 9],
  );
  assert.deepEqual(command(["get", "--id", "doc-7"]), {
    kind: "get",
    id: "doc-7",
    collection: "",
  });
  assert.deepEqual(command(["delete", "--ids", 'x,2,"3"']), {
    kind: "delete-batch",
    ids: ["x", 2, "3"],
    collection: "",
    consistency: undefined,
  });
  assert.equal(filterFlag(undefined, undefined), undefined);
  assert.equal(filterFlag(undefined, "f", () => '{"must":[]}'), '{"must":[]}');

  const cases: [string[], RegExp][] = [
    [["count", "--filter", "{must:"], /^--filter is not valid JSON: /],
    [["count", "--filter", "[1]"], /^--filter must be a JSON object such as .*, got \[1\]$/],
    [["count", "--filter", "{}", "--filter-file", "x"], /give --filter or --filter-file, not both/],
    [["count", "--filter-file", "/nonexistent/f.json"], /^--filter-file "\/nonexistent\/f.json": /],
    [["get"], /"get" needs one of --id, --ids/],
    [["get", "--id", "1", "--ids", "2"], /"get" takes one of --id, --ids, got --id and --ids/],
    [["get", "--ids", "1,"], /--ids\[1\] is empty/],
    [["get", "--ids", "18446744073709551616"], /--ids\[0\] 18446744073709551616 is not an/],
    [["get", "--ids", '1,""'], /--ids\[1\] "" is empty/],
    [["get", "--ids", ""], /--ids is empty/],
    [["delete"], /"delete" needs one of --id, --ids, --filter, --filter-file/],
    [["delete", "--id", "1", "--filter", "{}"], /takes one of .*got --id and --filter/],
    [["get", "--id", "1", "--filter", "{}"], /--filter is not a flag of "get"/],
    [["collections", "index", "--name", "c", "--field", "f"], /needs one of --type, --drop/],
    [
      ["collections", "index", "--name", "c", "--field", "f", "--type", "keywrd"],
      /--type "keywrd" must be one of keyword, integer, float, bool; did you mean keyword\?/,
    ],
    [["collections", "index", "--name", "c", "--type", "bool"], /needs --field/],
    [
      ["collections", "index", "--name", "c", "--field", "f", "--type", "bool", "--drop"],
      /takes one of --type, --drop/,
    ],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseCli(argv), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${argv.join(" ")}: ${e}`);
      assert.match(e.message, message, argv.join(" "));
      return true;
    });
  }
});

Deno.test("cli: collections create --shard-number S --replication-factor R", () => {
  const args = ["collections", "create", "--name", "s", "--dimension", "4"];
  assert.deepEqual(
    command([...args, "--shard-number", "6", "--replication-factor", "3"]),
    {
      kind: "collections-create",
      name: "s",
      dimension: 4,
      metric: "l2",
      m: 16,
      ef_construction: 200,
      shard_number: 6,
      replication_factor: 3,
    },
  );
  assert.throws(() => command([...args, "--shard-number", "-1"]), /shard-number|shard_number/);
});

Deno.test("cli: collections create --quantization int8 [--rescore N]", () => {
  assert.deepEqual(
    command([
      "collections",
      "create",
      "--name",
      "q",
      "--dimension",
      "100",
      "--quantization",
      "int8",
      "--rescore",
      "6",
    ]),
    {
      kind: "collections-create",
      name: "q",
      dimension: 100,
      metric: "l2",
      m: 16,
      ef_construction: 200,
      quantization: "int8",
      rescore: 6,
    },
  );
  assert.throws(
    () =>
      command(["collections", "create", "--name", "q", "--dimension", "4", "--quantization", "pq"]),
    /quantization "pq"/,
  );
});

Deno.test("main: stats against a storage node prints a row per shard unit", async () => {
  await withNode("cli_stats_", async (api, _tr, _store, handlers) => {
    const server = new grpc.Server(CHANNEL_OPTIONS);
    server.addService(vectorDbService, handlers);
    try {
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(
          "127.0.0.1:0",
          grpc.ServerCredentials.createInsecure(),
          (e, p) => (e ? reject(e) : resolve(p)),
        )
      );
      await api("CreateCollection", { name: "sharded", dimension: 2, shard_number: 3 });
      await api("PutBatch", {
        collection: "sharded",
        points: Array.from({ length: 20 }, (_, i) => ({ id: i, vector: [i, 1] })),
      });
      await api("DeleteBatch", { collection: "sharded", ids: [0, 1, 2, 3] });
      const io = captureIo();
      assert.equal(
        await main(["--addr", `127.0.0.1:${port}`, "stats"], io),
        EXIT_OK,
        io.err.join(""),
      );
      const text = io.out.join("");
      assert.match(text, /collection +shard +count +tombstones +last seq +snapshot seq +wal\n/);
      for (let s = 0; s < 3; s++) {
        let live = 0;
        let dead = 0;
        for (let id = 0; id < 20; id++) {
          if (shardOf(id, 3) !== s) continue;
          if (id < 4) dead++;
          else live++;
        }
        assert.match(
          text,
          new RegExp(`\\nsharded +${s} +${live} +${dead} +[1-9][0-9]* +0 +[0-9.]+ [KM]?i?B\\n?`),
        );
      }
      // --json prints the answer itself, with the units.
      const json = captureIo();
      assert.equal(await main(["--addr", `127.0.0.1:${port}`, "--json", "stats"], json), EXIT_OK);
      const answer = JSON.parse(json.out.join(""));
      assert.equal(answer.collections[0].shards.length, 3);
    } finally {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    }
  });
});
