/**
 * The HTTP/JSON API (src/api/http.ts) against real processes:
 *
 * - a router and 3 storage nodes with API keys and the cluster secret: every operation of the
 *   router's `/openapi.json` is called with a valid request and answers a status the document
 *   lists (and the test calls exactly the operations listed, so the document stays true);
 *   create, put, search, get, delete, stats, members through HTTP; a point written over HTTP
 *   is read back over gRPC; a bad field 400 naming it, no key 401, a read key writing 403, an
 *   oversized body 413;
 * - backups through the router (on every node) and on a node alone (delete included);
 * - a storage node alone: every operation of its document, POST /drain last (it exits 0);
 * - a storage node with `--metrics false`: GET /metrics is 404.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withCluster } from "../harness/cluster.ts";
import { NodeProcess } from "../harness/node.ts";
import { freePort } from "../harness/ports.ts";
import { clientSecurity } from "../src/api/security.ts";

const KEYS = {
  read: "http-read-key-0000000000000001",
  write: "http-write-key-000000000000002",
  admin: "http-admin-key-000000000000003",
};
const C = "http_e2e";

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

type Doc = { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };

/** Calls operations and records which of the document's were called, each status checked. */
class Client {
  readonly called = new Set<string>();
  doc: Doc | null = null;
  constructor(readonly base: string, readonly key: string | null) {}

