// Running a script in the full-kernel VM: runInVm prepares a run directory under
// <repo>/.lab/vm/runs (the script with its prelude, the files passed in, the tmpfs list), boots
// Debian's kernel with the cached initramfs (kernel.ts, initramfs.ts) under qemu (qemu.ts), and
// brings back the script's exit status and output — or throws VmError (with the console tail)
// when the VM did not boot, timed out or left no status. Never a silent pass. A guest whose
// kernel reports a CPU stuck (an emulator hang) is booted once more within the same deadline.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../support/repo';
import { buildInitramfs } from './initramfs';
import { extractVmlinux, findKernel, vmCacheDir } from './kernel';
import { qemuArgs, runQemu, STALL_KILL_SECONDS } from './qemu';

/** Directories of the read-only host root that get a fresh tmpfs in the VM (must exist on the host). */
export const DEFAULT_TMPFS_DIRS = [
  '/tmp',
  '/run',
  '/etc/docker',
  '/var/lib',
  '/var/log',
  '/var/tmp',
  '/var/cache',
  '/root',
  '/mnt',
] as const;

/** Where the read-write exchange directory appears inside the VM (also exported as $VM_IO). */
export const VM_IO_DIR = '/run/vm-io';

export interface VmOptions {
  /** Bash source, run as `bash -euo pipefail` in a chroot of the host root, cwd = repo root. */
  script: string;
  /**
   * Whole-call limit (boot, script, power-off; a second boot too, see stallRetries). The VM is
   * killed and runInVm throws past it.
   */
  timeoutMs: number;
  /**
   * Boots again, with what is left of timeoutMs, when the guest kernel reported a CPU stuck (an
   * emulator hang: qemu.ts STALL_KILL_SECONDS). Default 1; the script must not rely on a previous
   * boot (every boot starts from fresh tmpfs directories and a fresh exchange directory).
   */
  stallRetries?: number;
  memoryMb?: number;
  cpus?: number;
  /** Files copied into $VM_IO before boot: name (no slash) -> host path. */
  files?: Record<string, string>;
  /** Extra environment for the script (LANPLUG_REPO, VM_IO, PATH and HOME are always set). */
  env?: Record<string, string>;
  /** Replaces DEFAULT_TMPFS_DIRS. */
  tmpfsDirs?: readonly string[];
  /** Keep the run directory (console.log, output, io files) even on success. */
  keep?: boolean;
}

export interface VmResult {
  /** The script's exit status. A non-zero status is returned, not thrown (see runInVmOk). */
  exitCode: number;
  /** The script's stdout and stderr, interleaved. */
  output: string;
  /** From spawning qemu to its exit. */
  wallMs: number;
  /** From spawning qemu until /init started the script. */
  bootMs: number;
  /** The serial console, kept only when opts.keep is set (otherwise the run dir is removed). */
  consoleLog: string;
  /** The run directory on the host ('' once removed). */
  runDir: string;
}

/** A VM that could not boot, timed out, or left no exit status. Carries the console tail. */
export class VmError extends Error {
  constructor(
    message: string,
    readonly consoleTail: string,
    readonly runDir: string,
  ) {
    super(`${message}\n--- run dir: ${runDir}\n--- console (tail) ---\n${consoleTail}`);
    this.name = 'VmError';
  }
}

/** Single-quotes a value for bash. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The script as the VM runs it: environment and cwd first, then the caller's text. */
function scriptWithPrelude(opts: VmOptions, repo: string): string {
  const env: Record<string, string> = { LANPLUG_REPO: repo, VM_IO: VM_IO_DIR, ...opts.env };
  const lines = Object.entries(env).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`vm: bad environment variable name ${JSON.stringify(k)}`);
    return `export ${k}=${shQuote(v)}`;
  });
  return `${lines.join('\n')}\ncd "$LANPLUG_REPO"\n${opts.script}\n`;
}

function checkOptions(opts: VmOptions): void {
  if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs <= 0)
    throw new Error('vm: timeoutMs must be a positive integer');
  if (opts.memoryMb !== undefined && (!Number.isInteger(opts.memoryMb) || opts.memoryMb < 256)) {
    throw new Error('vm: memoryMb must be an integer of at least 256');
  }
  if (opts.cpus !== undefined && (!Number.isInteger(opts.cpus) || opts.cpus < 1))
    throw new Error('vm: cpus must be a positive integer');
  if (opts.stallRetries !== undefined && (!Number.isInteger(opts.stallRetries) || opts.stallRetries < 0))
    throw new Error('vm: stallRetries must be a non-negative integer');
  for (const name of Object.keys(opts.files ?? {})) {
    if (
      name === '' ||
      name.includes('/') ||
      name === '.' ||
      name === '..' ||
      /^(script\.sh|output|exit-code|tmpfs-dirs|repo-path)$/.test(name)
    ) {
      throw new Error(`vm: files: bad or reserved name ${JSON.stringify(name)}`);
    }
  }
  for (const d of opts.tmpfsDirs ?? []) {
    if (!d.startsWith('/') || d.includes(',') || /\s/.test(d))
      throw new Error(`vm: tmpfsDirs: bad path ${JSON.stringify(d)}`);
  }
}

