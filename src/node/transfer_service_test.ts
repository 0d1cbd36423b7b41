import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import type { NodeStore } from "../storage/node_store.ts";
import { type HandlerCall, rejectsWith, withNode as withNodeHandlers } from "./handlers_testing.ts";
import {
  decodeEntriesResponse,
  decodeScanResponse,
  SCAN_LIMIT_MAX,
  transferService,
} from "../api/transfer.ts";
import { SCAN_PAGE_BYTES_MAX } from "./transfer_service.ts";

/** A node's handlers over a fresh store (see handlers_testing.ts). */
const withNode = (fn: (api: HandlerCall, tr: HandlerCall, store: NodeStore) => Promise<void>) =>
  withNodeHandlers("transfer_test_", fn);

/** Rejects with INVALID_ARGUMENT and a message matching `message`. */
const invalid = (p: Promise<unknown>, message: RegExp | string) =>
  rejectsWith(p, grpc.status.INVALID_ARGUMENT, message);

Deno.test("Scan pages through live points and tombstones in id order, with versions", async () => {
  await withNode(async (api, tr, store) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    const ids = Array.from({ length: 300 }, (_, i) => (i * 7919) % 100_003);
    await api("PutBatch", {
      collection: "c",
      points: ids.map((id) => ({ id, vector: [id, 1] })),
      version: "100",
    });
    // Tombstones: a deleted point and an id never put.
    await api("Delete", { collection: "c", id: ids[5], version: "200" });
    await api("Delete", { collection: "c", id: 100_500, version: "201" });
    const scan = async (limit: number) => {
      const seen: { id: number; version: number; deleted: boolean; vector: number[] }[] = [];
      let page = await tr("Scan", { collection: "c", after_id: 0, from_start: true, limit });
      seen.push(...page.points);
      while (!page.done) {
        page = await tr("Scan", {
          collection: "c",
          after_id: page.next_after_id,
          from_start: false,
          limit,
        });
        seen.push(...page.points);
      }
      assert.equal(page.dimension, 2);
      return seen;
    };
    const seen = await scan(64);
    const all = [...ids, 100_500].sort((a, b) => a - b);
    assert.deepEqual(seen.map((p) => p.id), all);
    for (const p of seen) {
      if (p.id === ids[5] || p.id === 100_500) {
        assert.deepEqual(p, {
          id: p.id,
          string_id: "",
          vector: [],
          version: p.id === ids[5] ? 200 : 201,
          deleted: true,
        });
      } else {
        assert.deepEqual(p, {
          id: p.id,
          string_id: "",
          vector: [p.id, 1],
          version: 100,
          deleted: false,
        });
      }
    }
    // Entries forgotten after the first page are skipped by later pages.
    const first = await tr("Scan", { collection: "c", after_id: 0, from_start: true, limit: 10 });
    const later = all.filter((id) => id > first.next_after_id).slice(0, 3);
    await store.get("c").forget(later, [100, 100, 100]);
    let page = first;
    const rest: number[] = [];
    while (!page.done) {
      page = await tr("Scan", {
        collection: "c",
        after_id: page.next_after_id,
        from_start: false,
        limit: SCAN_LIMIT_MAX,
      });
      rest.push(...page.points.map((p: { id: number }) => p.id));
    }
    assert.ok(later.every((id) => !rest.includes(id)));
    assert.equal(rest.length + first.points.length, all.length - 3);

    await invalid(tr("Scan", { collection: "c", limit: 0 }), "limit 0 must be between 1 and 4096");
    await invalid(tr("Scan", { collection: "c", limit: 4097 }), /limit 4097/);
    await invalid(
      tr("Scan", { collection: "c", after_id: "18446744073709551616", limit: 1 }),
      "after_id 18446744073709551616 is not an integer between 0 and 2^64 - 1",
    );
    await invalid(
      tr("Scan", { collection: "c", after_id: 1.5, limit: 1 }),
      "after_id 1.5 is not an integer between 0 and 2^64 - 1",
    );
    await invalid(
      tr("Scan", { collection: "c", after_id: 1, after_string_id: "a", limit: 1 }),
      'after_id 1 must be 0 when string_id is set ("a")',
    );
    await assert.rejects(tr("Scan", { collection: "nope", limit: 1 }), {
      code: grpc.status.NOT_FOUND,
    });
  });
});

