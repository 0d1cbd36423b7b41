/**
 * The scenario of `tests/gossip_cluster_test.ts`, run under Node (like
 * `client_restart_run.ts`): it SIGKILLs, restarts, SIGTERMs and drains storage nodes while this
 * process holds gRPC channels to them, which can crash a Deno process on Deno 2.9.6's
 * `node:http2` (denoland/deno#36788, docs/RUNTIME.md); under Deno it took the whole test runner
 * down in fresh-clone CI runs. Prints one JSON line with the measured times; exits non-zero on
 * a failure (the assertion's message on stderr).
 */
import assert from "node:assert/strict";
import process from "node:process";
import * as grpc from "@grpc/grpc-js";
import { GOSSIP_PAYLOAD_BYTES_MAX } from "../../src/cluster/gossip_agent.ts";
import { GossipClient } from "../../src/cluster/gossip_transport.ts";
import { allSee, withGossipCluster } from "../../harness/gossip_cluster.ts";
import { waitFor } from "../../harness/wait.ts";

function exchange(address: string, envelope: { from: string; payload: string }) {
  const client = new GossipClient(address, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": 4 * GOSSIP_PAYLOAD_BYTES_MAX,
  });
  return new Promise<grpc.status>((resolve) => {
    client.Exchange(envelope, { deadline: Date.now() + 5000 }, (err) => {
      client.close();
      resolve(err ? err.code : grpc.status.OK);
    });
  });
}

const summary: Record<string, number> = {};

async function main(): Promise<void> {
  await withGossipCluster(3, async (c) => {
    const ids = [0, 1, 2].map((i) => c.id(i));
    await waitFor(
      async () => {
        const views = await Promise.all([0, 1, 2].map((i) => c.view(i)));
        return views.every((v) =>
          v !== undefined && v.size === 3 && ids.every((id) => v.get(id)?.state === "alive")
        );
      },
      "all 3 nodes see 3 alive members",
      15_000,
    );
    const view = (await c.view(1))!;
    assert.deepEqual([...view.keys()], ids, "Members is not sorted by id");
    assert.equal(view.get("n2")!.address, c.addrs[2]);
    assert.equal(view.get("n2")!.is_router, false);

    // The Gossip service checks its envelopes.
    const ok = JSON.stringify({ v: 1, type: "gossip", from: "test", updates: [] });
    assert.equal(await exchange(c.addrs[0], { from: "127.0.0.1:1", payload: ok }), 0);
    assert.equal(
      await exchange(c.addrs[0], { from: "127.0.0.1:1", payload: "nope" }),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.equal(
      await exchange(c.addrs[0], { from: "", payload: ok }),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.equal(
      await exchange(c.addrs[0], {
        from: "127.0.0.1:1",
        payload: JSON.stringify({ pad: "x".repeat(GOSSIP_PAYLOAD_BYTES_MAX) }),
      }),
      grpc.status.RESOURCE_EXHAUSTED,
    );

    // SIGKILL n2: n0 and n1 declare it dead.
    const inc_before = view.get("n2")!.incarnation;
    c.procs[2]!.signal("SIGKILL");
    await c.procs[2]!.done;
    const dead_ms = await waitFor(
      () => allSee(c, [0, 1], "n2", "dead"),
      "n0 and n1 see n2 dead",
      8000,
    );
    summary.sigkill_dead_ms = Math.round(dead_ms);

    // Restart n2 (same id, port, data): alive again everywhere with a higher incarnation.
    await c.start(2);
    const back_ms = await waitFor(
      () => allSee(c, [0, 1], "n2", "alive", (m) => m.incarnation > inc_before),
      "n0 and n1 see n2 alive with a higher incarnation",
      10_000,
    );
    summary.restart_alive_ms = Math.round(back_ms);
    await waitFor(
      async () => {
        const v = await c.view(2);
        return v?.get("n0")?.state === "alive" && v?.get("n1")?.state === "alive";
      },
      "n2 sees n0 and n1 alive",
      10_000,
    );

    // SIGTERM n2: it stops (exit 0) without leaving; n0 and n1 see it dead, not left
    // (`left` is final for an incarnation, so a leave would never turn into dead).
    c.procs[2]!.signal("SIGTERM");
    assert.equal((await c.procs[2]!.done).code, 0, c.procs[2]!.tail());
    assert.match(c.procs[2]!.log(), /stopping with the data kept/);
    const term_dead_ms = await waitFor(
      () => allSee(c, [0, 1], "n2", "dead"),
      "n0 and n1 see the SIGTERMed n2 dead (not left)",
      8000,
    );
    summary.sigterm_dead_ms = Math.round(term_dead_ms);

    // Drain n1: it leaves, exits 0, and n0 sees it left.
    const d = await c.api(1).call("Drain", {});
    assert.equal(d.started, true);
    const left_ms = await waitFor(
      () => allSee(c, [0], "n1", "left"),
      "n0 sees n1 left",
      8000,
    );
    summary.drain_left_ms = Math.round(left_ms);
    assert.equal((await c.procs[1]!.done).code, 0);
    const v0 = (await c.view(0))!;
    assert.equal(v0.get("n0")!.state, "alive");
    assert.equal(v0.get("n2")!.state, "dead");
  });
  console.log(JSON.stringify(summary));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`gossip_cluster_run: ${(e as Error)?.stack ?? e}`);
    process.exit(1);
  },
);
