import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import {
  acquireDirLock,
  DirLockedError,
  formatLock,
  LOCK_FILE,
  LockFileError,
  type LockHolder,
  parseLock,
  parseProcStat,
  type ProcessProbe,
  SYSTEM_PROBE,
  whyStale,
} from "./dir_lock.ts";

const HAS_PROC = existsSync("/proc/self/stat");

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "vectordb_lock_"));
}

function quiet(lines: string[] = []): { logger: (m: string) => void; settle_ms: number } {
  return { logger: (m) => lines.push(m), settle_ms: 1 };
}

function holder(over: Partial<LockHolder> = {}): LockHolder {
  return {
    pid: 4242,
    host: hostname(),
    started_ms: Date.UTC(2024, 0, 2, 3, 4, 5),
    boot_id: "-",
    proc_start: "-",
    token: "00112233445566778899aabbccddeeff",
    ...over,
  };
}

/** The pid of a process that has exited (and was reaped). */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

Deno.test("dir lock: a second acquire fails naming the holder; release frees it", async () => {
  const dir = tempDir();
  try {
    const lock = await acquireDirLock(dir, quiet());
    const text = readFileSync(join(dir, LOCK_FILE), "utf8");
    assert.equal(parseLock("LOCK", text).pid, process.pid);
    assert.ok(lock.held());
    await assert.rejects(
      () => acquireDirLock(dir, quiet()),
      (e: unknown) => {
        assert.ok(e instanceof DirLockedError);
        assert.equal(e.holder.pid, process.pid);
        assert.match(
          e.message,
          new RegExp(
            `^Data directory ${dir} is locked by process ${process.pid} \\(started .*\\); ` +
              `stop it first or choose another --data-dir$`,
          ),
        );
        return true;
      },
    );
    assert.ok(lock.held(), "a refused acquire leaves the holder's lock alone");
    lock.release();
    assert.ok(!existsSync(join(dir, LOCK_FILE)));
    assert.ok(!lock.held());
    lock.release(); // idempotent
    assert.deepEqual(readdirSync(dir), [], "no temporary file is left");
    const again = await acquireDirLock(dir, quiet());
    again.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("dir lock: the lock of a dead process is taken over and logged", async () => {
  const dir = tempDir();
  try {
    const pid = await deadPid();
    writeFileSync(join(dir, LOCK_FILE), formatLock(holder({ pid })));
    const lines: string[] = [];
    const lock = await acquireDirLock(dir, quiet(lines));
    assert.ok(lock.held());
    assert.equal(parseLock("LOCK", readFileSync(join(dir, LOCK_FILE), "utf8")).pid, process.pid);
    assert.ok(
      lines.some((l) =>
        l.includes(`stale lock of process ${pid}`) && l.includes("no such process")
      ),
      lines.join("\n"),
    );
    lock.release();
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("dir lock: a lock with our pid that this process does not hold is stale", async () => {
  const dir = tempDir();
  try {
    // As after a container restart: the previous process had the same pid.
    writeFileSync(join(dir, LOCK_FILE), formatLock(holder({ pid: process.pid })));
    const lines: string[] = [];
    const lock = await acquireDirLock(dir, quiet(lines));
    assert.ok(lock.held());
    assert.ok(lines.some((l) => l.includes("earlier process")), lines.join("\n"));
    lock.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("dir lock: release leaves a lock that is no longer ours", async () => {
  const dir = tempDir();
  try {
    const lines: string[] = [];
    const lock = await acquireDirLock(dir, quiet(lines));
    const other = formatLock(holder({ pid: 1 }));
    writeFileSync(join(dir, LOCK_FILE), other);
    assert.ok(!lock.held());
    lock.release();
    assert.equal(readFileSync(join(dir, LOCK_FILE), "utf8"), other);
    assert.ok(lines.some((l) => l.includes("no longer held")), lines.join("\n"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("dir lock: an unreadable lock file is refused and left alone", async () => {
  const dir = tempDir();
  try {
    writeFileSync(join(dir, LOCK_FILE), "12345\n");
    await assert.rejects(() => acquireDirLock(dir, quiet()), LockFileError);
    const bad = formatLock(holder()).replace("pid 4242", "pid 4243"); // checksum no longer fits
    writeFileSync(join(dir, LOCK_FILE), bad);
    await assert.rejects(() => acquireDirLock(dir, quiet()), /checksum/);
    assert.equal(readFileSync(join(dir, LOCK_FILE), "utf8"), bad);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("dir lock: a holder on another host counts as alive, named in the message", async () => {
  const dir = tempDir();
  try {
    writeFileSync(join(dir, LOCK_FILE), formatLock(holder({ host: "elsewhere", pid: 77 })));
    await assert.rejects(
      () => acquireDirLock(dir, quiet()),
      /locked by process 77 on host elsewhere .*remove .*LOCK/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("dir lock: liveness rules (ESRCH, EPERM, zombie, pid reuse, reboot)", () => {
  const stat = (state: string, start: string) =>
    `99 (a (weird) name) ${state} 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 ${start} 1000 10`;
  assert.deepEqual(parseProcStat(stat("S", "5000")), { state: "S", start: "5000" });
  const probe = (o: { code?: string; state?: string; start?: string; boot?: string }) =>
    ({
      signal0: () => {
        if (o.code !== undefined) throw Object.assign(new Error(o.code), { code: o.code });
      },
      procStat: () => o.state === undefined ? null : stat(o.state, o.start ?? "5000"),
      bootId: () => o.boot ?? null,
    }) satisfies ProcessProbe;
  const h = holder({ pid: 99, boot_id: "boot-a", proc_start: "5000" });
  assert.equal(whyStale(h, probe({ code: "ESRCH" })), "no such process");
  assert.equal(whyStale(h, probe({ code: "EPERM" })), null, "EPERM: the process exists");
  assert.equal(whyStale(h, probe({ state: "S", boot: "boot-a" })), null);
  assert.match(whyStale(h, probe({ state: "Z", boot: "boot-a" }))!, /exited/);
  assert.match(whyStale(h, probe({ state: "S", start: "6000", boot: "boot-a" }))!, /another/);
  assert.match(whyStale(h, probe({ state: "S", boot: "boot-b" }))!, /rebooted/);
  // Without /proc only the pid is known: a live pid holds the lock.
  assert.equal(whyStale(h, probe({})), null);
  // Our own pid: alive only when this process holds that very lock.
  assert.match(whyStale(holder({ pid: process.pid }), probe({}))!, /earlier process/);
  assert.equal(whyStale(holder({ host: "elsewhere" }), probe({ code: "ESRCH" })), null);
});

Deno.test({
  name: "dir lock: a live pid with another start time (pid reuse) is stale; the same one holds",
  ignore: !HAS_PROC,
  fn: async () => {
    const dir = tempDir();
    try {
      // pid 1 is alive; give its lock the real start time, then a different one.
      const start = parseProcStat(SYSTEM_PROBE.procStat(1)!)!.start;
      const boot = SYSTEM_PROBE.bootId() ?? "-";
      writeFileSync(
        join(dir, LOCK_FILE),
        formatLock(holder({ pid: 1, boot_id: boot, proc_start: start })),
      );
      await assert.rejects(() => acquireDirLock(dir, quiet()), /locked by process 1 /);
      writeFileSync(
        join(dir, LOCK_FILE),
        formatLock(holder({ pid: 1, boot_id: boot, proc_start: `${Number(start) + 1}` })),
      );
      const lines: string[] = [];
      const lock = await acquireDirLock(dir, quiet(lines));
      assert.ok(lines.some((l) => l.includes("now belongs to another process")), lines.join("\n"));
      // Our own lock records our start time, which the next opener checks.
      const mine = parseLock("LOCK", readFileSync(join(dir, LOCK_FILE), "utf8"));
      assert.equal(mine.proc_start, parseProcStat(SYSTEM_PROBE.procStat("self")!)!.start);
      lock.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
