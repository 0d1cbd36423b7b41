/**
 * A churn client child: opens its own channel to a storage node and keeps `--calls` unary calls
 * (Put/Search/Get) in flight until it is killed. Prints `INFLIGHT` once the first responses came
 * back, so the parent can SIGKILL it while calls are surely in flight.
 *
 * `deno run -A harness/workloads/churn_client.ts --address 127.0.0.1:50051 --collection churn
 *  --dim 16 --id-base 1000000 [--calls 64] [--seed 1]`
 *
 * Exits 2 (with a message) on a failed call other than the ones its own death causes, so a
 * parent that sees anything but SIGKILL knows something went wrong.
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { createClient, type UnaryCallback } from "../../src/api/proto.ts";
import { churnRandom, churnVector } from "./churn_vectors.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    address: { type: "string" },
    collection: { type: "string", default: "churn" },
    dim: { type: "string", default: "16" },
    "id-base": { type: "string", default: "0" },
    calls: { type: "string", default: "64" },
    seed: { type: "string", default: "1" },
  },
  strict: true,
});
if (values.address === undefined) throw new RangeError("--address is required");
const dim = Number(values.dim);
const idBase = Number(values["id-base"]);
const callsInFlight = Number(values.calls);
const collection = values.collection!;
const random = churnRandom(Number(values.seed));

const client = createClient(values.address, { "grpc.use_local_subchannel_pool": 1 });
let next = 0;
let done = 0;
let announced = false;

function fail(what: string, e: { code?: number; details?: string; message?: string }): never {
  console.error(`churn client: ${what} failed: ${e.code} ${e.details ?? e.message}`);
  process.exit(2);
}

function issue(): void {
  const n = next++;
  const kind = n % 4;
  const after = () => {
    done++;
    if (!announced && done >= 8) {
      announced = true;
      console.log("INFLIGHT");
    }
    issue();
  };
  const deadline = Date.now() + 30_000;
  if (kind === 0 || kind === 1) {
    const id = idBase + n;
    const cb: UnaryCallback<unknown> = (e) => (e ? fail("Put", e) : after());
    client.Put({ id, vector: churnVector(id, dim), collection }, { deadline }, cb);
  } else if (kind === 2) {
    const cb: UnaryCallback<unknown> = (e) => (e ? fail("Search", e) : after());
    client.Search(
      { vector: churnVector(Math.floor(random() * 1e9), dim), k: 10, collection },
      { deadline },
      cb,
    );
  } else {
    const id = idBase + Math.floor(random() * Math.max(1, n));
    const cb: UnaryCallback<unknown> = (e) => (e ? fail("Get", e) : after());
    client.Get({ id, collection }, { deadline }, cb);
  }
}

for (let i = 0; i < callsInFlight; i++) issue();
