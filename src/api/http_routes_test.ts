import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  bodyBytesMax,
  httpStatusOf,
  JSON_BYTES_FACTOR,
  matchRoute,
  MethodNotAllowed,
  parseBody,
  parseQuery,
  ROUTES,
} from "./http_routes.ts";
import { openApiDocument } from "./openapi.ts";
import { resolveHttpPort } from "./http.ts";
import { LAYOUT_CONFLICTS_MAX, SHARDS_MAX, VECTORDB_REQUEST_BYTES_MAX } from "../common/limits.ts";
import { accessOf } from "./auth.ts";
import { PROTO_PATH } from "./proto.ts";
import { protoRootJson } from "../common/proto_services.ts";

const route = (method: string, path: string) => matchRoute(method, path).route;

Deno.test("matchRoute: every route's path matches it, with decoded parameters", () => {
  for (const r of ROUTES) {
    const path = r.path.replace("{name}", "my%2Dcoll").replace("{id}", "42");
    const m = matchRoute(r.method, path);
    assert.equal(m.route, r);
    if (r.path.includes("{name}")) assert.equal(m.params.name, "my-coll");
    if (r.path.includes("{id}")) assert.equal(m.params.id, "42");
  }
  assert.equal(route("POST", "/collections/c/points/search").rpc, "Search");
  assert.equal(route("PUT", "/collections/c/points/search").rpc, "Put"); // an id "search": 400 later
});

Deno.test("matchRoute: unknown path 404, wrong method 405 with Allow, bad encoding 400", () => {
  assert.throws(() => matchRoute("GET", "/nope"), { http: 404, message: /No route GET "\/nope"/ });
  assert.throws(() => matchRoute("GET", "/collections//points"), { http: 404 });
  assert.throws(() => matchRoute("PATCH", "/collections/c"), (e: unknown) => {
    assert.ok(e instanceof MethodNotAllowed);
    assert.equal(e.http, 405);
    assert.deepEqual(e.allow.sort(), ["DELETE", "GET", "PUT"]);
    return true;
  });
  assert.throws(() => matchRoute("GET", "/collections/%E0%A4%A"), {
    http: 400,
    message: /not valid percent-encoding/,
  });
});

Deno.test("request building: path fields win, ids and names come from the path", () => {
  const m = matchRoute("PUT", "/collections/c1/points/7");
  const req = m.route.request!(m.params, { vector: [1, 2] }, {});
  assert.deepEqual(req, { vector: [1, 2], id: 7, collection: "c1" });
  const bad = matchRoute("GET", "/collections/c1/points/x1");
  assert.deepEqual(bad.route.request!(bad.params, {}, {}), {
    id: 0,
    string_id: "x1",
    collection: "c1",
  });
  const del = matchRoute("DELETE", "/collections/c1/points/3");
  assert.deepEqual(del.route.request!(del.params, {}, { consistency: "all", version: "5" }), {
    id: 3,
    collection: "c1",
    consistency: "all",
    version: "5",
  });
  const badName = matchRoute("DELETE", "/collections/a%20b");
  assert.throws(() => badName.route.request!(badName.params, {}, {}), {
    name: "ValidationError",
    message: /collection name in the path/,
  });
});

Deno.test("parseBody: JSON errors, non-objects, unknown fields and points name what is wrong", () => {
  const search = route("POST", "/collections/c/points/search");
  assert.throws(() => parseBody(search, '{"vector": [1,'), {
    http: 400,
    message: /not valid JSON/,
  });
  assert.throws(() => parseBody(search, "[1,2]"), { http: 400, message: /must be a JSON object/ });
  assert.throws(() => parseBody(search, '{"vector":[1],"k":1,"kk":2}'), {
    http: 400,
    message: /Unknown field "kk".*takes vector, k, ef/,
  });
  assert.throws(() => parseBody(search, '{"collection":"x"}'), {
    message: /collection name is in the path/,
  });
  const batch = route("PUT", "/collections/c/points");
  assert.throws(() => parseBody(batch, '{"points":[{"id":1,"vector":[1]},{"id":2,"vec":[1]}]}'), {
    http: 400,
    message: /Unknown field "vec" in points\[1\]/,
  });
  assert.deepEqual(parseBody(batch, '{"points":[{"id":1,"vector":[1]}]}'), {
    points: [{ id: 1, vector: [1] }],
  });
  assert.deepEqual(parseBody(search, "  "), {});
  const stats = route("GET", "/stats");
  assert.throws(() => parseBody(stats, "{}"), { http: 400, message: /takes no request body/ });
});

