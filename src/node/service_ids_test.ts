/**
 * 64-bit and string point ids through a node's real gRPC server (proto-loader decoding, the
 * PutBatch codec, the wire limits): the VectorDB and Transfer services end to end.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { NodeStore } from "../storage/node_store.ts";
import { nodeHandlers } from "./service.ts";
import { addTransferService } from "./transfer_service.ts";
import { CHANNEL_OPTIONS, createClient, vectorDbService } from "../api/proto.ts";
import { TransferClient, type TransferPoint } from "../api/transfer.ts";
import { caller, rejectsWith } from "./handlers_testing.ts";

const U64_MAX = "18446744073709551615";
const ABOVE_2_53 = "9007199254740993"; // 2^53 + 1: not a JS safe integer
const ABOVE_2_53_B = "9007199254740995";
const LONG = "é".repeat(64); // 128 bytes of UTF-8: the longest string id

type Call = (method: string, request: unknown) => Promise<Record<string, unknown>>;

/** A node's gRPC server (VectorDB and Transfer) on a loopback port, with clients of both. */
async function withServer(
  fn: (api: Call, tr: TransferClient, direct: Call) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "service_ids_test_" });
  const store = await NodeStore.open(dir, { logger: () => {} });
  const state = { closing: false };
  const handlers = nodeHandlers(store, { nodeId: "n", address: "x:1", logger: () => {} }, state);
  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(vectorDbService, handlers);
  addTransferService(server, store, state, { logger: () => {} });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => (e ? reject(e) : resolve(p)),
    )
  );
  const client = createClient(`127.0.0.1:${port}`);
  const tr = new TransferClient(`127.0.0.1:${port}`, 10_000);
  const api: Call = (method, request) =>
    new Promise((resolve, reject) => {
      // deno-lint-ignore no-explicit-any
      (client as any)[method](
        request,
        { deadline: Date.now() + 10_000 },
        (e: unknown, r: Record<string, unknown>) => (e ? reject(e) : resolve(r)),
      );
    });
  try {
    await fn(api, tr, caller(handlers as unknown as Record<string, unknown>));
  } finally {
    client.close();
    tr.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await store.close({ snapshot: false });
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every live point by Scroll pages of `limit`: (id, string_id) pairs and the cursors. */
async function scrollAll(api: Call, limit: number) {
  const seen: [string, string][] = [];
  const cursors: string[] = [];
  let cursor = "";
  do {
    const page = await api("Scroll", { collection: "c", limit, cursor });
    for (const p of page.points as { id: string; string_id: string }[]) {
      seen.push([p.id, p.string_id]);
    }
    cursor = page.next_cursor as string;
    if (cursor !== "") cursors.push(cursor);
  } while (cursor !== "");
  return { seen, cursors };
}

Deno.test("node gRPC: string ids and uint64 ids above 2^53 through every point RPC", async () => {
  await withServer(async (api) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    await api("PutBatch", {
      collection: "c",
      points: [
        { id: 1, vector: [1, 0] },
        { id: U64_MAX, vector: [2, 0], payload: '{"k":"max"}' },
        { id: ABOVE_2_53, vector: [3, 0] },
        { string_id: "doc-7", vector: [4, 0], payload: '{"k":"doc"}' },
        { string_id: "a", vector: [5, 0] },
      ],
    });
    await api("Put", { collection: "c", string_id: LONG, vector: [6, 0], payload: '{"k":"long"}' });
    await api("Put", { collection: "c", id: ABOVE_2_53_B, vector: [7, 0] });

    const get = await api("Get", { collection: "c", string_id: "doc-7" });
    assert.equal(get.found, true);
    assert.deepEqual(get.vector, [4, 0]);
    assert.equal(get.payload, '{"k":"doc"}');
    assert.equal((await api("Get", { collection: "c", id: U64_MAX })).payload, '{"k":"max"}');
    assert.deepEqual((await api("Get", { collection: "c", id: ABOVE_2_53 })).vector, [3, 0]);
    // 2^53 + 1 and 2^53 + 3 are distinct ids although they share a nearest double.
    assert.deepEqual((await api("Get", { collection: "c", id: ABOVE_2_53_B })).vector, [7, 0]);
    // The string "1" is not the integer 1.
    assert.equal((await api("Get", { collection: "c", string_id: "1" })).found, false);

    const search = await api("Search", { collection: "c", vector: [3.8, 0], k: 3 });
    assert.deepEqual(
      (search.results as { id: string; string_id: string }[]).map((r) => [r.id, r.string_id]),
      [["0", "doc-7"], [ABOVE_2_53, ""], ["0", "a"]],
    );
    const rich = await api("Search", {
      collection: "c",
      vector: [2, 0],
      k: 1,
      with_payload: true,
      with_vector: true,
    });
    assert.deepEqual(rich.results, [{
      id: U64_MAX,
      string_id: "",
      distance: 0,
      payload: '{"k":"max"}',
      vector: [2, 0],
    }]);

    // GetBatch answers the integer ids first, then the string ids, each in request order.
    const batch = await api("GetBatch", {
      collection: "c",
      ids: [U64_MAX, "12345", 1],
      string_ids: ["a", "missing", LONG],
    });
    assert.deepEqual(
      (batch.points as { id: string; string_id: string; found: boolean }[]).map((
        p,
      ) => [p.id, p.string_id, p.found]),
      [
        [U64_MAX, "", true],
        ["12345", "", false],
        ["1", "", true],
        ["0", "a", true],
        ["0", "missing", false],
        ["0", LONG, true],
      ],
    );

    // Scroll in compareIds order, pages of 2: the cursors cross from integers to strings.
    const all = await scrollAll(api, 2);
    assert.deepEqual(all.seen, [
      ["1", ""],
      [ABOVE_2_53, ""],
      [ABOVE_2_53_B, ""],
      [U64_MAX, ""],
      ["0", "a"],
      ["0", "doc-7"],
      ["0", LONG],
    ]);
    assert.deepEqual(all.cursors, [
      `v1:${ABOVE_2_53}`,
      `v1:${U64_MAX}`,
      'v1s:"doc-7"',
    ]);
    // Every page size lists the same points.
    assert.deepEqual((await scrollAll(api, 1)).seen, all.seen);
    assert.deepEqual((await scrollAll(api, 3)).seen, all.seen);
    assert.equal((await api("Count", { collection: "c" })).count, "7");
    assert.equal(
      (await api("Count", { collection: "c", filter: '{"must":[{"has_id":[1,"a","zz"]}]}' }))
        .count,
      "2",
    );

    const del = await api("DeleteBatch", {
      collection: "c",
      ids: [ABOVE_2_53, "404"],
      string_ids: ["a"],
    });
    assert.equal(del.deleted, 2);
    // Wire order: ids, then string_ids ("404" names no point).
    assert.deepEqual([...(del.removed as Uint8Array)], [1, 0, 1]);
    const byFilter = await api("DeleteByFilter", {
      collection: "c",
      filter: `{"must":[{"has_id":[1,"doc-7",${JSON.stringify(LONG)}]}]}`,
    });
    assert.equal(byFilter.deleted, "3");
    assert.deepEqual((await scrollAll(api, 10)).seen, [[ABOVE_2_53_B, ""], [U64_MAX, ""]]);
    assert.equal((await api("Count", { collection: "c" })).count, "2");
    const gone = await api("Get", { collection: "c", string_id: "a" });
    assert.deepEqual([gone.found, gone.deleted], [false, true]);
    await api("Delete", { collection: "c", id: U64_MAX });
    assert.equal((await api("Get", { collection: "c", id: U64_MAX })).deleted, true);
  });
});

