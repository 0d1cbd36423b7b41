/**
 * Gossip membership between real storage-node processes (Node 20 through tsx, like production)
 * on free loopback ports, observed through the public `Members` RPC:
 *
 * - three nodes started with `--join` of the first converge to the same 3-member view;
 * - the Gossip service rejects malformed and oversize envelopes with the documented statuses;
 * - a SIGKILLed node is declared `dead` by the others (the test allows 8 s; the target is 5 s
 *   and the measured time is printed);
 * - restarted with the same id and port it is `alive` again with a higher incarnation;
 * - a SIGTERMed node exits 0 WITHOUT leaving (a restart keeps its place): the others see it
 *   `dead`, as after a crash, never `left`;
 * - a node drained through the `Drain` RPC (`client drain`) is seen `left` and exits 0.
 *
 * The measurement (dead-everywhere times over several SIGKILL trials, false deaths in a healthy
 * loaded 5-node cluster) is a script: `deno run -A scripts/bench/gossip_measure.ts`.
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { GOSSIP_PAYLOAD_BYTES_MAX } from "../src/cluster/gossip_agent.ts";
import { GossipClient } from "../src/cluster/gossip_transport.ts";
import { allSee, withGossipCluster } from "../harness/gossip_cluster.ts";
import { waitFor } from "../harness/wait.ts";

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

Deno.test({
  name:
    "gossip: 3 nodes converge; SIGKILL → dead; restart → alive again; SIGTERM → dead; drain → left",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withGossipCluster(3, async (c) => {
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
      console.log(`gossip: SIGKILLed n2 seen dead by n0 and n1 after ${Math.round(dead_ms)} ms`);

      // Restart n2 (same id, port, data): alive again everywhere with a higher incarnation.
      await c.start(2);
      const back_ms = await waitFor(
        () => allSee(c, [0, 1], "n2", "alive", (m) => m.incarnation > inc_before),
        "n0 and n1 see n2 alive with a higher incarnation",
        10_000,
      );
      console.log(`gossip: restarted n2 seen alive again after ${Math.round(back_ms)} ms`);
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
      console.log(`gossip: SIGTERMed n2 seen dead (not left) after ${Math.round(term_dead_ms)} ms`);

      // Drain n1: it leaves, exits 0, and n0 sees it left.
      const d = await c.api(1).call("Drain", {});
      assert.equal(d.started, true);
      const left_ms = await waitFor(
        () => allSee(c, [0], "n1", "left"),
        "n0 sees n1 left",
        8000,
      );
      console.log(`gossip: drained n1 seen left after ${Math.round(left_ms)} ms`);
      assert.equal((await c.procs[1]!.done).code, 0);
      const v0 = (await c.view(0))!;
      assert.equal(v0.get("n0")!.state, "alive");
      assert.equal(v0.get("n2")!.state, "dead");
    }),
});
