import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Buffer } from "node:buffer";
import * as protoLoader from "@grpc/proto-loader";
import {
  CHANNEL_OPTIONS,
  LOADER_OPTIONS,
  METHOD_NAMES,
  packVector,
  PROTO_PATH,
  type SearchResponse,
  type StatsResponse,
  vectorDbService,
} from "./proto.ts";
import { MESSAGE_BYTES_MAX } from "../common/limits.ts";

Deno.test("the service has exactly the documented RPCs with their message types", () => {
  assert.deepEqual(Object.keys(vectorDbService).sort(), [...METHOD_NAMES].sort());
  const search = vectorDbService.Search;
  assert.equal(search.path, "/vectordb.VectorDB/Search");
  assert.equal(search.requestStream, false);
  assert.equal(search.responseStream, false);
  for (const name of METHOD_NAMES) {
    assert.equal(vectorDbService[name].path, `/vectordb.VectorDB/${name}`);
  }
});

/** The full descriptors (messages too), as reflection loads them. */
const packageDefinition = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);

/** "name number type" for every field of message `name`, from the loaded descriptors. */
function fields(name: string): string[] {
  const def = packageDefinition[`vectordb.${name}`] as unknown as {
    type: { field: { name: string; number: number; type: string; label: string }[] };
  };
  assert.ok(def, `message ${name} is missing`);
  return def.type.field.map((f) => {
    const type = f.type.replace("TYPE_", "").toLowerCase();
    return `${f.label === "LABEL_REPEATED" ? "repeated " : ""}${type} ${f.name} = ${f.number}`;
  });
}