Deno.test("parseBody: lists over the gRPC counts are 413 RESOURCE_EXHAUSTED naming the field", () => {
  const batch = route("PUT", "/collections/c/points");
  const points = Array.from({ length: 10_001 }, (_, i) => ({ id: i, vector: [1] }));
  assert.throws(() => parseBody(batch, JSON.stringify({ points })), {
    http: 413,
    code: grpc.status.RESOURCE_EXHAUSTED,
    message: "PutBatch: points has 10001 points; the limit is 10000",
  });
  const put = route("PUT", "/collections/c/points/1");
  assert.throws(() => parseBody(put, JSON.stringify({ vector: new Array(65_537).fill(0) })), {
    http: 413,
    message: /vector has 65537 values; the limit is 65536/,
  });
});

Deno.test("bodyBytesMax: the documented multiple of each method's gRPC limit", () => {
  assert.equal(JSON_BYTES_FACTOR, 4);
  for (const r of ROUTES) {
    const base = r.rpc === undefined ? 4096 : VECTORDB_REQUEST_BYTES_MAX[r.rpc];
    assert.equal(bodyBytesMax(r), base * 4, `${r.method} ${r.path}`);
  }
});

Deno.test("parseQuery: only the route's parameters, once each", () => {
  const del = route("DELETE", "/collections/c/points/1");
  assert.deepEqual(parseQuery(del, new URLSearchParams("consistency=one")), {
    consistency: "one",
  });
  assert.throws(() => parseQuery(del, new URLSearchParams("consistancy=one")), {
    http: 400,
    message: /Unknown query parameter "consistancy".*takes consistency, version/,
  });
  assert.throws(() => parseQuery(del, new URLSearchParams("version=1&version=2")), {
    message: /"version" is given more than once/,
  });
  assert.throws(() => parseQuery(route("GET", "/stats"), new URLSearchParams("a=1")), {
    message: /takes none/,
  });
});

Deno.test("httpStatusOf: the gRPC status mapping", () => {
  const expected: [grpc.status, number][] = [
    [grpc.status.INVALID_ARGUMENT, 400],
    [grpc.status.UNAUTHENTICATED, 401],
    [grpc.status.PERMISSION_DENIED, 403],
    [grpc.status.NOT_FOUND, 404],
    [grpc.status.ALREADY_EXISTS, 409],
    [grpc.status.RESOURCE_EXHAUSTED, 429],
    [grpc.status.FAILED_PRECONDITION, 400],
    [grpc.status.UNAVAILABLE, 503],
    [grpc.status.DEADLINE_EXCEEDED, 504],
    [grpc.status.INTERNAL, 500],
  ];
  for (const [code, http] of expected) assert.equal(httpStatusOf(code), http, grpc.status[code]);
  assert.equal(httpStatusOf(99), 500);
});

Deno.test("routes: each performs its gRPC method's access rule; health routes are open", () => {
  for (const r of ROUTES) {
    const access = accessOf(r.auth_path);
    if (r.kind === "healthz" || r.kind === "readyz" || r.kind === "console") {
      assert.equal(access, "open");
    } else if (r.kind === "openapi" || r.kind === "metrics" || r.kind === "console_state") {
      assert.equal(access, "read");
    } else assert.equal(r.auth_path, `/vectordb.VectorDB/${r.rpc}`);
  }
});

Deno.test("openApiDocument: lists every route, with its path parameters, for both kinds", () => {
  for (const kind of ["node", "router"] as const) {
    const doc = openApiDocument(kind) as {
      openapi: string;
      paths: Record<string, Record<string, { parameters?: { name: string }[] }>>;
    };
    assert.equal(doc.openapi, "3.0.3");
    const listed = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)
    ).sort();
    assert.deepEqual(listed, ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    for (const r of ROUTES) {
      const names = (doc.paths[r.path][r.method.toLowerCase()].parameters ?? [])
        .map((p) => p.name);
      for (const m of r.path.matchAll(/\{(\w+)\}/g)) assert.ok(names.includes(m[1]));
    }
    // Every $ref resolves.
    const text = JSON.stringify(doc);
    const schemas = (doc as unknown as { components: { schemas: object } }).components.schemas;
    for (const m of text.matchAll(/#\/components\/schemas\/(\w+)/g)) {
      assert.ok(m[1] in schemas, m[1]);
    }
  }
});

