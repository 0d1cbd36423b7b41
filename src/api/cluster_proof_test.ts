import assert from "node:assert/strict";

import * as grpc from "@grpc/grpc-js";
import { ClusterSecret, PROOF_SKEW_MS } from "./cluster_proof.ts";

const PATH = "/vectordb.internal.Transfer/Prune";
const secret = () => ClusterSecret.fromText("s".repeat(64), "test");

Deno.test("a proof verifies once, for its path, within the clock window", () => {
  const s = secret();
  const now = 1_800_000_000_000;
  const p = s.sign(PATH, now);
  assert.deepEqual(s.verify(PATH, p, now + 1000), null);
  const replay = s.verify(PATH, p, now + 1000);
  assert.deepEqual(replay?.code, grpc.status.UNAUTHENTICATED);
  assert.ok(/already used \(a replay\)/.test(replay!.details), replay!.details);
  const other = s.verify("/vectordb.internal.Gossip/Exchange", s.sign(PATH, now), now);
  assert.ok(other !== null && /wrong MAC/.test(other.details), String(other?.details));
  const late = s.verify(PATH, s.sign(PATH, now), now + PROOF_SKEW_MS + 1);
  assert.ok(late !== null && /from this member's clock/.test(late.details), String(late?.details));
  const early = s.verify(PATH, s.sign(PATH, now + PROOF_SKEW_MS + 1), now);
  assert.ok(early !== null && /from this member's clock/.test(early.details));
  assert.deepEqual(s.counters, { accepted: 1, refused: 4 });
});

Deno.test("a proof made with another secret, or forged, is refused", () => {
  const s = secret();
  const other = ClusterSecret.fromText("t".repeat(64), "other");
  const now = Date.now();
  assert.ok(/wrong MAC/.test(s.verify(PATH, other.sign(PATH, now), now)!.details));
  for (const forged of ["", "v1", "v2.1.2.3", `v1.${now}.zz.abc`, "x".repeat(500)]) {
    const r = s.verify(PATH, forged, now);
    assert.deepEqual(r?.code, grpc.status.UNAUTHENTICATED, forged);
  }
  // A valid proof with one byte of its MAC changed.
  const p = s.sign(PATH, now);
  const at = p.lastIndexOf(".") + 1; // the MAC's first character: 6 bits of its first byte
  const flipped = p.slice(0, at) + (p[at] === "A" ? "B" : "A") + p.slice(at + 1);
  assert.ok(/wrong MAC/.test(s.verify(PATH, flipped, now)!.details));
  assert.deepEqual(s.nonces, 0, "refused proofs must not fill the replay cache");
});

Deno.test("the replay cache forgets nonces once their proofs expired", () => {
  const s = secret();
  const t0 = 1_800_000_000_000;
  for (let i = 0; i < 100; i++) assert.deepEqual(s.verify(PATH, s.sign(PATH, t0), t0), null);
  assert.deepEqual(s.nonces, 100);
  const later = t0 + 2 * PROOF_SKEW_MS + 1;
  assert.deepEqual(s.verify(PATH, s.sign(PATH, later), later), null);
  assert.deepEqual(s.nonces, 1);
});

Deno.test("a short or unreadable secret is refused with what to do", () => {
  assert.throws(() => ClusterSecret.fromText("short\n", "/etc/s"), {
    name: "ClusterSecretError",
    message: /has 5 bytes; it must have 32 to 4096 .*openssl rand -hex 32/,
  });
  assert.throws(() => ClusterSecret.load("/nonexistent/secret"), {
    name: "ClusterSecretError",
    message: /\/nonexistent\/secret/,
  });
});
