/**
 * Gossip over gRPC: the `vectordb.internal.Gossip` service (proto/internal.proto), loaded at
 * runtime with @grpc/proto-loader, on the member's existing gRPC server and port.
 *
 * - **Server side.** {@link addGossipService} adds `Exchange` to an existing `grpc.Server`;
 *   each call is checked ({@link parseEnvelope}) and handed to a {@link GossipReceiver} (the
 *   {@link GossipAgent}). `from` empty or over 256 characters, or a payload that is not a JSON
 *   object → INVALID_ARGUMENT; a payload over 64 KiB → RESOURCE_EXHAUSTED; a receiver that
 *   has stopped → UNAVAILABLE. Before decoding, a request over
 *   {@link GOSSIP_EXCHANGE_BYTES_MAX} is refused with RESOURCE_EXHAUSTED and malformed protobuf
 *   with INVALID_ARGUMENT (common/wire_limits.ts).
 * - **Client side.** {@link GrpcGossipTransport} keeps one long-lived grpc-js client per peer
 *   address, at most `peers_max` (the least recently used one is closed to make room); a
 *   client unused for `idle_ms` is closed at the next send, and `forget(address)` (a dead or
 *   left member) closes one at once. Clients use a local subchannel pool and a reconnect
 *   backoff of 100 ms to 1 s (grpc's default grows to 120 s, which would keep a restarted
 *   member unreachable for minutes); `heard(address)` replaces a client whose channel is in
 *   TRANSIENT_FAILURE, since a message from that address proves it is back.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { loadServices } from "../common/proto_services.ts";
import { fileURLToPath } from "node:url";
import {
  GOSSIP_FROM_CHARS_MAX,
  GOSSIP_PAYLOAD_BYTES_MAX,
  type GossipEnvelope,
  type GossipReceiver,
  type GossipTransport,
} from "./gossip_agent.ts";
import { utf8Length } from "../common/utf8.ts";
import { limitService, refusalOf, type RequestLimit } from "../common/wire_limits.ts";

/** Absolute path of proto/internal.proto. */
export const INTERNAL_PROTO_PATH: string = fileURLToPath(
  new URL("../../proto/internal.proto", import.meta.url),
);

const packageDefinition = loadServices(INTERNAL_PROTO_PATH, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
});

type ExchangeCallback = (error: grpc.ServiceError | null, response?: unknown) => void;

/** A grpc-js client of `vectordb.internal.Gossip`. */
export type GossipClient = grpc.Client & {
  Exchange(
    request: GossipEnvelope,
    options: Partial<grpc.CallOptions>,
    callback: ExchangeCallback,
  ): grpc.ClientUnaryCall;
};

interface GossipClientConstructor {
  new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: Partial<grpc.ClientOptions>,
  ): GossipClient;
  service: grpc.ServiceDefinition;
}

const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
  vectordb: { internal: { Gossip: GossipClientConstructor } };
};

/** Client constructor of `vectordb.internal.Gossip`. */
export const GossipClient: GossipClientConstructor = loaded.vectordb.internal.Gossip;

/**
 * Largest Exchange request, checked on the raw bytes before decoding: the payload, the sender's
 * address (4 bytes a character at most) and the protobuf framing, as the clients' send limit.
 */
export const GOSSIP_EXCHANGE_BYTES_MAX = GOSSIP_PAYLOAD_BYTES_MAX + 4 * GOSSIP_FROM_CHARS_MAX + 64;

/** The request limits of `vectordb.internal.Gossip` (see common/wire_limits.ts). */
export const GOSSIP_REQUEST_LIMITS: Readonly<Record<string, RequestLimit>> = {
  Exchange: { bytes_max: GOSSIP_EXCHANGE_BYTES_MAX },
};

/**
 * The service definition servers add (`addGossipService`): the request deserializer checks
 * {@link GOSSIP_REQUEST_LIMITS} first and hands a refused request over as a `RefusedRequest`.
 */
export const gossipService: grpc.ServiceDefinition = limitService(
  GossipClient.service,
  GOSSIP_REQUEST_LIMITS,
);

/** Channel options of gossip clients. */
export const GOSSIP_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // Room for the payload, the sender's address and the protobuf framing.
  "grpc.max_send_message_length": GOSSIP_PAYLOAD_BYTES_MAX + 4 * GOSSIP_FROM_CHARS_MAX + 64,
  "grpc.max_receive_message_length": 1024,
  "grpc.use_local_subchannel_pool": 1,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
  "grpc.enable_retries": 0,
};

