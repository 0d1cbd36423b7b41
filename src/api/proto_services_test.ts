import assert from "node:assert/strict";
import * as protoLoader from "@grpc/proto-loader";
import { loadServices, protoRootJson } from "../common/proto_services.ts";
import { LOADER_OPTIONS, PROTO_PATH } from "./proto.ts";
import { INTERNAL_PROTO_PATH } from "../cluster/gossip_transport.ts";
import { HEALTH_PROTO_PATH } from "./health.ts";
import { REFLECTION_LOADER_OPTIONS, reflectionProtoPath } from "./reflection.ts";

type Method = {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  originalName: string;
  requestSerialize(v: unknown): Uint8Array;
  requestDeserialize(b: Uint8Array): unknown;
  responseSerialize(v: unknown): Uint8Array;
  responseDeserialize(b: Uint8Array): unknown;
};

/** The service entries of a package definition (proto-loader's also hold every message). */
function services(def: protoLoader.PackageDefinition): Record<string, Record<string, Method>> {
  const out: Record<string, Record<string, Method>> = {};
  for (const [name, entry] of Object.entries(def)) {
    if (!("format" in entry)) out[name] = entry as unknown as Record<string, Method>;
  }
  return out;
}

/** loadServices parsing the text (as from the sources) or from the build's JSON (the bundle). */
const VARIANTS = {
  parsed: (path: string, options = LOADER_OPTIONS) => loadServices(path, options),
  json: (path: string, options = LOADER_OPTIONS) =>
    loadServices(
      path,
      options,
      JSON.parse(JSON.stringify(protoRootJson(path, options.keepCase === true))),
    ),
};

/** Every file a server loads at start, with the options it is loaded with. */
const FILES: [string, protoLoader.Options][] = [
  [PROTO_PATH, LOADER_OPTIONS],
  [INTERNAL_PROTO_PATH, LOADER_OPTIONS],
  [HEALTH_PROTO_PATH, LOADER_OPTIONS],
  [reflectionProtoPath("v1"), REFLECTION_LOADER_OPTIONS],
  [reflectionProtoPath("v1alpha"), REFLECTION_LOADER_OPTIONS],
];

for (const [variant, load] of Object.entries(VARIANTS)) {
  Deno.test(`loadServices (${variant}) gives proto-loader's services: paths, streams, names, the same bytes`, () => {
    for (const [path, options] of FILES) {
      const ours = services(load(path, options));
      const theirs = services(protoLoader.loadSync(path, options));
      assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort());
      assert.ok(Object.keys(ours).length >= 1);
      for (const [service, methods] of Object.entries(theirs)) {
        assert.deepEqual(Object.keys(ours[service]).sort(), Object.keys(methods).sort(), service);
        for (const [name, m] of Object.entries(methods)) {
          const o = ours[service][name];
          assert.equal(o.path, m.path);
          assert.equal(o.requestStream, m.requestStream);
          assert.equal(o.responseStream, m.responseStream);
          assert.equal(o.originalName, m.originalName);
          // An empty message both ways: the defaults (arrays, enums as strings, longs as
          // strings) come out the same.
          const empty = m.requestSerialize({});
          assert.deepEqual(o.requestSerialize({}), empty, `${service}.${name}`);
          assert.deepEqual(o.requestDeserialize(empty), m.requestDeserialize(empty));
          assert.deepEqual(
            o.responseDeserialize(m.responseSerialize({})),
            m.responseDeserialize(m.responseSerialize({})),
          );
        }
      }
    }
    // Reflection's messages as its handlers see them: camelCase names, a oneof, bytes as arrays.
    const v1 = reflectionProtoPath("v1");
    const rOurs =
      services(load(v1, REFLECTION_LOADER_OPTIONS))["grpc.reflection.v1.ServerReflection"];
    const rTheirs = services(protoLoader.loadSync(v1, REFLECTION_LOADER_OPTIONS))[
      "grpc.reflection.v1.ServerReflection"
    ];
    const request = { host: "h", fileContainingSymbol: "vectordb.VectorDB" };
    const rq = rTheirs.ServerReflectionInfo.requestSerialize(request);
    assert.deepEqual(rOurs.ServerReflectionInfo.requestSerialize(request), rq);
    assert.deepEqual(
      rOurs.ServerReflectionInfo.requestDeserialize(rq),
      rTheirs.ServerReflectionInfo.requestDeserialize(rq),
    );
    const reply = { validHost: "h", fileDescriptorResponse: { fileDescriptorProto: [[1, 2, 3]] } };
    const rp = rTheirs.ServerReflectionInfo.responseSerialize(reply);
    assert.deepEqual(rOurs.ServerReflectionInfo.responseSerialize(reply), rp);
    assert.deepEqual(
      rOurs.ServerReflectionInfo.responseDeserialize(rp),
      rTheirs.ServerReflectionInfo.responseDeserialize(rp),
    );
    // A message with repeated, 64-bit, nested and string fields, through both.
    const ours = services(load(PROTO_PATH))["vectordb.VectorDB"];
    const theirs = services(protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS))["vectordb.VectorDB"];
    const search = {
      vector: [0.5, -1, 2],
      k: 7,
      collection: "c",
      filter: '{"a":1}',
      vector_bytes: new Uint8Array([1, 2, 3, 4]),
      shards: [1, 5],
    };
    const bytes = theirs.Search.requestSerialize(search);
    assert.deepEqual(ours.Search.requestSerialize(search), bytes);
    assert.deepEqual(
      ours.Search.requestDeserialize(bytes),
      theirs.Search.requestDeserialize(bytes),
    );
    const response = {
      results: [{ id: "18446744073709551615", distance: 0.25, payload: '{"b":2}', string_id: "x" }],
      partial: true,
      nodes_answered: ["n1", "n2"],
    };
    const rb = theirs.Search.responseSerialize(response);
    assert.deepEqual(ours.Search.responseSerialize(response), rb);
    assert.deepEqual(ours.Search.responseDeserialize(rb), theirs.Search.responseDeserialize(rb));
    assert.equal(
      (ours.Search.responseDeserialize(rb) as { results: { id: string }[] }).results[0].id,
      "18446744073709551615",
      "uint64 as a string (longs: String)",
    );
  });
}

Deno.test("loadServices: parsed once per path and options", () => {
  assert.equal(loadServices(PROTO_PATH, LOADER_OPTIONS), loadServices(PROTO_PATH, LOADER_OPTIONS));
  assert.notEqual(
    loadServices(PROTO_PATH, LOADER_OPTIONS),
    loadServices(PROTO_PATH, { ...LOADER_OPTIONS, longs: Number }),
  );
});