Deno.test("CopyBatch is last-writer-wins: never undoes a newer write or resurrects a delete", async () => {
  await withNode(async (api, tr) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    await api("Put", { collection: "c", id: 1, vector: [1, 1], version: "50" });
    await api("Delete", { collection: "c", id: 2, version: "50" });
    // A client write stamped by the node: far above the copies' versions below.
    const stamped = await api("Put", { collection: "c", id: 3, vector: [3, 3] });
    assert.ok(Number(stamped.version) > 2 ** 40, `stamp ${stamped.version}`);
    const points = [
      { id: 1, vector: [9, 9], version: "40", deleted: false }, // older than the put: skipped
      { id: 2, vector: [9, 9], version: "49", deleted: false }, // older than the delete
      { id: 3, vector: [], version: "60", deleted: true }, // older than the stamped put
      { id: 4, vector: [4, 4], version: 70, deleted: false }, // new id: applied
      { id: 5, vector: [], version: "71", deleted: true }, // tombstone: applied
      { id: 1, vector: [], version: "51", deleted: true }, // newer delete: applied
    ];
    assert.deepEqual(await tr("CopyBatch", { collection: "c", points }), {
      applied: 3,
      skipped: 3,
    });
    const get = (id: number) => api("Get", { collection: "c", id });
    assert.deepEqual(await get(1), { found: false, vector: [], version: "51", deleted: true });
    assert.deepEqual(await get(2), { found: false, vector: [], version: "50", deleted: true });
    assert.deepEqual(await get(3), {
      found: true,
      vector: [3, 3],
      version: stamped.version,
      deleted: false,
    });
    assert.deepEqual(await get(4), { found: true, vector: [4, 4], version: "70", deleted: false });
    assert.deepEqual(await get(5), { found: false, vector: [], version: "71", deleted: true });
    // Copying the same entries again changes nothing.
    assert.deepEqual(await tr("CopyBatch", { collection: "c", points }), {
      applied: 0,
      skipped: 6,
    });
    // A client write after the copy, with an older explicit version, loses but is acknowledged.
    const late = await api("Put", { collection: "c", id: 4, vector: [0, 0], version: "69" });
    assert.equal(late.ok, true);
    assert.equal(late.version, "69");
    assert.deepEqual((await get(4)).vector, [4, 4]);
  });
});

Deno.test("CopyBatch and Prune validation errors name the field and the value", async () => {
  await withNode(async (api, tr) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    const copy = (points: unknown[]) => tr("CopyBatch", { collection: "c", points });
    await invalid(
      copy([{ id: 1, vector: [1, 1], version: "0" }]),
      'points[0].version "0" must be between 1 and 9007199254740991',
    );
    await invalid(
      copy([{ id: 1, vector: [1, 1], version: "5" }, {
        id: 2,
        vector: [1],
        version: "9007199254740993",
      }]),
      'points[1].version "9007199254740993" is above 9007199254740991',
    );
    // A tombstone at the largest version would make every later write to the id lose.
    await assert.rejects(
      copy([{ id: 1, vector: [], version: "9007199254740991", deleted: true }]),
      (e: grpc.ServiceError) =>
        e.code === grpc.status.INVALID_ARGUMENT &&
        /^points\[0\]\.version "9007199254740991" is more than 60 minutes ahead/.test(e.details),
    );
    await invalid(
      copy([{ id: 1, vector: [1, 1, 1], version: "5" }]),
      "points[0].vector dimension 3 does not match the collection dimension 2",
    );
    await invalid(
      copy([{ id: 1, vector: [1, 1], version: "5", deleted: true }]),
      "points[0].vector must be empty for a tombstone (deleted)",
    );
    await invalid(
      copy([{ id: -1, vector: [1, 1], version: "5" }]),
      "points[0].id -1 is not an integer between 0 and 2^64 - 1",
    );
    await invalid(
      copy([{ id: 0, string_id: "s".repeat(129), vector: [1, 1], version: "5" }]),
      /^points\[0\]\.string_id "s+\.\.\." is over 128 bytes of UTF-8 \(129\)$/,
    );
    await invalid(copy([]), "points has 0 entries; it must have 1 to 4096");
    await invalid(
      copy(
        Array.from({ length: 4097 }, (_, id) => ({ id, vector: [], version: 1, deleted: true })),
      ),
      "points has 4097 entries; it must have 1 to 4096",
    );
    await assert.rejects(
      tr("CopyBatch", { collection: "nope", points: [{ id: 1, version: 1, deleted: true }] }),
      { code: grpc.status.NOT_FOUND },
    );
    // Nothing invalid reached the collection.
    assert.deepEqual(await api("Get", { collection: "c", id: 1 }), {
      found: false,
      vector: [],
      version: "0",
      deleted: false,
    });

    const prune = (ids: unknown, versions: unknown) =>
      tr("Prune", { collection: "c", ids, versions });
    await invalid(
      prune([1, 2], ["5"]),
      "versions has 1 entries but ids and string_ids have 2 together",
    );
    await invalid(
      prune([], []),
      "ids and string_ids have 0 entries together; they must have 1 to 4096",
    );
    await invalid(prune([1], ["x"]), 'versions[0] "x" is not an unsigned integer');
    await invalid(
      prune([1], ["9007199254740992"]),
      'versions[0] "9007199254740992" is above 9007199254740991',
    );
    await invalid(
      prune(["18446744073709551616"], [1]),
      "ids[0] 18446744073709551616 is not an integer between 0 and 2^64 - 1",
    );
    await invalid(
      tr("Prune", { collection: "c", ids: [1], string_ids: ["a", ""], versions: [1, 1, 1] }),
      'string_ids[1] "" is empty',
    );
    await invalid(
      tr("Prune", {
        collection: "c",
        ids: new Array(4000).fill(1),
        string_ids: new Array(97).fill("a"),
        versions: new Array(4097).fill(1),
      }),
      "ids and string_ids have 4097 entries together; they must have 1 to 4096",
    );
  });
});

