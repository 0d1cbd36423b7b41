import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { protoPath } from "grpc-health-check";
import { HEALTH_PROTO_PATH, HEALTH_SERVICE, HEALTH_WATCHES_MAX, ServerHealth } from "./health.ts";

type Handlers = Record<string, (...args: unknown[]) => void>;

/** ServerHealth on a fake server: the handlers it registers, called directly. */
function mounted(services: string[]): { health: ServerHealth; h: Handlers; names: string[] } {
  const health = new ServerHealth(services);
  let h: Handlers = {};
  const names: string[] = [];
  health.addToServer({
    addService: (definition: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) => {
      names.push(...Object.values(definition).map((m) => m.path));
      h = impl as unknown as Handlers;
    },
  });
  return { health, h, names };
}

function check(h: Handlers, service: string): Promise<string> {
  return new Promise((resolve) => {
    h.check({ request: { service } }, (err: { code: number } | null, res?: { status: string }) => {
      resolve(err !== null ? `error ${grpc.status[err.code]}` : res!.status);
    });
  });
}

/** A fake Watch call: what it was sent, whether it ended, its error status. */
class FakeWatch extends EventEmitter {
  sent: string[] = [];
  ended = false;
  error: { code?: number; details?: string } | null = null;
  constructor(readonly request: { service: string }) {
    super();
    this.on("error", (e) => (this.error = e));
  }
  write(m: { status: string }): boolean {
    assert.ok(!this.ended, "write after end");
    this.sent.push(m.status);
    return true;
  }
  end(): void {
    this.ended = true;
    this.emit("finish");
  }
}

Deno.test("ServerHealth: registers grpc.health.v1.Health with Check, Watch and List", () => {
  const { names } = mounted(["vectordb.VectorDB"]);
  assert.deepEqual(names.sort(), [
    `/${HEALTH_SERVICE}/Check`,
    `/${HEALTH_SERVICE}/List`,
    `/${HEALTH_SERVICE}/Watch`,
  ]);
});

Deno.test("ServerHealth: NOT_SERVING while starting, SERVING when ready, NOT_SERVING on close", async () => {
  const { health, h } = mounted(["vectordb.VectorDB", "vectordb.internal.Gossip"]);
  assert.deepEqual(health.services, ["", "vectordb.VectorDB", "vectordb.internal.Gossip"]);
  assert.equal(health.phase, "starting");
  for (const s of health.services) assert.equal(await check(h, s), "NOT_SERVING", s);
  assert.equal(await check(h, "vectordb.Other"), "error NOT_FOUND");
  health.ready();
  assert.equal(health.phase, "serving");
  for (const s of health.services) assert.equal(await check(h, s), "SERVING", s);
  health.close();
  assert.equal(health.phase, "stopped");
  for (const s of health.services) assert.equal(await check(h, s), "NOT_SERVING", s);
  // Only forward: a late ready() does not bring SERVING back.
  health.ready();
  assert.equal(await check(h, ""), "NOT_SERVING");
});

Deno.test("ServerHealth: a drain takes the named services and the server out, not the others", async () => {
  const { health, h } = mounted(["vectordb.VectorDB", "vectordb.internal.Transfer"]);
  health.ready();
  health.notServing(["vectordb.VectorDB"]);
  assert.equal(health.phase, "draining");
  assert.equal(await check(h, ""), "NOT_SERVING");
  assert.equal(await check(h, "vectordb.VectorDB"), "NOT_SERVING");
  assert.equal(await check(h, "vectordb.internal.Transfer"), "SERVING");
  health.ready();
  assert.equal(await check(h, "vectordb.VectorDB"), "NOT_SERVING");
  health.close();
  assert.equal(await check(h, "vectordb.internal.Transfer"), "NOT_SERVING");
  // A drain after the stop changes nothing.
  health.notServing(["vectordb.VectorDB"]);
  assert.equal(health.phase, "stopped");
});

Deno.test("ServerHealth: Watch streams see every change, then NOT_SERVING and their end on close", () => {
  const { health, h } = mounted(["vectordb.VectorDB"]);
  const all = new FakeWatch({ service: "" });
  const db = new FakeWatch({ service: "vectordb.VectorDB" });
  const unknown = new FakeWatch({ service: "nope" });
  h.watch(all);
  h.watch(db);
  h.watch(unknown);
  assert.equal(health.watches, 3);
  health.ready();
  health.ready(); // no change, nothing sent
  health.notServing(["vectordb.VectorDB"]);
  assert.deepEqual(all.sent, ["NOT_SERVING", "SERVING", "NOT_SERVING"]);
  assert.deepEqual(db.sent, ["NOT_SERVING", "SERVING", "NOT_SERVING"]);
  assert.deepEqual(unknown.sent, ["SERVICE_UNKNOWN"]);
  assert.ok(!all.ended);
  // A cancelled watcher is forgotten.
  unknown.emit("cancelled");
  assert.equal(health.watches, 2);
  health.close();
  assert.ok(all.ended && db.ended, "close ends every Watch stream");
  assert.equal(health.watches, 0);
  assert.deepEqual(all.sent, ["NOT_SERVING", "SERVING", "NOT_SERVING"]);
  // A Watch after close gets the status and ends at once.
  const late = new FakeWatch({ service: "" });
  h.watch(late);
  assert.deepEqual(late.sent, ["NOT_SERVING"]);
  assert.ok(late.ended);
  assert.equal(health.watches, 0);
});

Deno.test("ServerHealth: Watch streams beyond the cap are refused with RESOURCE_EXHAUSTED", () => {
  const { health, h } = mounted([]);
  const calls = Array.from({ length: HEALTH_WATCHES_MAX }, () => new FakeWatch({ service: "" }));
  for (const c of calls) h.watch(c);
  assert.equal(health.watches, HEALTH_WATCHES_MAX);
  const extra = new FakeWatch({ service: "" });
  h.watch(extra);
  assert.equal(extra.error?.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.deepEqual(extra.sent, []);
  calls[0].end();
  assert.equal(health.watches, HEALTH_WATCHES_MAX - 1);
  const again = new FakeWatch({ service: "" });
  h.watch(again);
  assert.equal(again.error, null);
  assert.deepEqual(again.sent, ["NOT_SERVING"]);
  health.close();
});

Deno.test("ServerHealth: List names every status; the proto is grpc-health-check's", async () => {
  const { health, h } = mounted(["vectordb.VectorDB"]);
  const list = () =>
    new Promise<unknown>((resolve, reject) => {
      h.list({ request: {} }, (err: unknown, res?: unknown) => (err ? reject(err) : resolve(res)));
    });
  assert.deepEqual(await list(), {
    statuses: { "": { status: "NOT_SERVING" }, "vectordb.VectorDB": { status: "NOT_SERVING" } },
  });
  health.ready();
  assert.deepEqual(await list(), {
    statuses: { "": { status: "SERVING" }, "vectordb.VectorDB": { status: "SERVING" } },
  });
  assert.equal(HEALTH_PROTO_PATH, protoPath);
  health.close();
});
