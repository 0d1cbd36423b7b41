/**
 * Shards of the ring, as the router counts them for `SearchResponse.shards_answered` and
 * `shards_total`: a shard is a distinct SET of owners of some ring range. Each virtual node v
 * ends the range (hash of v−1, hash of v], whose owners are the first `replication_factor`
 * distinct members met walking clockwise from v (see ring.ts); ranges with the same owner set
 * (in any order) form one shard. A search covers a shard when at least one of its owners
 * answered, so `partial` is exactly "some point might be held only by nodes that did not
 * answer".
 *
 * `HashRing` does not expose its virtual nodes, so {@link ringShards} rebuilds their positions
 * with the same hash and tie rule; shards_test.ts cross-checks the result against
 * `ring.owners()` so that a change to the ring cannot silently desynchronise the two.
 *
 * Pure: no IO, no clock.
 *
 * @module
 */

import { hashString } from "../common/hash.ts";
import type { HashRing } from "./ring.ts";

/**
 * The distinct owner sets of the ring's ranges at `replication_factor`, each sorted by member
 * id, the list sorted lexicographically. Empty for an empty ring.
 */
export function ringShards(ring: HashRing, replication_factor: number): string[][] {
  const members = ring.members();
  if (members.length === 0 || replication_factor < 1) return [];
  const want = Math.min(replication_factor, members.length);
  const vnodes: { hash: number; member: number }[] = [];
  for (let m = 0; m < members.length; m++) {
    const prefix = members[m] + "#";
    for (let i = 0; i < ring.vnodes_per_member; i++) {
      vnodes.push({ hash: hashString(prefix + i), member: m });
    }
  }
  // Same order as the ring: by hash, equal hashes by member id (members are sorted).
  vnodes.sort((a, b) => a.hash - b.hash || a.member - b.member);
  const n = vnodes.length;
  const shards = new Map<string, string[]>();
  const picked: number[] = [];
  for (let v = 0; v < n; v++) {
    picked.length = 0;
    for (let step = 0; step < n && picked.length < want; step++) {
      const m = vnodes[(v + step) % n].member;
      if (!picked.includes(m)) picked.push(m);
    }
    const set = picked.map((m) => members[m]).sort();
    const key = set.join("\n");
    if (!shards.has(key)) shards.set(key, set);
  }
  return [...shards.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([, set]) => set);
}
