/**
 * The standard gRPC health service (`grpc.health.v1.Health`: Check, Watch, List) on every
 * server, with the statuses a process's lifecycle gives them. The service definition is the
 * `health/v1/health.proto` of the npm package `grpc-health-check` (the grpc-node project's),
 * built by src/common/proto_services.ts (from the sources: parsed once; from a bundle: parsed at
 * build time); the three methods are implemented here, answering as that package's
 * implementation does (Check of an unknown name: NOT_FOUND; Watch of one: SERVICE_UNKNOWN; List
 * of more than 100 names: RESOURCE_EXHAUSTED). Why not the package's implementation: importing
 * it parses health.proto with proto-loader's full descriptors at module load, ~20 ms of CPU of
 * every server's start.
 *
 * | moment                                                       | "" and every service          |
 * |--------------------------------------------------------------|-------------------------------|
 * | created (before the port is bound)                           | NOT_SERVING                   |
 * | {@link ServerHealth.ready}: start-up finished                | SERVING                       |
 * | {@link ServerHealth.notServing}`(names)`: a drain begins     | those names and "" NOT_SERVING |
 * | {@link ServerHealth.close}: shutdown begins (before `tryShutdown`) | NOT_SERVING; Watch streams get it and end |
 *
 * The transitions only go forward: `ready()` after `notServing()` or `close()` changes
 * nothing, so a start-up that finishes while a stop has begun never says SERVING again.
 *
 * Storage node: "", `vectordb.VectorDB`, `vectordb.internal.Transfer`, `vectordb.internal.Gossip`
 * SERVING once the store is open and gossip has started; on a `Drain` every one but `Transfer`
 * goes NOT_SERVING at once (the router still copies this node's entries through Transfer during
 * the hand-off), and everything on the final stop. Router: "", `vectordb.VectorDB` (and
 * `vectordb.internal.Gossip` with `--join`) SERVING after its first ring reconcile.
 *
 * Check of a name not listed: NOT_FOUND; Watch of one: `SERVICE_UNKNOWN` (the library's answers,
 * as the protocol asks). Health needs no credentials (auth.ts: probes of load balancers and
 * kubelets carry none); at most {@link HEALTH_WATCHES_MAX} Watch streams are open at once
 * (beyond: RESOURCE_EXHAUSTED), so the open service cannot be used to pile up streams.
 *
 * Why `close()` ends the Watch streams: grpc-js's `tryShutdown` waits for every open call, and
 * a Watch stream never ends by itself, so one watching probe would hold every shutdown for its
 * full 5 s limit. Each watcher receives NOT_SERVING first, then the stream ends with OK.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { fileURLToPath } from "node:url";
import { loadServices } from "../common/proto_services.ts";

/** Fully qualified name of the health service. */
export const HEALTH_SERVICE = "grpc.health.v1.Health";
/** Absolute path of grpc-health-check's `health/v1/health.proto` (what the package exports). */
export const HEALTH_PROTO_PATH: string = fileURLToPath(
  new URL("../../node_modules/grpc-health-check/proto/health/v1/health.proto", import.meta.url),
);
/** Most names List answers with, as grpc-health-check's implementation. */
const LIST_NAMES_MAX = 100;

/** The service definition, with the options grpc-health-check loads it with. */
const healthServiceDefinition = loadServices(HEALTH_PROTO_PATH, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
})[HEALTH_SERVICE] as unknown as grpc.ServiceDefinition;
/** Most Watch streams open at once on one server. */
export const HEALTH_WATCHES_MAX = 1000;

/** A status this server reports (the protocol's `UNKNOWN` and `SERVICE_UNKNOWN` are not used). */
export type ServingStatus = "SERVING" | "NOT_SERVING";

/** Where a server is in its lifecycle, as health reports it. */
export type HealthPhase = "starting" | "serving" | "draining" | "stopped";

/** The server-streaming call of Watch, as the library's handler uses it. */
interface WatchCall {
  request: { service?: string };
  write(message: { status: string }): boolean;
  end(): void;
  on(event: "cancelled" | "finish" | "close", listener: () => void): unknown;
  emit(event: "error", error: Partial<grpc.StatusObject>): boolean;
}

