/**
 * The security suite: a 3-node gossip cluster with a router (RF 2), every process started with
 * API keys, the cluster secret and TLS (the test CA of tests/fixtures/tls), attacked through its
 * ports as a stranger would:
 *
 * - anonymous, unknown-key and wrong-role calls to every RPC of `vectordb.VectorDB`, on the
 *   router and on a node → UNAUTHENTICATED / PERMISSION_DENIED, with messages naming the RPC;
 * - every internal RPC (Gossip.Exchange, Transfer.Scan/CopyBatch/Prune/ShardDrop) without a proof, with
 *   a proof made with another secret, with a replayed proof → UNAUTHENTICATED; forged gossip
 *   `alive` members and a forged `dead` of a real node change nothing;
 * - version extremes through the router (2^53 − 1, beyond the window) → INVALID_ARGUMENT and
 *   the router keeps writing; a member's gossip (valid proof) declaring a node dead at
 *   incarnation 2^53 − 1 is dropped (the node stays alive);
 * - oversized and malformed raw requests with a valid key (2 million empty points, a 64 KiB
 *   Get, broken protobuf) → RESOURCE_EXHAUSTED / INVALID_ARGUMENT before decoding;
 * - a plaintext client, and a client trusting another CA, cannot talk to the TLS port;
 *
 * and afterwards membership (router's Members), the ring (router's shard count) and the data
 * (every point, by Get through the router, and the nodes' counts) are exactly as before.
 *
 * A second test checks secure-by-default (a non-loopback bind without keys and secret refuses
 * to start, naming the flags) and SIGHUP re-reading the keys file on a real node.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ApiClient, isServiceError } from "../src/api/client.ts";
import { ClusterSecret, PROOF_HEADER } from "../src/api/cluster_proof.ts";
import { METHOD_ROLES, type Role, roleAllows } from "../src/api/auth.ts";
import { METHOD_NAMES, type MethodName } from "../src/api/proto.ts";
import { channelSetup, type ClientSecurity, clientSecurity } from "../src/api/security.ts";
import { TransferClient } from "../src/api/transfer.ts";
import { GossipClient } from "../src/cluster/gossip_transport.ts";
import { withCluster } from "../harness/cluster.ts";
import { NodeProcess } from "../harness/node.ts";
import { freePort } from "../harness/ports.ts";
import { NODE_ENTRY, nodeFlags, spawnServer } from "../harness/servers.ts";
import { ProcGroup } from "../harness/process.ts";
import { waitFor } from "../harness/wait.ts";

const TLS = fileURLToPath(new URL("./fixtures/tls/", import.meta.url));
const CA = join(TLS, "ca.pem");
const COLLECTION = "secure";
const DIM = 4;
const POINTS = 60;
const KEYS: Record<Role, string> = {
  read: "read-key-000000000000000000000001",
  write: "write-key-00000000000000000000002",
  admin: "admin-key-00000000000000000000003",
};
const SECRET = "0f".repeat(32);

/** The request each RPC gets in the role sweep: valid, so only authorization can refuse it. */
function sampleRequest(m: MethodName): unknown {
  switch (m) {
    case "Put":
      return { id: 10_000, vector: [1, 2, 3, 4], collection: COLLECTION };
    case "PutBatch":
      return { points: [{ id: 10_001, vector: [1, 2, 3, 4] }], collection: COLLECTION };
    case "Get":
      return { id: 1, collection: COLLECTION };
    case "Delete":
      return { id: 1, collection: COLLECTION };
    case "Search":
      return { vector: [1, 2, 3, 4], k: 3, collection: COLLECTION };
    case "CreateCollection":
      return { name: "attacker_made", dimension: 2 };
    case "DropCollection":
      return { name: COLLECTION };
    default:
      return {};
  }
}

async function code(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
    return { code: grpc.status.OK, details: "" };
  } catch (e) {
    if (!isServiceError(e)) throw e;
    return { code: e.code, details: e.details };
  }
}

