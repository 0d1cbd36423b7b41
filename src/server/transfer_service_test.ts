import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { NodeStore } from "../storage/node_store.ts";
import { nodeHandlers } from "./service.ts";
import {
  CopyTokenError,
  CopyTokens,
  TooManyTokensError,
  transferHandlers,
} from "./transfer_service.ts";

Deno.test("copy tokens: ids written after the token are touched; limits", () => {
  let n = 0;
  const t = new CopyTokens({
    ids_max: 3,
    idle_ms: 1000,
    tokens_max: 2,
    new_token: () => `t${n++}`,
  });
  t.touch("c", [1]); // before any token: remembered nowhere
  const a = t.begin(0);
  t.touch("c", [2]);
  const b = t.begin(0);
  t.touch("c", [3]);
  t.dropped("gone");
  assert.throws(() => t.begin(0), TooManyTokensError);
  const okA = t.untouched(a, "c", 10);
  assert.deepEqual([1, 2, 3, 4].map(okA), [true, false, false, true]);
  const okB = t.untouched(b, "c", 10);
  assert.deepEqual([1, 2, 3, 4].map(okB), [true, true, false, true]);
  assert.equal(t.untouched(a, "other", 10)(2), true);
  assert.equal(t.untouched(a, "gone", 10)(1), false, "a dropped collection refuses every copy");
  // Overflow: more than ids_max distinct ids makes the token unusable.
  t.touch("c", [5, 6]);
  assert.throws(() => t.untouched(a, "c", 10), /overflowed/);
  assert.equal(t.untouched(b, "c", 10)(9), true);
  // Expiry after idle_ms without use.
  assert.throws(() => t.untouched(b, "c", 2000), CopyTokenError);
  assert.equal(t.size, 0);
  assert.equal(t.end("t0"), false);
});

type Handler = (call: { request: unknown }, cb: (e: unknown, r?: unknown) => void) => void;

function caller(handlers: Record<string, unknown>) {
  // Replies are checked field by field below; their exact types do not matter here.
  // deno-lint-ignore no-explicit-any
  return (method: string, request: unknown): Promise<any> =>
    new Promise((resolve, reject) => {
      (handlers[method] as Handler)({ request }, (e, r) => (e ? reject(e) : resolve(r)));
    });
}

Deno.test("Scan pages in id order; CopyBatch never overwrites or resurrects a write", async () => {
  const dir = await Deno.makeTempDir({ prefix: "transfer_test_" });
  const store = await NodeStore.open(dir, { logger: () => {} });
  try {
    const tokens = new CopyTokens();
    const state = { closing: false };
    const api = caller(
      nodeHandlers(store, {
        nodeId: "n",
        address: "x:1",
        logger: () => {},
        on_write: (c, ids) => tokens.touch(c, ids),
        on_drop: (c) => tokens.dropped(c),
      }, state) as unknown as Record<string, unknown>,
    );
    const tr = caller(transferHandlers(store, tokens, state, { logger: () => {} }));
    await api("CreateCollection", { name: "c", dimension: 2 });
    const ids = Array.from({ length: 300 }, (_, i) => (i * 7919) % 100_003);
    await api("PutBatch", {
      collection: "c",
      points: ids.map((id) => ({ id, vector: [id, 1] })),
    });
    // Scan: every id once, ascending, across pages.
    const seen: number[] = [];
    let page = await tr("Scan", { collection: "c", after_id: 0, from_start: true, limit: 64 });
    seen.push(...page.points.map((p: { id: number }) => p.id));
    while (!page.done) {
      page = await tr("Scan", {
        collection: "c",
        after_id: page.next_after_id,
        from_start: false,
        limit: 64,
      });
      seen.push(...page.points.map((p: { id: number }) => p.id));
    }
    assert.deepEqual(seen, [...ids].sort((a, b) => a - b));
    assert.equal(page.dimension, 2);
    await assert.rejects(tr("Scan", { collection: "c", limit: 0 }), {
      code: grpc.status.INVALID_ARGUMENT,
    });
    await assert.rejects(tr("Scan", { collection: "nope", limit: 1 }), {
      code: grpc.status.NOT_FOUND,
    });

    // Copies: 1,000,001 absent and untouched -> applied; 1,000,002 deleted after the token
    // (absent) -> skipped; 1,000,003 put after the token -> skipped; ids[0] present -> skipped.
    const { token } = await tr("BeginCopy", {});
    await api("Delete", { collection: "c", id: 1_000_002 });
    await api("Put", { collection: "c", id: 1_000_003, vector: [9, 9] });
    const r = await tr("CopyBatch", {
      token,
      collection: "c",
      points: [1_000_001, 1_000_002, 1_000_003, ids[0]].map((id) => ({ id, vector: [0, 0] })),
    });
    assert.deepEqual(r, { applied: 1, skipped: 3 });
    const get = async (id: number) => (await api("Get", { collection: "c", id })).vector;
    assert.deepEqual(await get(1_000_001), [0, 0]);
    assert.deepEqual(await get(1_000_002), []);
    assert.deepEqual(await get(1_000_003), [9, 9]);
    assert.deepEqual(await get(ids[0]), [ids[0], 1]);

    // Prune: deletes untouched present ids, skips touched ones.
    const p = await tr("Prune", { token, collection: "c", ids: [ids[1], 1_000_003, 424242] });
    assert.deepEqual(p, { deleted: 1, skipped: 2 });
    assert.deepEqual(await get(ids[1]), []);
    assert.deepEqual(await get(1_000_003), [9, 9]);

    // Unknown or ended tokens are refused with FAILED_PRECONDITION.
    assert.deepEqual(await tr("EndCopy", { token }), { ended: true });
    await assert.rejects(
      tr("CopyBatch", { token, collection: "c", points: [{ id: 5, vector: [1, 1] }] }),
      { code: grpc.status.FAILED_PRECONDITION },
    );
    await assert.rejects(
      tr("CopyBatch", { token: "x", collection: "c", points: [{ id: 5, vector: [1] }] }),
      { code: grpc.status.INVALID_ARGUMENT },
    );
  } finally {
    await store.close({ snapshot: false });
    await Deno.remove(dir, { recursive: true });
  }
});
