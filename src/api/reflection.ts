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
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { fileURLToPath } from "node:url";
import { HEALTH_PROTO_PATH, HEALTH_SERVICE } from "./health.ts";
import { LOADER_OPTIONS, PROTO_PATH } from "./proto.ts";

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
  descriptors ??= {
    ...protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS),
    ...protoLoader.loadSync(INTERNAL_PROTO, LOADER_OPTIONS),
    ...protoLoader.loadSync(HEALTH_PROTO_PATH, LOADER_OPTIONS),
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
 * the package are loaded at start (by registering an implementation over no descriptors, whose
 * handlers are never called).
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
  new ReflectionService({}, { services: [] }).addToServer({
    addService: (def: grpc.ServiceDefinition, impl: Impl) => {
      const lazy: Impl = {};
      for (const name of Object.keys(impl)) {
        const path = def[name].path;
        // Reflection is one bidirectional-streaming method per version.
        lazy[name] = ((call: grpc.ServerDuplexStream<unknown, unknown>) =>
          (handler(path) as grpc.handleBidiStreamingCall<unknown, unknown>)(call)) as Impl[string];
      }
      server.addService(def, lazy);
    },
  });
}
