/**
 * The in-process parts of one Search's request path, timed one by one under Node (not a test):
 * what the client, a storage node and the router each spend on protobuf encode and decode, the
 * byte-limit scan and validation, for one 100-dimension query (as `repeated float vector` and as
 * `vector_bytes`) and a 10-result answer.
 *
 * ```sh
 * node --import ./node_modules/tsx/dist/esm/index.mjs scripts/bench/request_path_parts.ts \
 *   [--dim 100] [--k 10] [--iters 20000]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import type { Buffer } from "node:buffer";
import process from "node:process";
import { packVector, VectorDBClient, vectorDbService } from "../../src/api/proto.ts";
import { validateSearchRequest } from "../../src/api/validate.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    dim: { type: "string", default: "100" },
    k: { type: "string", default: "10" },
    iters: { type: "string", default: "20000" },
  },
});
const dim = Number(values.dim);
const k = Number(values.k);
const iters = Number(values.iters);
const svc = VectorDBClient.service.Search;
const server = vectorDbService.Search;
const vector = Array.from({ length: dim }, (_, i) => Math.fround(Math.sin(i) * 0.3));
const request = { vector, k, ef: 64, collection: "glove" };
const packedRequest = {
  vector: [],
  vector_bytes: packVector(Float32Array.from(vector)),
  k,
  ef: 64,
  collection: "glove",
};
const results = Array.from({ length: k }, (_, i) => ({ id: 1000 + i, distance: 0.1 * i }));
const response = { results, partial: false, shards_answered: 1, shards_total: 1 };
const routerResponse = { ...response, nodes_answered: ["127.0.0.1:50051"] };

/** Median microseconds of `fn` over `iters` runs (after as many warm-up runs). */
function time(name: string, fn: () => unknown): void {
  for (let i = 0; i < iters; i++) fn();
  const us: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    fn();
    us.push((performance.now() - t0) * 1000);
  }
  us.sort((a, b) => a - b);
  console.log(
    `${name.padEnd(44)} median ${us[us.length >> 1].toFixed(2)} us  p99 ${
      us[Math.floor(us.length * 0.99)].toFixed(2)
    } us`,
  );
}

const reqBytes = svc.requestSerialize(request) as Buffer;
const resBytes = svc.responseSerialize(response) as Buffer;
const decoded = server.requestDeserialize(reqBytes) as typeof request;
const packedBytes = svc.requestSerialize(packedRequest) as Buffer;
const packedDecoded = server.requestDeserialize(packedBytes) as typeof request;
console.log(`request ${reqBytes.length} bytes, response ${resBytes.length} bytes`);
time("client: encode SearchRequest", () => svc.requestSerialize(request));
time("server: scan + decode SearchRequest", () => server.requestDeserialize(reqBytes));
time("server: validateSearchRequest", () => validateSearchRequest(decoded));
time("client: encode SearchRequest, vector_bytes", () => svc.requestSerialize(packedRequest));
time("server: scan + decode, vector_bytes", () => server.requestDeserialize(packedBytes));
time("server: validateSearchRequest, vector_bytes", () => validateSearchRequest(packedDecoded));
time("server: encode SearchResponse", () => server.responseSerialize(response));
time("router: encode SearchResponse (+nodes)", () => server.responseSerialize(routerResponse));
time("client: decode SearchResponse", () => svc.responseDeserialize(resBytes));
