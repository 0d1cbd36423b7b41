import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import type { BackupInfo, CollectionInfo, MethodName } from "../api/proto.ts";
import { ClusterBackups, NODES_NAMED_MAX, summarize } from "./backups.ts";
import { type NodePort, NodeStatusError, RouterStatusError } from "./node_port.ts";

const PARAMS = { dimension: 2, metric: "l2", m: 16, ef_construction: 200 };

/** In-memory storage nodes: backups and collections by name; `down` nodes are unreachable. */
class FakeNodes {
  readonly backups = new Map<string, Map<string, BackupInfo>>();
  readonly collections = new Map<string, Map<string, CollectionInfo>>();
  readonly down = new Set<string>();
  /** Calls that fail with this error: `${node} ${method}`. */
  readonly fail = new Map<string, NodeStatusError>();
  readonly calls: string[] = [];

  constructor(readonly ring: string[]) {
    for (const a of ring) {
      this.backups.set(a, new Map());
      this.collections.set(a, new Map([["c", { name: "c", ...PARAMS }]]));
    }
  }

  port(): NodePort {
    return {
      // deno-lint-ignore no-explicit-any
      call: (node: string, method: MethodName, request: any): Promise<any> => {
        this.calls.push(`${node} ${method}`);
        if (this.down.has(node)) {
          return Promise.reject(new NodeStatusError(grpc.status.UNAVAILABLE, "connect refused"));
        }
        const failure = this.fail.get(`${node} ${method}`);
        if (failure !== undefined) return Promise.reject(failure);
        try {
          return Promise.resolve(this.#answer(node, method, request));
        } catch (e) {
          return Promise.reject(e);
        }
      },
      entries: () => Promise.reject(new NodeStatusError(grpc.status.UNIMPLEMENTED, "no entries")),
      transfer: () => null,
      open: () => {},
      close: () => {},
    };
  }

  // deno-lint-ignore no-explicit-any
  #answer(node: string, method: MethodName, r: any): unknown {
    const backups = this.backups.get(node)!;
    const collections = this.collections.get(node)!;
    const missing = (what: string) => new NodeStatusError(grpc.status.NOT_FOUND, what);
    switch (method) {
      case "Backup": {
        if (backups.has(r.name)) {
          throw new NodeStatusError(grpc.status.ALREADY_EXISTS, `Backup "${r.name}" exists`);
        }
        const c = collections.get(r.collection);
        if (c === undefined) throw missing(`collection ${r.collection}`);
        const b: BackupInfo = {
          name: r.name,
          collection: c,
          points: "10",
          bytes: "100",
          created_ms: String(1000 + backups.size),
          seq: "7",
          sha256: "ab",
          tombstones: "1",
        };
        backups.set(r.name, b);
        return { backup: b };
      }
      case "ListBackups":
        return { backups: [...backups.values()] };
      case "ListCollections":
        return { collections: [...collections.values()] };
      case "DeleteBackup":
        if (!backups.delete(r.name)) throw missing(`Backup "${r.name}" does not exist`);
        return { deleted: true };
      case "Restore": {
        const b = backups.get(r.backup);
        if (b === undefined) throw missing(`Backup "${r.backup}" does not exist`);
        collections.set(r.collection, { ...b.collection!, name: r.collection });
        return { collection: collections.get(r.collection), points: b.points };
      }
      case "CreateCollection":
        collections.set(r.name, { ...r });
        return { created: true, collection: r };
      case "CreateFieldIndex": {
        const c = collections.get(r.collection);
        if (c === undefined) throw missing(`collection ${r.collection}`);
        c.field_indexes = [...(c.field_indexes ?? []), { field: r.field, type: r.type }];
        return { created: true };
      }
      case "DropCollection":
        return { dropped: collections.delete(r.name) };
      default:
        throw new Error(`unexpected ${method}`);
    }
  }

  names(node: string): string[] {
    return [...this.backups.get(node)!.keys()].sort();
  }
}

function setup(n = 3, antiEntropy = () => false) {
  const ring = Array.from({ length: n }, (_, i) => `127.0.0.1:${7000 + i}`);
  const fake = new FakeNodes(ring);
  const logs: string[] = [];
  const backups = new ClusterBackups({
    nodes: fake.port(),
    log: (m) => logs.push(m),
    node_timeout_ms: 1000,
    antiEntropy,
  });
  return { ring, fake, backups, logs };
}

