import assert from "node:assert/strict";

import * as grpc from "@grpc/grpc-js";
import {
  accessOf,
  ApiKeys,
  ApiKeysFileError,
  bearerKey,
  checkApiKey,
  maskKey,
  METHOD_ROLES,
  roleAllows,
} from "./auth.ts";
import { METHOD_NAMES } from "./proto.ts";

const K1 = "0123456789abcdef-read";
const K2 = "0123456789abcdef-write";
const K3 = "0123456789abcdef-admin";

Deno.test("ApiKeys.parse reads KEY ROLE lines, comments and blank lines", () => {
  const keys = ApiKeys.parse(`# keys\n${K1} read\n\n  ${K2}\twrite  # job\n${K3} admin\n`, "k");
  assert.deepEqual(keys.size, 3);
  assert.deepEqual(keys.roleOf(K1), "read");
  assert.deepEqual(keys.roleOf(K2), "write");
  assert.deepEqual(keys.roleOf(K3), "admin");
  assert.deepEqual(keys.roleOf("0123456789abcdef-nope"), undefined);
  assert.deepEqual(keys.roleOf("short"), undefined);
  assert.deepEqual(keys.counts(), { read: 1, write: 1, admin: 1 });
});

Deno.test("ApiKeys.parse refuses a bad file with the line, never the whole key", () => {
  const cases: [string, RegExp][] = [
    [`${K1} read extra\n`, /k line 1: expected "KEY ROLE" \(2 words\), found 3/],
    [`${K1} owner\n`, /k line 1: role "owner" must be one of read, write, admin/],
    [`# c\nshortkey read\n`, /k line 2: the key shor… \(8 characters\) must be 16 to 256/],
    [`${K1} read\n${K1} admin\n`, /k line 2: the key 0123… \(21 characters\) is listed twice/],
    [`# nothing\n`, /k holds no key/],
    [`${"é".repeat(20)} read\n`, /outside printable ASCII/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => ApiKeys.parse(text, "k"), (e: Error) => {
      assert.ok(e instanceof ApiKeysFileError && re.test(e.message), e.message);
      assert.ok(!e.message.includes(K1), `the key leaked: ${e.message}`);
      return true;
    });
  }
});

Deno.test("ApiKeys.load refuses a missing file naming it", () => {
  assert.throws(() => ApiKeys.load("/nonexistent/keys"), {
    name: "ApiKeysFileError",
    message: /\/nonexistent\/keys/,
  });
});

Deno.test("accessOf: every public RPC has a role; internal services need the cluster", () => {
  for (const m of METHOD_NAMES) {
    assert.ok(m in METHOD_ROLES, `${m} has no role`);
    assert.deepEqual(accessOf(`/vectordb.VectorDB/${m}`), METHOD_ROLES[m]);
  }
  assert.deepEqual(accessOf("/vectordb.VectorDB/Search"), "read");
  assert.deepEqual(accessOf("/vectordb.VectorDB/Delete"), "write");
  assert.deepEqual(accessOf("/vectordb.VectorDB/Drain"), "admin");
  assert.deepEqual(accessOf("/vectordb.VectorDB/SomethingNew"), "admin");
  assert.deepEqual(accessOf("/vectordb.internal.Transfer/Prune"), "cluster");
  assert.deepEqual(accessOf("/vectordb.internal.Gossip/Exchange"), "cluster");
  assert.deepEqual(accessOf("garbage"), "admin");
});

Deno.test("accessOf: health is open, reflection needs read, other services admin", () => {
  for (const m of ["Check", "Watch", "List"]) {
    assert.deepEqual(accessOf(`/grpc.health.v1.Health/${m}`), "open");
  }
  assert.deepEqual(
    accessOf("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
    "read",
  );
  assert.deepEqual(
    accessOf("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
    "read",
  );
  // Lookalikes are not open.
  assert.deepEqual(accessOf("/grpc.health.v2.Health/Check"), "admin");
  assert.deepEqual(accessOf("/xgrpc.health.v1.Health/Check"), "admin");
  assert.deepEqual(accessOf("/grpc.channelz.v1.Channelz/GetServers"), "admin");
});

Deno.test("roleAllows orders read < write < admin", () => {
  assert.ok(
    roleAllows("admin", "read") && roleAllows("admin", "write") && roleAllows("admin", "admin"),
  );
  assert.ok(
    roleAllows("write", "read") && roleAllows("write", "write") && !roleAllows("write", "admin"),
  );
  assert.ok(roleAllows("read", "read") && !roleAllows("read", "write"));
});

Deno.test("bearerKey reads, refuses and reports malformed headers", () => {
  const md = new grpc.Metadata();
  assert.deepEqual(bearerKey(md), undefined);
  md.set("authorization", `Bearer ${K1}`);
  assert.deepEqual(bearerKey(md), K1);
  md.set("authorization", `bearer   ${K1} `);
  assert.deepEqual(bearerKey(md), K1);
  md.set("authorization", `Basic dXNlcjpwYXNz`);
  const e = bearerKey(md);
  assert.ok(e instanceof Error && /must be "Bearer KEY", found scheme "Basic"/.test(e.message));
  md.set("authorization", "a");
  md.add("authorization", "b");
  assert.ok(bearerKey(md) instanceof Error);
});

Deno.test("maskKey and checkApiKey never print more than 4 characters", () => {
  assert.deepEqual(maskKey(K1), "0123… (21 characters)");
  assert.deepEqual(checkApiKey(K1, "--api-key"), K1);
  assert.throws(
    () => checkApiKey("tiny", "VECTORDB_API_KEY"),
    /VECTORDB_API_KEY: an API key is 16 to 256/,
  );
});
