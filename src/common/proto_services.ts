/**
 * gRPC service definitions of a `.proto` file, built with protobufjs directly: what
 * `@grpc/proto-loader`'s `loadSync` gives for each service (method paths, the same serializers
 * and deserializers with the same conversion options), without the descriptor of every message
 * that `loadSync` also builds (a `DescriptorProto`, converted to an object, plus the encoded file
 * descriptors, per message). grpc-js reads only the service entries; reflection
 * (src/api/reflection.ts) still loads the full descriptors with proto-loader, when first asked.
 *
 * Why: a storage node's restart parses its protos before it can serve, and proto-loader's
 * descriptors were about half of that (~30 ms of CPU for vector_db.proto and internal.proto on
 * this machine, measured with `process.cpuUsage`); each file is also parsed once per process
 * here, where transfer.ts and gossip_transport.ts parsed internal.proto once each.
 *
 * protobufjs is the copy `@grpc/proto-loader` resolves (its dependency, not a new one of ours),
 * loaded through `createRequire` from proto-loader's own location.
 * @module
 */
import { createRequire } from "node:module";
import { relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type * as protoLoader from "@grpc/proto-loader";

/** The part of protobufjs's Type this module uses. */
interface PbType {
  fromObject(object: Record<string, unknown>): unknown;
  encode(message: unknown): { finish(): Uint8Array };
  decode(bytes: Uint8Array): unknown;
  toObject(message: unknown, options: protoLoader.Options): unknown;
}

interface PbMethod {
  name: string;
  requestStream?: boolean;
  responseStream?: boolean;
  resolvedRequestType: PbType | null;
  resolvedResponseType: PbType | null;
}

interface PbNamespace {
  name: string;
  nestedArray: PbNamespace[];
  methodsArray?: PbMethod[];
}

interface PbRoot extends PbNamespace {
  loadSync(filename: string, options: { keepCase?: boolean }): PbRoot;
  resolveAll(): PbRoot;
  toJSON(): unknown;
}

interface Protobuf {
  Root: (new () => PbRoot) & { fromJSON(json: unknown): PbRoot };
  /** The Service class (its instances are namespaces with `methodsArray`). */
  Service: abstract new (...args: never[]) => object;
}

const requireHere = createRequire(import.meta.url);
// proto-loader's own protobufjs (not a dependency of ours by name). The bundle build replaces
// this expression with a static require (scripts/tools/build_js.ts, BUNDLED_REQUIRES), so the
// bundle holds one protobufjs; keep the text as it is or update the build with it.
const protobuf = createRequire(requireHere.resolve("@grpc/proto-loader"))(
  "protobufjs",
) as Protobuf;

const loaded = new Map<string, protoLoader.PackageDefinition>();

/**
 * The `.proto` files the bundle build parsed (scripts/tools/build_js.ts defines this in the
 * server bundles: path relative to the repository root → {@link protoRootJson}); not defined
 * when running from the sources.
 */
declare const __VDB_PROTO_JSON: Readonly<Record<string, unknown>> | undefined;

/**
 * A `.proto` file (and what it imports) parsed, as protobufjs's JSON: what
 * {@link loadServices} builds the same services from without parsing the text again. The
 * bundle build stores it for every file a server loads, so a server from the bundle parses none.
 */
export function protoRootJson(path: string, keepCase: boolean): unknown {
  return new protobuf.Root().loadSync(path, { keepCase }).toJSON();
}

/** The key of a parse of `rel` (relative to the root) in the bundle's `__VDB_PROTO_JSON`. */
export function precompiledKey(rel: string, keepCase: boolean): string {
  return keepCase ? rel : `${rel}:camelCase`;
}

/** The repository root: src/api/ and build/js/ are both two folders below it. */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The build's parse of `path` with `keepCase`, when it made one. */
function precompiled(path: string, keepCase: boolean | undefined): unknown {
  if (typeof __VDB_PROTO_JSON === "undefined") return undefined;
  return __VDB_PROTO_JSON[precompiledKey(relative(ROOT, path).split(sep).join("/"), !!keepCase)];
}

/** proto-loader's `originalName` (lodash `camelCase`) for the PascalCase method names we use. */
function originalName(method: string): string {
  if (!/^[A-Z][A-Za-z0-9]*$/.test(method)) {
    throw new Error(`Method name ${method} is not PascalCase`);
  }
  return method[0].toLowerCase() + method.slice(1);
}

function serializer(type: PbType): (value: Record<string, unknown>) => Buffer {
  return (value) => {
    if (Array.isArray(value)) {
      throw new Error("Failed to serialize message: expected an object, got an array");
    }
    // A Buffer under Node (protobufjs writes with Buffer there), as proto-loader returns it.
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: PbType, options: protoLoader.Options): (bytes: Buffer) => unknown {
  return (bytes) => type.toObject(type.decode(bytes), options);
}

/**
 * The service definitions of `path` (keyed by fully qualified service name, as proto-loader
 * keys them), parsed once per process and options object; `options` as proto-loader takes them
 * (`keepCase` for parsing; the rest for converting messages). `json`: the file already parsed
 * ({@link protoRootJson} with the same `keepCase`; by default the bundle build's, when there is
 * one for `path`).
 */
export function loadServices(
  path: string,
  options: protoLoader.Options,
  json: unknown = precompiled(path, options.keepCase),
): protoLoader.PackageDefinition {
  // Functions (`longs: String`) by name: JSON.stringify would drop them.
  const key = `${path}\n${json === undefined ? "parsed" : "json"}\n${
    JSON.stringify(options, (_, v) => typeof v === "function" ? `fn:${v.name}` : v)
  }`;
  const cached = loaded.get(key);
  if (cached !== undefined) return cached;
  const root = json !== undefined
    ? protobuf.Root.fromJSON(json)
    : new protobuf.Root().loadSync(path, { keepCase: options.keepCase });
  root.resolveAll();
  const out: protoLoader.PackageDefinition = {};
  const walk = (ns: PbNamespace, prefix: string) => {
    for (const obj of ns.nestedArray ?? []) {
      const name = prefix === "" ? obj.name : `${prefix}.${obj.name}`;
      if (obj.methodsArray !== undefined && (obj as object) instanceof protobuf.Service) {
        const service: Record<string, unknown> = {};
        for (const m of obj.methodsArray!) {
          const request = m.resolvedRequestType!;
          const response = m.resolvedResponseType!;
          service[m.name] = {
            path: `/${name}/${m.name}`,
            requestStream: !!m.requestStream,
            responseStream: !!m.responseStream,
            requestSerialize: serializer(request),
            requestDeserialize: deserializer(request, options),
            responseSerialize: serializer(response),
            responseDeserialize: deserializer(response, options),
            originalName: originalName(m.name),
          };
        }
        out[name] = service as unknown as protoLoader.ServiceDefinition;
      } else if (obj.nestedArray !== undefined) {
        walk(obj, name);
      }
    }
  };
  walk(root, "");
  loaded.set(key, out);
  return out;
}