Deno.test("Prune forgets entries held at or below the scanned version, leaving no tombstone", async () => {
  await withNode(async (api, tr) => {
    await api("CreateCollection", { name: "c", dimension: 2 });
    await api("PutBatch", {
      collection: "c",
      points: [1, 2, 3].map((id) => ({ id, vector: [id, id] })),
      version: "10",
    });
    await api("Delete", { collection: "c", id: 4, version: "10" });
    await api("Put", { collection: "c", id: 3, vector: [0, 3], version: "20" }); // after the scan
    const r = await tr("Prune", {
      collection: "c",
      ids: [1, 2, 3, 4, 5],
      versions: ["10", "9", "10", "10", "10"],
    });
    // 1 and the tombstone 4 forgotten; 2 held newer than given; 3 written since; 5 absent.
    assert.deepEqual(r, { deleted: 2, skipped: 3 });
    const get = (id: number) => api("Get", { collection: "c", id });
    assert.deepEqual(await get(1), { found: false, vector: [], version: "0", deleted: false });
    assert.deepEqual(await get(4), { found: false, vector: [], version: "0", deleted: false });
    assert.equal((await get(2)).found, true);
    assert.deepEqual((await get(3)).vector, [0, 3]);
    const scan = await tr("Scan", { collection: "c", from_start: true, limit: 10 });
    assert.deepEqual(scan.points.map((p: { id: number }) => p.id), [2, 3]);
  });
});

Deno.test("Transfer messages carry versions as uint64; Scan replies decode to numbers", () => {
  const scan = transferService.Scan;
  const wire = scan.responseDeserialize(scan.responseSerialize({
    points: [
      { id: 1, vector: [1, 2], version: 9007199254740991, deleted: false, payload: '{"a":1}' },
      { id: 2, vector: [], version: "17", deleted: true },
      { id: 3, vector: [3, 3] },
    ],
    next_after_id: 3,
    done: true,
    dimension: 2,
  }));
  assert.equal(wire.points[0].version, "9007199254740991");
  assert.deepEqual(decodeScanResponse(wire), {
    points: [
      { id: 1, vector: [1, 2], version: 9007199254740991, deleted: false, payload: '{"a":1}' },
      { id: 2, vector: [], version: 17, deleted: true, payload: "" },
      { id: 3, vector: [3, 3], version: 0, deleted: false, payload: "" },
    ],
    next_after: 3,
    done: true,
    dimension: 2,
  });
  const prune = transferService.Prune;
  const req = prune.requestDeserialize(prune.requestSerialize({
    collection: "c",
    ids: [1, 2],
    versions: [5, "9007199254740991"],
  }));
  assert.deepEqual(req.versions, ["5", "9007199254740991"]);
  assert.deepEqual(Object.keys(transferService).sort(), [
    "BucketEntries",
    "CopyBatch",
    "Digest",
    "Entries",
    "Prune",
    "Scan",
    "ShardDrop",
    "ShardImageClose",
    "ShardImageOpen",
    "ShardImageRead",
    "ShardInstallBegin",
    "ShardInstallChunk",
    "ShardInstallCommit",
  ]);
  // Entries: packed parallel lists; versions decode to numbers.
  const entries = transferService.Entries;
  const page = decodeEntriesResponse(entries.responseDeserialize(entries.responseSerialize({
    ids: [1, 2],
    versions: [9007199254740991, "4"],
    deleted: [false, true],
    vectors: [0.5, 1],
    dimension: 2,
    done: true,
  })));
  assert.deepEqual(page, {
    ids: [1, 2],
    versions: [9007199254740991, 4],
    deleted: [false, true],
    vectors: [0.5, 1],
    dimension: 2,
    done: true,
    matched: [],
    payloads: [],
  });
});