Deno.test("outside-client field names and numbers are fixed", () => {
  // Ids were uint32 and are uint64 now: the same varint on the wire, so an older client's
  // uint32 ids read and write unchanged (see "Ids" in proto/vector_db.proto).
  const fixed: Record<string, string[]> = {
    PutRequest: ["uint64 id = 1", "repeated float vector = 2", "string collection = 3"],
    PutResponse: ["bool ok = 1"],
    SearchRequest: [
      "repeated float vector = 1",
      "uint32 k = 2",
      "string collection = 3",
      "uint32 ef = 4",
    ],
    SearchResponse: [
      "repeated message results = 1",
      "bool partial = 2",
      "uint32 shards_answered = 3",
      "uint32 shards_total = 4",
    ],
    SearchResult: ["uint64 id = 1", "float distance = 2"],
    GetRequest: ["uint64 id = 1", "string collection = 2"],
    GetResponse: ["bool found = 1", "repeated float vector = 2"],
    DeleteRequest: ["uint64 id = 1", "string collection = 2"],
    DeleteResponse: ["bool deleted = 1"],
    PutBatchRequest: ["repeated message points = 1", "string collection = 2"],
    PutBatchResponse: ["uint32 count = 1"],
    Point: ["uint64 id = 1", "repeated float vector = 2"],
  };
  for (const [message, want] of Object.entries(fixed)) {
    const have = fields(message);
    for (const f of want) assert.ok(have.includes(f), `${message} lacks "${f}": ${have}`);
  }
  for (const m of ["PutRequest", "PutBatchRequest", "DeleteRequest"]) {
    assert.ok(fields(m).includes("string consistency = 10"), `${m} lacks consistency`);
    assert.ok(fields(m).includes("uint64 version = 11"), `${m} lacks version`);
  }
  assert.ok(fields("PutResponse").includes("uint64 version = 4"));
  assert.ok(fields("PutBatchResponse").includes("uint64 version = 3"));
  assert.ok(fields("DeleteResponse").includes("uint64 version = 3"));
  assert.ok(fields("GetResponse").includes("uint64 version = 3"));
  assert.ok(fields("GetResponse").includes("bool deleted = 4"));
  const proto = readFileSync(PROTO_PATH, "utf8");
  assert.match(proto, /^syntax = "proto3";$/m);
  assert.match(proto, /^package vectordb;$/m);
  assert.match(proto, /^service VectorDB \{$/m);
});

Deno.test("messages round-trip with the loader options", () => {
  const search = vectorDbService.Search;
  const req = {
    vector: [0.5, -1.25, 3],
    k: 7,
    collection: "c",
    ef: 64,
    with_payload: true,
    with_vector: false,
    filter: '{"must":[{"key":"a","match":{"value":1}}]}',
    exact: true,
  };
  // An absent bytes field decodes as an empty Buffer (the loader's `defaults`).
  assert.deepEqual(search.requestDeserialize(search.requestSerialize(req)), {
    ...req,
    vector_bytes: Buffer.alloc(0),
    shards: [],
  });
  const packed = { ...req, vector: [], vector_bytes: packVector([0.5, -1.25, 3]) };
  const got = search.requestDeserialize(search.requestSerialize(packed)) as typeof packed;
  assert.deepEqual(Array.from(got.vector_bytes), Array.from(packed.vector_bytes));
  assert.deepEqual(got.vector, []);

  const res: SearchResponse = {
    results: [
      { id: 4294967295, distance: 0.25, payload: '{"a":[1,"é"]}', vector: [1, -2] },
      { id: 0, distance: 1.5, payload: "", vector: [] },
    ],
    partial: true,
    shards_answered: 2,
    shards_total: 3,
    nodes_answered: ["127.0.0.1:1", "127.0.0.1:2"],
    shard_searches: 3,
  };
  // Ids are uint64: decimal strings when decoded, with string_id "" for an integer id.
  assert.deepEqual(search.responseDeserialize(search.responseSerialize(res)), {
    ...res,
    results: res.results.map((r) => ({ ...r, id: String(r.id), string_id: "" })),
  });
  const named = { results: [{ id: 0, string_id: "doc-é", distance: 1, payload: "", vector: [] }] };
  assert.deepEqual(search.responseDeserialize(search.responseSerialize(named)).results[0], {
    ...named.results[0],
    id: "0",
  });

  // defaults: true and arrays: true fill absent fields.
  const empty = search.responseDeserialize(search.responseSerialize({}));
  assert.deepEqual(empty, {
    results: [],
    partial: false,
    shards_answered: 0,
    shards_total: 0,
    nodes_answered: [],
    shard_searches: 0,
  });

  // longs: String decodes uint64 as decimal strings; numbers are accepted when encoding.
  const stats = vectorDbService.Stats;
  const s: StatsResponse = {
    node_id: "n1",
    collections: [{
      name: "c",
      count: 3,
      dimension: 2,
      metric: "l2",
      memory_bytes: 2 ** 40,
      wal_bytes: "18446744073709551615",
      last_snapshot_seq: 0,
      last_snapshot_time_ms: 1_700_000_000_000,
    }],
    uptime_ms: 5,
    rss_bytes: 6,
    heap_used_bytes: 7,
  };
  const back = stats.responseDeserialize(stats.responseSerialize(s)) as StatsResponse;
  assert.equal(back.collections[0].memory_bytes, String(2 ** 40));
  assert.equal(back.collections[0].wal_bytes, "18446744073709551615");
  assert.equal(back.collections[0].last_snapshot_time_ms, "1700000000000");
  assert.equal(back.uptime_ms, "5");
  assert.deepEqual(back.nodes, []);
  assert.equal(back.is_router, false);
});

Deno.test("float vectors travel as float32", () => {
  const put = vectorDbService.Put;
  const back = put.requestDeserialize(put.requestSerialize({ id: 1, vector: [0.1] }));
  assert.equal(back.vector[0], Math.fround(0.1));
  // Versions: absent decodes as "0"; numbers up to 2^53 - 1 survive as decimal strings.
  assert.equal(back.version, "0");
  const v = put.requestDeserialize(
    put.requestSerialize({ id: 1, vector: [1], version: 2 ** 53 - 1 }),
  );
  assert.equal(v.version, "9007199254740991");
});

Deno.test("channel options allow 64 MiB messages", () => {
  assert.equal(CHANNEL_OPTIONS["grpc.max_receive_message_length"], MESSAGE_BYTES_MAX);
  assert.equal(CHANNEL_OPTIONS["grpc.max_send_message_length"], MESSAGE_BYTES_MAX);
});
