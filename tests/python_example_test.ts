/**
 * The README's Python example (the ```python block after the `python-example` marker) runs as
 * written against a real storage node served with API keys: stubs are generated from
 * proto/vector_db.proto with grpc_tools.protoc into a temporary directory, and the program's
 * output is checked.
 *
 * Needs a Python with grpcio and grpcio-tools (`python3-grpcio python3-grpc-tools` on Debian,
 * or `pip install grpcio grpcio-tools`); tried: $VECTORDB_PYTHON, `python3` on PATH,
 * /usr/bin/python3. Without one the test is ignored, and says so on stdout; this suite never
 * installs anything.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeProcess } from "../harness/node.ts";
import { REPO_ROOT, runProcess } from "../harness/process.ts";

const MARKER = "<!-- python-example: run by tests/python_example_test.ts -->";

/** The first interpreter that imports grpc and grpc_tools, or why none does. */
function findPython(): { python: string } | { why: string } {
  const env = (() => {
    try {
      return Deno.env.get("VECTORDB_PYTHON");
    } catch {
      return undefined;
    }
  })();
  const candidates = [...(env ? [env] : []), "python3", "/usr/bin/python3"];
  const tried: string[] = [];
  for (const python of candidates) {
    try {
      const out = new Deno.Command(python, {
        args: ["-c", "import grpc, grpc_tools"],
        stdout: "null",
        stderr: "piped",
      }).outputSync();
      if (out.success) return { python };
      const last = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
      tried.push(`${python}: ${last}`);
    } catch (e) {
      tried.push(`${python}: ${(e as Error).message}`);
    }
  }
  return { why: tried.join("; ") };
}

/** The README's Python example. */
export function readmeExample(readme: string): string {
  const at = readme.indexOf(MARKER);
  assert.ok(at >= 0, `README.md has no ${MARKER}`);
  const m = /```python\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, "a ```python block follows the marker");
  return m[1];
}

const found = findPython();
if ("why" in found) {
  console.log(
    `python_example_test: IGNORED, no Python with grpcio and grpcio-tools (${found.why}); ` +
      `install python3-grpcio python3-grpc-tools, or set VECTORDB_PYTHON`,
  );
}

Deno.test({
  name: "python example: the README's grpcio program runs against a node with API keys",
  ignore: "why" in found,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const python = (found as { python: string }).python;
    const dir = await mkdtemp(join(tmpdir(), "python_example_test_"));
    let node: NodeProcess | null = null;
    try {
      const gen = join(dir, "gen");
      await Deno.mkdir(gen);
      const protoc = await runProcess(python, [
        "-m",
        "grpc_tools.protoc",
        "-I",
        join(REPO_ROOT, "proto"),
        `--python_out=${gen}`,
        `--grpc_python_out=${gen}`,
        join(REPO_ROOT, "proto", "vector_db.proto"),
      ]);
      assert.equal(protoc.code, 0, `protoc failed:\n${protoc.stderr}`);
      const program = join(dir, "example.py");
      await writeFile(program, readmeExample(readFileSync(join(REPO_ROOT, "README.md"), "utf8")));

      const key = "python-example-key-0000000000001";
      await writeFile(join(dir, "keys"), `${key} admin\n`);
      await writeFile(join(dir, "secret"), "cd".repeat(32));
      node = await NodeProcess.start({
        args: [
          "--api-keys-file",
          join(dir, "keys"),
          "--cluster-secret-file",
          join(dir, "secret"),
        ],
      });
      const env = { VECTORDB_PY_GEN: gen, VECTORDB_ADDR: node.address };
      const run = await runProcess(python, [program], {
        cwd: dir,
        env: { ...env, VECTORDB_API_KEY: key },
      });
      assert.equal(run.code, 0, `the example failed:\n${run.stderr}`);
      const lines = run.stdout.trim().split("\n");
      assert.equal(lines[0], "nearest: [(100, 0.0)]");
      assert.match(lines[1], /^id 101: True \[0\.9, 0\.8, 0\.7\] version [1-9]\d*$/);
      assert.equal(
        lines[2],
        "error: INVALID_ARGUMENT vector dimension 2 does not match the collection dimension 3",
      );
      // Without the key the node refuses it, and the program says so.
      const anonymous = await runProcess(python, [program], {
        cwd: dir,
        env: { ...env, VECTORDB_API_KEY: "" },
      });
      assert.notEqual(anonymous.code, 0);
      assert.match(anonymous.stderr, /StatusCode\.UNAUTHENTICATED/);
      assert.match(anonymous.stderr, /CreateCollection needs an API key/);
    } finally {
      await node?.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
});
