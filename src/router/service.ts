/**
 * The router's gRPC handlers for `vectordb.VectorDB`: each decodes and validates its request
 * (api/validate.ts, the same rules and messages as a storage node), then calls the router core.
 * Every handler runs inside one {@link UnaryGuard}: calls past {@link ROUTER_IN_FLIGHT_MAX} are
 * refused with RESOURCE_EXHAUSTED instead of queuing until their deadlines fire, calls during
 * shutdown get UNAVAILABLE, and errors map to statuses in one place ({@link toStatus}).
 *
 * | RPC                   | what the router does                                            |
 * | --------------------- | --------------------------------------------------------------- |
 * | Put, Delete           | to the point's owners in parallel; success per consistency      |
 * | PutBatch              | each owner gets one PutBatch of the points it owns              |
 * | Get                   | asks all holders at once; highest version wins; read repair     |
 * | Search                | nodes covering the ring (k, caller's ef); merged, deduped       |
 * | SearchBatch           | each search as Search, 8 at once; answers in request order      |
 * | Scroll, Count         | every node's entries merged by id; newest version decides       |
 * |                       | (with a filter: and the newest entry's match verdict)           |
 * | GetBatch              | ids grouped by holder, one GetBatch each; newest version per id |
 * | DeleteBatch           | one version; each owner gets its ids; hinted; per consistency   |
 * | DeleteByFilter        | matching ids resolved as Count, then DeleteBatches of 10,000    |
 * | Create/DropFieldIndex | to every node of the ring; all must succeed (idempotent retry)  |
 * | Create/DropCollection | to every node; success per consistency over all nodes           |
 * | ListCollections       | union over the nodes that answered                              |
 * | Stats                 | per node (with hint counts), collections summed                 |
 * | Members               | gossip: the router's gossip view; static: the nodes and itself  |
 * | Drain                 | FAILED_PRECONDITION: a node's own RPC                           |
 * | Backup, ListBackups, Restore, DeleteBackup | on every node of the ring (backups.ts)  |
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { isServiceError } from "../api/client.ts";
import type { MethodName, VectorDBHandlers, VectorDBMethods } from "../api/proto.ts";
import type { UnaryGuard } from "../api/unary.ts";
import {
  filterJson,
  resolveCollection,
  validateCollectionName,
  validateCreateCollectionRequest,
  validatePointRef,
  validatePutBatchRequest,
  validatePutRequest,
  validateSearchRequest,
  ValidationError,
} from "../api/validate.ts";
import type { RouterCore } from "./core.ts";
import {
  validateCountRequest,
  validateCreateFieldIndexRequest,
  validateDeleteBatchRequest,
  validateDeleteByFilterRequest,
  validateDropFieldIndexRequest,
  validateGetBatchRequest,
  validateScrollRequest,
  validateSearchBatchRequest,
} from "../api/points_read.ts";
import { HintQueueFullError } from "./hints/queue.ts";
import { RouterStatusError } from "./node_port.ts";

/**
 * Most client calls the router serves at once. Each holds a few node calls and their buffers;
 * beyond this a client is told RESOURCE_EXHAUSTED at once and may retry with backoff.
 */
export const ROUTER_IN_FLIGHT_MAX = 4096;

/** The status a handler error maps to. */
export function toStatus(error: unknown): { code: grpc.status; details: string } {
  if (error instanceof ValidationError) {
    return { code: grpc.status.INVALID_ARGUMENT, details: error.message };
  }
  if (error instanceof RouterStatusError) return { code: error.code, details: error.message };
  if (error instanceof HintQueueFullError) {
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: error.message };
  }
  if (isServiceError(error)) return { code: error.code, details: error.details || error.message };
  return { code: grpc.status.INTERNAL, details: (error as Error)?.message ?? String(error) };
}

