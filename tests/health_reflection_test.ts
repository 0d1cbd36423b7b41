/**
 * Health and reflection on real processes (a storage node and a router, Node 20 through tsx),
 * through a grpcurl-style client written with grpc-js: it knows only the reflection and health
 * protos, never proto/vector_db.proto.
 *
 * 1. Reflection lists the services on both servers (v1 and v1alpha), returns the file
 *    descriptor of `vectordb.VectorDB` by symbol, and a client built from that descriptor alone
 *    calls `Search` by name and gets the points written before. Health Check answers SERVING for
 *    "" and each service. Then a Watch on each server sees SERVING, the server is sent SIGTERM,
 *    and the Watch receives NOT_SERVING before its stream ends with OK: the transition is
 *    observed, not timed.
 * 2. With API keys and the cluster secret: Health Check works without a key on both servers,
 *    reflection without a key is UNAUTHENTICATED, with a read key it works.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as HEALTH_PROTO_PATH } from "grpc-health-check";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { withCluster } from "../harness/cluster.ts";

const REFLECTION_PROTO = (version: "v1" | "v1alpha") =>
  fileURLToPath(
    new URL(
      `../node_modules/@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`,
      import.meta.url,
    ),
  );
const OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

type Ctor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;

// deno-lint-ignore no-explicit-any
type AnyClient = grpc.Client & Record<string, any>;

/** The client constructor of service `name` (fully qualified) in a package definition. */
function serviceCtor(def: protoLoader.PackageDefinition, name: string): Ctor {
  // deno-lint-ignore no-explicit-any
  let o: any = grpc.loadPackageDefinition(def);
  for (const part of name.split(".")) o = o[part];
  assert.equal(typeof o, "function", `${name} is a service`);
  return o as Ctor;
}

const HealthClient = serviceCtor(
  protoLoader.loadSync(HEALTH_PROTO_PATH, OPTIONS),
  "grpc.health.v1.Health",
);
const ReflectionV1 = serviceCtor(
  protoLoader.loadSync(REFLECTION_PROTO("v1"), OPTIONS),
  "grpc.reflection.v1.ServerReflection",
);
const ReflectionV1Alpha = serviceCtor(
  protoLoader.loadSync(REFLECTION_PROTO("v1alpha"), OPTIONS),
  "grpc.reflection.v1alpha.ServerReflection",
);

function metadataWith(key: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (key !== undefined) md.set("authorization", `Bearer ${key}`);
  return md;
}

/** Health Check of `service`: the status name, or the error's code name. */
function healthCheck(address: string, service: string): Promise<string> {
  const c = new HealthClient(address, grpc.credentials.createInsecure()) as AnyClient;
  return new Promise<string>((resolve) => {
    c.Check({ service }, { deadline: Date.now() + 5000 }, (e: grpc.ServiceError | null, r: {
      status: string;
    }) => {
      c.close();
      resolve(e !== null ? grpc.status[e.code] : r.status);
    });
  });
}

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  error_response?: { error_code: number; error_message: string };
}

/** One ServerReflectionInfo stream, one request, one answer (grpcurl does the same). */
function reflect(
  address: string,
  request: Record<string, string>,
  options: { key?: string; version?: "v1" | "v1alpha" } = {},
): Promise<ReflectionResponse> {
  const Ctor = options.version === "v1alpha" ? ReflectionV1Alpha : ReflectionV1;
  const c = new Ctor(address, grpc.credentials.createInsecure()) as AnyClient;
  return new Promise<ReflectionResponse>((resolve, reject) => {
    const stream: grpc.ClientDuplexStream<unknown, ReflectionResponse> = c.ServerReflectionInfo(
      metadataWith(options.key),
      { deadline: Date.now() + 10_000 },
    );
    let answer: ReflectionResponse | null = null;
    stream.on("data", (r: ReflectionResponse) => {
      answer = r;
      stream.end();
    });
    stream.on("error", (e) => {
      c.close();
      reject(e);
    });
    stream.on("status", (s: grpc.StatusObject) => {
      c.close();
      if (s.code !== grpc.status.OK) return; // "error" rejects
      if (answer === null) reject(new Error("The reflection stream ended without an answer"));
      else resolve(answer);
    });
    stream.write({ host: address, ...request });
  });
}

