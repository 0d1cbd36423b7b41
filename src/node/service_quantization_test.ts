import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type HandlerCall, rejectsWith, withNode as withNodeHandlers } from "./handlers_testing.ts";

const withNode = (fn: (api: HandlerCall, tr: HandlerCall) => Promise<void>) =>
  withNodeHandlers("service_quantization_test_", fn);

Deno.test("node: CreateCollection with int8 quantization; bad values are INVALID_ARGUMENT", async () => {
  await withNode(async (api) => {
    const BAD = grpc.status.INVALID_ARGUMENT;
    await rejectsWith(
      api("CreateCollection", { name: "q", dimension: 4, quantization: "int2" }),
      BAD,
      /quantization "int2"/,
    );
    await rejectsWith(
      api("CreateCollection", { name: "q", dimension: 4, quantization: "int8", rescore: 5000 }),
      BAD,
      /rescore 5000/,
    );
    // deno-lint-ignore no-explicit-any
    const created: any = await api("CreateCollection", {
      name: "q",
      dimension: 4,
      quantization: "int8",
    });
    assert.equal(created.created, true);
    assert.equal(created.collection.quantization, "int8");
    assert.equal(created.collection.rescore, 4);
    // The same parameters again: not created, no error; different quantization: exists.
    // deno-lint-ignore no-explicit-any
    const again: any = await api("CreateCollection", {
      name: "q",
      dimension: 4,
      quantization: "int8",
    });
    assert.equal(again.created, false);
    await rejectsWith(
      api("CreateCollection", { name: "q", dimension: 4 }),
      grpc.status.ALREADY_EXISTS,
      /q/,
    );
    await api("PutBatch", {
      collection: "q",
      points: Array.from({ length: 20 }, (_, id) => ({ id, vector: [id, 1, 0, 0] })),
    });
    // deno-lint-ignore no-explicit-any
    const found: any = await api("Search", { collection: "q", vector: [3, 1, 0, 0], k: 1 });
    assert.equal(found.results[0].id, 3);
    // deno-lint-ignore no-explicit-any
    const list: any = await api("ListCollections", {});
    assert.deepEqual(
      // deno-lint-ignore no-explicit-any
      list.collections.map((c: any) => [c.name, c.quantization, c.rescore]),
      [["q", "int8", 4]],
    );
  });
});
