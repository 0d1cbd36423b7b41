import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { NodeStore } from "../storage/node_store.ts";
import { DiskFullError, errnoError } from "../io/disk_full.ts";
import { setIoFaultHook } from "../io/fs_util.ts";
import { CapacityError } from "../index/vector_store.ts";
import { PayloadCapacityError } from "../storage/payload_store.ts";
import { nodeHandlers, toStatus } from "./service.ts";

type Handler = (call: { request: unknown }, cb: (e: unknown, r?: unknown) => void) => void;

/** The node's VectorDB handlers over a fresh store in a temporary directory. */
async function withNode(
  // Replies are checked field by field below; their exact types do not matter here.
  // deno-lint-ignore no-explicit-any
  fn: (api: (method: string, request: unknown) => Promise<any>) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "service_test_" });
  const store = await NodeStore.open(dir, { logger: () => {} });
  try {
    const handlers = nodeHandlers(store, {
      nodeId: "n",
      address: "x:1",
      logger: () => {},
    }) as unknown as Record<string, Handler>;
    await fn((method, request) =>
      new Promise((resolve, reject) => {
        handlers[method]({ request }, (e, r) => (e ? reject(e) : resolve(r)));
      })
    );
  } finally {
    await store.close({ snapshot: false });
    await Deno.remove(dir, { recursive: true });
  }
}

/** Rejects with INVALID_ARGUMENT and exactly `message`. */
async function invalid(p: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(p, (e: { code: number; details: string }) => {
    assert.equal(e.code, grpc.status.INVALID_ARGUMENT, e.details);
    assert.equal(e.details, message);
    return true;
  });
}

Deno.test("node writes take and return versions; Delete of an absent id leaves a tombstone", async () => {
  await withNode(async (api) => {
    const put = await api("Put", { id: 1, vector: [1, 2], version: "0" });
    const stamped = Number(put.version);
    assert.ok(stamped >= 1_600_000_000_000 * 1024, `stamped ${put.version}`);
    const next = await api("Put", { id: 2, vector: [1, 2] });
    assert.ok(Number(next.version) > stamped, "stamps increase");
    // A version far ahead of the node's clock is refused: it would leave the clock nothing to
    // stamp (2^53 - 1), and every later write to the id would lose.
    await assert.rejects(
      api("PutBatch", {
        points: [{ id: 3, vector: [0, 0] }, { id: 3, vector: [3, 3] }],
        version: "9007199254740991",
      }),
      (e: grpc.ServiceError) =>
        e.code === grpc.status.INVALID_ARGUMENT &&
        /^version "9007199254740991" is more than 60 minutes ahead of this server's clock/
          .test(e.details),
    );
    const batch = await api("PutBatch", {
      points: [{ id: 3, vector: [0, 0] }, { id: 3, vector: [3, 3] }],
      version: String(Number(next.version) + 10),
    });
    assert.deepEqual([batch.count, batch.version], [2, String(Number(next.version) + 10)]);
    assert.deepEqual((await api("Get", { id: 3 })).vector, [3, 3], "the later duplicate wins");
    // Stamping goes on after the refused batch, above the accepted one.
    const after = await api("Put", { id: 4, vector: [1, 1] });
    assert.ok(Number(after.version) > Number(batch.version));
    const del = await api("Delete", { id: 77, version: "5" });
    assert.deepEqual([del.deleted, del.version], [false, "5"]);
    assert.ok(Number(del.seq) > 0, "the tombstone is logged");
    assert.deepEqual(await api("Get", { id: 77 }), {
      found: false,
      vector: [],
      version: "5",
      deleted: true,
    });
    assert.equal((await api("Put", { id: 77, vector: [7, 7], version: "4" })).ok, true);
    assert.equal((await api("Get", { id: 77 })).found, false, "an older put loses to the delete");
    await invalid(
      api("Put", { id: 1, vector: [1, 2], version: "9007199254740993" }),
      'version "9007199254740993" is above 9007199254740991',
    );
    await invalid(
      api("Delete", { id: 1, version: "-3" }),
      'version "-3" is not an unsigned integer',
    );
    // The default collection does not exist yet on a fresh node: nothing to delete.
  });
  await withNode(async (api) => {
    assert.deepEqual(await api("Delete", { id: 1 }), { deleted: false, seq: "0", version: "0" });
    assert.deepEqual(await api("Get", { id: 1 }), {
      found: false,
      vector: [],
      version: "0",
      deleted: false,
    });
  });
});