/** A gossip envelope that breaks a limit; `code` is the gRPC status to answer with. */
export class GossipEnvelopeError extends Error {
  override name = "GossipEnvelopeError";
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }
}

/** A send on a closed transport. */
export class GossipTransportClosedError extends Error {
  override name = "GossipTransportClosedError";
}

/** Checks an incoming envelope; returns the sender's address and the parsed message. */
export function parseEnvelope(request: unknown): { from: string; message: object } {
  const r = (request ?? {}) as Partial<Record<string, unknown>>;
  const from = r.from;
  const payload = r.payload;
  if (typeof from !== "string" || from.length === 0 || from.length > GOSSIP_FROM_CHARS_MAX) {
    const shown = typeof from === "string" ? from.slice(0, 64) : String(from);
    throw new GossipEnvelopeError(
      grpc.status.INVALID_ARGUMENT,
      `Gossip sender address "${shown}" must be 1 to ${GOSSIP_FROM_CHARS_MAX} characters`,
    );
  }
  if (typeof payload !== "string") {
    throw new GossipEnvelopeError(grpc.status.INVALID_ARGUMENT, "Gossip payload is missing");
  }
  if (payload.length > GOSSIP_PAYLOAD_BYTES_MAX / 3) {
    const bytes = utf8Length(payload);
    if (bytes > GOSSIP_PAYLOAD_BYTES_MAX) {
      throw new GossipEnvelopeError(
        grpc.status.RESOURCE_EXHAUSTED,
        `Gossip payload of ${bytes} bytes is over the ${GOSSIP_PAYLOAD_BYTES_MAX} byte limit`,
      );
    }
  }
  let message: unknown;
  try {
    message = JSON.parse(payload);
  } catch {
    message = undefined;
  }
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    throw new GossipEnvelopeError(
      grpc.status.INVALID_ARGUMENT,
      `Gossip payload "${payload.slice(0, 64)}" is not a JSON object`,
    );
  }
  return { from, message };
}

/** Adds `vectordb.internal.Gossip` to `server`, delivering each message to `receiver`. */
export function addGossipService(server: grpc.Server, receiver: GossipReceiver): void {
  server.addService(gossipService, {
    Exchange: (
      call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      const refused = refusalOf(call.request);
      if (refused !== null) {
        callback(refused);
        return;
      }
      let envelope: { from: string; message: object };
      try {
        envelope = parseEnvelope(call.request);
      } catch (e) {
        const err = e as GossipEnvelopeError;
        callback({ code: err.code ?? grpc.status.INVALID_ARGUMENT, details: err.message });
        return;
      }
      let accepted: boolean;
      try {
        accepted = receiver.deliver(envelope.from, envelope.message);
      } catch (e) {
        callback({ code: grpc.status.INTERNAL, details: (e as Error).message });
        return;
      }
      if (!accepted) {
        callback({ code: grpc.status.UNAVAILABLE, details: "This member is not gossiping" });
        return;
      }
      callback(null, {});
    },
  });
}

/** Options of {@link GrpcGossipTransport}. */
export interface GrpcGossipTransportOptions {
  /** Most peer clients kept open; default 256. */
  peers_max?: number;
  /** A client unused this long is closed; default 60 s. */
  idle_ms?: number;
  /** Extra channel options (over {@link GOSSIP_CHANNEL_OPTIONS}). */
  channel_options?: grpc.ChannelOptions;
  /** Credentials and extra options of the channel to one peer (TLS); default plaintext. */
  channel_setup?: (
    address: string,
  ) => { credentials: grpc.ChannelCredentials; options: Partial<grpc.ClientOptions> };
  /** Client interceptors (the cluster proof, api/cluster_proof.ts); default none. */
  interceptors?: grpc.Interceptor[];
}

/** A peer client that has not connected for this long is replaced by a fresh one. */
export const CONNECT_STUCK_MS = 3000;

interface PeerClient {
  client: GossipClient;
  last_used_ms: number;
  /** When the client was created or last completed an exchange. */
  ok_ms: number;
}

/** Counters of a {@link GrpcGossipTransport}. */
export interface GrpcGossipTransportStats {
  clients_opened: number;
  clients_closed: number;
  /** Closed to stay within `peers_max`. */
  clients_evicted: number;
  /** Replaced because a message arrived while their channel was backing off. */
  clients_reset: number;
}