Deno.test("node gRPC: bad ids → INVALID_ARGUMENT naming the field and value; nothing written", async () => {
  await withServer(async (api, _tr, direct) => {
    await api("CreateCollection", { name: "c", dimension: 1 });
    await api("Put", { collection: "c", id: 5, vector: [5] });
    const bad = grpc.status.INVALID_ARGUMENT;
    await rejectsWith(
      api("Put", { collection: "c", string_id: "x".repeat(129), vector: [1] }),
      bad,
      /^string_id "x+\.\.\." is over 128 bytes of UTF-8 \(129\)$/,
    );
    await rejectsWith(
      api("Put", { collection: "c", id: 7, string_id: "seven", vector: [1] }),
      bad,
      /^id "7" must be 0 when string_id is set \("seven"\)$/,
    );
    // A batch with one bad id writes none of its points; the PutBatch codec refuses an
    // oversized string id before decoding it.
    await rejectsWith(
      api("PutBatch", {
        collection: "c",
        points: [{ id: 8, vector: [8] }, { id: 9, string_id: "nine", vector: [9] }],
      }),
      bad,
      /^points\[1\]\.id "9" must be 0 when string_id is set/,
    );
    await rejectsWith(
      api("PutBatch", {
        collection: "c",
        points: [{ id: 8, vector: [8] }, { string_id: "y".repeat(200), vector: [9] }],
      }),
      bad,
      /points\[1\]\.string_id is 200 bytes; the limit is 128/,
    );
    await rejectsWith(
      api("GetBatch", { collection: "c", ids: [1], string_ids: ["ok", ""] }),
      bad,
      /^string_ids\[1\] "" is empty$/,
    );
    await rejectsWith(
      api("DeleteBatch", { collection: "c", string_ids: ["z".repeat(129)] }),
      bad,
      /^string_ids\[0\] "z+\.\.\." is over 128 bytes/,
    );
    // An id above 2^64 - 1 cannot be encoded as a uint64 varint; a request decoded elsewhere
    // (the HTTP API, a direct handler call) is refused naming it.
    await rejectsWith(
      direct("Put", { collection: "c", id: "18446744073709551616", vector: [1] }),
      bad,
      "id 18446744073709551616 is not an integer between 0 and 2^64 - 1",
    );
    await rejectsWith(
      direct("Get", { collection: "c", id: 2 ** 64 }),
      bad,
      /^id 18446744073709552000 is not an integer between 0 and 2\^64 - 1$/,
    );
    // Nothing was written; the server still serves.
    assert.equal((await api("Count", { collection: "c" })).count, "1");
    assert.equal((await api("Get", { collection: "c", id: 8 })).found, false);
    assert.equal((await api("Get", { collection: "c", id: 5 })).found, true);
    await api("Put", { collection: "c", string_id: "fine", vector: [2] });
    assert.equal((await api("Count", { collection: "c" })).count, "2");
  });
});