Deno.test("node service: a full disk is RESOURCE_EXHAUSTED naming the data directory; reads go on; writes resume", async () => {
  const dir = await Deno.makeTempDir({ prefix: "service_disk_full_test_" });
  const store = await NodeStore.open(dir, { logger: () => {} });
  const logged: string[] = [];
  try {
    const handlers = nodeHandlers(store, {
      nodeId: "n",
      address: "x:1",
      logger: (m) => logged.push(m),
    }) as unknown as Record<string, Handler>;
    // deno-lint-ignore no-explicit-any
    const api = (method: string, request: unknown): Promise<any> =>
      new Promise((resolve, reject) => {
        handlers[method]({ request }, (e, r) => (e ? reject(e) : resolve(r)));
      });
    await api("Put", { id: 1, vector: [1, 2] });
    let full = true;
    setIoFaultHook((op, path) =>
      full && op === "write" && path.startsWith(dir)
        ? { error: errnoError("ENOSPC", "write", path), after_bytes: 5 }
        : null
    );
    for (
      const [method, request] of [
        ["Put", { id: 2, vector: [3, 4] }],
        ["PutBatch", { points: [{ id: 3, vector: [5, 6] }] }],
        ["Delete", { id: 1 }],
        ["CreateCollection", { name: "other", dimension: 3 }],
      ] as const
    ) {
      await assert.rejects(api(method, request), (e: { code: number; details: string }) => {
        assert.equal(e.code, grpc.status.RESOURCE_EXHAUSTED, `${method}: ${e.details}`);
        assert.ok(
          e.details.startsWith(`No space left on device in data directory ${dir}: `),
          e.details,
        );
        return true;
      });
    }
    assert.deepEqual(logged, [], "a full disk is not an internal error: nothing logged");
    const got = await api("Get", { id: 1 });
    assert.equal(got.found, true);
    assert.equal((await api("Get", { id: 2 })).found, false);
    const found = await api("Search", { vector: [1, 2], k: 3 });
    assert.deepEqual(found.results.map((r: { id: number }) => r.id), [1]);
    full = false;
    await api("Put", { id: 4, vector: [7, 8] });
    assert.equal((await api("Get", { id: 4 })).found, true);
  } finally {
    setIoFaultHook(null);
    await store.close({ snapshot: false });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("node toStatus: DiskFullError and a bare ENOSPC/EDQUOT are RESOURCE_EXHAUSTED", () => {
  const wrapped = new DiskFullError("/d", "/d/x", errnoError("ENOSPC", "write", "/d/x"));
  assert.deepEqual(toStatus(wrapped), {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: wrapped.message,
  });
  const bare = toStatus(errnoError("EDQUOT", "open", "/d/y"), "/d");
  assert.equal(bare.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(
    bare.details,
    "Disk quota exceeded in data directory /d: request refused; writes resume once space is " +
      "freed (EDQUOT at /d/y)",
  );
  assert.equal(toStatus(errnoError("EIO", "write", "/d/z")).code, grpc.status.INTERNAL);
});

Deno.test("node toStatus: an index or payload limit is RESOURCE_EXHAUSTED naming the limit", () => {
  const slots = new CapacityError('Collection "c": 100 points would need 1150 index slots');
  assert.deepEqual(toStatus(slots), {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: slots.message,
  });
  const payload = toStatus(new PayloadCapacityError(2 ** 32 + 5));
  assert.equal(payload.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(payload.details, /limit per collection is 4294967295/);
});

Deno.test("node DeleteBackup: deletes one backup, NOT_FOUND after, INVALID_ARGUMENT for a bad name", async () => {
  await withNode(async (api) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    await api("PutBatch", { collection: "c", points: [{ id: 1, vector: [1, 2] }] });
    await api("Backup", { collection: "c", name: "b1" });
    await api("Backup", { collection: "c", name: "b2" });
    assert.deepEqual(await api("DeleteBackup", { name: "b1" }), { deleted: true });
    const list = await api("ListBackups", {});
    assert.deepEqual(list.backups.map((b: { name: string }) => b.name), ["b2"]);
    await assert.rejects(
      api("DeleteBackup", { name: "b1" }),
      (e: grpc.ServiceError) =>
        e.code === grpc.status.NOT_FOUND && e.details === 'Backup "b1" does not exist',
    );
    await assert.rejects(
      api("Restore", { backup: "b1", collection: "r" }),
      (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND,
    );
    await invalid(
      api("DeleteBackup", { name: "../b2" }),
      'name "../b2" must be 1 to 64 characters from A-Z, a-z, 0-9, "_" and "-"',
    );
    const r = await api("Restore", { backup: "b2", collection: "r" });
    assert.equal(r.points, "1");
  });
});