/** The client side of gossip over grpc-js (see the module comment). */
export class GrpcGossipTransport implements GossipTransport {
  readonly peers_max: number;
  readonly idle_ms: number;
  readonly stats: GrpcGossipTransportStats = {
    clients_opened: 0,
    clients_closed: 0,
    clients_evicted: 0,
    clients_reset: 0,
  };
  /** In least recently used order (a use moves an entry to the end). */
  #clients = new Map<string, PeerClient>();
  #options: Partial<grpc.ClientOptions>;
  #setup: GrpcGossipTransportOptions["channel_setup"];
  #closed = false;
  #next_sweep_ms = 0;

  constructor(options: GrpcGossipTransportOptions = {}) {
    this.peers_max = options.peers_max ?? 256;
    this.idle_ms = options.idle_ms ?? 60_000;
    for (const [name, v] of [["peers_max", this.peers_max], ["idle_ms", this.idle_ms]] as const) {
      if (!Number.isSafeInteger(v) || v <= 0) {
        throw new RangeError(`Option ${name} ${v} is not a positive integer`);
      }
    }
    this.#options = {
      ...GOSSIP_CHANNEL_OPTIONS,
      ...options.channel_options,
      interceptors: options.interceptors ?? [],
    };
    this.#setup = options.channel_setup;
  }

  #newClient(to: string): GossipClient {
    if (this.#setup === undefined) {
      return new GossipClient(to, grpc.credentials.createInsecure(), this.#options);
    }
    const s = this.#setup(to);
    return new GossipClient(to, s.credentials, { ...s.options, ...this.#options });
  }

  /** Number of open peer clients. */
  get size(): number {
    return this.#clients.size;
  }

  send(to: string, envelope: GossipEnvelope, timeout_ms: number): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new GossipTransportClosedError("The gossip transport is closed"));
    }
    const now = performance.now();
    this.#sweep(now);
    let peer = this.#clients.get(to);
    if (peer !== undefined && this.#stuck(peer, now)) {
      // A connect attempt that a partition swallowed waits for TCP's own retry schedule
      // (tens of seconds, growing); a fresh client connects at once when the peer is back.
      this.#close(to);
      this.stats.clients_reset++;
      peer = undefined;
    }
    if (peer !== undefined) {
      this.#clients.delete(to);
    } else {
      while (this.#clients.size >= this.peers_max) {
        const [oldest] = this.#clients.keys();
        this.#close(oldest);
        this.stats.clients_evicted++;
      }
      peer = {
        client: this.#newClient(to),
        last_used_ms: now,
        ok_ms: now,
      };
      this.stats.clients_opened++;
    }
    peer.last_used_ms = now;
    this.#clients.set(to, peer);
    const client = peer.client;
    const used = peer;
    return new Promise<void>((resolve, reject) => {
      try {
        client.Exchange(envelope, { deadline: Date.now() + timeout_ms }, (err) => {
          if (err) reject(err);
          else {
            used.ok_ms = performance.now();
            resolve();
          }
        });
      } catch (e) {
        reject(e);
      }
    });
  }

  heard(address: string): void {
    const peer = this.#clients.get(address);
    if (peer === undefined) return;
    const state = peer.client.getChannel().getConnectivityState(false);
    if (
      state === grpc.connectivityState.TRANSIENT_FAILURE || this.#stuck(peer, performance.now())
    ) {
      this.#close(address);
      this.stats.clients_reset++;
    }
  }

  /** Not connected, and no exchange has completed for {@link CONNECT_STUCK_MS}. */
  #stuck(peer: PeerClient, now: number): boolean {
    if (now - peer.ok_ms < CONNECT_STUCK_MS) return false;
    return peer.client.getChannel().getConnectivityState(false) !== grpc.connectivityState.READY;
  }

  forget(address: string): void {
    this.#close(address);
  }

  close(): void {
    this.#closed = true;
    for (const address of [...this.#clients.keys()]) this.#close(address);
  }

  #close(address: string): void {
    const peer = this.#clients.get(address);
    if (peer === undefined) return;
    this.#clients.delete(address);
    peer.client.close();
    this.stats.clients_closed++;
  }

  #sweep(now: number): void {
    if (now < this.#next_sweep_ms) return;
    this.#next_sweep_ms = now + Math.min(this.idle_ms, 10_000);
    for (const [address, peer] of [...this.#clients]) {
      if (now - peer.last_used_ms >= this.idle_ms) this.#close(address);
    }
  }
}
