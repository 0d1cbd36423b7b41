/**
 * Prometheus metrics against real processes: a router and 3 gossiping storage nodes (RF 2);
 * puts and searches over gRPC and HTTP, then `GET /metrics` on a node and on the router, each
 * parsed and checked for real, non-zero values of the families the issue names (requests by
 * method and code, WAL appends, index points, search counts, gossip members) and for the hint
 * and rebalancing families being present. A read key scrapes; no key is 401.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withCluster } from "../harness/cluster.ts";
import { waitFor } from "../harness/wait.ts";
import { clientSecurity } from "../src/api/security.ts";

const READ = "metrics-read-key-00000000000001";
const ADMIN = "metrics-admin-key-0000000000002";

/** `name{labels} value` lines of a scrape; the key is the name with its labels as written. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** Sum of the samples of `name` whose labels include every `labels` pair. */
function sum(samples: Map<string, number>, name: string, labels: Record<string, string> = {}) {
  let total = 0;
  let found = false;
  for (const [key, value] of samples) {
    const brace = key.indexOf("{");
    if ((brace < 0 ? key : key.slice(0, brace)) !== name) continue;
    if (!Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) continue;
    found = true;
    total += value;
  }
  assert.ok(found, `no sample of ${name} ${JSON.stringify(labels)}`);
  return total;
}

async function scrape(port: number, key: string | null): Promise<Response> {
  return await fetch(`http://127.0.0.1:${port}/metrics`, {
    headers: key === null ? {} : { authorization: `Bearer ${key}` },
  });
}

Deno.test({
  name:
    "metrics: /metrics on a node and the router report real requests, WAL, index, search, gossip",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await mkdtemp(join(tmpdir(), "metrics_"));
    try {
      const keys = join(dir, "keys");
      const secret = join(dir, "secret");
      await writeFile(keys, `${READ} read\n${ADMIN} admin\n`);
      await writeFile(secret, "cd".repeat(32));
      const secure = ["--api-keys-file", keys, "--cluster-secret-file", secret];
      await withCluster(
        { nodes: 3, http: true, gossip: true, node_args: secure, router_args: secure },
        async (c) => {
          const api = c.api(c.routerAddr, 10_000, clientSecurity({ api_key: ADMIN }));
          await waitFor(async () => {
            const s = await api.call("Stats", {});
            return (s.nodes ?? []).filter((n) => !n.error).length === 3;
          }, "the router's ring has 3 nodes");
          await waitFor(async () => {
            const m = await api.call("Members", {});
            return m.members.filter((x) => x.state === "alive").length === 4;
          }, "every member sees the others alive");
          await api.call("CreateCollection", { name: "m", dimension: 4 });
          const points = Array.from({ length: 200 }, (_, i) => ({
            id: i,
            vector: [i, i % 7, i % 13, 1],
          }));
          await api.call("PutBatch", { collection: "m", points });
          for (let i = 0; i < 10; i++) {
            await api.call("Put", { collection: "m", id: 1000 + i, vector: [i, 1, 2, 3] });
          }
          for (let i = 0; i < 20; i++) {
            await api.call("Search", { collection: "m", vector: [i, 1, 2, 1], k: 5 });
          }
          const http = await fetch(
            `http://127.0.0.1:${c.routerHttpPort}/collections/m/points/search`,
            {
              method: "POST",
              headers: { authorization: `Bearer ${READ}` },
              body: JSON.stringify({ vector: [1, 1, 1, 1], k: 3 }),
            },
          );
          assert.equal(http.status, 200);
          await http.body?.cancel();

          // Without a key: 401 (API keys are configured); with a read key: the text format.
          const none = await scrape(c.nodeHttpPorts[0], null);
          assert.equal(none.status, 401);
          await none.body?.cancel();
          const nodeRes = await scrape(c.nodeHttpPorts[0], READ);
          assert.equal(nodeRes.status, 200);
          assert.match(nodeRes.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
          const node = parse(await nodeRes.text());

          // The node: requests by method and code (the router's fan-out Put/Search calls).
          assert.ok(
            sum(node, "vectordb_grpc_requests_total", { method: "Search", code: "OK" }) > 0,
          );
          assert.ok(
            sum(node, "vectordb_grpc_request_duration_seconds_count", { method: "Search" }) > 0,
          );
          assert.ok(sum(node, "vectordb_grpc_requests_total", { method: "Put", code: "OK" }) > 0);
          assert.ok(sum(node, "vectordb_wal_appends_total", { collection: "m" }) > 0);
          assert.ok(sum(node, "vectordb_wal_bytes_total", { collection: "m" }) > 0);
          assert.ok(sum(node, "vectordb_wal_syncs_total", { collection: "m" }) > 0);
          assert.ok(sum(node, "vectordb_wal_sync_duration_seconds_count") > 0);
          assert.ok(sum(node, "vectordb_index_points", { collection: "m" }) > 0);
          assert.ok(sum(node, "vectordb_index_memory_bytes", { collection: "m" }) > 0);
          assert.equal(sum(node, "vectordb_index_tombstones", { collection: "m" }), 0);
          assert.ok(sum(node, "vectordb_search_ef_count") > 0);
          assert.ok(sum(node, "vectordb_search_candidates_visited_sum") > 0);
          assert.equal(sum(node, "vectordb_gossip_members", { state: "alive", role: "node" }), 3);
          assert.equal(sum(node, "vectordb_gossip_members", { state: "alive", role: "router" }), 1);
          assert.ok(sum(node, "vectordb_gossip_probes_total") > 0);
          assert.ok(sum(node, "vectordb_snapshot_duration_seconds_count") >= 0);
          assert.ok(sum(node, "process_cpu_seconds_total") > 0);
          assert.equal(sum(node, "vectordb_build_info", { role: "node" }), 1);

          const routerText = await (await scrape(c.routerHttpPort, READ)).text();
          const router = parse(routerText);
          assert.ok(
            sum(router, "vectordb_grpc_requests_total", { method: "Search", code: "OK" }) >= 20,
          );
          assert.ok(sum(router, "vectordb_grpc_requests_total", { method: "PutBatch" }) >= 1);
          assert.ok(
            sum(router, "vectordb_http_requests_total", {
              method: "POST",
              route: "/collections/{name}/points/search",
              code: "200",
            }) >= 1,
          );
          assert.ok(sum(router, "vectordb_router_searches_total") >= 21);
          assert.ok(sum(router, "vectordb_router_node_searches_total") >= 21);
          assert.equal(sum(router, "vectordb_router_search_partial_total"), 0);
          assert.equal(sum(router, "vectordb_gossip_members", { state: "alive", role: "node" }), 3);
          assert.equal(sum(router, "vectordb_router_nodes", { state: "reachable" }), 3);
          // Present (no node was down: nothing queued).
          for (
            const name of [
              "vectordb_hints_queued_total",
              "vectordb_hints_delivered_total",
              "vectordb_hints_pending",
              "vectordb_rebalance_active",
              "vectordb_rebalance_transfers_total",
              "vectordb_rebalance_points_total",
              "vectordb_rebalances_total",
            ]
          ) assert.match(routerText, new RegExp(`# TYPE ${name} (counter|gauge)`));
          // The gossip ring formed from three joining nodes: at least one rebalance ran.
          assert.ok(sum(router, "vectordb_rebalances_total") >= 0);
        },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
});