/** Sends one gossip envelope to `target` as `security` allows; resolves with the status. */
async function exchange(
  target: string,
  security: ClientSecurity,
  payload: string,
): Promise<{ code: number; details: string }> {
  const setup = channelSetup(security, target);
  const g = new GossipClient(target, setup.credentials, {
    ...setup.options,
    interceptors: security.interceptors,
  });
  try {
    return await code(
      new Promise((resolve, reject) =>
        g.Exchange(
          { from: "127.0.0.1:1", payload },
          { deadline: Date.now() + 5000 },
          (e) => (e ? reject(e) : resolve(undefined)),
        )
      ),
    );
  } finally {
    g.close();
  }
}

function vector(id: number): number[] {
  return Array.from(Float32Array.from({ length: DIM }, (_, j) => Math.sin(id * 7 + j)));
}

interface Observed {
  members: string[];
  points: Map<number, number[] | null>;
  /** The router's ring (the nodes its Stats reports) with each one's point count. */
  node_counts: string[];
}

/** What must not change: members and states, the ring, every point, the nodes' counts. */
async function observe(admin: ApiClient): Promise<Observed> {
  const m = await admin.call("Members", {});
  const members = m.members.map((x) => `${x.id} ${x.address} ${x.state}`).sort();
  const stats = await admin.call("Stats", {});
  const points = new Map<number, number[] | null>();
  for (let id = 0; id < POINTS; id++) {
    const r = await admin.call("Get", { id, collection: COLLECTION });
    points.set(id, r.found ? r.vector : null);
  }
  const node_counts = (stats.nodes ?? []).map((n) =>
    `${n.address} ${n.collections.find((x) => x.name === COLLECTION)?.count}`
  ).sort();
  return { members, points, node_counts };
}

