/**
 * The web console (console/, served by src/api/http.ts at `/` and `/console/{file}`) on a real
 * 3-node cluster with its router:
 * - the files come with their content types and a Content-Security-Policy; no request path
 *   reaches a file outside the console folder;
 * - `GET /console/state` gives the ring shares and the recall monitor's figures (sampling every
 *   search here, so the exact searches run through the nodes);
 * - in headless Chromium (Debian's `chromium`, driven by puppeteer-core under Node:
 *   tests/helpers/console_browser_run.ts) every page renders, and a filtered search from the
 *   playground shows the API's answer. Screenshots go to `test-artifacts/console/` (ignored by
 *   git; `VECTORDB_TEST_ARTIFACTS` moves it). Without a Chromium binary that part is skipped
 *   with a line saying so.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withCluster } from "../harness/cluster.ts";
import { REPO_ROOT, runProcess } from "../harness/process.ts";
import { scriptCommand } from "../harness/servers.ts";
import { Rng } from "../src/testing/random.ts";

const CHROMIUM = Deno.env.get("VECTORDB_CHROMIUM") ??
  ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) ??
  "/usr/bin/chromium";
const ARTIFACTS = join(
  Deno.env.get("VECTORDB_TEST_ARTIFACTS") ?? join(REPO_ROOT, "test-artifacts"),
  "console",
);

const COLORS = ["red", "green", "blue"];
const KEYS = { read: "console-read-key-000000000001", admin: "console-admin-key-00000000002" };

/** Runs `fn` with the flags of an API keys file and a cluster secret (removed after). */
async function withSecrets(fn: (flags: string[]) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "console_test_"));
  try {
    await writeFile(join(dir, "keys"), `${KEYS.read} read\n${KEYS.admin} admin\n`);
    await writeFile(join(dir, "secret"), "cd".repeat(32));
    await fn(["--api-keys-file", join(dir, "keys"), "--cluster-secret-file", join(dir, "secret")]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

Deno.test({
  name: "console: static files with CSP and no traversal; ring and recall state; pages and a " +
    "filtered playground search in headless Chromium match the API",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withSecrets((secure) =>
      withCluster({
        nodes: 3,
        http: true,
        node_args: secure,
        router_args: [...secure, "--recall-sample-rate", "1"],
      }, async (c) => {
        const base = `http://127.0.0.1:${c.routerHttpPort}`;
        const json = async (method: string, path: string, body?: unknown) => {
          const res = await fetch(base + path, {
            method,
            headers: {
              authorization: `Bearer ${KEYS.admin}`,
              ...(body === undefined ? {} : { "content-type": "application/json" }),
            },
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          const answer = await res.json();
          assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(answer)}`);
          return { answer, res };
        };

        // Static files: types, CSP, nothing outside the folder.
        const index = await fetch(`${base}/`);
        assert.equal(index.status, 200);
        assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
        const csp = index.headers.get("content-security-policy") ?? "";
        assert.match(csp, /script-src 'self'/);
        assert.match(csp, /connect-src 'self'/);
        assert.match(csp, /frame-ancestors 'none'/);
        assert.match(await index.text(), /<script type="module" src="\/console\/app.js">/);
        const app = await fetch(`${base}/console/app.js`);
        assert.equal(app.headers.get("content-type"), "text/javascript; charset=utf-8");
        assert.equal(app.headers.get("x-content-type-options"), "nosniff");
        await app.body?.cancel();
        const css = await fetch(`${base}/console/style.css`);
        assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
        await css.body?.cancel();
        for (
          const path of [
            "/console/..%2F..%2Fdeno.json",
            "/console/%2e%2e%2fpackage.json",
            "/console/..%5C..%5Cdeno.json",
            "/console/app.js%00",
            "/console/.gitignore",
            "/console/README.md",
            "/console/../deno.json",
            "/console/a/../../deno.json",
            "/console/nothing.js",
          ]
        ) {
          const res = await fetch(base + path);
          const text = await res.text();
          assert.equal(res.status, 404, `${path}: ${res.status} ${text.slice(0, 200)}`);
          assert.ok(!text.includes('"tasks"') && !text.includes("vectordb-setup"), path);
        }

        // Data: 600 points of dimension 8 with a color payload.
        await json("PUT", "/collections/docs", { dimension: 8, metric: "l2" });
        const rng = new Rng(5);
        const points = Array.from({ length: 600 }, (_, id) => ({
          id,
          vector: Array.from(rng.vector(8)),
          payload: { color: COLORS[id % 3], n: id },
        }));
        await json("PUT", "/collections/docs/points", { points });
        await json("PUT", "/collections/docs/index", { field: "color", type: "keyword" });
        // One deleted point: the collections page shows 599 points and its tombstones.
        const deleted = await fetch(`${base}/collections/docs/points/599`, {
          method: "DELETE",
          headers: { authorization: `Bearer ${KEYS.admin}` },
        });
        assert.equal(deleted.status, 200);
        await deleted.body?.cancel();
        const { answer: stats } = await json("GET", "/stats");
        const docsStats = stats.collections.find((s: { name: string }) => s.name === "docs");
        // Router Stats are logical: the one deleted point is one tombstone (held by each of its
        // 2 owners), and the count is of distinct live points.
        assert.equal(docsStats.tombstones, "1", "one deleted point, counted once");
        assert.equal(docsStats.count, "599", "599 live points, counted once");

        // The API's answer to the filtered search the playground will run; every search is
        // sampled (--recall-sample-rate 1), so the monitor measures it against an exact search.
        const vector = Array.from(rng.vector(8)).map((x) => Math.round(x * 1e4) / 1e4);
        const filter = { must: [{ key: "color", match: { value: "green" } }] };
        const { answer: expected, res: searched } = await json(
          "POST",
          "/collections/docs/points/search",
          { vector, k: 10, filter, with_payload: true },
        );
        assert.equal(expected.results.length, 10);
        // One replica per shard answers: the router names those nodes (2 or 3 of the 3).
        assert.ok(
          expected.nodes_answered.length >= 1 && expected.nodes_answered.length <= 3,
          `the router names the nodes that answered: ${expected.nodes_answered}`,
        );
        assert.equal(expected.shards_answered, expected.shards_total);
        for (const r of expected.results) assert.equal(r.payload.color, "green");
        assert.match(searched.headers.get("server-timing") ?? "", /^total;dur=[0-9.]+$/);
        const { answer: exact } = await json("POST", "/collections/docs/points/search", {
          vector,
          k: 10,
          filter,
          exact: true,
        });
        const truth = points.filter((p) => p.payload.color === "green")
          .map((p) => ({ id: p.id, d: p.vector.reduce((s, x, i) => s + (x - vector[i]) ** 2, 0) }))
          .sort((a, b) => a.d - b.d).slice(0, 10).map((p) => p.id);
        assert.deepEqual(exact.results.map((r: { id: number }) => r.id), truth, "exact: true");

        let state: {
          ring: { address: string; share: number }[];
          recall: { collections: { collection: string; recall: number; samples: number }[] };
        } = { ring: [], recall: { collections: [] } };
        for (let i = 0; i < 50; i++) {
          state = (await json("GET", "/console/state")).answer;
          if (state.recall.collections.length > 0) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(state.ring.length, 3);
        const total = state.ring.reduce((s, r) => s + r.share, 0);
        assert.ok(Math.abs(total - 1) < 1e-9, `ring shares sum to ${total}`);
        const docs = state.recall.collections.find((f) => f.collection === "docs");
        assert.ok(docs !== undefined && docs.samples >= 1, JSON.stringify(state.recall));
        assert.ok(docs.recall >= 0 && docs.recall <= 1, `recall ${docs.recall}`);
        const metrics = await (await fetch(`${base}/metrics`, {
          headers: { authorization: `Bearer ${KEYS.read}` },
        })).text();
        // The console's files are open (they hold no data); its data is not.
        const keyless = await fetch(`${base}/console/state`);
        assert.equal(keyless.status, 401);
        await keyless.body?.cancel();
        assert.match(metrics, /vectordb_recall\{collection="docs"\} [0-9.]+/);
        // A storage node serves the console too, without the router's state.
        const nodeBase = `http://127.0.0.1:${c.nodeHttpPorts[0]}`;
        assert.equal((await fetch(`${nodeBase}/`)).status, 200);
        const nodeState = await fetch(`${nodeBase}/console/state`, {
          headers: { authorization: `Bearer ${KEYS.read}` },
        });
        assert.equal(nodeState.status, 404);
        await nodeState.body?.cancel();

        if (!existsSync(CHROMIUM)) {
          console.log(
            `console browser test SKIPPED: no chromium at ${CHROMIUM} ` +
              `(apt-get install chromium, or set VECTORDB_CHROMIUM)`,
          );
          return;
        }
        const [command, ...args] = scriptCommand("tests/helpers/console_browser_run.ts", [
          "--url",
          base,
          "--chromium",
          CHROMIUM,
          "--out",
          ARTIFACTS,
          "--collection",
          "docs",
          "--vector",
          JSON.stringify(vector),
          "--filter",
          JSON.stringify(filter),
          "--k",
          "10",
          "--key",
          KEYS.read,
        ]);
        const run = await runProcess(command, args, { cwd: REPO_ROOT });
        assert.equal(run.code, 0, `the browser driver failed:\n${run.stderr}\n${run.stdout}`);
        const shown = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
        assert.deepEqual(shown.problems, [], "no script error or CSP violation in the console");
        assert.ok(shown.asked_for_key, "the console asked for the API key");
        assert.equal(shown.session_key, KEYS.read, "kept in sessionStorage");
        assert.equal(shown.local_storage, 0, "nothing in localStorage");
        assert.ok(shown.keyed_requests > 5, `requests carrying the key: ${shown.keyed_requests}`);
        assert.deepEqual(shown.keyed_elsewhere, [], "the key went to no other origin");
        assert.equal(shown.members, 4, "3 storage nodes and the router");
        assert.ok(shown.ring >= 3, `ring arcs drawn: ${shown.ring}`);
        assert.deepEqual(shown.collections, [["docs", "599", "1"]]);
        assert.match(
          shown.create_refused,
          /PERMISSION_DENIED \(403\): .*CreateCollection needs role admin/,
        );
        assert.match(shown.summary, /10 results; the server took [0-9.]+ ms .*shards answered/);
        // The nodes that answered the playground's own search (one replica per shard, chosen
        // afresh per search: not necessarily the API search's nodes), each a storage node.
        const named = /nodes answered: (.*)$/.exec(shown.summary)?.[1].split(", ") ?? [];
        assert.ok(named.length >= 1, `the summary names the nodes that answered: ${shown.summary}`);
        for (const node of named) assert.ok(c.nodeAddrs.includes(node), `${node} is a node`);
        assert.match(
          shown.summary,
          new RegExp(`shards answered ${expected.shards_total} of ${expected.shards_total}`),
        );
        assert.deepEqual(
          shown.results.map((r: { id: string }) => Number(r.id)),
          expected.results.map((r: { id: number }) => r.id),
          "the playground shows the API's ids in order",
        );
        shown.results.forEach((r: { distance: string; payload: string }, i: number) => {
          const want = expected.results[i];
          assert.ok(
            Math.abs(Number(r.distance) - want.distance) <= 1e-5 * Math.max(1, want.distance),
          );
          assert.deepEqual(JSON.parse(r.payload), want.payload);
        });
        assert.ok(shown.recall.some((row: string[]) => row[0] === "docs"), "recall row for docs");
        assert.equal(shown.charts, 4);
        console.log(`console: screenshots of 5 pages in ${ARTIFACTS}`);
      })
    );
  },
});
