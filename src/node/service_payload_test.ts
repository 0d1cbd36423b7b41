import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { NodeStore } from "../storage/node_store.ts";
import { nodeHandlers } from "./service.ts";
import { HttpApi } from "../api/http.ts";
import { SecurityConfig } from "../api/security.ts";

type Handler = (call: { request: unknown }, cb: (e: unknown, r?: unknown) => void) => void;

/** The node's VectorDB handlers over a fresh store in a temporary directory. */
async function withNode(
  // deno-lint-ignore no-explicit-any
  fn: (api: (method: string, request: unknown) => Promise<any>, store: NodeStore) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "service_payload_test_" });
  const store = await NodeStore.open(dir, { logger: () => {} });
  try {
    const handlers = nodeHandlers(store, {
      nodeId: "n",
      address: "x:1",
      logger: () => {},
    }) as unknown as Record<string, Handler>;
    await fn(
      (method, request) =>
        new Promise((resolve, reject) => {
          handlers[method]({ request }, (e, r) => (e ? reject(e) : resolve(r)));
        }),
      store,
    );
  } finally {
    await store.close({ snapshot: false });
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("node: Put/PutBatch payloads come back from Get and Search (compact form)", async () => {
  await withNode(async (api) => {
    await api("Put", { id: 1, vector: [1, 0], payload: '{ "city": "Oslo", "n": [1, 2.50] }' });
    await api("PutBatch", {
      points: [
        { id: 2, vector: [2, 0], payload: '{"city":"Bergen"}' },
        { id: 3, vector: [5, 0], payload: "" },
      ],
    });
    const got = await api("Get", { id: 1 });
    assert.equal(got.found, true);
    assert.equal(got.payload, '{"city":"Oslo","n":[1,2.5]}');
    assert.equal((await api("Get", { id: 3 })).payload ?? "", "");
    assert.equal((await api("Get", { id: 99 })).payload ?? "", "");
    // Without the flags, results are as before; with them they carry payload and vector.
    const plain = await api("Search", { vector: [2, 0], k: 2 });
    assert.deepEqual(plain.results.map((r: { id: number }) => r.id), [2, 1]);
    assert.equal(plain.results[0].payload, undefined);
    const rich = await api("Search", {
      vector: [2, 0],
      k: 3,
      with_payload: true,
      with_vector: true,
    });
    assert.deepEqual(
      rich.results.map((r: { id: number; payload: string; vector: number[] }) => [
        r.id,
        r.payload,
        r.vector,
      ]),
      [[2, '{"city":"Bergen"}', [2, 0]], [1, '{"city":"Oslo","n":[1,2.5]}', [1, 0]], [3, "", [
        5,
        0,
      ]]],
    );
    const onlyPayload = await api("Search", { vector: [2, 0], k: 1, with_payload: true });
    assert.deepEqual(onlyPayload.results[0].vector, []);
    // A put without a payload clears it.
    await api("Put", { id: 1, vector: [1, 0] });
    assert.equal((await api("Get", { id: 1 })).payload ?? "", "");
  });
});

Deno.test("node: a bad payload is INVALID_ARGUMENT naming the field; nothing is written", async () => {
  await withNode(async (api, store) => {
    await api("Put", { id: 1, vector: [1, 0], payload: '{"keep":true}' });
    const c = store.get("default");
    const seq = c.lastSeq;
    const cases: [string, unknown, RegExp][] = [
      [
        "Put",
        { id: 5, vector: [1, 1], payload: `{"a":"${"x".repeat(70_000)}"}` },
        /^payload "\{\\"a\\":\\"x+"\.\.\. \(70008 characters\) is at least 70008 bytes; the limit is 65536$/,
      ],
      [
        "Put",
        { id: 5, vector: [1, 1], payload: "[1,2]" },
        /^payload "\[1,2\]" must be a JSON object, got an array$/,
      ],
      ["Put", { id: 5, vector: [1, 1], payload: "42" }, /must be a JSON object, got number/],
      [
        "Put",
        { id: 5, vector: [1, 1], payload: '{"a":' + "[".repeat(40) + "]".repeat(40) + "}" },
        /payload\.a(\[0\])+ is nested 33 levels deep; the limit is 32/,
      ],
      [
        "Put",
        { id: 5, vector: [1, 1], payload: "{not json" },
        /^payload "\{not json" is not valid JSON/,
      ],
      [
        "PutBatch",
        { points: [{ id: 6, vector: [1, 1] }, { id: 7, vector: [1, 1], payload: '{"a":1,}' }] },
        /^points\[1\]\.payload "\{\\"a\\":1,\}" is not valid JSON/,
      ],
      [
        "PutBatch",
        { points: [{ id: 1, vector: [1, 1], payload: '"just a string"' }] },
        /^points\[0\]\.payload .* must be a JSON object, got string/,
      ],
    ];
    for (const [method, request, message] of cases) {
      await assert.rejects(api(method, request), (e: { code: number; details: string }) => {
        assert.equal(e.code, grpc.status.INVALID_ARGUMENT, e.details);
        assert.match(e.details, message);
        assert.ok(e.details.length < 300, `shortened: ${e.details.length} characters`);
        return true;
      });
    }
    assert.equal(c.lastSeq, seq, "nothing reached the log");
    for (const id of [5, 6, 7]) assert.equal((await api("Get", { id })).found, false);
    const kept = await api("Get", { id: 1 });
    assert.equal(kept.payload, '{"keep":true}', "the batch that named id 1 changed nothing");
    // The node keeps serving.
    await api("Put", { id: 8, vector: [1, 1], payload: "{}" });
    assert.equal((await api("Get", { id: 8 })).payload, "{}");
  });
});

Deno.test("node: Stats memory_bytes counts payloads", async () => {
  await withNode(async (api) => {
    await api("Put", { id: 0, vector: [1, 0] });
    const before = Number((await api("Stats", {})).collections[0].memory_bytes);
    await api("PutBatch", {
      points: Array.from({ length: 20 }, (_, id) => ({
        id,
        vector: [id, 0],
        payload: JSON.stringify({ text: "y".repeat(10_000) }),
      })),
    });
    const after = Number((await api("Stats", {})).collections[0].memory_bytes);
    assert.ok(after - before >= 200_000, `${before} -> ${after}`);
  });
});

Deno.test("node HTTP: payloads are JSON objects in bodies and answers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "service_payload_http_" });
  const store = await NodeStore.open(dir, { logger: () => {} });
  const http = new HttpApi({
    kind: "node",
    handlers: nodeHandlers(store, { nodeId: "n", address: "x:1", logger: () => {} }),
    security: SecurityConfig.insecure(),
    ready: () => true,
    log: () => {},
  });
  const port = await http.listen("127.0.0.1", 0);
  const base = `http://127.0.0.1:${port}/collections/c`;
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  try {
    assert.equal((await call("PUT", "", { dimension: 2 })).status, 200);
    const put = await call("PUT", "/points/1", { vector: [1, 0], payload: { city: "Oslo", n: 1 } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await call("PUT", "/points", {
      points: [{ id: 2, vector: [2, 0], payload: { city: "Bergen" } }, { id: 3, vector: [9, 0] }],
    });
    const got = await call("GET", "/points/1");
    assert.deepEqual([got.status, got.body.payload], [200, { city: "Oslo", n: 1 }]);
    assert.equal((await call("GET", "/points/3")).body.payload, null);
    const found = await call("POST", "/points/search", {
      vector: [2, 0],
      k: 2,
      with_payload: true,
    });
    assert.deepEqual(found.body.results.map((r: { id: number; payload?: unknown }) => r.payload), [
      { city: "Bergen" },
      { city: "Oslo", n: 1 },
    ]);
    const bad = await call("PUT", "/points/4", { vector: [1, 0], payload: [1] });
    assert.deepEqual(bad, {
      status: 400,
      body: {
        error: {
          status: "INVALID_ARGUMENT",
          message: "payload must be a JSON object (or null), got an array of 1",
        },
      },
    });
    const deep = await call("PUT", "/points/4", {
      vector: [1, 0],
      payload: { a: JSON.parse("[".repeat(40) + "]".repeat(40)) },
    });
    assert.equal(deep.status, 400);
    assert.match(deep.body.error.message, /is nested 33 levels deep; the limit is 32/);
    assert.equal((await call("GET", "/points/4")).status, 404);
  } finally {
    await http.close(1000);
    await store.close({ snapshot: false });
    await Deno.remove(dir, { recursive: true });
  }
});