  async op(
    method: string,
    template: string,
    params: Record<string, string | number> = {},
    body?: unknown,
    options: { key?: string | null; raw?: string; query?: string } = {},
  ): Promise<Answer> {
    const path = template.replace(/\{(\w+)\}/g, (_, n) => encodeURIComponent(String(params[n])));
    const key = options.key === undefined ? this.key : options.key;
    const res = await fetch(`${this.base}${path}${options.query ?? ""}`, {
      method,
      headers: {
        "content-type": "application/json",
        ...(key !== null ? { authorization: `Bearer ${key}` } : {}),
      },
      body: options.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const text = await res.text();
    const json = (res.headers.get("content-type") ?? "").startsWith("application/json");
    const answer = { status: res.status, body: json ? JSON.parse(text) : { text } };
    if (this.doc !== null) {
      const op = this.doc.paths[template]?.[method.toLowerCase()];
      assert.ok(op !== undefined, `${method} ${template} is not in the OpenAPI document`);
      assert.ok(
        String(answer.status) in op.responses,
        `${method} ${template} answered ${answer.status} (${text.slice(0, 300)}), which the ` +
          `document does not list (${Object.keys(op.responses)})`,
      );
      this.called.add(`${method} ${template}`);
    }
    return answer;
  }

  /** Every operation of the document was called. */
  assertCoverage(): void {
    const listed = Object.entries(this.doc!.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)
    );
    assert.deepEqual([...this.called].sort(), listed.sort());
  }
}

async function withSecrets(fn: (args: string[]) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "http_api_"));
  try {
    const keys = join(dir, "keys");
    const secret = join(dir, "secret");
    await writeFile(keys, `${KEYS.read} read\n${KEYS.write} write\n${KEYS.admin} admin\n`);
    await writeFile(secret, "ab".repeat(32));
    await fn(["--api-keys-file", keys, "--cluster-secret-file", secret]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const errorOf = (a: Answer) => a.body.error as { status: string; message: string };

Deno.test({
  name: "HTTP API: router + 3 nodes, every OpenAPI operation of the router, keys and limits",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withSecrets((secure) =>
      withCluster({ nodes: 3, http: true, node_args: secure, router_args: secure }, async (c) => {
        const api = new Client(`http://127.0.0.1:${c.routerHttpPort}`, KEYS.admin);
        // Open without a key.
        assert.deepEqual(await api.op("GET", "/healthz", {}, undefined, { key: null }), {
          status: 200,
          body: { status: "alive" },
        });
        assert.equal((await api.op("GET", "/readyz", {}, undefined, { key: null })).status, 200);
        const doc = await api.op("GET", "/openapi.json", {}, undefined, { key: KEYS.read });
        assert.equal(doc.status, 200);
        api.doc = doc.body as unknown as Doc;
        api.called.add("GET /openapi.json");
        api.called.add("GET /healthz");
        api.called.add("GET /readyz");
        // Metrics: role read (a scraper's bearer token); no key 401.
        const metrics = await api.op("GET", "/metrics", {}, undefined, { key: KEYS.read });
        assert.equal(metrics.status, 200);
        assert.match(String(metrics.body.text), /^# HELP /m);
        assert.equal((await api.op("GET", "/metrics", {}, undefined, { key: null })).status, 401);
        // The web console: its files open (no data in them), its state role read.
        const index = await api.op("GET", "/", {}, undefined, { key: null });
        assert.equal(index.status, 200);
        assert.match(String(index.body.text), /<script type="module" src="\/console\/app.js">/);
        const appJs = await api.op("GET", "/console/{file}", { file: "app.js" }, undefined, {
          key: null,
        });
        assert.equal(appJs.status, 200);
        const state = await api.op("GET", "/console/state", {}, undefined, { key: KEYS.read });
        assert.equal(state.status, 200);
        assert.equal((state.body.ring as unknown[]).length, 3);

        // Keys: none 401, a read key writing 403.
        const none = await api.op("GET", "/collections", {}, undefined, { key: null });
        assert.equal(none.status, 401);
        assert.equal(errorOf(none).status, "UNAUTHENTICATED");
        const low = await api.op("PUT", "/collections/{name}", { name: C }, { dimension: 3 }, {
          key: KEYS.read,
        });
        assert.equal(low.status, 403);
        assert.match(errorOf(low).message, /CreateCollection needs role admin/);

        const created = await api.op("PUT", "/collections/{name}", { name: C }, {
          dimension: 3,
          metric: "l2",
        });
        assert.equal(created.status, 200, JSON.stringify(created.body));
        assert.equal(created.body.created, true);
        const again = await api.op("PUT", "/collections/{name}", { name: C }, { dimension: 4 });
        assert.equal(again.status, 409);
        const list = await api.op("GET", "/collections");
        assert.deepEqual(
          (list.body.collections as { name: string }[]).map((x) => x.name),
          [C],
        );
        const one = await api.op("GET", "/collections/{name}", { name: C });
        assert.deepEqual(one.body, {
          name: C,
          dimension: 3,
          metric: "l2",
          m: 16,
          ef_construction: 200,
          field_indexes: [],
          quantization: "none",
          rescore: 0,
          shard_number: 3,
          replication_factor: 2,
        });
        assert.equal((await api.op("GET", "/collections/{name}", { name: "nope" })).status, 404);

        const points = Array.from({ length: 20 }, (_, i) => ({ id: i, vector: [i, i + 1, i + 2] }));
        const batch = await api.op("PUT", "/collections/{name}/points", { name: C }, { points }, {
          key: KEYS.write,
        });
        assert.equal(batch.status, 200, JSON.stringify(batch.body));
        assert.equal(batch.body.count, 20);
        const put = await api.op("PUT", "/collections/{name}/points/{id}", { name: C, id: 100 }, {
          vector: [100, 101, 102],
          consistency: "all",
        });
        assert.equal(put.status, 200, JSON.stringify(put.body));
        assert.equal(put.body.replicas_acked, 2);

        const got = await api.op("GET", "/collections/{name}/points/{id}", { name: C, id: 100 });
        assert.equal(got.status, 200);
        assert.deepEqual(got.body.vector, [100, 101, 102]);
        assert.equal(got.body.version, put.body.version);
        // Written over HTTP, read over gRPC: the same handlers and data.
        const grpc = c.api(c.routerAddr, 5000, clientSecurity({ api_key: KEYS.read }));
        const viaGrpc = await grpc.call("Get", { id: 100, collection: C });
        assert.deepEqual(viaGrpc.vector, [100, 101, 102]);

        const hits = await api.op("POST", "/collections/{name}/points/search", { name: C }, {
          vector: [5, 6, 7],
          k: 3,
        }, { key: KEYS.read });
        assert.equal(hits.status, 200);
        assert.equal((hits.body.results as { id: number }[])[0].id, 5);
        assert.equal(hits.body.partial, false);

        // A bad field: 400 naming the field and value; not JSON: 400; oversized: 413.
        const bad = await api.op("POST", "/collections/{name}/points/search", { name: C }, {
          vector: [1, 2, "x"],
          k: 3,
        });
        assert.deepEqual(bad.body, {
          error: { status: "INVALID_ARGUMENT", message: 'vector[2] "x" is not a number' },
        });
        assert.equal(bad.status, 400);
        const badK = await api.op("POST", "/collections/{name}/points/search", { name: C }, {
          vector: [1, 2, 3],
          k: 0,
        });
        assert.equal(errorOf(badK).message, "k 0 must be between 1 and 10000");

        // Batch search, scroll and count: through the router, merged across the replicas.
        const many = await api.op("POST", "/collections/{name}/points/search/batch", { name: C }, {
          searches: [{ vector: [5, 6, 7], k: 1 }, { vector: [9, 10, 11], k: 2 }],
        }, { key: KEYS.read });
        assert.equal(many.status, 200, JSON.stringify(many.body));
        assert.deepEqual(
          (many.body.results as { results: { id: number }[] }[]).map((r) => r.results[0].id),
          [5, 9],
        );
        const badBatch = await api.op("POST", "/collections/{name}/points/search/batch", {
          name: C,
        }, { searches: [{ vector: [1, 2, 3], k: 1 }, { vector: [1, 2, 3], k: 1, collection: C }] });
        assert.equal(badBatch.status, 400);
        assert.match(errorOf(badBatch).message, /^searches\[1\]\.collection is not a field/);
        const scrolled: number[] = [];
        let cursor = "";
        do {
          const page = await api.op("POST", "/collections/{name}/points/scroll", { name: C }, {
            limit: 8,
            cursor,
            with_vector: true,
          }, { key: KEYS.read });
          assert.equal(page.status, 200, JSON.stringify(page.body));
          for (const p of page.body.points as { id: number; vector: number[] }[]) {
            assert.deepEqual(p.vector, [p.id, p.id + 1, p.id + 2]);
            scrolled.push(p.id);
          }
          cursor = page.body.next_cursor as string;
        } while (cursor !== "");
        assert.deepEqual(scrolled, [...points.map((p) => p.id), 100]);
        const badCursor = await api.op("POST", "/collections/{name}/points/scroll", { name: C }, {
          cursor: "nope",
        });
        assert.equal(badCursor.status, 400);
        assert.match(errorOf(badCursor).message, /^cursor "nope" is not a cursor/);
        const count = await api.op("POST", "/collections/{name}/points/count", { name: C }, {}, {
          key: KEYS.read,
        });
        assert.deepEqual([count.status, count.body.count, count.body.partial], [200, "21", false]);
        const countMissing = await api.op("POST", "/collections/{name}/points/count", {
          name: "nope",
        });
        assert.equal(countMissing.status, 404);
        await filterOps(api, C, scrolled.slice(0, 2));
        const notJson = await api.op("PUT", "/collections/{name}/points", { name: C }, undefined, {
          raw: '{"points": [',
        });
        assert.equal(notJson.status, 400);
        assert.match(errorOf(notJson).message, /not valid JSON/);
        const big = await api.op("PUT", "/collections/{name}", { name: C }, undefined, {
          raw: JSON.stringify({ dimension: 3, metric: "l2".padEnd(20_000, " ") }),
        });
        assert.equal(big.status, 413);
        assert.match(errorOf(big).message, /the limit is 16 KiB/);
        const dim = await api.op("PUT", "/collections/{name}/points/{id}", { name: C, id: 1 }, {
          vector: [1, 2],
        });
        assert.equal(dim.status, 400);
        assert.match(
          errorOf(dim).message,
          /vector dimension 2 does not match the collection dimension 3/,
        );

        const del = await api.op(
          "DELETE",
          "/collections/{name}/points/{id}",
          { name: C, id: 100 },
          undefined,
          { query: "?consistency=all" },
        );
        assert.equal(del.status, 200, JSON.stringify(del.body));
        assert.equal(del.body.deleted, true);
        const gone = await api.op("GET", "/collections/{name}/points/{id}", { name: C, id: 100 });
        assert.equal(gone.status, 404);
        assert.match(errorOf(gone).message, /Point 100 is not in collection "http_e2e" \(deleted/);

        const stats = await api.op("GET", "/stats");
        assert.equal(stats.status, 200);
        assert.equal(stats.body.is_router, true);
        assert.equal((stats.body.nodes as unknown[]).length, 3);
        const members = await api.op("GET", "/members");
        assert.equal((members.body.members as unknown[]).length, 4);
        const drain = await api.op("POST", "/drain");
        assert.equal(drain.status, 400);
        assert.equal(errorOf(drain).status, "FAILED_PRECONDITION");
        // Backups through the router: on every storage node of the ring.
        const backup = await api.op("POST", "/collections/{name}/backups", { name: C }, {
          name: "b1",
        });
        assert.equal(backup.status, 200, JSON.stringify(backup.body));
        const b1 = backup.body.backup as { complete: boolean; nodes: unknown[] };
        assert.deepEqual([b1.complete, b1.nodes.length], [true, 3]);
        const listed = await api.op("GET", "/backups");
        assert.deepEqual(
          (listed.body.backups as { name: string; complete: boolean }[]).map((b) => [
            b.name,
            b.complete,
          ]),
          [["b1", true]],
        );
        const restored = await api.op("POST", "/backups/{name}/restore", { name: "b1" }, {
          collection: "c2",
        });
        assert.equal(restored.status, 200, JSON.stringify(restored.body));
        assert.equal((restored.body.nodes as unknown[]).length, 3);
        const removed = await api.op("DELETE", "/backups/{name}", { name: "b1" });
        assert.equal(removed.status, 200, JSON.stringify(removed.body));
        assert.equal((removed.body.nodes as unknown[]).length, 3);
        const twice = await api.op("DELETE", "/backups/{name}", { name: "b1" });
        assert.deepEqual([twice.status, errorOf(twice).status], [404, "NOT_FOUND"]);

        // A node's own HTTP port answers too.
        const node = new Client(`http://127.0.0.1:${c.nodeHttpPorts[0]}`, KEYS.read);
        const ns = await node.op("GET", "/stats");
        assert.equal(ns.status, 200);
        assert.equal(ns.body.is_router, false);

        const dropped = await api.op("DELETE", "/collections/{name}", { name: C });
        assert.deepEqual([dropped.status, dropped.body], [200, { dropped: true }]);
        api.assertCoverage();
      })
    ),
});

Deno.test({
  name: "HTTP API: a storage node answers every operation of its OpenAPI document",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const http = await freePort();
    const node = await NodeProcess.start({ args: ["--http-port", String(http)] });
    try {
      const api = new Client(`http://127.0.0.1:${http}`, null);
      const doc = await api.op("GET", "/openapi.json");
      api.doc = doc.body as unknown as Doc;
      assert.match(JSON.stringify(api.doc), /storage node/);
      for (const p of ["/openapi.json", "/healthz", "/readyz", "/metrics", "/"]) {
        assert.equal((await api.op("GET", p)).status, 200);
      }
      // A node serves the console too; the ring and recall state are the router's.
      assert.equal((await api.op("GET", "/console/{file}", { file: "api.js" })).status, 200);
      assert.equal((await api.op("GET", "/console/state")).status, 404);
      assert.equal(
        (await api.op("PUT", "/collections/{name}", { name: C }, { dimension: 2 })).status,
        200,
      );
      assert.equal((await api.op("GET", "/collections")).status, 200);
      assert.equal((await api.op("GET", "/collections/{name}", { name: C })).status, 200);
      const batch = await api.op("PUT", "/collections/{name}/points", { name: C }, {
        points: [{ id: 1, vector: [1, 0] }, { id: 2, vector: [0, 1] }],
        version: "5",
      });
      assert.deepEqual([batch.status, batch.body.version], [200, "5"]);
      assert.equal(
        (await api.op("PUT", "/collections/{name}/points/{id}", { name: C, id: 3 }, {
          vector: [1, 1],
        })).status,
        200,
      );
      const got = await api.op("GET", "/collections/{name}/points/{id}", { name: C, id: 1 });
      assert.deepEqual([got.status, got.body.version], [200, "5"]);
      const s = await api.op("POST", "/collections/{name}/points/search", { name: C }, {
        vector: [1, 0],
        k: 1,
        ef: 10,
      });
      assert.equal((s.body.results as { id: number }[])[0].id, 1);
      const sb = await api.op("POST", "/collections/{name}/points/search/batch", { name: C }, {
        searches: [{ vector: [0, 1], k: 1 }],
      });
      assert.equal((sb.body.results as { results: { id: number }[] }[])[0].results[0].id, 2);
      const sc = await api.op("POST", "/collections/{name}/points/scroll", { name: C }, {
        limit: 2,
      });
      assert.deepEqual(
        [(sc.body.points as { id: number }[]).map((p) => p.id), sc.body.next_cursor],
        [[1, 2], "v1:2"],
      );
      const n = await api.op("POST", "/collections/{name}/points/count", { name: C });
      assert.equal(n.body.count, "3");
      await filterOps(api, C, [1, 2]);
      assert.equal(
        (await api.op("DELETE", "/collections/{name}/points/{id}", { name: C, id: 3 })).status,
        200,
      );
      assert.equal((await api.op("GET", "/stats")).status, 200);
      assert.equal(((await api.op("GET", "/members")).body.members as unknown[]).length, 1);
      const backup = await api.op("POST", "/collections/{name}/backups", { name: C }, {
        name: "b1",
      });
      assert.equal(backup.status, 200, JSON.stringify(backup.body));
      assert.equal((backup.body.backup as { points: string }).points, "2");
      const again = await api.op("POST", "/collections/{name}/backups", { name: C }, {
        name: "b1",
      });
      assert.deepEqual([again.status, errorOf(again).status], [409, "ALREADY_EXISTS"]);
      const badName = await api.op("POST", "/collections/{name}/backups", { name: C }, {
        name: "b/1",
      });
      assert.equal(badName.status, 400);
      assert.match(errorOf(badName).message, /^name "b\/1" must be 1 to 64 characters/);
      const list = await api.op("GET", "/backups");
      assert.deepEqual((list.body.backups as { name: string }[]).map((b) => b.name), ["b1"]);
      const restored = await api.op("POST", "/backups/{name}/restore", { name: "b1" }, {
        collection: "c2",
      });
      assert.equal(restored.status, 200, JSON.stringify(restored.body));
      assert.equal(restored.body.points, "2");
      const twice = await api.op("POST", "/backups/{name}/restore", { name: "b1" }, {
        collection: "c2",
      });
      assert.deepEqual([twice.status, errorOf(twice).status], [409, "ALREADY_EXISTS"]);
      const missing = await api.op("POST", "/backups/{name}/restore", { name: "nope" }, {
        collection: "c3",
      });
      assert.deepEqual([missing.status, errorOf(missing).status], [404, "NOT_FOUND"]);
      const deleted = await api.op("DELETE", "/backups/{name}", { name: "b1" });
      assert.deepEqual([deleted.status, deleted.body], [200, { deleted: true }]);
      assert.deepEqual((await api.op("GET", "/backups")).body.backups, []);
      const c2 = await api.op("GET", "/collections/{name}/points/{id}", { name: "c2", id: 1 });
      assert.deepEqual([c2.status, c2.body.vector, c2.body.version], [200, [1, 0], "5"]);
      assert.equal((await api.op("DELETE", "/collections/{name}", { name: C })).status, 200);
      const drain = await api.op("POST", "/drain");
      assert.equal(drain.status, 200);
      assert.equal(drain.body.started, true);
      api.assertCoverage();
      const exit = await node.done;
      assert.equal(exit.code, 0);
    } finally {
      await node.close();
    }
  },
});

Deno.test({
  name: "HTTP API: a storage node with --metrics false answers GET /metrics 404",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const http = await freePort();
    const node = await NodeProcess.start({
      args: ["--http-port", String(http), "--metrics", "false"],
    });
    try {
      const res = await fetch(`http://127.0.0.1:${http}/metrics`);
      assert.equal(res.status, 404);
      assert.match((await res.json()).error.message, /Metrics are off/);
    } finally {
      await node.close();
    }
  },
});

/**
 * The filter, payload index and points routes on a collection holding `ids` (two live points):
 * index create/drop, filtered count and scroll, a malformed filter named by its path, GetBatch,
 * and deletes by ids and by filter that match nothing (the collection is left as it was).
 */
async function filterOps(api: Client, name: string, ids: number[]): Promise<void> {
  const made = await api.op("PUT", "/collections/{name}/index", { name }, {
    field: "color",
    type: "keyword",
  });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  assert.equal(typeof made.body.created, "boolean");
  const filter = { must: [{ has_id: ids }] };
  const count = await api.op("POST", "/collections/{name}/points/count", { name }, { filter });
  assert.deepEqual([count.status, count.body.count], [200, "2"]);
  const page = await api.op("POST", "/collections/{name}/points/scroll", { name }, {
    filter,
    with_payload: true,
  });
  assert.deepEqual((page.body.points as { id: number }[]).map((p) => p.id), ids);
  const bad = await api.op("POST", "/collections/{name}/points/count", { name }, {
    filter: { must: [{ key: "a", range: { gt: "x" } }] },
  });
  assert.equal(bad.status, 400);
  assert.match(errorOf(bad).message, /filter\.must\[0\]\.range/);
  const got = await api.op("POST", "/collections/{name}/points/get", { name }, {
    ids: [ids[0], 4_000_000_000],
    with_payload: true,
  });
  assert.equal(got.status, 200, JSON.stringify(got.body));
  assert.deepEqual(
    (got.body.points as { id: number; found: boolean }[]).map((p) => [p.id, p.found]),
    [[ids[0], true], [4_000_000_000, false]],
  );
  const byIds = await api.op("POST", "/collections/{name}/points/delete", { name }, {
    ids: [4_000_000_000],
  });
  assert.deepEqual([byIds.status, byIds.body.deleted], [200, 0]);
  const byFilter = await api.op("POST", "/collections/{name}/points/delete", { name }, {
    filter: { must: [{ has_id: [4_000_000_001] }] },
  });
  assert.deepEqual([byFilter.status, byFilter.body.deleted], [200, "0"]);
  const dropped = await api.op("DELETE", "/collections/{name}/index/{field}", {
    name,
    field: "color",
  });
  assert.deepEqual([dropped.status, dropped.body.dropped], [200, true]);
}
