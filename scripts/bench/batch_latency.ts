/**
 * Does a large PutBatch starve other requests? (Not a test.) Starts one storage node, then runs
 * a loop of sequential Gets (each awaited, `--get-gap-ms` apart) while `--batches` PutBatches of
 * `--points` (10,000) points of `--dim` (100) random vectors go to the node one after another
 * (encoded beforehand, sent as raw bytes, so that this process's own encoding is not measured).
 * Prints the Get latencies (max, p99, median) during the batches and on an idle node, each
 * batch's time, and the load average, which matters: two shared cores make every number noisy.
 *
 * ```sh
 * deno run -A scripts/bench/batch_latency.ts [--points 10000] [--dim 100] [--batches 5]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import {
  CHANNEL_OPTIONS,
  createClient,
  VectorDBClient,
  vectorDbService,
} from "../../src/api/proto.ts";
import { NodeProcess } from "../../harness/node.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    points: { type: "string", default: "10000" },
    dim: { type: "string", default: "100" },
    batches: { type: "string", default: "5" },
    "get-gap-ms": { type: "string", default: "1" },
  },
});
const POINTS = Number(values.points);
const DIM = Number(values.dim);
const BATCHES = Number(values.batches);
const GAP_MS = Number(values["get-gap-ms"]);

function call<Res>(client: VectorDBClient, method: "Put" | "Get", req: unknown) {
  return new Promise<Res>((resolve, reject) => {
    (client[method] as unknown as (
      r: unknown,
      o: Partial<grpc.CallOptions>,
      cb: (e: grpc.ServiceError | null, r?: Res) => void,
    ) => void)(req, { deadline: Date.now() + 120_000 }, (e, r) => (e ? reject(e) : resolve(r!)));
  });
}

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return `n=${s.length} max ${at(1).toFixed(1)} ms, p99 ${at(0.99).toFixed(1)} ms, ` +
    `median ${at(0.5).toFixed(2)} ms`;
}

const la = () => loadavg().map((x) => x.toFixed(2)).join(" ");
console.log(`load average before: ${la()}`);
const node = await NodeProcess.start({});
const getter = createClient(node.address);
try {
  await call(getter, "Put", { id: 0, vector: new Array(DIM).fill(0.5) });
  // Encoded before the clock starts and sent as raw bytes: protobufjs takes ~0.5 s to encode a
  // 4 MB batch, which would hold this process's own Get loop and be measured as node latency.
  const batches = Array.from(
    { length: BATCHES },
    (_, b) =>
      VectorDBClient.service.PutBatch.requestSerialize({
        points: Array.from({ length: POINTS }, (_, i) => ({
          id: 1 + b * POINTS + i,
          vector: Array.from({ length: DIM }, () => Math.random()),
        })),
      }),
  );
  const raw = new grpc.Client(node.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  const sendRaw = (bytes: Buffer) =>
    new Promise<void>((resolve, reject) =>
      raw.makeUnaryRequest(
        vectorDbService.PutBatch.path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        { deadline: Date.now() + 120_000 },
        (e) => (e ? reject(e) : resolve()),
      )
    );

  let phase = "idle" as "idle" | "batch" | "stop";
  const lat = { idle: [] as number[], batch: [] as number[] };
  const loop = (async () => {
    while (phase !== "stop") {
      const t = performance.now();
      await call(getter, "Get", { id: 0 });
      const ms = performance.now() - t;
      if (phase === "idle" || phase === "batch") lat[phase].push(ms);
      await new Promise((r) => setTimeout(r, GAP_MS));
    }
  })();
  await new Promise((r) => setTimeout(r, 2000));
  phase = "batch";
  const times: number[] = [];
  for (const b of batches) {
    const t = performance.now();
    await sendRaw(b);
    times.push(performance.now() - t);
  }
  phase = "stop";
  await loop;
  raw.close();
  console.log(`node: ${node.address}; ${BATCHES} PutBatches of ${POINTS} points x ${DIM} dims`);
  console.log(`PutBatch times: ${times.map((t) => t.toFixed(0)).join(", ")} ms`);
  console.log(`Get latency, idle:           ${summary(lat.idle)}`);
  console.log(`Get latency, during batches: ${summary(lat.batch)}`);
  console.log(`load average after: ${la()}`);
} finally {
  getter.close();
  await node.close();
}
