/**
 * Where the CLI writes, how it reads time and how it exits: injectable, so tests drive commands
 * without a terminal, a real clock or real waits.
 *
 * @module
 */
import process from "node:process";
import { stringifyWithIds } from "../common/point_id.ts";

/** Exit statuses. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The command line is wrong; the message says how. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Where the CLI writes; injectable for tests. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Whether stderr is a terminal (draws the load progress bar). */
  stderr_is_tty: boolean;
  /** Milliseconds clock for throughput. */
  now(): number;
  /** Random numbers in [0, 1) for retry jitter; default Math.random. */
  random?: () => number;
  /** Waits `ms` before a retry; default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

/** The process's stdout/stderr. */
export function processIo(): CliIo {
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    stderr_is_tty: process.stderr.isTTY === true,
    now: () => performance.now(),
  };
}

export function print(io: CliIo, json: boolean, value: unknown, text: string): void {
  // stringifyWithIds: a 64-bit id (a bigint) is written as its exact digits.
  io.stdout((json ? stringifyWithIds(value) : text) + "\n");
}

export function collectionLabel(c: string): string {
  return `"${c || "default"}"`;
}
