// qemu itself: the command line of the full-kernel VM (TCG, no NIC, serial console, three 9p
// exports: the host root read-only as "host", the run's exchange directory as "io", the
// repository read-only as "repo" — the tags /init mounts, see initramfs.ts), and runQemu, which
// spawns it, streams the console to a file, notes when /init started the script, and kills the
// VM at the deadline, when the guest kernel reports a CPU stuck (an emulator hang), or when this
// process exits.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { BOOT_MARKER } from './initramfs';

const QEMU = 'qemu-system-x86_64';
const CONSOLE_TAIL_BYTES = 64 * 1024;

/**
 * A guest CPU the guest kernel itself reports stuck this long is an emulator hang, not the
 * script's: once (2026-12-05, in CI) a vCPU under TCG stopped answering and runc sat in a soft
 * lockup for 480 s until the deadline. The kernel's watchdog says so every ~28 s; a host merely
 * slowed by load never showed such a line in runs with two busy loops beside the VM.
 */
export const STALL_KILL_SECONDS = 90;

/** The longest "stuck for Ns" in a guest kernel's soft-lockup lines, or 0. */
export function longestSoftLockup(consoleText: string): number {
  let longest = 0;
  for (const m of consoleText.matchAll(/soft lockup - CPU#\d+ stuck for (\d+)s!/g))
    longest = Math.max(longest, Number(m[1]));
  return longest;
}

export interface QemuMachine {
  /** An ELF vmlinux (booted through PVH) or a bzImage. */
  kernelImage: string;
  initrd: string;
  /** The run's read-write exchange directory (9p tag "io"). */
  ioDir: string;
  /** The repository (9p tag "repo"). */
  repo: string;
  memoryMb: number;
  cpus: number;
}

export function qemuArgs(m: QemuMachine): string[] {
  return [
    '-accel',
    'tcg',
    '-cpu',
    'max',
    '-m',
    String(m.memoryMb),
    '-smp',
    String(m.cpus),
    '-nographic',
    '-no-reboot',
    '-nic',
    'none',
    '-kernel',
    m.kernelImage,
    '-initrd',
    m.initrd,
    '-append',
    'console=ttyS0 panic=-1 quiet',
    '-virtfs',
    'local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap',
    '-virtfs',
    `local,path=${m.ioDir},mount_tag=io,security_model=none`,
    '-virtfs',
    `local,path=${m.repo},mount_tag=repo,security_model=none,readonly=on,multidevs=remap`,
  ];
}

/** Keeps the last bytes written, for error messages. */
class Tail {
  private buf = Buffer.alloc(0);
  constructor(private readonly max: number) {}
  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.buf.length > this.max) this.buf = this.buf.subarray(this.buf.length - this.max);
  }
  text(): string {
    return this.buf.toString('utf8');
  }
}

export interface QemuRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Killed because the guest kernel reported a CPU stuck for STALL_KILL_SECONDS or more. */
  stalled: boolean;
  /** From spawning qemu until /init printed BOOT_MARKER; -1 if it never did. */
  bootMs: number;
  wallMs: number;
  consoleTail: string;
}

/** Spawns qemu, streams its console to consoleLog, and resolves when it exits or is killed. */
export function runQemu(args: string[], consoleLog: string, timeoutMs: number): Promise<QemuRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const log = fs.openSync(consoleLog, 'w');
    const tail = new Tail(CONSOLE_TAIL_BYTES);
    let bootMs = -1;
    let timedOut = false;
    let stalled = false;
    // the console's last bytes as text: a watchdog line may arrive split over two chunks
    let recent = '';
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // if this process dies first, never leave a VM behind
    const killOnExit = (): void => {
      child.kill('SIGKILL');
    };
    process.on('exit', killOnExit);
    const onData = (chunk: Buffer): void => {
      fs.writeSync(log, chunk);
      tail.push(chunk);
      if (bootMs < 0 && tail.text().includes(BOOT_MARKER)) bootMs = Date.now() - started;
      recent = (recent + chunk.toString('utf8')).slice(-2048);
      if (!stalled && longestSoftLockup(recent) >= STALL_KILL_SECONDS) {
        stalled = true;
        child.kill('SIGKILL');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      process.off('exit', killOnExit);
      fs.closeSync(log);
      reject(
        new Error(
          `vm: cannot start ${QEMU} (${err.message}); apt-get install -y --no-install-recommends qemu-system-x86`,
        ),
      );
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      process.off('exit', killOnExit);
      fs.closeSync(log);
      resolve({ status, signal, timedOut, stalled, bootMs, wallMs: Date.now() - started, consoleTail: tail.text() });
    });
  });
}
