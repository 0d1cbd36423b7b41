import assert from "node:assert/strict";
import { levelOf, Logger, type LoggerOptions, parseLogFormat, parseLogLevel } from "./log.ts";

const NOW = new Date("2024-05-01T12:00:00.000Z");

function capture(o: Partial<LoggerOptions> = {}): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = new Logger({
    component: "node",
    node: "node-50051",
    now: () => NOW,
    write: (l) => lines.push(l),
    ...o,
  });
  return { logger, lines };
}

Deno.test("log: text lines keep the earlier shape", () => {
  const { logger, lines } = capture();
  logger.info("opened ./data in 3 ms");
  logger.legacy("WARNING hand-off ended");
  logger.warn("slow disk", { ms: 12, path: "/a b" });
  logger.error("boom");
  logger.error("ERROR already marked");
  assert.deepEqual(lines, [
    "2024-05-01T12:00:00.000Z node-50051 opened ./data in 3 ms",
    "2024-05-01T12:00:00.000Z node-50051 WARNING hand-off ended",
    '2024-05-01T12:00:00.000Z node-50051 WARNING slow disk ms=12 path="/a b"',
    "2024-05-01T12:00:00.000Z node-50051 ERROR boom",
    "2024-05-01T12:00:00.000Z node-50051 ERROR already marked",
  ]);
  const router = capture({ component: "router", node: "router@h:1", text_name: "router" });
  router.logger.legacy("serving");
  assert.deepEqual(router.lines, ["2024-05-01T12:00:00.000Z router serving"]);
});

Deno.test("log: json lines are one object each with the fields", () => {
  const { logger, lines } = capture({ format: "json", level: "debug" });
  logger.legacy("ERROR replaying hints: x");
  logger.debug("tick", { n: 1n, err: new Error("bad"), level: "mine" });
  const a = JSON.parse(lines[0]);
  assert.deepEqual(a, {
    ts: "2024-05-01T12:00:00.000Z",
    level: "error",
    component: "node",
    node: "node-50051",
    msg: "ERROR replaying hints: x",
  });
  assert.deepEqual(Object.keys(a), ["ts", "level", "component", "node", "msg"]);
  assert.deepEqual(JSON.parse(lines[1]), {
    ts: "2024-05-01T12:00:00.000Z",
    level: "debug",
    component: "node",
    node: "node-50051",
    msg: "tick",
    n: "1",
    err: "bad",
    level_: "mine",
  });
  const noNode = capture({ format: "json", component: "router", node: undefined });
  noNode.logger.info("x");
  assert.equal(
    noNode.lines[0],
    '{"ts":"2024-05-01T12:00:00.000Z","level":"info","component":"router","msg":"x"}',
  );
});

Deno.test("log: levels filter", () => {
  const { logger, lines } = capture({ level: "warn" });
  logger.debug("d");
  logger.info("i");
  logger.legacy("plain");
  logger.legacy("WARNING w");
  logger.error("e");
  assert.equal(lines.length, 2);
  assert.equal(logger.enabled("info"), false);
  assert.equal(logger.enabled("error"), true);
  const quiet = capture(); // info by default: no debug
  quiet.logger.debug("d");
  assert.deepEqual(quiet.lines, []);
  const debug = capture({ level: "debug" });
  debug.logger.debug("d");
  assert.deepEqual(debug.lines, ["2024-05-01T12:00:00.000Z node-50051 DEBUG d"]);
});

Deno.test("log: message levels and flag parsing", () => {
  assert.equal(levelOf("WARNING x"), "warn");
  assert.equal(levelOf("WARN: x"), "warn");
  assert.equal(levelOf("ERROR x"), "error");
  assert.equal(levelOf("opened WARNING"), "info");
  assert.equal(levelOf("WARNINGS"), "info");
  assert.equal(parseLogLevel("DEBUG"), "debug");
  assert.throws(
    () => parseLogLevel("verbose"),
    /--log-level "verbose" must be one of debug, info, warn, error/,
  );
  assert.equal(parseLogFormat("json"), "json");
  assert.throws(() => parseLogFormat("xml"), /--log-format "xml" must be text or json/);
});