/** What the handlers need besides the core: the parts of Stats and Members the shell owns. */
export interface RouterShell {
  readonly core: RouterCore;
  stats(): Promise<VectorDBMethods["Stats"]["response"]>;
  members(): VectorDBMethods["Members"]["response"];
}

/** The router's gRPC handlers, guarded by `guard`. */
export function routerHandlers(shell: RouterShell, guard: UnaryGuard): VectorDBHandlers {
  const core = shell.core;
  const unary = <K extends MethodName>(
    method: K,
    fn: (request: VectorDBMethods[K]["request"]) => Promise<VectorDBMethods[K]["response"]>,
  ) =>
    guard.wrap<VectorDBMethods[K]["request"], VectorDBMethods[K]["response"]>(method, (r) => fn(r));
  return {
    Backup: unary("Backup", (r) =>
      core.backup(
        resolveCollection(r.collection, "collection"),
        validateCollectionName(r.name, "name"),
      )),
    ListBackups: unary("ListBackups", () => core.listBackups()),
    Restore: unary("Restore", (r) =>
      core.restore(
        validateCollectionName(r.backup, "backup"),
        validateCollectionName(r.collection, "collection"),
      )),
    DeleteBackup: unary(
      "DeleteBackup",
      (r) => core.deleteBackup(validateCollectionName(r.name, "name")),
    ),
    Put: unary("Put", (r) => core.put(validatePutRequest(r))),
    PutBatch: unary("PutBatch", (r) => core.putBatch(validatePutBatchRequest(r))),
    Get: unary("Get", (r) => core.get(validatePointRef(r))),
    Delete: unary("Delete", (r) => core.delete(validatePointRef(r))),
    Search: unary("Search", (r) => {
      const v = validateSearchRequest(r);
      return core.search({ ...v, filter_json: filterJson(r.filter, v.filter) });
    }),
    SearchBatch: unary("SearchBatch", (r) => {
      const list = validateSearchBatchRequest(r);
      const searches = r.searches ?? [];
      return core.searchBatch(list.map((v, i) => ({
        ...v,
        filter_json: filterJson(searches[i]?.filter, v.filter),
      })));
    }),
    Scroll: unary("Scroll", (r) => {
      const v = validateScrollRequest(r);
      return core.scroll(v, {
        filter: filterJson(r.filter, v.filter),
        with_payload: v.with_payload,
      });
    }),
    Count: unary("Count", (r) => {
      const v = validateCountRequest(r);
      return core.count(v.collection, filterJson(r.filter, v.filter));
    }),
    CreateFieldIndex: unary(
      "CreateFieldIndex",
      (r) => core.createFieldIndex(validateCreateFieldIndexRequest(r)),
    ),
    DropFieldIndex: unary(
      "DropFieldIndex",
      (r) => core.dropFieldIndex(validateDropFieldIndexRequest(r)),
    ),
    GetBatch: unary("GetBatch", (r) => core.getBatch(validateGetBatchRequest(r))),
    DeleteBatch: unary("DeleteBatch", (r) => core.deleteBatch(validateDeleteBatchRequest(r))),
    DeleteByFilter: unary(
      "DeleteByFilter",
      (r) => core.deleteByFilter(validateDeleteByFilterRequest(r)),
    ),
    CreateCollection: unary(
      "CreateCollection",
      (r) => core.createCollection(validateCreateCollectionRequest(r)),
    ),
    DropCollection: unary(
      "DropCollection",
      (r) => core.dropCollection(validateCollectionName(r.name, "name")),
    ),
    ListCollections: unary("ListCollections", () => core.listCollections()),
    Stats: unary("Stats", () => shell.stats()),
    Members: unary("Members", () => Promise.resolve(shell.members())),
    Drain: unary("Drain", () =>
      Promise.reject(
        new RouterStatusError(
          grpc.status.FAILED_PRECONDITION,
          "Drain is answered by storage nodes, not the router: call the node's own address " +
            "(client --addr HOST:PORT drain)",
        ),
      )),
  };
}
