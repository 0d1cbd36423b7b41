import assert from "node:assert/strict";
import { HashRing } from "./ring.ts";
import { ringShards } from "./ring_shards.ts";

/** Owner sets seen by sampling point ids through ring.owners(). */
function sampledShards(ring: HashRing, rf: number, samples: number): Set<string> {
  const seen = new Set<string>();
  for (let i = 0; i < samples; i++) {
    const id = Math.imul(i, 2654435761) >>> 0;
    seen.add(ring.owners(id, rf).sort().join("\n"));
  }
  return seen;
}

Deno.test("ringShards agrees with ring.owners() for every sampled point", () => {
  const configs: [string[], number, number | undefined][] = [
    [["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"], 2, undefined],
    [["a", "b", "c"], 1, undefined],
    [["a", "b", "c", "d", "e"], 2, 16],
    [["a", "b", "c", "d", "e"], 3, 8],
    [["n1", "n2", "n3", "n4"], 4, 4],
  ];
  for (const [members, rf, vnodes] of configs) {
    const ring = new HashRing({ members, vnodes_per_member: vnodes });
    const shards = ringShards(ring, rf);
    const keys = new Set(shards.map((s) => s.join("\n")));
    assert.equal(keys.size, shards.length, "shards are distinct");
    for (const s of shards) {
      assert.equal(s.length, Math.min(rf, members.length));
      assert.deepEqual(s, s.slice().sort());
    }
    const sampled = sampledShards(ring, rf, 20_000);
    for (const k of sampled) assert.ok(keys.has(k), `owner set ${k} is missing from the shards`);
    // With few vnodes every range is wide enough to be hit by 20,000 samples.
    if (vnodes !== undefined && vnodes <= 16) assert.equal(sampled.size, keys.size);
  }
});

Deno.test("ringShards: three nodes with RF 2 have the three pairs; RF 1 the three nodes", () => {
  const ring = new HashRing({ members: ["c", "a", "b"] });
  assert.deepEqual(ringShards(ring, 2), [["a", "b"], ["a", "c"], ["b", "c"]]);
  assert.deepEqual(ringShards(ring, 1), [["a"], ["b"], ["c"]]);
  assert.deepEqual(ringShards(ring, 5), [["a", "b", "c"]]);
  assert.deepEqual(ringShards(new HashRing(), 2), []);
});