Deno.test("Transfer carries payloads: Scan returns them, CopyBatch applies them (LWW), pages count their bytes", async () => {
  await withNode(async (api, tr) => {
    const big = JSON.stringify({ text: "p".repeat(60_000) });
    await api("PutBatch", {
      points: Array.from({ length: 100 }, (_, id) => ({
        id,
        vector: [id, 1],
        payload: id % 10 === 0 ? "" : big,
      })),
      version: "100",
    });
    await api("Put", { id: 5, vector: [5, 5], version: "200", payload: '{"small":true}' });
    await api("Delete", { id: 7, version: "300" });
    // 4 MiB of payload bytes cut the first page long before the entry limit.
    const first = await tr("Scan", { collection: "", from_start: true, limit: SCAN_LIMIT_MAX });
    assert.ok(first.points.length < 100 && !first.done, `${first.points.length} entries`);
    const pageBytes = (points: { payload?: string }[]) =>
      points.reduce((n, p) => n + (p.payload?.length ?? 0) + 8, 0);
    assert.ok(pageBytes(first.points.slice(0, -1)) < SCAN_PAGE_BYTES_MAX, "cut once over");
    assert.ok(pageBytes(first.points) >= SCAN_PAGE_BYTES_MAX, "not cut before");
    const all = [...first.points];
    let page = first;
    while (!page.done) {
      page = await tr("Scan", {
        collection: "",
        after_id: page.next_after_id,
        limit: SCAN_LIMIT_MAX,
      });
      all.push(...page.points);
    }
    assert.equal(all.length, 100);
    const byId = new Map(all.map((p) => [p.id, p]));
    assert.equal(byId.get(5)!.payload, '{"small":true}');
    assert.equal(byId.get(10)!.payload ?? "", "");
    assert.equal(byId.get(11)!.payload, big);
    assert.equal(byId.get(7)!.deleted, true);
    assert.equal(byId.get(7)!.payload ?? "", "");

    // CopyBatch: a newer entry's payload wins, an older one's does not.
    const copied = await tr("CopyBatch", {
      collection: "",
      points: [
        { id: 5, vector: [5, 5], version: "150", payload: '{"stale":true}' },
        { id: 11, vector: [1, 1], version: "400", payload: '{ "fresh" : 1 }' },
        { id: 500, vector: [2, 2], version: "400", payload: '{"new":"point"}' },
      ],
    });
    assert.deepEqual([copied.applied, copied.skipped], [2, 1]);
    assert.equal((await api("Get", { id: 5 })).payload, '{"small":true}');
    assert.equal((await api("Get", { id: 11 })).payload, '{"fresh":1}');
    assert.equal((await api("Get", { id: 500 })).payload, '{"new":"point"}');

    // Bad payloads are refused as a client's would be, naming the entry; nothing applies.
    await invalid(
      tr("CopyBatch", {
        collection: "",
        points: [
          { id: 600, vector: [1, 1], version: "500", payload: '{"ok":1}' },
          { id: 601, vector: [1, 1], version: "500", payload: "[]" },
        ],
      }),
      /^points\[1\]\.payload "\[\]" must be a JSON object, got an array$/,
    );
    await invalid(
      tr("CopyBatch", {
        collection: "",
        points: [{ id: 602, vector: [], version: "500", deleted: true, payload: "{}" }],
      }),
      "points[0].payload must be empty for a tombstone (deleted)",
    );
    assert.equal((await api("Get", { id: 600 })).found, false);
  });
});