async function rejectsWith(p: Promise<unknown>, code: grpc.status, message: RegExp) {
  await assert.rejects(p, (e: RouterStatusError) => {
    assert.ok(e instanceof RouterStatusError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("cluster backup: every node takes it; the summary sums and lists the nodes", async () => {
  const { ring, fake, backups } = setup();
  const info = await backups.backup(ring, "c", "b1");
  for (const a of ring) assert.deepEqual(fake.names(a), ["b1"]);
  assert.equal(info.points, "30");
  assert.equal(info.bytes, "300");
  assert.equal(info.tombstones, "3");
  assert.equal(info.created_ms, "1000");
  assert.equal(info.complete, true);
  assert.deepEqual(info.nodes!.map((n) => [n.address, n.backup?.seq, n.error]), [
    [ring[0], "7", ""],
    [ring[1], "7", ""],
    [ring[2], "7", ""],
  ]);
  const listed = await backups.list(ring);
  assert.deepEqual(listed.errors, []);
  assert.deepEqual(listed.backups.map((b) => [b.name, b.complete, b.points]), [["b1", true, "30"]]);
});

Deno.test("cluster backup: a node down fails the call and the others' backups are deleted", async () => {
  const { ring, fake, backups } = setup();
  fake.down.add(ring[1]);
  await rejectsWith(
    backups.backup(ring, "c", "b1"),
    grpc.status.UNAVAILABLE,
    /failed on 1 of 3 storage nodes: 127\.0\.0\.1:7001: UNAVAILABLE.*Deleted it again on the 2/,
  );
  for (const a of ring) assert.deepEqual(fake.names(a), []);
});

Deno.test("cluster backup: a name taken on one node fails; that node's own backup is kept", async () => {
  const { ring, fake, backups } = setup();
  const old = await backups.backup([ring[2]], "c", "b1");
  assert.equal(old.complete, true);
  await rejectsWith(
    backups.backup(ring, "c", "b1"),
    grpc.status.ALREADY_EXISTS,
    /failed on 1 of 3 storage nodes: 127\.0\.0\.1:7002: ALREADY_EXISTS/,
  );
  assert.deepEqual(ring.map((a) => fake.names(a)), [[], [], ["b1"]]);
  const listed = await backups.list(ring);
  assert.equal(listed.backups[0].complete, false);
  assert.match(listed.backups[0].nodes![0].error!, /^NOT_FOUND: node 127\.0\.0\.1:7000 has no/);
});

Deno.test("cluster backup: a cleanup that fails names the nodes where the backup remains", async () => {
  const { ring, fake, backups } = setup();
  fake.fail.set(`${ring[2]} Backup`, new NodeStatusError(grpc.status.DATA_LOSS, "disk"));
  fake.fail.set(`${ring[0]} DeleteBackup`, new NodeStatusError(grpc.status.INTERNAL, "io"));
  await rejectsWith(
    backups.backup(ring, "c", "b1"),
    grpc.status.DATA_LOSS,
    /Deleted it again on the 1 nodes.*Could NOT delete it on 1 nodes.*127\.0\.0\.1:7000: INTERNAL/,
  );
  assert.deepEqual(ring.map((a) => fake.names(a)), [["b1"], [], []]);
  // DeleteBackup through the router removes the rest.
  fake.fail.clear();
  assert.deepEqual(await backups.delete(ring, "b1"), { deleted: true, nodes: [ring[0]] });
  await rejectsWith(backups.delete(ring, "b1"), grpc.status.NOT_FOUND, /on no storage node/);
});

Deno.test("cluster list: a node that does not answer is an error line; none answering is UNAVAILABLE", async () => {
  const { ring, fake, backups } = setup();
  await backups.backup(ring, "c", "b1");
  fake.down.add(ring[0]);
  const listed = await backups.list(ring);
  assert.equal(listed.errors!.length, 1);
  assert.match(listed.errors![0], /^127\.0\.0\.1:7000: UNAVAILABLE/);
  assert.equal(listed.backups[0].complete, false);
  assert.match(listed.backups[0].nodes![0].error!, /^UNAVAILABLE/);
  fake.down.add(ring[1]).add(ring[2]);
  await rejectsWith(backups.list(ring), grpc.status.UNAVAILABLE, /No storage node answered/);
});

Deno.test("cluster restore: holders restore, a node without the backup creates it empty", async () => {
  let started = 0;
  const { ring, fake, backups } = setup(3, () => (started++, true));
  await backups.backup(ring.slice(0, 2), "c", "b1");
  const r = await backups.restore(ring, "b1", "r");
  assert.deepEqual(r.collection, { name: "r", ...PARAMS });
  assert.equal(r.points, "20");
  assert.deepEqual(r.nodes!.map((n) => [n.from_backup, n.points]), [
    [true, "10"],
    [true, "10"],
    [false, "0"],
  ]);
  assert.equal(r.anti_entropy_started, true);
  assert.equal(started, 1);
  for (const a of ring) assert.ok(fake.collections.get(a)!.has("r"));
  await rejectsWith(backups.restore(ring, "b1", "r"), grpc.status.ALREADY_EXISTS, /already exists/);
  await rejectsWith(backups.restore(ring, "nope", "r2"), grpc.status.NOT_FOUND, /on no storage/);
  fake.down.add(ring[2]);
  await rejectsWith(
    backups.restore(ring, "b1", "r2"),
    grpc.status.UNAVAILABLE,
    /every storage node of the ring must answer, and 1 did not \(nothing was changed\)/,
  );
  assert.equal(fake.calls.filter((c) => c.endsWith("Restore")).length, 2);
});

Deno.test("cluster restore: a node without the backup makes it with the backup's layout and indexes", async () => {
  const { ring, fake, backups } = setup(3);
  const sharded: CollectionInfo = {
    name: "s",
    ...PARAMS,
    shard_number: 12,
    replication_factor: 2,
    field_indexes: [{ field: "lang", type: "keyword" }],
  };
  for (const a of ring.slice(0, 2)) fake.collections.get(a)!.set("s", { ...sharded });
  await backups.backup(ring.slice(0, 2), "s", "b1");
  const r = await backups.restore(ring, "b1", "r");
  assert.equal(r.nodes![2].from_backup, false);
  for (const a of ring) {
    const made = fake.collections.get(a)!.get("r")!;
    assert.deepEqual(
      [made.shard_number, made.replication_factor, made.field_indexes],
      [12, 2, [{ field: "lang", type: "keyword" }]],
      a,
    );
  }
  // Two copies of one backup name with different layouts are not one cluster backup.
  fake.collections.get(ring[1])!.set("t", { ...sharded, name: "t", shard_number: 6 });
  fake.collections.get(ring[0])!.set("t", { ...sharded, name: "t" });
  await backups.backup(ring.slice(0, 2), "t", "b2");
  await rejectsWith(
    backups.restore(ring, "b2", "r2"),
    grpc.status.FAILED_PRECONDITION,
    /not one cluster backup/,
  );
});

Deno.test("cluster restore: a node failing drops the collection again where it was made", async () => {
  const { ring, fake, backups } = setup();
  await backups.backup(ring, "c", "b1");
  fake.fail.set(`${ring[1]} Restore`, new NodeStatusError(grpc.status.DATA_LOSS, "sha256"));
  await rejectsWith(
    backups.restore(ring, "b1", "r"),
    grpc.status.DATA_LOSS,
    /failed on 1 of 3 storage nodes: 127\.0\.0\.1:7001: DATA_LOSS.*Dropped the collection again on the 2/,
  );
  for (const a of ring) assert.equal(fake.collections.get(a)!.has("r"), false);
});

Deno.test("cluster restore: a payload index failing drops the collection on that node too", async () => {
  const { ring, fake, backups } = setup(3);
  const indexed: CollectionInfo = {
    name: "s",
    ...PARAMS,
    field_indexes: [{ field: "lang", type: "keyword" }],
  };
  for (const a of ring.slice(0, 2)) fake.collections.get(a)!.set("s", { ...indexed });
  await backups.backup(ring.slice(0, 2), "s", "b1");
  fake.fail.set(
    `${ring[2]} CreateFieldIndex`,
    new NodeStatusError(grpc.status.INVALID_ARGUMENT, "type keyword unknown"),
  );
  await rejectsWith(
    backups.restore(ring, "b1", "r"),
    grpc.status.INVALID_ARGUMENT,
    /failed on 1 of 3 storage nodes: 127\.0\.0\.1:7002: INVALID_ARGUMENT.*Dropped the collection again on the 3/,
  );
  for (const a of ring) assert.equal(fake.collections.get(a)!.has("r"), false, a);
});

Deno.test("cluster restore: copies with no stored replication factor match those with one", async () => {
  const { ring, fake, backups } = setup(3);
  // A collection from before shards stores no factor (0: the router's default); a node that got
  // it later from a re-issued create stores the router's (a version 2 backup there). One layout.
  fake.collections.get(ring[0])!.set("c", { name: "c", ...PARAMS, shard_number: 1 });
  fake.collections.get(ring[1])!.set("c", {
    name: "c",
    ...PARAMS,
    shard_number: 1,
    replication_factor: 2,
  });
  fake.collections.get(ring[2])!.delete("c");
  await backups.backup(ring.slice(0, 2), "c", "b1");
  const r = await backups.restore(ring, "b1", "r");
  assert.equal(r.nodes![2].from_backup, false);
  const made = fake.collections.get(ring[2])!.get("r")!;
  assert.deepEqual([made.shard_number, made.replication_factor], [1, 2]);
  // Two stored factors that differ are two layouts.
  fake.collections.get(ring[0])!.set("c", {
    name: "c",
    ...PARAMS,
    shard_number: 1,
    replication_factor: 3,
  });
  await backups.backup(ring.slice(0, 2), "c", "b2");
  await rejectsWith(
    backups.restore(ring, "b2", "r2"),
    grpc.status.FAILED_PRECONDITION,
    /not one cluster backup/,
  );
});

Deno.test("cluster restore: copies of one name with different parameters are refused", async () => {
  const { ring, fake, backups } = setup(2);
  fake.collections.get(ring[1])!.set("c", { name: "c", ...PARAMS, dimension: 3 });
  await backups.backup(ring, "c", "b1");
  await rejectsWith(
    backups.restore(ring, "b1", "r"),
    grpc.status.FAILED_PRECONDITION,
    /not one cluster backup/,
  );
});

Deno.test("cluster backups: messages name at most NODES_NAMED_MAX nodes", async () => {
  const { ring, fake, backups } = setup(NODES_NAMED_MAX + 3);
  for (const a of ring) fake.down.add(a);
  await rejectsWith(backups.delete(ring, "b"), grpc.status.UNAVAILABLE, /; and 3 more$/);
  assert.equal(summarize("b", [], new Map()).complete, false);
});
