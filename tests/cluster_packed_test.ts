/**
 * Packed vectors (`vector_bytes`) through the router over two real storage nodes (RF 2): Put,
 * PutBatch and Search with packed vectors give exactly what repeated floats give, the router
 * forwards them packed (the nodes store the same vectors), hints for a node that is down hold
 * the same vectors, and a refusal names the field.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { isServiceError } from "../src/api/client.ts";
import { packVector } from "../src/api/proto.ts";
import { withCluster } from "../harness/cluster.ts";
import { Rng } from "../src/testing/random.ts";
import { waitFor } from "../harness/wait.ts";

const DIM = 6;

Deno.test({
  name: "router: packed vectors put and search as repeated floats do",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({ nodes: 2, replication_factor: 2 }, async (c) => {
      const router = c.api(c.routerAddr, 30_000);
      const rng = new Rng(77);
      const vectors = Array.from(
        { length: 40 },
        () => Float32Array.from({ length: DIM }, () => rng.next() * 2 - 1),
      );
      for (const name of ["plain", "packed"]) {
        await router.call("CreateCollection", { name, dimension: DIM, metric: "l2" });
      }
      const form = (packed: boolean, v: Float32Array) =>
        packed ? { vector: [], vector_bytes: packVector(v) } : { vector: Array.from(v) };
      for (const [name, packed] of [["plain", false], ["packed", true]] as const) {
        for (let i = 0; i < 10; i++) {
          await router.call("Put", { id: i, ...form(packed, vectors[i]), collection: name });
        }
        await router.call("PutBatch", {
          collection: name,
          points: vectors.slice(10).map((v, i) => ({ id: 10 + i, ...form(packed, v) })),
        });
      }
      // Every node stores the same vectors either way (the router forwarded them packed).
      for (const addr of c.nodeAddrs) {
        const node = c.api(addr, 30_000);
        for (const id of [3, 25]) {
          const a = await node.call("Get", { id, collection: "plain" });
          const b = await node.call("Get", { id, collection: "packed" });
          assert.ok(a.found && b.found, `${addr} has ${id}`);
          assert.deepEqual(b.vector, a.vector);
          assert.deepEqual(b.vector, Array.from(vectors[id]));
        }
      }
      for (let q = 0; q < 8; q++) {
        const query = vectors[q * 5];
        const plain = await router.call("Search", {
          ...form(false, query),
          k: 5,
          collection: "plain",
        });
        const packed = await router.call("Search", {
          ...form(true, query),
          k: 5,
          collection: "packed",
        });
        assert.equal(Number(packed.results[0].id), q * 5);
        assert.deepEqual(packed.results, plain.results);
        // The same collection searched both ways.
        const mixed = await router.call("Search", {
          ...form(true, query),
          k: 5,
          collection: "plain",
        });
        assert.deepEqual(mixed.results, plain.results);
      }
      // A wrong length is refused by the nodes, naming the packed field.
      await assert.rejects(
        router.call("Search", {
          vector: [],
          vector_bytes: packVector([1, 2]),
          k: 1,
          collection: "plain",
        }),
        (e: unknown) =>
          isServiceError(e) && e.code === grpc.status.INVALID_ARGUMENT &&
          e.details ===
            "vector_bytes dimension 2 (8 bytes) does not match the collection dimension 6",
      );
      // A node down: packed writes are hinted for it (the router's hint record holds the
      // floats) and reach it, the same vectors, once it is back.
      await c.killNode(1);
      await router.call("PutBatch", {
        collection: "packed",
        consistency: "one",
        points: [{ id: 100, ...form(true, vectors[7]) }, { id: 101, ...form(true, vectors[8]) }],
      });
      await router.call("Put", {
        id: 102,
        ...form(true, vectors[9]),
        collection: "packed",
        consistency: "one",
      });
      await c.startNode(1);
      const back = c.api(c.nodeAddrs[1], 30_000);
      await waitFor(
        async () => {
          for (const id of [100, 101, 102]) {
            if (!(await back.call("Get", { id, collection: "packed" })).found) return false;
          }
          return true;
        },
        "hinted packed writes reach the restarted node",
        30_000,
        200,
      );
      for (const [id, v] of [[100, 7], [101, 8], [102, 9]]) {
        const got = await back.call("Get", { id, collection: "packed" });
        assert.deepEqual(got.vector, Array.from(vectors[v]), `id ${id}`);
      }
      // Both forms at once: refused by the router before any node is asked.
      await assert.rejects(
        router.call("Put", {
          id: 1,
          vector: [1, 2, 3, 4, 5, 6],
          vector_bytes: packVector([1, 2, 3, 4, 5, 6]),
          collection: "plain",
        }),
        (e: unknown) =>
          isServiceError(e) && e.code === grpc.status.INVALID_ARGUMENT &&
          /vector \(6 values\) and vector_bytes \(24 bytes\) are both set/.test(e.details),
      );
    });
  },
});