async function listServices(
  address: string,
  options: { key?: string; version?: "v1" | "v1alpha" } = {},
): Promise<string[]> {
  const r = await reflect(address, { list_services: "*" }, options);
  assert.ok(r.list_services_response, JSON.stringify(r.error_response));
  return r.list_services_response.service.map((s) => s.name).sort();
}

/** A FileDescriptorSet (field 1: repeated FileDescriptorProto) of the reflected files. */
function descriptorSet(files: Uint8Array[]): Buffer {
  const parts: number[] = [];
  for (const f of files) {
    parts.push(0x0a);
    for (let n = f.length;; n >>>= 7) {
      if (n < 0x80) {
        parts.push(n);
        break;
      }
      parts.push((n & 0x7f) | 0x80);
    }
    parts.push(...f);
  }
  return Buffer.from(parts);
}

/** A client of `service` built only from the descriptors reflection returned. */
async function reflectedClient(address: string, service: string): Promise<AnyClient> {
  const r = await reflect(address, { file_containing_symbol: service });
  assert.ok(r.file_descriptor_response, JSON.stringify(r.error_response));
  const files = r.file_descriptor_response.file_descriptor_proto;
  assert.ok(files.length >= 1);
  const def = protoLoader.loadFileDescriptorSetFromBuffer(descriptorSet(files), OPTIONS);
  assert.ok(service in def, `${service} is in the reflected descriptors`);
  const Ctor = serviceCtor(def, service);
  return new Ctor(address, grpc.credentials.createInsecure()) as AnyClient;
}

/** Calls `method` of a reflected client by its name. */
function callByName(client: AnyClient, method: string, request: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    client[method](
      request,
      { deadline: Date.now() + 5000 },
      (e: grpc.ServiceError | null, r: unknown) => (e !== null ? reject(e) : resolve(r)),
    );
  });
}

/** A health Watch of `service`: every status received, and the promise of the stream's end. */
function watch(address: string, service: string): {
  statuses: string[];
  first: Promise<void>;
  ended: Promise<grpc.StatusObject>;
} {
  const c = new HealthClient(address, grpc.credentials.createInsecure()) as AnyClient;
  const statuses: string[] = [];
  const stream: grpc.ClientReadableStream<{ status: string }> = c.Watch({ service });
  let firstSeen: () => void;
  const first = new Promise<void>((r) => (firstSeen = r));
  stream.on("data", (m: { status: string }) => {
    statuses.push(m.status);
    firstSeen();
  });
  const ended = new Promise<grpc.StatusObject>((resolve) => {
    stream.on("error", () => {}); // the status below carries it
    stream.on("status", (s: grpc.StatusObject) => {
      c.close();
      resolve(s);
    });
  });
  return { statuses, first, ended };
}

const NODE_SERVICES = [
  "grpc.health.v1.Health",
  "vectordb.VectorDB",
  "vectordb.internal.Gossip",
  "vectordb.internal.Transfer",
];
const ROUTER_SERVICES = ["grpc.health.v1.Health", "vectordb.VectorDB"];

