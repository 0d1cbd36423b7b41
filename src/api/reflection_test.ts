import assert from "node:assert/strict";
import type * as grpc from "@grpc/grpc-js";
import { addReflection, checkReflected, REFLECTED_SERVICES } from "./reflection.ts";

Deno.test("checkReflected: every list the servers reflect names loaded services", () => {
  for (const list of Object.values(REFLECTED_SERVICES)) checkReflected(list);
  assert.throws(
    () => checkReflected(["vectordb.VectorDB", "vectordb.Nope"]),
    /Reflection cannot list vectordb\.Nope: no such service/,
  );
  // A message type is not a service.
  assert.throws(() => checkReflected(["vectordb.PutRequest"]), /vectordb\.PutRequest/);
});

Deno.test("addReflection registers both reflection versions, one streaming method each", () => {
  const paths: string[] = [];
  const server = {
    addService(def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) {
      for (const [name, method] of Object.entries(def)) {
        assert.equal(typeof impl[name], "function");
        assert.ok(method.requestStream && method.responseStream, `${method.path} streams`);
        paths.push(method.path);
      }
    },
  };
  addReflection(server, REFLECTED_SERVICES.node);
  assert.deepEqual(paths.sort(), [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  ]);
});