/**
 * Boots the VM, runs opts.script as root in a chroot of the host root (read-only except the
 * tmpfs directories), powers off. Returns the script's status and output. Throws VmError when
 * the VM cannot boot, times out, or leaves no exit status — never a silent pass.
 *
 * Inside the script: $LANPLUG_REPO is the repo root (also the cwd), $VM_IO the read-write
 * exchange directory holding opts.files. Needs root on the host (9p export of /, /boot).
 */
export async function runInVm(opts: VmOptions): Promise<VmResult> {
  checkOptions(opts);
  const deadline = Date.now() + opts.timeoutMs;
  const retries = opts.stallRetries ?? 1;
  for (let attempt = 0; ; attempt++) {
    const outcome = await bootOnce(opts, deadline - Date.now(), attempt < retries);
    if (outcome !== 'stalled') return outcome;
    // Said on stderr so a run that needed a second boot is visible in CI's log.
    process.stderr.write(
      `vm: the guest kernel reported a CPU stuck for ${STALL_KILL_SECONDS} s or more (an emulator hang, ` +
        `not the script's); booting again with ${Math.round((deadline - Date.now()) / 1000)} s left\n`,
    );
  }
}

/** One boot. Returns 'stalled' (run dir kept) when the guest hung and another boot may follow. */
async function bootOnce(opts: VmOptions, timeoutMs: number, mayRetry: boolean): Promise<VmResult | 'stalled'> {
  const repo = repoRoot();
  const kernel = findKernel();
  const initrd = buildInitramfs(kernel);
  const kernelImage = extractVmlinux(kernel) ?? kernel.vmlinuz;

  const runsDir = path.join(vmCacheDir(), 'runs');
  fs.mkdirSync(runsDir, { recursive: true });
  pruneOldRuns(runsDir);
  const runDir = fs.mkdtempSync(path.join(runsDir, 'run-'));
  const ioDir = path.join(runDir, 'io');
  fs.mkdirSync(ioDir);
  fs.writeFileSync(path.join(ioDir, 'script.sh'), scriptWithPrelude(opts, repo));
  fs.writeFileSync(path.join(ioDir, 'tmpfs-dirs'), `${(opts.tmpfsDirs ?? DEFAULT_TMPFS_DIRS).join('\n')}\n`);
  fs.writeFileSync(path.join(ioDir, 'repo-path'), `${repo}\n`);
  for (const [name, src] of Object.entries(opts.files ?? {})) fs.copyFileSync(src, path.join(ioDir, name));

  const consoleLog = path.join(runDir, 'console.log');
  const args = qemuArgs({ kernelImage, initrd, ioDir, repo, memoryMb: opts.memoryMb ?? 2048, cpus: opts.cpus ?? 2 });
  const q = await runQemu(args, consoleLog, Math.max(1, timeoutMs));

  const output = readOrUndefined(path.join(ioDir, 'output'));
  const fail = (why: string): never => {
    const outTail = output === undefined ? '(no output file)' : output.slice(-8 * 1024);
    throw new VmError(`vm: ${why}\n--- script output (tail) ---\n${outTail}`, q.consoleTail.slice(-16 * 1024), runDir);
  };
  if (q.stalled && mayRetry) return 'stalled';
  if (q.stalled) fail(`the guest kernel reported a CPU stuck for ${STALL_KILL_SECONDS} s or more (killed)`);
  if (q.timedOut) fail(`timed out after ${opts.timeoutMs} ms (killed)`);
  if (q.bootMs < 0) fail(`did not boot (qemu exit status ${String(q.status)}, signal ${String(q.signal)})`);
  const codeText = readOrUndefined(path.join(ioDir, 'exit-code'));
  const exitCode = codeText === undefined ? NaN : Number.parseInt(codeText.trim(), 10);
  if (!Number.isInteger(exitCode))
    fail(`script left no exit status (exit-code file: ${JSON.stringify(codeText ?? null)})`);
  if (q.status !== 0) fail(`qemu exited with status ${String(q.status)} after the script`);

  if (opts.keep !== true) fs.rmSync(runDir, { recursive: true, force: true });
  const kept = opts.keep === true;
  return {
    exitCode,
    output: output ?? '',
    wallMs: q.wallMs,
    bootMs: q.bootMs,
    consoleLog: kept ? consoleLog : '',
    runDir: kept ? runDir : '',
  };
}

/** Like runInVm, but also throws (with the output tail) unless the script exited 0. */
export async function runInVmOk(opts: VmOptions): Promise<VmResult> {
  const r = await runInVm(opts);
  if (r.exitCode !== 0) {
    throw new Error(
      `vm: script exited with status ${r.exitCode}\n--- script output (tail) ---\n${r.output.slice(-16 * 1024)}`,
    );
  }
  return r;
}

/** Failed runs keep their directory for debugging; drop those older than a day. */
function pruneOldRuns(runsDir: string): void {
  const dayAgo = Date.now() - 24 * 3600 * 1000;
  for (const name of fs.readdirSync(runsDir)) {
    const dir = path.join(runsDir, name);
    try {
      if (name.startsWith('run-') && fs.statSync(dir).mtimeMs < dayAgo)
        fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // another runner removed it first
    }
  }
}

function readOrUndefined(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