/** The health statuses of one gRPC server and the `grpc.health.v1.Health` service reporting them. */
export class ServerHealth {
  /** The names reported: "" (the whole server) first, then the services. */
  readonly services: readonly string[];
  readonly #statuses = new Map<string, ServingStatus>();
  /** Open Watch streams and the name each watches. */
  readonly #watches = new Map<WatchCall, string>();
  #phase: HealthPhase = "starting";

  /** Every name (and "") starts NOT_SERVING. */
  constructor(services: readonly string[]) {
    this.services = ["", ...new Set(services.filter((s) => s !== ""))];
    for (const s of this.services) this.#statuses.set(s, "NOT_SERVING");
  }

  /** The current phase. */
  get phase(): HealthPhase {
    return this.#phase;
  }

  /** The status reported for `service` ("" the whole server); undefined when not listed. */
  status(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /** Watch streams open now. */
  get watches(): number {
    return this.#watches.size;
  }

  #set(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    for (const [call, name] of this.#watches) if (name === service) call.write({ status });
  }

  /** Start-up finished: every name SERVING. No effect once a drain or shutdown has begun. */
  ready(): void {
    if (this.#phase !== "starting") return;
    this.#phase = "serving";
    for (const s of this.services) this.#set(s, "SERVING");
  }

  /**
   * A drain began: `names` and "" go NOT_SERVING, the others keep their status (a node keeps
   * Transfer SERVING while the router copies its entries away). No effect after {@link close}.
   */
  notServing(names: readonly string[]): void {
    if (this.#phase === "stopped") return;
    this.#phase = "draining";
    this.#set("", "NOT_SERVING");
    for (const s of names) if (this.#statuses.has(s)) this.#set(s, "NOT_SERVING");
  }

  /**
   * Shutdown began: every name NOT_SERVING, each open Watch stream told so and then ended, and
   * later Watch calls answered with the status and ended at once. Call it before the server's
   * `tryShutdown`.
   */
  close(): void {
    if (this.#phase === "stopped") return;
    this.#phase = "stopped";
    for (const s of this.services) this.#set(s, "NOT_SERVING");
    const open = [...this.#watches.keys()];
    this.#watches.clear();
    for (const call of open) call.end();
  }

  /** Adds `grpc.health.v1.Health` to `server`. */
  addToServer(server: Pick<grpc.Server, "addService">): void {
    server.addService(healthServiceDefinition, {
      check: (call: { request: { service?: string } }, callback: grpc.sendUnaryData<unknown>) => {
        const service = call.request.service ?? "";
        const status = this.#statuses.get(service);
        if (status !== undefined) callback(null, { status });
        else {
          callback({
            code: grpc.status.NOT_FOUND,
            details: `Health status unknown for service ${service}`,
          });
        }
      },
      watch: (call: WatchCall) => this.#watch(call),
      list: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
        if (this.#statuses.size > LIST_NAMES_MAX) {
          callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: "Too many services to list." });
          return;
        }
        const statuses: Record<string, { status: ServingStatus }> = {};
        for (const [name, status] of this.#statuses) statuses[name] = { status };
        callback(null, { statuses });
      },
    } as unknown as grpc.UntypedServiceImplementation);
  }

  #watch(call: WatchCall): void {
    const service = call.request.service ?? "";
    if (this.#phase === "stopped") {
      const status = this.#statuses.get(service) ?? "SERVICE_UNKNOWN";
      call.write({ status });
      call.end();
      return;
    }
    if (this.#watches.size >= HEALTH_WATCHES_MAX) {
      call.emit("error", {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `${HEALTH_WATCHES_MAX} health Watch streams are open on this server; ` +
          `use Check, or close a Watch`,
      });
      return;
    }
    this.#watches.set(call, service);
    const forget = () => this.#watches.delete(call);
    call.on("cancelled", forget);
    call.on("finish", forget);
    // The current status first, then every change (#set) until the stream ends.
    call.write({ status: this.#statuses.get(service) ?? "SERVICE_UNKNOWN" });
  }
}
