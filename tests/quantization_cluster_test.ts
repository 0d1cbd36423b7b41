/**
 * Int8 quantization end to end: a collection created through the CLI and the router with
 * `--quantization int8` is int8 on every node, searches through the router find exact
 * nearest points (re-ranked distances), and a bad value is refused as INVALID_ARGUMENT.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { isServiceError } from "../src/api/client.ts";
import type { CollectionInfo } from "../src/api/proto.ts";
import { withCluster } from "../harness/cluster.ts";
import { runCli } from "../harness/servers.ts";
import { Rng } from "../src/testing/random.ts";

Deno.test({
  name: "int8 collections through the CLI and the router reach every node and search exactly",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({ nodes: 2, replication_factor: 2 }, async (c) => {
      const addr = ["--addr", c.routerAddr];
      const made = await runCli([
        "--json",
        "collections",
        "create",
        "--name",
        "q8",
        "--dimension",
        "8",
        "--quantization",
        "int8",
        "--rescore",
        "5",
        ...addr,
      ]);
      assert.equal(made.code, 0, made.stderr);
      assert.equal(JSON.parse(made.stdout).collection.quantization, "int8");
      const bad = await runCli([
        "collections",
        "create",
        "--name",
        "q9",
        "--dimension",
        "8",
        "--quantization",
        "int3",
        ...addr,
      ]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /quantization "int3"/);

      const router = c.api(c.routerAddr);
      await assert.rejects(
        router.call("CreateCollection", {
          name: "q9",
          dimension: 8,
          rescore: 2000,
          quantization: "int8",
        }),
        (e: unknown) =>
          isServiceError(e) && e.code === grpc.status.INVALID_ARGUMENT &&
          /rescore 2000/.test(e.message),
      );
      for (const a of c.nodeAddrs) {
        const list = await c.api(a).call("ListCollections", {});
        const q8 = list.collections.find((x: CollectionInfo) => x.name === "q8");
        assert.equal(q8?.quantization, "int8", a);
        assert.equal(q8?.rescore, 5, a);
      }
      const rng = new Rng(3);
      const points = Array.from(
        { length: 300 },
        (_, id) => ({ id, vector: Array.from(rng.vector(8)) }),
      );
      await router.call("PutBatch", { collection: "q8", points });
      const res = await router.call("Search", {
        collection: "q8",
        vector: points[123].vector,
        k: 3,
      });
      assert.equal(res.results[0].id, 123);
      assert.ok(Math.abs(res.results[0].distance) < 1e-6);
    });
  },
});