Deno.test({
  name: "health and reflection: a grpcurl-style client lists, describes and calls Search; " +
    "health SERVING, then NOT_SERVING on SIGTERM",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({ nodes: 1, replication_factor: 1 }, async (c) => {
      const node = c.nodeAddrs[0];
      const router = c.routerAddr;
      const api = c.api(router);
      await api.call("CreateCollection", { name: "refl", dimension: 3 });
      await api.call("PutBatch", {
        collection: "refl",
        points: [
          { id: 1, vector: [1, 0, 0] },
          { id: 2, vector: [0, 1, 0] },
          { id: 3, vector: [0, 0, 1] },
        ],
      });

      // Reflection: list_services (both versions) on each server.
      assert.deepEqual(await listServices(node), NODE_SERVICES);
      assert.deepEqual(await listServices(node, { version: "v1alpha" }), NODE_SERVICES);
      assert.deepEqual(await listServices(router), ROUTER_SERVICES);
      assert.deepEqual(await listServices(router, { version: "v1alpha" }), ROUTER_SERVICES);
      const missing = await reflect(router, { file_containing_symbol: "vectordb.Nope" });
      assert.equal(missing.error_response?.error_code, grpc.status.NOT_FOUND);

      // A client from the reflected descriptor alone calls Search by name, on both servers.
      for (const address of [router, node]) {
        const client = await reflectedClient(address, "vectordb.VectorDB");
        try {
          const r = await callByName(client, "Search", {
            vector: [0.9, 0.1, 0],
            k: 3,
            collection: "refl",
          }) as { results: { id: string; distance: number }[] };
          // uint64 ids decode as decimal strings (longs: String).
          assert.deepEqual(r.results.map((x) => x.id).slice(0, 1), ["1"], JSON.stringify(r));
          assert.equal(r.results.length, 3);
        } finally {
          client.close();
        }
      }
      // The internal services are described too (calling them needs the cluster secret).
      const transfer = await reflect(node, {
        file_containing_symbol: "vectordb.internal.Transfer",
      });
      assert.ok(transfer.file_descriptor_response?.file_descriptor_proto.length);

      // Health: SERVING for the server and each service.
      for (
        const s of [
          "",
          "vectordb.VectorDB",
          "vectordb.internal.Transfer",
          "vectordb.internal.Gossip",
        ]
      ) {
        assert.equal(await healthCheck(node, s), "SERVING", `node ${JSON.stringify(s)}`);
      }
      assert.equal(await healthCheck(router, ""), "SERVING");
      assert.equal(await healthCheck(router, "vectordb.VectorDB"), "SERVING");
      assert.equal(await healthCheck(router, "vectordb.internal.Transfer"), "NOT_FOUND");

      // Shutdown: each Watch sees SERVING, then NOT_SERVING, then its stream ends with OK.
      for (
        const [name, address, stop] of [
          ["router", router, () => c.router!.signal("SIGTERM")],
          ["node", node, () => c.nodes[0]!.signal("SIGTERM")],
        ] as const
      ) {
        const w = watch(address, "");
        await w.first;
        assert.deepEqual(w.statuses, ["SERVING"], name);
        stop();
        const end = await w.ended;
        assert.equal(end.code, grpc.status.OK, `${name}: ${end.details}`);
        assert.deepEqual(w.statuses, ["SERVING", "NOT_SERVING"], name);
      }
      const exits = [await c.router!.done, await c.nodes[0]!.done];
      assert.deepEqual(exits.map((e) => e.code), [0, 0], JSON.stringify(exits));
    });
  },
});

Deno.test({
  name: "health and reflection with API keys: health needs no key, reflection needs read",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await mkdtemp(join(tmpdir(), "vectordb_health_"));
    const keys = join(dir, "keys");
    const secret = join(dir, "secret");
    const READ = "read-key-000000000000000000000001";
    await writeFile(keys, `${READ} read\nwrite-key-00000000000000000000002 write\n`);
    await writeFile(secret, "0f".repeat(32) + "\n");
    const flags = ["--api-keys-file", keys, "--cluster-secret-file", secret];
    try {
      await withCluster(
        { nodes: 1, replication_factor: 1, node_args: flags, router_args: flags },
        async (c) => {
          for (const address of [c.routerAddr, c.nodeAddrs[0]]) {
            assert.equal(await healthCheck(address, ""), "SERVING", address);
            assert.equal(await healthCheck(address, "vectordb.VectorDB"), "SERVING", address);
            await assert.rejects(
              listServices(address),
              (e: grpc.ServiceError) => {
                assert.equal(e.code, grpc.status.UNAUTHENTICATED, e.details);
                assert.match(e.details, /ServerReflectionInfo needs an API key/);
                return true;
              },
            );
            await assert.rejects(
              listServices(address, { key: "unknown-key-0000000000000000000", version: "v1alpha" }),
              (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED,
            );
            const names = await listServices(address, { key: READ });
            assert.ok(names.includes("vectordb.VectorDB"), names.join(","));
            assert.deepEqual(
              await listServices(address, { key: READ, version: "v1alpha" }),
              names,
            );
          }
          // Watch is open without a key too, and ends with NOT_SERVING on SIGTERM.
          const w = watch(c.nodeAddrs[0], "");
          await w.first;
          assert.deepEqual(w.statuses, ["SERVING"]);
          c.nodes[0]!.signal("SIGTERM");
          assert.equal((await w.ended).code, grpc.status.OK);
          assert.deepEqual(w.statuses, ["SERVING", "NOT_SERVING"]);
        },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
});