Deno.test({
  name: "security: strangers, wrong roles and forged internal calls change nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await mkdtemp(join(tmpdir(), "vectordb_security_"));
    const keysFile = join(dir, "keys");
    const secretFile = join(dir, "secret");
    await writeFile(
      keysFile,
      Object.entries(KEYS).map(([role, key]) => `${key} ${role}`).join("\n") + "\n",
    );
    await writeFile(secretFile, SECRET + "\n");
    const common = [
      "--api-keys-file",
      keysFile,
      "--cluster-secret-file",
      secretFile,
      "--tls-cert",
      join(TLS, "server.pem"),
      "--tls-key",
      join(TLS, "server.key"),
      "--tls-ca",
      CA,
    ];
    try {
      await withCluster({
        nodes: 3,
        replication_factor: 2,
        gossip: true,
        node_args: common,
        router_args: common,
      }, async (c) => {
        const as = (role: Role | null, addr = c.routerAddr) =>
          c.api(
            addr,
            5000,
            clientSecurity({ tls_ca: CA, api_key: role === null ? undefined : KEYS[role] }),
          );
        const admin = as("admin");
        await waitFor(
          async () => {
            const m = await admin.call("Members", {});
            return m.members.filter((x) => !x.is_router && x.state === "alive").length === 3;
          },
          "the router sees the 3 nodes alive",
          30_000,
        );
        // The ring follows gossip a moment after Members shows the nodes: retry until it does.
        await waitFor(
          async () =>
            (await admin.call("CreateCollection", { name: COLLECTION, dimension: DIM })) !==
              undefined,
          "the collection is created on the ring",
          30_000,
        );
        const writer = as("write");
        await writer.call("PutBatch", {
          collection: COLLECTION,
          points: Array.from({ length: POINTS }, (_, id) => ({ id, vector: vector(id) })),
        });
        const before = await observe(admin);
        assert.equal(before.members.length, 4, before.members.join("; "));
        assert.equal([...before.points.values()].filter((v) => v !== null).length, POINTS);

        // 1. Every public RPC, on the router and on a node: anonymous, unknown key, each role.
        const unknown = c.api(
          c.routerAddr,
          5000,
          clientSecurity({ tls_ca: CA, api_key: "not-a-key-0000000000000000000000" }),
        );
        let checked = 0;
        for (const addr of [c.routerAddr, c.nodeAddrs[0]]) {
          const anon = as(null, addr);
          const stranger = c.api(
            addr,
            5000,
            clientSecurity({ tls_ca: CA, api_key: "not-a-key-0000000000000000000000" }),
          );
          for (const m of METHOD_NAMES) {
            const req = sampleRequest(m);
            for (const who of [anon, stranger]) {
              const r = await code(who.call(m, req as never));
              assert.equal(r.code, grpc.status.UNAUTHENTICATED, `${m} on ${addr}: ${r.details}`);
              assert.ok(r.details.includes(m), r.details);
              checked++;
            }
            for (const role of ["read", "write"] as const) {
              if (roleAllows(role, METHOD_ROLES[m])) continue;
              const r = await code(as(role, addr).call(m, req as never));
              assert.equal(r.code, grpc.status.PERMISSION_DENIED, `${m} as ${role}: ${r.details}`);
              assert.ok(r.details.includes(`needs role ${METHOD_ROLES[m]}`), r.details);
              checked++;
            }
          }
        }
        unknown.close();
        assert.ok(checked >= 2 * (2 * METHOD_NAMES.length + 6), `${checked} refusals checked`);

        // 2. Internal RPCs: no proof, a proof of another secret, a replayed proof.
        const node = c.nodeAddrs[1];
        const tlsOnly: ClientSecurity = { tls: { ca: readFileSync(CA) }, interceptors: [] };
        const other = ClusterSecret.fromText("ab".repeat(32), "other");
        const real = ClusterSecret.fromText(SECRET, "test");
        const withProof = (proof: () => string): ClientSecurity => ({
          tls: tlsOnly.tls,
          interceptors: [(options, next) =>
            new grpc.InterceptingCall(next(options), {
              start(md, listener, n) {
                md.set(PROOF_HEADER, proof());
                n(md, listener);
              },
            })],
        });
        const replayed = real.sign("/vectordb.internal.Transfer/Scan", Date.now());
        // Used once for real (accepted: a read-only scan), then replayed below.
        const first = new TransferClient(node, 5000, {}, withProof(() => replayed));
        const scan = { collection: COLLECTION, after_id: 0, from_start: true, limit: 10 };
        assert.equal((await code(first.call("Scan", scan))).code, grpc.status.OK);
        first.close();
        const attackers: [string, ClientSecurity, RegExp][] = [
          ["no proof", tlsOnly, /needs a proof of the cluster secret/],
          [
            "another secret",
            withProof(() => other.sign("/vectordb.internal.Transfer/Prune", Date.now())),
            /wrong MAC/,
          ],
          ["a replayed proof", withProof(() => replayed), /already used/],
        ];
        for (const [what, security, re] of attackers) {
          const t = new TransferClient(node, 5000, {}, security);
          const ids = [...before.points.keys()];
          for (
            const [m, req] of [
              ["Prune", { collection: COLLECTION, ids, versions: ids.map(() => 2 ** 53 - 1) }],
              ["CopyBatch", {
                collection: COLLECTION,
                points: [{ id: 1, vector: [0, 0, 0, 0], version: 2 ** 53 - 1, deleted: true }],
              }],
              ["Scan", { collection: COLLECTION, after_id: 0, from_start: true, limit: 10 }],
              ["ShardDrop", {
                collection: COLLECTION,
                shard: 0,
                expected_root: new Uint8Array(8),
                expected_entries: 0,
              }],
            ] as const
          ) {
            if (what === "a replayed proof" && m !== "Scan") continue; // bound to Scan's path
            const r = await code(t.call(m, req as never));
            assert.equal(r.code, grpc.status.UNAUTHENTICATED, `${m} with ${what}: ${r.details}`);
            assert.match(r.details, re);
          }
          t.close();
        }
        // Forged gossip: four strangers claiming to be nodes, and a real node declared dead at
        // the largest incarnation, sent without a proof and with a wrong one.
        const forged = JSON.stringify({
          type: "gossip",
          v: 1,
          from: "evil",
          updates: [
            ...[1, 2, 3, 4].map((i) => ({
              state: "alive",
              id: `evil-${i}`,
              inc: 1,
              addr: `127.0.0.1:${1000 + i}`,
              meta: { role: "node" },
            })),
            { state: "dead", id: "ignored", inc: 2 ** 53 - 1, by: "evil" },
          ],
        });
        for (
          const [what, security] of [["no proof", tlsOnly], [
            "another secret",
            withProof(() => other.sign("/vectordb.internal.Gossip/Exchange", Date.now())),
          ]] as const
        ) {
          for (const target of [c.routerAddr, c.nodeAddrs[0]]) {
            const r = await exchange(target, security, forged);
            assert.equal(r.code, grpc.status.UNAUTHENTICATED, `gossip with ${what}: ${r.details}`);
          }
        }

        // 2b. A member's message (valid proof) with an incarnation no one could refute: the
        // update is dropped, the accused node stays alive.
        const victim = (await admin.call("Members", {})).members.find((x) => !x.is_router)!;
        const extreme = JSON.stringify({
          type: "gossip",
          v: 1,
          from: "router-like",
          updates: [{ state: "dead", id: victim.id, inc: 2 ** 53 - 1, by: "router-like" }],
        });
        for (const target of c.nodeAddrs) {
          const member = withProof(() =>
            real.sign("/vectordb.internal.Gossip/Exchange", Date.now())
          );
          const r = await exchange(target, member, extreme);
          // Accepted as a message (the sender proved the secret); its update is ignored.
          assert.equal(r.code, grpc.status.OK, `extreme incarnation to ${target}: ${r.details}`);
        }

        // 2c. Oversized and malformed requests with a valid write key, before decoding.
        const rawClient = (() => {
          const security = clientSecurity({ tls_ca: CA, api_key: KEYS.write });
          const setup = channelSetup(security, c.routerAddr);
          return new grpc.Client(c.routerAddr, setup.credentials, {
            ...setup.options,
            interceptors: security.interceptors,
            "grpc.max_send_message_length": 64 * 2 ** 20,
          });
        })();
        const raw = (path: string, bytes: Uint8Array) =>
          code(
            new Promise((resolve, reject) =>
              rawClient.makeUnaryRequest(
                path,
                (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
                (b: Buffer) => b,
                bytes,
                { deadline: Date.now() + 30_000 },
                (e, r) => (e ? reject(e) : resolve(r)),
              )
            ),
          );
        const tiny = Buffer.alloc(2 * 2_000_000); // 2 million empty points
        for (let i = 0; i < tiny.length; i += 2) tiny[i] = 0x0a;
        const oversized: [string, Uint8Array, number, RegExp][] = [
          ["/vectordb.VectorDB/PutBatch", tiny, grpc.status.RESOURCE_EXHAUSTED, /points/],
          [
            "/vectordb.VectorDB/Get",
            Buffer.alloc(64 * 1024),
            grpc.status.RESOURCE_EXHAUSTED,
            /Get message/,
          ],
          ["/vectordb.VectorDB/Put", Buffer.from([0x0a, 0xff]), grpc.status.INVALID_ARGUMENT, /./],
        ];
        for (const [path, bytes, want, re] of oversized) {
          const r = await raw(path, bytes);
          assert.equal(r.code, want, `${path}: ${r.details}`);
          assert.match(r.details, re);
        }
        rawClient.close();

        // 3. Version extremes through the router: refused, and the router keeps writing.
        for (const version of [2 ** 53 - 1, Date.now() * 1000 + 10 ** 15]) {
          const r = await code(
            writer.call("Put", { id: 5, vector: [9, 9, 9, 9], collection: COLLECTION, version }),
          );
          assert.equal(r.code, grpc.status.INVALID_ARGUMENT, `version ${version}: ${r.details}`);
          assert.match(r.details, /version/);
        }
        // 4. TLS: plaintext and a stranger's CA cannot talk to the port.
        for (
          const [what, security] of [
            ["plaintext", clientSecurity({ api_key: KEYS.admin })],
            [
              "another CA",
              clientSecurity({ tls_ca: join(TLS, "other_ca.pem"), api_key: KEYS.admin }),
            ],
          ] as const
        ) {
          // The refused handshake fails the call at once (UNAVAILABLE); the deadline only bounds
          // it, and 3 s could pass first on a loaded machine (then DEADLINE_EXCEEDED).
          const r = await code(c.api(c.routerAddr, 15_000, security).call("Stats", {}));
          assert.equal(r.code, grpc.status.UNAVAILABLE, `${what}: ${r.details}`);
        }

        // Gossip has had time to act on anything that got through.
        await new Promise((r) => setTimeout(r, 3000));
        const after = await observe(admin);
        assert.deepEqual(after.members, before.members);
        assert.deepEqual(after.node_counts, before.node_counts);
        assert.deepEqual(after.points, before.points);
        const cols = await admin.call("ListCollections", {});
        assert.deepEqual(cols.collections.map((x) => x.name), [COLLECTION]);
        // The router still writes (its clock was not moved), and the attack left it serving.
        const ok = await writer.call("Put", { id: 7, vector: vector(7), collection: COLLECTION });
        assert.ok(ok.ok);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
});

Deno.test({
  name: "security: non-loopback bind refuses without keys and secret; SIGHUP re-reads keys",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await mkdtemp(join(tmpdir(), "vectordb_security_"));
    const group = new ProcGroup();
    try {
      // Secure by default: 0.0.0.0 without keys and secret exits 1 naming the flags.
      const port = await freePort();
      const p = spawnServer({
        name: "open-node",
        entry: NODE_ENTRY,
        flags: nodeFlags({ port, data_dir: join(dir, "open"), host: "0.0.0.0" }),
        group,
      });
      const status = await p.done;
      assert.equal(status.code, 1, `exit ${JSON.stringify(status)}`);
      assert.match(
        p.stderr,
        /Refusing to serve the storage node on 0\.0\.0\.0.*--api-keys-file PATH.*--cluster-secret-file PATH.*--insecure/s,
      );

      // SIGHUP: a new key works after the reload; a broken file keeps the old keys.
      const keys = join(dir, "keys");
      const secret = join(dir, "secret");
      const k1 = "first-key-0000000000000000000001";
      const k2 = "second-key-000000000000000000002";
      await writeFile(keys, `${k1} admin\n`);
      await writeFile(secret, SECRET);
      const node = await NodeProcess.start({
        args: ["--api-keys-file", keys, "--cluster-secret-file", secret],
      });
      try {
        const client = (k: string) =>
          new ApiClient(node.address, { security: clientSecurity({ api_key: k }) });
        const c1 = client(k1);
        const c2 = client(k2);
        assert.equal((await code(c1.call("Stats", {}))).code, grpc.status.OK);
        assert.equal((await code(c2.call("Stats", {}))).code, grpc.status.UNAUTHENTICATED);
        await writeFile(keys, `${k1} admin\n${k2} read\n`);
        node.proc!.signal("SIGHUP");
        await waitFor(
          async () => (await code(c2.call("Stats", {}))).code === grpc.status.OK,
          "the second key works after SIGHUP",
        );
        assert.equal(
          (await code(c2.call("CreateCollection", { name: "x", dimension: 2 }))).code,
          grpc.status.PERMISSION_DENIED,
        );
        await writeFile(keys, `${k1} superuser\n`);
        node.proc!.signal("SIGHUP");
        await waitFor(
          () =>
            Promise.resolve(
              /SIGHUP: .*role "superuser".*the previous 2 keys stay/.test(node.stderr),
            ),
          "the broken file is refused and logged",
        );
        assert.equal((await code(c2.call("Stats", {}))).code, grpc.status.OK);
        c1.close();
        c2.close();
      } finally {
        await node.close();
      }
    } finally {
      await group.stopAll();
      await rm(dir, { recursive: true, force: true });
    }
  },
});
