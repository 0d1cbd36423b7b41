/**
 * The standard gRPC health service (`grpc.health.v1.Health`: Check, Watch, List) on every
 * server, from the npm package `grpc-health-check` (the grpc-node project's implementation; it
 * loads its own `health/v1/health.proto`), with the statuses a process's lifecycle gives them.
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
import { HealthImplementation, service as healthServiceDefinition } from "grpc-health-check";

/** Fully qualified name of the health service. */
export const HEALTH_SERVICE = "grpc.health.v1.Health";
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

type Handler = (...args: never[]) => void;

/** The health statuses of one gRPC server and the `grpc.health.v1.Health` service reporting them. */
export class ServerHealth {
  /** The names reported: "" (the whole server) first, then the services. */
  readonly services: readonly string[];
  readonly #impl: HealthImplementation;
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #watches = new Set<WatchCall>();
  #phase: HealthPhase = "starting";

  /** Every name (and "") starts NOT_SERVING. */
  constructor(services: readonly string[]) {
    this.services = ["", ...new Set(services.filter((s) => s !== ""))];
    const initial: Record<string, ServingStatus> = {};
    for (const s of this.services) {
      initial[s] = "NOT_SERVING";
      this.#statuses.set(s, "NOT_SERVING");
    }
    this.#impl = new HealthImplementation(initial);
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
    this.#impl.setStatus(service, status);
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
    const open = [...this.#watches];
    this.#watches.clear();
    for (const call of open) call.end();
  }

  /** Adds `grpc.health.v1.Health` to `server`. */
  addToServer(server: Pick<grpc.Server, "addService">): void {
    let handlers: Record<string, Handler> | null = null;
    // The library registers its handlers through addService; keep them to wrap Watch.
    this.#impl.addToServer({
      addService: (_definition: unknown, implementation: Record<string, Handler>) => {
        handlers = implementation;
      },
    });
    const lib = handlers as Record<string, Handler> | null;
    if (lib === null || typeof lib.watch !== "function") {
      throw new Error("grpc-health-check registered no Watch handler");
    }
    const libWatch = lib.watch as unknown as (call: WatchCall) => void;
    server.addService(healthServiceDefinition as unknown as grpc.ServiceDefinition, {
      ...lib,
      watch: (call: WatchCall) => this.#watch(call, libWatch),
    } as unknown as grpc.UntypedServiceImplementation);
  }

  #watch(call: WatchCall, libWatch: (call: WatchCall) => void): void {
    if (this.#phase === "stopped") {
      const status = this.#statuses.get(call.request.service ?? "") ?? "SERVICE_UNKNOWN";
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
    this.#watches.add(call);
    const forget = () => this.#watches.delete(call);
    call.on("cancelled", forget);
    call.on("finish", forget);
    libWatch(call);
  }
}