Deno.test("node gRPC Transfer: Scan, Entries, CopyBatch and Prune with string and uint64 ids", async () => {
  await withServer(async (api, tr) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    await api("CreateCollection", { name: "d", dimension: 2 });
    await api("PutBatch", {
      collection: "c",
      points: [
        { id: 3, vector: [3, 0] },
        { id: U64_MAX, vector: [1, 1], payload: '{"p":1}' },
        { string_id: "b", vector: [2, 2] },
        { string_id: LONG, vector: [4, 4] },
      ],
      version: "100",
    });
    await api("Delete", { collection: "c", string_id: "a", version: "101" }); // a tombstone
    await api("Delete", { collection: "c", id: ABOVE_2_53, version: "102" });

    // Scan pages of 2 through the TransferClient (ids decoded to PointIds).
    const scanned: TransferPoint[] = [];
    const afters: unknown[] = [];
    let page = await tr.call("Scan", { collection: "c", after_id: 0, from_start: true, limit: 2 });
    scanned.push(...page.points);
    while (!page.done) {
      afters.push(page.next_after);
      const next = typeof page.next_after === "string"
        ? { after_id: 0, after_string_id: page.next_after }
        : { after_id: page.next_after.toString() };
      page = await tr.call("Scan", { collection: "c", ...next, from_start: false, limit: 2 });
      scanned.push(...page.points);
    }
    assert.deepEqual(scanned.map((p) => p.id), [
      3,
      BigInt(ABOVE_2_53),
      BigInt(U64_MAX),
      "a",
      "b",
      LONG,
    ]);
    assert.deepEqual(afters, [BigInt(ABOVE_2_53), "a"]);
    assert.deepEqual(scanned.map((p) => [p.version, p.deleted]), [
      [100, false],
      [102, true],
      [100, false],
      [101, true],
      [100, false],
      [100, false],
    ]);
    assert.equal(scanned[2].payload, '{"p":1}');

    // Entries: integer ids then string ids; versions, deleted and matched over both.
    const e1 = await tr.call("Entries", {
      collection: "c",
      after_id: 3,
      from_start: false,
      limit: 3,
      with_vector: true,
      filter: '{"must":[{"has_id":["b",3]}]}',
    });
    assert.deepEqual(e1.ids, [BigInt(ABOVE_2_53), BigInt(U64_MAX), "a"]);
    assert.deepEqual(e1.versions, [102, 100, 101]);
    assert.deepEqual(e1.deleted, [true, false, true]);
    assert.deepEqual(e1.matched, [false, false, false]);
    assert.deepEqual(e1.vectors, [1, 1]);
    assert.equal(e1.done, false);
    const e2 = await tr.call("Entries", {
      collection: "c",
      after_id: 0,
      after_string_id: "a",
      from_start: false,
      limit: 10,
      with_vector: false,
      filter: '{"must":[{"has_id":["b",3]}]}',
    });
    assert.deepEqual(e2.ids, ["b", LONG]);
    assert.deepEqual(e2.matched, [true, false]);
    assert.equal(e2.done, true);
    // The raw wire form: integer ids in `ids`, string ids in `string_ids`.
    const raw = await new Promise<Record<string, unknown>>((resolve, reject) =>
      tr.raw.Entries(
        { collection: "c", after_id: 3, from_start: false, limit: 4, with_vector: false },
        { deadline: Date.now() + 10_000 },
        (e, r) => (e ? reject(e) : resolve(r as Record<string, unknown>)),
      )
    );
    assert.deepEqual(raw.ids, [ABOVE_2_53, U64_MAX]);
    assert.deepEqual(raw.string_ids, ["a", "b"]);
    assert.deepEqual(raw.versions, ["102", "100", "101", "100"]);

    // CopyBatch the scanned entries into "d"; copying again changes nothing.
    const points = scanned.map((p) => {
      const id = p.id;
      return {
        ...(typeof id === "string" ? { id: 0, string_id: id } : { id: id.toString() }),
        vector: p.vector,
        version: p.version,
        deleted: p.deleted,
        payload: p.payload ?? "",
      };
    });
    assert.deepEqual(await tr.call("CopyBatch", { collection: "d", points }), {
      applied: 6,
      skipped: 0,
    });
    assert.deepEqual(await tr.call("CopyBatch", { collection: "d", points }), {
      applied: 0,
      skipped: 6,
    });
    const copied = await api("GetBatch", {
      collection: "d",
      ids: [U64_MAX, ABOVE_2_53],
      string_ids: [LONG, "a"],
      with_payload: true,
    });
    assert.deepEqual(
      (copied.points as Record<string, unknown>[]).map((p) => [p.found, p.deleted, p.payload]),
      [[true, false, '{"p":1}'], [false, true, ""], [true, false, ""], [false, true, ""]],
    );

    // Prune: versions go with `ids` then `string_ids`; a newer write is kept.
    await api("Put", { collection: "d", string_id: "b", vector: [9, 9], version: "200" });
    const pruned = await tr.call("Prune", {
      collection: "d",
      ids: [U64_MAX, ABOVE_2_53],
      string_ids: ["b", LONG, "a"],
      versions: ["100", "102", "100", "100", "101"],
    });
    assert.deepEqual(pruned, { deleted: 4, skipped: 1 });
    const left = await tr.call("Entries", {
      collection: "d",
      after_id: 0,
      from_start: true,
      limit: 10,
      with_vector: false,
    });
    assert.deepEqual(left.ids, [3, "b"]);
    assert.deepEqual(left.versions, [100, 200]);
  });
});