Deno.test("resolveHttpPort: default gRPC + 1000, 0 off, errors name the flag", () => {
  assert.equal(resolveHttpPort(undefined, 50051), 51051);
  assert.equal(resolveHttpPort(undefined, 0), 0);
  assert.equal(resolveHttpPort("0", 50051), 0);
  assert.equal(resolveHttpPort("8080", 50051), 8080);
  assert.throws(
    () => resolveHttpPort(undefined, 65000),
    /--port 65000 \+ 1000 = 66000.*--http-port/,
  );
  assert.throws(() => resolveHttpPort("70000", 1), /--http-port "70000" must be an integer/);
  assert.throws(() => resolveHttpPort("-1", 1), /--http-port "-1"/);
});

Deno.test("payloads: bodies carry objects, the gRPC requests their JSON text; answers objects", () => {
  const put = matchRoute("PUT", "/collections/c1/points/7");
  assert.deepEqual(put.route.request!(put.params, { vector: [1], payload: { a: [1, "é"] } }, {}), {
    vector: [1],
    payload: '{"a":[1,"é"]}',
    id: 7,
    collection: "c1",
  });
  assert.deepEqual(put.route.request!(put.params, { vector: [1], payload: null }, {}), {
    vector: [1],
    payload: "",
    id: 7,
    collection: "c1",
  });
  assert.throws(() => put.route.request!(put.params, { vector: [1], payload: "{}" }, {}), {
    http: 400,
    message: 'payload must be a JSON object (or null), got "{}"',
  });
  const batch = matchRoute("PUT", "/collections/c1/points");
  const body = parseBody(
    batch.route,
    '{"points":[{"id":1,"vector":[1],"payload":{"x":1}},{"id":2,"vector":[2]}]}',
  );
  assert.deepEqual(batch.route.request!(batch.params, body, {}), {
    points: [{ id: 1, vector: [1], payload: '{"x":1}' }, { id: 2, vector: [2] }],
    collection: "c1",
  });
  assert.throws(
    () =>
      batch.route.request!(batch.params, { points: [{ id: 1, vector: [1], payload: [1] }] }, {}),
    { http: 400, message: "points[0].payload must be a JSON object (or null), got an array of 1" },
  );
  const get = matchRoute("GET", "/collections/c1/points/7");
  const answer = get.route.respond!(get.params, {
    found: true,
    vector: [1],
    version: "5",
    deleted: false,
    payload: '{"a":1}',
  });
  assert.deepEqual(answer.body, {
    id: 7,
    found: true,
    vector: [1],
    version: "5",
    deleted: false,
    payload: { a: 1 },
  });
  const none = get.route.respond!(get.params, { found: true, vector: [1], payload: "" });
  assert.equal((none.body as { payload: unknown }).payload, null);
  const search = matchRoute("POST", "/collections/c1/points/search");
  assert.deepEqual(parseBody(search.route, '{"vector":[1],"k":2,"with_payload":true}'), {
    vector: [1],
    k: 2,
    with_payload: true,
  });
  const results = search.route.respond!(search.params, {
    results: [
      { id: 1, distance: 0, payload: '{"b":true}', vector: [1] },
      { id: 2, distance: 1, payload: "", vector: [] },
    ],
    partial: false,
  });
  assert.deepEqual(results.body, {
    results: [{ id: 1, distance: 0, payload: { b: true }, vector: [1] }, { id: 2, distance: 1 }],
    partial: false,
  });
});

