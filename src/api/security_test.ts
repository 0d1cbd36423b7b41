import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClusterSecret, PROOF_HEADER } from "./cluster_proof.ts";
import { isLoopback, SecurityConfig, SecurityConfigError } from "./security.ts";

const KEY_R = "r-key-0000000000000001";
const KEY_A = "a-key-0000000000000002";
const SECRET = "9".repeat(64);

function withFiles(fn: (keys: string, secret: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "security_test_"));
  try {
    writeFileSync(join(dir, "keys"), `${KEY_R} read\n${KEY_A} admin\n`);
    writeFileSync(join(dir, "secret"), SECRET);
    fn(join(dir, "keys"), join(dir, "secret"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function md(entries: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

Deno.test("isLoopback", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) {
    assert.ok(isLoopback(h), h);
  }
  for (const h of ["0.0.0.0", "10.0.0.1", "::", "example.com", "128.0.0.1"]) {
    assert.ok(!isLoopback(h), h);
  }
});

Deno.test("secure by default: a non-loopback bind needs keys and a secret, or --insecure", () => {
  withFiles((keys, secret) => {
    const logs: string[] = [];
    const log = (m: string) => logs.push(m);
    for (const flags of [{}, { "api-keys-file": keys }, { "cluster-secret-file": secret }]) {
      try {
        SecurityConfig.fromFlags(flags, "0.0.0.0", "router", log);
        assert.fail("must refuse");
      } catch (e) {
        assert.ok(e instanceof SecurityConfigError);
        assert.match(e.message, /Refusing to serve the router on 0\.0\.0\.0.*--insecure/);
      }
    }
    SecurityConfig.fromFlags({ insecure: true }, "0.0.0.0", "router", log);
    SecurityConfig.fromFlags({}, "127.0.0.1", "router", log);
    const ok = SecurityConfig.fromFlags(
      { "api-keys-file": keys, "cluster-secret-file": secret },
      "0.0.0.0",
      "router",
      log,
    );
    assert.equal(ok.keys?.size, 2);
    assert.ok(
      logs.some((l) => /WARNING serving on 0\.0\.0\.0 without TLS/.test(l)),
      logs.join("\n"),
    );
    assert.throws(
      () => SecurityConfig.fromFlags({ "tls-cert": "x.pem" }, "127.0.0.1", "router", log),
      /--tls-cert and --tls-key go together/,
    );
  });
});

Deno.test("check: the table of the module comment", () => {
  withFiles((keys, secret) => {
    const s = SecurityConfig.fromFlags(
      { "api-keys-file": keys, "cluster-secret-file": secret },
      "127.0.0.1",
      "node",
      () => {},
    );
    const real = ClusterSecret.fromText(SECRET, "t");
    const put = "/vectordb.VectorDB/Put";
    const prune = "/vectordb.internal.Transfer/Prune";
    const codeOf = (path: string, m: grpc.Metadata) => s.check(path, m)?.code ?? grpc.status.OK;
    assert.equal(codeOf(put, md({})), grpc.status.UNAUTHENTICATED);
    assert.equal(
      codeOf(put, md({ authorization: `Bearer ${KEY_R}` })),
      grpc.status.PERMISSION_DENIED,
    );
    assert.equal(codeOf(put, md({ authorization: `Bearer ${KEY_A}` })), grpc.status.OK);
    assert.equal(codeOf("/vectordb.VectorDB/Get", md({ authorization: `Bearer ${KEY_R}` })), 0);
    assert.equal(codeOf(put, md({ authorization: "Bearer wrong-key-00000000000" })), 16);
    // A valid proof allows any RPC (the router writing to a node); an admin key cannot reach
    // internal RPCs; a bad proof is refused even with a valid key beside it.
    assert.equal(codeOf(put, md({ [PROOF_HEADER]: real.sign(put, Date.now()) })), grpc.status.OK);
    assert.equal(codeOf(prune, md({ [PROOF_HEADER]: real.sign(prune, Date.now()) })), 0);
    assert.equal(codeOf(prune, md({ authorization: `Bearer ${KEY_A}` })), 16);
    assert.equal(
      codeOf(put, md({ authorization: `Bearer ${KEY_A}`, [PROOF_HEADER]: "v1.1.2.3" })),
      grpc.status.UNAUTHENTICATED,
    );
    // Health needs no key (probes), even with keys configured; reflection needs read.
    const check = "/grpc.health.v1.Health/Check";
    const reflect = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    assert.equal(s.check(check, md({})), null);
    assert.equal(s.check("/grpc.health.v1.Health/Watch", md({})), null);
    assert.equal(codeOf(reflect, md({})), grpc.status.UNAUTHENTICATED);
    assert.equal(codeOf(reflect, md({ authorization: `Bearer ${KEY_R}` })), grpc.status.OK);
    assert.equal(codeOf(reflect, md({ authorization: "Bearer wrong-key-00000000000" })), 16);
    // Without a secret, internal RPCs are open (loopback or --insecure only); without keys, public.
    const open = SecurityConfig.insecure();
    assert.equal(open.check(prune, md({})), null);
    assert.equal(open.check(put, md({})), null);
    // A check that allows everything adds no interceptor to the server; any key or secret does.
    assert.equal(open.allowsAll, true);
    const base: grpc.ServerOptions = { "grpc.max_receive_message_length": 1 };
    assert.equal(open.serverOptions(base), base);
    assert.equal(s.allowsAll, false);
    assert.equal(s.serverOptions(base).interceptors?.length, 1);
    for (const flags of [{ "api-keys-file": keys }, { "cluster-secret-file": secret }]) {
      const one = SecurityConfig.fromFlags(flags, "127.0.0.1", "node", () => {});
      assert.equal(one.allowsAll, false, JSON.stringify(flags));
      assert.equal(one.serverOptions(base).interceptors?.length, 1);
    }
  });
});

Deno.test("reloadKeys keeps the old keys when the new file is bad", () => {
  withFiles((keys, secret) => {
    const logs: string[] = [];
    const s = SecurityConfig.fromFlags(
      { "api-keys-file": keys, "cluster-secret-file": secret },
      "127.0.0.1",
      "node",
      (m) => logs.push(m),
    );
    writeFileSync(keys, `${KEY_R} write\n`);
    assert.equal(s.reloadKeys(), null);
    assert.equal(s.keys?.roleOf(KEY_R), "write");
    assert.equal(s.keys?.roleOf(KEY_A), undefined);
    writeFileSync(keys, `${KEY_R} root\n`);
    assert.ok(s.reloadKeys() instanceof Error);
    assert.equal(s.keys?.roleOf(KEY_R), "write");
    assert.ok(logs.some((l) => /SIGHUP: .*line 1: role "root".*previous 1 keys stay/.test(l)));
  });
});
