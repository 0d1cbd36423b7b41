/**
 * gRPC server reflection (`grpc.reflection.v1.ServerReflection` and its predecessor
 * `grpc.reflection.v1alpha.ServerReflection`) from the npm package `@grpc/reflection`, so
 * `grpcurl`, `grpcui`, Postman and similar tools can list a server's services and call them
 * without a copy of the `.proto` files.
 *
 * The descriptors come from the same files the servers load (proto/vector_db.proto,
 * proto/internal.proto) and from `grpc-health-check`'s health.proto, parsed with
 * `@grpc/proto-loader`. `list_services` names exactly the services the server was given
 * ({@link REFLECTED_SERVICES} picks them): on a storage node `vectordb.VectorDB`,
 * `vectordb.internal.Transfer`, `vectordb.internal.Gossip` and `grpc.health.v1.Health`; on a
 * router `vectordb.VectorDB`, `grpc.health.v1.Health` (and `vectordb.internal.Gossip` with
 * `--join`). Internal services are listed because they are served on the port; calling them
 * still needs the cluster secret's proof (cluster_proof.ts). The reflection services do not list
 * themselves (the package does not export their descriptors).
 *
 * Reflection needs role `read` when API keys are configured (auth.ts), like the reads of data:
 * it tells a caller nothing a `read` key could not already learn, and nothing to a stranger.
 *
 * Note from the package: descriptors are regrouped by proto package, so the file names it
 * returns are per package, not the repository's file names.
 *
 * `@grpc/reflection` and `@grpc/proto-loader` are loaded on the first reflection call, not at
 * start: their module load alone (protobufjs's descriptor types) was ~20 ms of CPU of every
 * server's start, for a service few clients call. The bundle build turns the two `require`s
 * into static ones (scripts/tools/build_js.ts, BUNDLED_REQUIRES), so a bundle runs its own
 * copies, still only when first asked.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type * as protoLoader from "@grpc/proto-loader";
import type * as reflection from "@grpc/reflection";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { HEALTH_PROTO_PATH, HEALTH_SERVICE } from "./health.ts";
import { LOADER_OPTIONS, PROTO_PATH } from "./proto.ts";
import { loadServices } from "../common/proto_services.ts";

const requireHere = createRequire(import.meta.url);
// Keep these two texts as they are or update scripts/tools/build_js.ts (BUNDLED_REQUIRES).
const protoLoaderLib = (): typeof protoLoader => requireHere("@grpc/proto-loader");
const reflectionLib = (): typeof reflection => requireHere("@grpc/reflection");

/** Absolute path of `@grpc/reflection`'s reflection.proto of `version`. */
export function reflectionProtoPath(version: "v1" | "v1alpha"): string {
  return fileURLToPath(
    new URL(
      `../../node_modules/@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`,
      import.meta.url,
    ),
  );
}

/** The options `@grpc/reflection` loads its protos with (its `PROTO_LOADER_OPTS`). */
export const REFLECTION_LOADER_OPTIONS: protoLoader.Options = {
  longs: String,
  enums: String,
  bytes: Array,
  defaults: true,
  oneofs: true,
};

/** Fully qualified names of the reflection services. */
export const REFLECTION_SERVICES: readonly string[] = [
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

/** Absolute path of proto/internal.proto. */
const INTERNAL_PROTO: string = fileURLToPath(
  new URL("../../proto/internal.proto", import.meta.url),
);

/** The services a server of each kind lists (see the module comment). */
export const REFLECTED_SERVICES = {
  node: [
    "vectordb.VectorDB",
    "vectordb.internal.Transfer",
    "vectordb.internal.Gossip",
    HEALTH_SERVICE,
  ],
  router: ["vectordb.VectorDB", HEALTH_SERVICE],
  router_gossip: ["vectordb.VectorDB", "vectordb.internal.Gossip", HEALTH_SERVICE],
} as const;

let descriptors: protoLoader.PackageDefinition | null = null;

/** Every message and service this project serves, as one package definition (loaded once). */
export function servedDescriptors(): protoLoader.PackageDefinition {
  const { loadSync } = protoLoaderLib();
  descriptors ??= {
    ...loadSync(PROTO_PATH, LOADER_OPTIONS),
    ...loadSync(INTERNAL_PROTO, LOADER_OPTIONS),
    ...loadSync(HEALTH_PROTO_PATH, LOADER_OPTIONS),
  };
  return descriptors;
}

/** Throws a RangeError naming the first of `services` that {@link servedDescriptors} lacks. */
export function checkReflected(services: readonly string[]): void {
  const all = servedDescriptors();
  for (const s of services) {
    // A message type has `format`; a service is a map of its methods.
    const d = all[s];
    if (d === undefined || "format" in d) {
      throw new RangeError(`Reflection cannot list ${s}: no such service in the loaded protos`);
    }
  }
}

/**
 * Adds both reflection services to `server`, listing `services` (fully qualified names; each
 * must be one of {@link servedDescriptors}: {@link checkReflected}, which a test runs on every
 * list of {@link REFLECTED_SERVICES}).
 *
 * Lazily: building the descriptors of every file (what `ReflectionService`'s constructor does)
 * took 150-450 ms of each server's start on this machine, for a service few clients ever call.
 * The services are registered at once with handlers that build the real implementation on the
 * first reflection call and hand every stream to it; only the two small reflection protos of
 * the package are loaded at start, by {@link loadServices} with the package's options (so the
 * messages a stream carries are the objects the package's handlers expect).
 */
export function addReflection(
  server: Pick<grpc.Server, "addService">,
  services: readonly string[],
): void {
  type Impl = grpc.UntypedServiceImplementation;
  let real: Map<string, Impl[string]> | null = null;
  const handler = (path: string): Impl[string] => {
    if (real === null) {
      checkReflected(services);
      const built = new Map<string, Impl[string]>();
      const { ReflectionService } = reflectionLib();
      new ReflectionService(servedDescriptors(), { services: [...services] }).addToServer({
        addService: (def: grpc.ServiceDefinition, impl: Impl) => {
          for (const [name, fn] of Object.entries(impl)) built.set(def[name].path, fn);
        },
      });
      real = built;
    }
    const fn = real.get(path);
    if (fn === undefined) throw new Error(`Reflection has no handler for ${path}`);
    return fn;
  };
  for (const version of ["v1", "v1alpha"] as const) {
    const name = `grpc.reflection.${version}.ServerReflection`;
    const def = loadServices(reflectionProtoPath(version), REFLECTION_LOADER_OPTIONS)[
      name
    ] as unknown as grpc.ServiceDefinition;
    const lazy: Impl = {};
    for (const method of Object.keys(def)) {
      const path = def[method].path;
      // Reflection is one bidirectional-streaming method per version.
      lazy[method] = ((call: grpc.ServerDuplexStream<unknown, unknown>) =>
        (handler(path) as grpc.handleBidiStreamingCall<unknown, unknown>)(call)) as Impl[string];
    }
    server.addService(def, lazy);
  }
}