Deno.test("ids: path and body ids become wire pairs; answers carry one exact JSON id", () => {
  const req = (method: string, path: string, body: Record<string, unknown> = {}) => {
    const m = matchRoute(method, path);
    return m.route.request!(m.params, body, {}) as Record<string, unknown>;
  };
  // Path: digits an integer (exact up to 2^64 - 1), a quoted segment or anything else a string.
  assert.deepEqual(req("GET", "/collections/c/points/18446744073709551615"), {
    id: "18446744073709551615",
    collection: "c",
  });
  assert.deepEqual(req("GET", "/collections/c/points/%22123%22"), {
    id: 0,
    string_id: "123",
    collection: "c",
  });
  assert.deepEqual(req("DELETE", "/collections/c/points/3f2c5a9e-0b7d-4e1a"), {
    id: 0,
    string_id: "3f2c5a9e-0b7d-4e1a",
    collection: "c",
  });
  assert.throws(() => req("GET", "/collections/c/points/18446744073709551616"), {
    http: 400,
    message: /id in the path 18446744073709551616 is not an integer between 0 and 2\^64 - 1/,
  });
  assert.throws(() => req("GET", `/collections/c/points/${"x".repeat(129)}`), {
    http: 400,
    message: /id in the path "x+\.\.\." is over 128 bytes/,
  });
  // Bodies: JSON numbers (up to 2^53 - 1) and strings, mixed.
  const batch = matchRoute("PUT", "/collections/c/points");
  const body = parseBody(
    batch.route,
    '{"points":[{"id":"doc-7","vector":[1]},{"id":5,"vector":[2]}]}',
  );
  assert.deepEqual(batch.route.request!(batch.params, body, {}), {
    points: [{ id: 0, string_id: "doc-7", vector: [1] }, { id: 5, vector: [2] }],
    collection: "c",
  });
  assert.throws(
    () => req("PUT", "/collections/c/points", { points: [{ id: 2 ** 53, vector: [1] }] }),
    { http: 400, message: /points\[0\]\.id 9007199254740992 is above 2\^53 - 1/ },
  );
  assert.deepEqual(req("POST", "/collections/c/points/get", { ids: [1, "a", 2, "b"] }), {
    ids: [1, 2],
    string_ids: ["a", "b"],
    collection: "c",
  });
  assert.deepEqual(req("POST", "/collections/c/points/delete", { ids: ["x", 7] }), {
    ids: [7],
    string_ids: ["x"],
    collection: "c",
  });
  assert.throws(() => req("POST", "/collections/c/points/get", { ids: [1, true] }), {
    http: 400,
    message: /ids\[1\] true is not an id/,
  });
  // has_id passes through a filter as written.
  const f = { must: [{ has_id: [1, "doc-7"] }] };
  assert.equal(req("POST", "/collections/c/points/count", { filter: f }).filter, JSON.stringify(f));
  // Answers: the wire pair becomes one id; a uint64 above 2^53 - 1 a bigint (written exactly).
  const get = matchRoute("POST", "/collections/c/points/get");
  const answer = get.route.respond!(get.params, {
    points: [
      { id: "18446744073709551615", string_id: "", found: true, vector: [], payload: "" },
      { id: "0", string_id: "doc-7", found: false, vector: [], payload: "" },
    ],
  });
  assert.deepEqual(
    (answer.body as { points: { id: unknown }[] }).points.map((p) => p.id),
    [18446744073709551615n, "doc-7"],
  );
  const one = matchRoute("GET", "/collections/c/points/doc-7");
  assert.equal(
    (one.route.respond!(one.params, { found: true, vector: [] }).body as { id: unknown }).id,
    "doc-7",
  );
  const search = matchRoute("POST", "/collections/c/points/search");
  const results = search.route.respond!(search.params, {
    results: [{ id: "0", string_id: "s", distance: 0 }, { id: "12", distance: 1 }],
  });
  assert.deepEqual((results.body as { results: unknown[] }).results, [
    { id: "s", distance: 0 },
    { id: 12, distance: 1 },
  ]);
});

Deno.test("openApiDocument: point ids are integers or strings", () => {
  const doc = openApiDocument("router") as {
    components: { schemas: Record<string, { properties: Record<string, unknown> }> };
  };
  const point = doc.components.schemas.Point.properties.id as { oneOf: { type: string }[] };
  assert.deepEqual(point.oneOf.map((s) => s.type), ["integer", "string"]);
  const ids = doc.components.schemas.GetBatchBody.properties.ids as { items: { oneOf: unknown[] } };
  assert.equal(ids.items.oneOf.length, 2);
});

Deno.test("create collection: the body may carry quantization and rescore", () => {
  const create = matchRoute("PUT", "/collections/q");
  assert.equal(create.route.rpc, "CreateCollection");
  assert.ok(create.route.body_fields!.includes("quantization"));
  assert.ok(create.route.body_fields!.includes("rescore"));
  assert.deepEqual(
    create.route.request!(create.params, { dimension: 4, quantization: "int8", rescore: 3 }, {}),
    { dimension: 4, quantization: "int8", rescore: 3, name: "q" },
  );
  // deno-lint-ignore no-explicit-any
  const doc = openApiDocument("node") as any;
  const body = doc.components.schemas.CreateCollectionBody.properties;
  assert.deepEqual(body.quantization.enum, ["", "none", "int8"]);
});

