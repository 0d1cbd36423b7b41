/**
 * Connection churn against a storage node under Node (the production runtime): 200 client
 * sessions of 64 concurrent calls each, a tenth of them child processes SIGKILLed mid-call, a
 * fifth closing their channel with calls in flight; then a long-lived channel reconnecting
 * across a graceful restart and a SIGKILL restart. The node must never die, and every call of an
 * orderly session must succeed. `scripts/faults/churn.ts` is the full-size run (1,000 sessions).
 *
 * `CHURN_SESSIONS` changes the session count, `CHURN_SEED` the seed.
 */
import assert from "node:assert/strict";
import { ApiClient } from "../src/api/client.ts";
import { NodeProcess } from "../harness/node.ts";
import { FAST_RECONNECT_OPTIONS, measureReconnect, runChurn } from "../harness/workloads/churn.ts";

Deno.test("storage node survives connection churn and killed clients", async () => {
  const sessions = Number(Deno.env.get("CHURN_SESSIONS") ?? 200);
  const seed = Number(Deno.env.get("CHURN_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  const node = await NodeProcess.start();
  let longLived: ApiClient | null = null;
  try {
    const result = await runChurn(node, { sessions, parallel: 6, seed });
    const summary = `seed ${seed}: ${result.sessions} sessions, ${result.killed_clients} killed ` +
      `clients, ${result.calls_ok} calls ok, ${result.calls_failed} failed, ` +
      `${result.calls_cancelled} cancelled, ${result.server_deaths.length} server deaths`;
    assert.equal(result.server_deaths.length, 0, summary);
    assert.deepEqual(node.unexpected_exits, [], summary);
    assert.equal(result.sessions, sessions, summary);
    assert.equal(result.killed_clients, Math.floor(sessions / 10), summary);
    assert.deepEqual(result.child_problems, [], summary);
    assert.deepEqual([...result.failures], [], summary);
    assert.ok(result.calls_ok > 0, summary);

    // The node still answers, and holds exactly the points of the orderly sessions' Puts (the
    // killed children's Puts may or may not have landed, but carry ids of their own range).
    const api = new ApiClient(node.address);
    try {
      const stats = await api.call("Stats", {});
      const churn = stats.collections.find((c) => c.name === "churn");
      assert.ok(churn !== undefined && Number(churn.count) > 0, JSON.stringify(stats));
      const got = await api.call("Get", { id: 0, collection: "churn" });
      assert.equal(got.found, true);
    } finally {
      api.close();
    }

    // One long-lived channel across restarts.
    longLived = new ApiClient(node.address, {
      timeout_ms: 5_000,
      client_options: FAST_RECONNECT_OPTIONS,
    });
    const graceful_ms = await measureReconnect(node, longLived);
    const kill_ms = await measureReconnect(node, longLived, { kill: true });
    console.log(
      `${summary}; reconnect after READY: ${graceful_ms.toFixed(0)} ms (graceful), ` +
        `${kill_ms.toFixed(0)} ms (SIGKILL)`,
    );
    // Not a speed assertion: a channel that never reconnects takes the 30 s timeout and throws.
    assert.ok(graceful_ms >= 0 && kill_ms >= 0);
    const count = await longLived.call("Stats", {});
    assert.ok(count.collections.some((c) => c.name === "churn"));
    assert.deepEqual(node.unexpected_exits, []);
  } catch (e) {
    console.error(`server_churn_test failed (CHURN_SEED=${seed}); node stderr:\n${node.tail()}`);
    throw e;
  } finally {
    longLived?.close();
    await node.close();
  }
});
