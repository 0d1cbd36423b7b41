import assert from "node:assert/strict";
import { Prng } from "../common/prng.ts";
import { packVector, VectorDBClient, vectorDbService } from "../api/proto.ts";
import { type HandlerCall, rejectsWith, withNode } from "./handlers_testing.ts";

/** `request` as a server gets it: encoded by the client's definition, decoded by the server's. */
function wire(method: string, request: unknown): unknown {
  const client = VectorDBClient.service[method];
  return vectorDbService[method].requestDeserialize(client.requestSerialize(request) as never);
}

/** Calls `api` with `request` through the wire encoding. */
function viaWire(api: HandlerCall): HandlerCall {
  return (method, request) => api(method, wire(method, request));
}

const DIM = 8;

Deno.test("node: packed vectors (vector_bytes) put and search exactly as repeated floats", async () => {
  const r = new Prng(5);
  const vectors = Array.from(
    { length: 60 },
    () => Float32Array.from({ length: DIM }, () => r.nextInt(2001) / 1000 - 1),
  );
  const answers: unknown[][] = [];
  for (const packed of [false, true]) {
    await withNode("service_packed_", async (raw) => {
      const api = viaWire(raw);
      await api("CreateCollection", { name: "c", dimension: DIM, metric: "l2" });
      const form = (v: Float32Array) =>
        packed ? { vector: [], vector_bytes: packVector(v) } : { vector: Array.from(v) };
      // Half by Put, half by PutBatch.
      for (let i = 0; i < 30; i++) {
        await api("Put", { id: i, ...form(vectors[i]), collection: "c" });
      }
      await api("PutBatch", {
        collection: "c",
        points: vectors.slice(30).map((v, i) => ({ id: 30 + i, ...form(v) })),
      });
      const got = await api("Get", { id: 42, collection: "c" });
      assert.deepEqual(got.vector, Array.from(vectors[42]));
      const results = [];
      for (let q = 0; q < 10; q++) {
        const res = await api("Search", { ...form(vectors[q * 5]), k: 5, collection: "c" });
        assert.equal(Number(res.results[0].id), q * 5);
        results.push(res.results);
      }
      const batch = await api("SearchBatch", {
        searches: [0, 1].map((q) => ({ ...form(vectors[q]), k: 3, collection: "c" })),
      });
      results.push(batch.results.map((b: { results: unknown }) => b.results));
      answers.push(results);
    });
  }
  assert.deepEqual(answers[1], answers[0]);
});

Deno.test("node: vector_bytes refusals are INVALID_ARGUMENT naming the field", async () => {
  await withNode("service_packed_", async (raw) => {
    const api = viaWire(raw);
    await api("CreateCollection", { name: "c", dimension: 2 });
    const three = packVector([1, 2, 3]);
    await rejectsWith(
      api("Search", { vector: [], vector_bytes: three, k: 1, collection: "c" }),
      3,
      "vector_bytes dimension 3 (12 bytes) does not match the collection dimension 2",
    );
    await rejectsWith(
      api("Put", { id: 1, vector: [], vector_bytes: three, collection: "c" }),
      3,
      "vector_bytes dimension 3 (12 bytes) does not match the collection dimension 2",
    );
    await rejectsWith(
      api("PutBatch", { points: [{ id: 1, vector: [], vector_bytes: three }], collection: "c" }),
      3,
      "points[0].vector_bytes dimension 3 (12 bytes) does not match the collection dimension 2",
    );
    await rejectsWith(
      api("SearchBatch", {
        searches: [{ vector: [], vector_bytes: three, k: 1, collection: "c" }],
      }),
      3,
      "searches[0].vector_bytes dimension 3 (12 bytes) does not match the collection dimension 2",
    );
    await rejectsWith(
      api("Search", { vector: [1, 2], vector_bytes: packVector([1, 2]), k: 1, collection: "c" }),
      3,
      "vector (2 values) and vector_bytes (8 bytes) are both set; set exactly one",
    );
    await rejectsWith(
      api("Put", { id: 1, vector: [], vector_bytes: new Uint8Array(7), collection: "c" }),
      3,
      "vector_bytes has 7 bytes, not a multiple of 4 (one float32 is 4 bytes)",
    );
    await rejectsWith(
      api("Put", { id: 1, vector: [], vector_bytes: packVector([1, NaN]), collection: "c" }),
      3,
      "vector_bytes[1] is NaN",
    );
    // Nothing was written.
    assert.equal((await api("Get", { id: 1, collection: "c" })).found, false);
  });
});