Deno.test("openApiDocument: the Stats schemas have exactly the proto messages' fields", () => {
  type Field = { type: string; rule?: string };
  const root = protoRootJson(PROTO_PATH, true) as {
    nested: { vectordb: { nested: Record<string, { fields?: Record<string, Field> }> } };
  };
  const messages = root.nested.vectordb.nested;
  const doc = openApiDocument("router") as {
    components: {
      schemas: Record<string, { properties: Record<string, Record<string, unknown>> }>;
    };
  };
  for (
    const name of ["StatsResponse", "NodeStats", "CollectionStats", "ShardStats", "ShardMoveStats"]
  ) {
    const fields = messages[name].fields!;
    const props = doc.components.schemas[name].properties;
    assert.deepEqual(Object.keys(props).sort(), Object.keys(fields).sort(), name);
    for (const [field, f] of Object.entries(fields)) {
      const p = props[field];
      const shape = f.rule === "repeated" ? p.items as Record<string, unknown> : p;
      if (f.rule === "repeated") assert.equal(p.type, "array", `${name}.${field}`);
      if (f.type === "uint64") assert.equal(shape.pattern, "^[0-9]+$", `${name}.${field}`);
      else if (f.type === "uint32") assert.equal(shape.type, "integer", `${name}.${field}`);
      else if (f.type === "string" || f.type === "bool") {
        assert.equal(shape.type, f.type === "bool" ? "boolean" : "string", `${name}.${field}`);
      } else assert.equal(shape.$ref, `#/components/schemas/${f.type}`, `${name}.${field}`);
    }
  }
  // The fields operators read for shards: present, and bounded.
  const stats = doc.components.schemas.StatsResponse.properties;
  for (const f of ["shard_drops_done", "shard_drops_refused", "points_dropped"]) {
    assert.ok(f in stats, f);
  }
  assert.equal(stats.layout_conflicts.maxItems, LAYOUT_CONFLICTS_MAX);
  assert.equal(doc.components.schemas.CollectionStats.properties.shards.maxItems, SHARDS_MAX);
});

Deno.test("GET /stats answers the proto's shape: every field, uint64 as strings", () => {
  const stats = matchRoute("GET", "/stats");
  // A storage node's handler builds its counts as numbers and leaves router fields out.
  const answer = stats.route.respond!(stats.params, {
    node_id: "n1",
    collections: [{
      name: "c",
      count: 5,
      dimension: 2,
      metric: "l2",
      tombstones: 1,
      shards: [
        { shard: 0, count: 2, tombstones: 1, last_seq: 4, last_snapshot_seq: 0, wal_bytes: 90 },
        { shard: 1, count: 3, tombstones: 0, last_seq: 3, last_snapshot_seq: 3, wal_bytes: 0 },
      ],
    }],
    uptime_ms: 7,
  });
  assert.equal(answer.status, 200);
  const body = answer.body as Record<string, unknown> & {
    collections: { count: string; shards: Record<string, unknown>[] }[];
  };
  assert.equal(body.collections[0].count, "5");
  assert.deepEqual(body.collections[0].shards, [
    {
      shard: 0,
      count: "2",
      tombstones: "1",
      last_seq: "4",
      last_snapshot_seq: "0",
      wal_bytes: "90",
    },
    {
      shard: 1,
      count: "3",
      tombstones: "0",
      last_seq: "3",
      last_snapshot_seq: "3",
      wal_bytes: "0",
    },
  ]);
  assert.equal(body.shard_drops_done, "0");
  assert.equal(body.shard_drops_refused, "0");
  assert.equal(body.points_dropped, "0");
  assert.deepEqual(body.layout_conflicts, []);
  assert.equal(body.is_router, false);
  // A router's figures pass through as they are.
  const routed = stats.route.respond!(stats.params, {
    node_id: "r",
    collections: [],
    is_router: true,
    shard_drops_done: "3",
    shard_drops_refused: "1",
    points_dropped: "40",
    layout_conflicts: ['Collection "d" has two layouts'],
  }).body as Record<string, unknown>;
  assert.deepEqual(
    [routed.shard_drops_done, routed.shard_drops_refused, routed.points_dropped],
    ["3", "1", "40"],
  );
  assert.deepEqual(routed.layout_conflicts, ['Collection "d" has two layouts']);
});
