import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { ApiClient, ApiClientError, describeGrpcError, isServiceError } from "./client.ts";

/** A loopback port that nothing listens on (bound, then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), {
    code,
    details,
    metadata: new grpc.Metadata(),
  });
}

Deno.test("describeGrpcError gives one line with the status name", () => {
  assert.equal(
    describeGrpcError(
      serviceError(grpc.status.INVALID_ARGUMENT, "k 0 must be between 1 and 10000"),
    ),
    "INVALID_ARGUMENT: k 0 must be between 1 and 10000",
  );
  assert.equal(
    describeGrpcError(
      serviceError(
        grpc.status.UNAVAILABLE,
        "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. " +
          "Resolution note: ",
      ),
    ),
    "UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1.",
  );
  assert.equal(describeGrpcError(new Error("two\nlines")), "two lines");
  assert.equal(describeGrpcError("plain"), "plain");
  assert.ok(isServiceError(serviceError(grpc.status.NOT_FOUND, "x")));
  assert.ok(!isServiceError(new Error("x")));
});

Deno.test("a call to a closed port fails with UNAVAILABLE", async () => {
  const api = new ApiClient(`127.0.0.1:${closedPort()}`, { timeout_ms: 3000 });
  try {
    await assert.rejects(api.call("Stats", {}), (e: unknown) => {
      assert.ok(isServiceError(e));
      assert.ok(
        e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED,
        `unexpected status ${grpc.status[e.code]}`,
      );
      return true;
    });
  } finally {
    api.close();
  }
});

Deno.test("timeouts must be positive", () => {
  assert.throws(() => new ApiClient("127.0.0.1:1", { timeout_ms: 0 }), ApiClientError);
  assert.throws(
    () => new ApiClient("127.0.0.1:1", { timeout_ms: -5 }),
    /Timeout -5 ms must be a positive number of milliseconds/,
  );
});
