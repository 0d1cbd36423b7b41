/**
 * Test support for the node's gRPC handlers without a server: a node's VectorDB and Transfer
 * handlers over a fresh store in a temporary directory, called as promises, and a check of a
 * rejection's status. Shared by the node's handler tests (service, points reads, filters,
 * transfers), which each had a copy.
 *
 * @example
 * ```ts
 * await withNode("example_", async (api) => {
 *   await api("CreateCollection", { name: "c", dimension: 2 });
 *   await rejectsWith(api("Get", { id: 1, collection: "nope" }), 5, /nope/);
 * });
 * ```
 * @module
 */
import assert from "node:assert/strict";
import type * as grpc from "@grpc/grpc-js";
import type { VectorDBHandlers } from "../api/proto.ts";
import { NodeStore } from "../storage/node_store.ts";
import { nodeHandlers } from "./service.ts";
import { transferHandlers } from "./transfer_service.ts";

type Handler = (call: { request: unknown }, cb: (e: unknown, r?: unknown) => void) => void;

/** Calls a handler by method name; answers are loosely typed (tests check them field by field). */
// deno-lint-ignore no-explicit-any
export type HandlerCall = (method: string, request: unknown) => Promise<any>;

/** The handlers of `handlers` as promise-returning calls. */
export function caller(handlers: Record<string, unknown>): HandlerCall {
  return (method, request) =>
    new Promise((resolve, reject) => {
      (handlers[method] as Handler)({ request }, (e, r) => (e ? reject(e) : resolve(r)));
    });
}

/**
 * Runs `fn` with a node's VectorDB (`api`) and Transfer (`tr`) handlers over a fresh store in a
 * temporary directory named with `prefix`; closes the store and removes the directory after.
 * `handlers` are the VectorDB handlers themselves, for a test that serves them (gRPC, HTTP).
 */
export async function withNode(
  prefix: string,
  fn: (
    api: HandlerCall,
    tr: HandlerCall,
    store: NodeStore,
    handlers: VectorDBHandlers,
  ) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  const store = await NodeStore.open(dir, { logger: () => {} });
  try {
    const state = { closing: false };
    const handlers = nodeHandlers(store, { nodeId: "n", address: "x:1", logger: () => {} }, state);
    const api = caller(handlers as unknown as Record<string, unknown>);
    const tr = caller(transferHandlers(store, state, { logger: () => {} }));
    await fn(api, tr, store, handlers);
  } finally {
    await store.close({ snapshot: false });
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts that `p` rejects with status `code` and a message matching `message`. */
export async function rejectsWith(
  p: Promise<unknown>,
  code: grpc.status,
  message: RegExp | string,
): Promise<void> {
  await assert.rejects(p, (e: { code: number; details: string }) => {
    assert.equal(e.code, code, e.details);
    if (typeof message === "string") assert.equal(e.details, message);
    else assert.match(e.details, message);
    return true;
  });
}
