// The full-kernel test lane's VM runner: boots Debian's stock kernel under qemu (TCG) with the
// host's root file system read-only over 9p, runs one bash script inside a chroot of it, and
// brings back the script's output and exit status.
//
// Why: this machine's own kernel has no 8021q, ipvlan or dummy, so VLAN parents, ipvlan and
// macvlan passthru can only be proven in a kernel of our choosing. Debian's linux-image-amd64
// has them all as modules.
//
// Boot recipe (what runInVm does):
//   1. Kernel: the newest /boot/vmlinuz-<ver> that has /lib/modules/<ver>/modules.dep (Debian's
//      linux-image-amd64; this machine's own kernel has no /boot image and no /lib/modules).
//      Its XZ payload is unpacked once into an ELF vmlinux (cached in <repo>/.lab/vm/) and qemu
//      boots that through its PVH entry (Debian sets CONFIG_PVH=y): the guest then skips
//      decompressing itself, which under TCG took ~9 s of a ~16 s boot. If no ELF can be
//      extracted, the bzImage is booted as is (slower, same result).
//   2. Initramfs (a gzipped "newc" cpio written by this file, no cpio binary needed), cached in
//      <repo>/.lab/vm/initramfs-<ver>-<hash>.cpio.gz, the hash covering the init template, the
//      module files and /bin/busybox: /bin/busybox (busybox-static), /init (INIT_TEMPLATE), the
//      modules in /modules/ and their load order in /modules.order. The order comes from a
//      depth-first walk of modules.dep (each module after everything it depends on). For Debian
//      6.1.0-56 that is: virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
//      9pnet 9pnet_virtio netfs fscache 9p llc stp garp mrp 8021q ipvlan dummy macvlan veth bridge
//      overlay — all plain .ko (.ko.xz/.ko.zst would be decompressed on the host because busybox
//      insmod cannot read them).
//   3. qemu-system-x86_64 -accel tcg -cpu max -m 2048 -smp 2 -nographic -no-reboot -nic none,
//      -append 'console=ttyS0 panic=-1 quiet', and two 9p exports: the host root (tag "host",
//      readonly=on, multidevs=remap — without remap qemu warns about inode collisions between
//      host mounts) and a per-run directory <repo>/.lab/vm/runs/run-XXXX/io (tag "io",
//      read-write) holding script.sh, the files the caller passes in, and, on the way out,
//      `output` and `exit-code`. The serial console goes to run-XXXX/console.log.
//   4. /init (busybox sh, PID 1): insmod the modules, mount both 9p exports (msize=512000; the
//      root with cache=loose), tmpfs over the directories listed in io/tmpfs-dirs (default /tmp
//      /run /etc/docker /var/lib /var/log /var/tmp /var/cache /root /mnt), proc, sysfs,
//      devtmpfs, devpts and /dev/shm inside the host root, cgroup v1 hierarchies by hand (tmpfs
//      on /sys/fs/cgroup + one `mount -t cgroup` per controller: dockerd 20.10 wants them and
//      nothing else mounts them), bind the io export at /run/vm-io, then
//      `chroot /host env -i ... bash -euo pipefail /run/vm-io/script.sh` with stdout+stderr into
//      io/output, write the status to io/exit-code, `poweroff -f`. If PID 1 ever dies,
//      panic=-1 + -no-reboot still end qemu at once.
//
// Facts found here (2 shared cores, TCG, Debian 6.1.0-56-amd64, qemu 7.2, Node 20.20, dockerd
// 20.10.24, containerd 1.6.20), measured 2026-11-23:
//   - First use: vmlinux extraction ~1 s, initramfs build ~0.3 s; both cached afterwards.
//   - qemu spawn to "running script": 6.5-8.5 s (kernel reaches /init at ~3.3 s guest uptime).
//   - `node -e` with better-sqlite3 + koffi inside: ~2-4 s cold. lanplug daemon sockets up in a
//     few seconds. dockerd 20.10 answering: ~9-11 s after launch (containerd started first).
//   - Smoke test (kernel features, native modules, docker import, built-in macvlan on eth0.10,
//     run, exec, stop, network rm): ~60 s wall, of which ~48 s is the Docker part.
//   - 9p with the default cache=none made every exec of a big Go binary re-read it: one
//     `docker --version` took 14.6 s (12 s system time). cache=loose: 2.1 s cold, 1.3 s warm.
//     A VM sees the host root as of first read; files the host changes mid-run may look stale.
//   - dockerd 20.10 gives the containerd it spawns itself ~15 s to answer, then dies with
//     "timeout waiting for containerd to start"; under TCG that was exceeded. VM_BASH_LIB
//     starts containerd first (own --root/--state/--address under the dockerd dir), waits for
//     its socket, and passes `--containerd` to dockerd.
//   - Never use a try *count* for waiting inside the VM: one try of `docker version` can take
//     seconds, so 600 tries of "0.2 s" became a 9-minute hang. vm_wait_for uses a deadline.
//   - The host's /usr/bin/node and node_modules (better-sqlite3 built from source, koffi
//     prebuilt) load unchanged: it is the same root file system. `-cpu max` so that host-built
//     native code never meets a missing instruction (TCG's default qemu64 lacks many).
//   - Everything in the chroot is read-only except the tmpfs directories: point every writer
//     (dockerd --data-root/--exec-root, lanplug --state-dir, HOME) at /tmp, /run or /var/lib.
//     /var/run is a symlink to /run on Debian, so it is writable too. A directory missing on the
//     host cannot be made writable (the mount point must exist on the read-only root).
//   - Start dockerd with `nsenter --net=/run/netns/X`, not `ip netns exec` (which remounts /sys
//     and hides the cgroup mounts). `ip netns add` works (it bind-mounts under the tmpfs /run).
//   - Docker's client must be /usr/bin/docker (Debian's, matching dockerd 20.10), not the newer
//     /usr/local/bin/docker that may be first on PATH on the host.
//   - The guest has no NIC (-nic none): the lab network is namespaces, veth, dummy and bridges
//     built by the script. Nothing touches the host's interfaces.
//   - KVM is present but does not work nested here: -accel tcg only. Two VMs at once on 2 cores
//     roughly double each one's time; keep timeouts generous (the smoke test allows 540 s).

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';

/** Modules the lab needs, by name; dependencies are added from modules.dep. */
export const VM_MODULES = [
  'virtio_pci', // the 9p transport sits on virtio-pci
  '9pnet_virtio',
  '9p',
  '8021q', // VLAN parents (eth0.10)
  'ipvlan',
  'dummy', // parents that need no peer
  'macvlan',
  'veth',
  'bridge', // the lab's "LAN"
  'overlay', // dockerd's overlay2 storage driver
] as const;

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

const BUSYBOX = '/bin/busybox';
const QEMU = 'qemu-system-x86_64';
const BOOT_MARKER = 'vm-init: running script';
const CONSOLE_TAIL_BYTES = 64 * 1024;

export interface VmOptions {
  /** Bash source, run as `bash -euo pipefail` in a chroot of the host root, cwd = repo root. */
  script: string;
  /** Whole-run limit (boot, script, power-off). The VM is killed and runInVm throws past it. */
  timeoutMs: number;
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
  constructor(message: string, readonly consoleTail: string, readonly runDir: string) {
    super(`${message}\n--- run dir: ${runDir}\n--- console (tail) ---\n${consoleTail}`);
    this.name = 'VmError';
  }
}

// ---------------------------------------------------------------------------------------------
// The repository and the kernel

/** The repository root: the nearest ancestor of this file holding lanplug's package.json. */
export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      const name = (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: unknown }).name;
      if (name === 'lanplug') return dir;
    }
    if (path.dirname(dir) === dir) throw new Error(`vm: no lanplug package.json above ${__dirname}`);
  }
}

export interface Kernel {
  version: string;
  vmlinuz: string;
  modulesDir: string;
}

/** The newest /boot/vmlinuz-<ver> with a matching /lib/modules/<ver>/modules.dep. */
export function findKernel(): Kernel {
  const versions = fs.existsSync('/boot')
    ? fs
        .readdirSync('/boot')
        .filter((f) => f.startsWith('vmlinuz-'))
        .map((f) => f.slice('vmlinuz-'.length))
        .filter((v) => fs.existsSync(path.join('/lib/modules', v, 'modules.dep')))
    : [];
  versions.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const version = versions[versions.length - 1];
  if (version === undefined) {
    throw new Error(
      'vm: no /boot/vmlinuz-<ver> with /lib/modules/<ver>/modules.dep; install Debian\'s kernel: ' +
        'apt-get install -y --no-install-recommends linux-image-amd64',
    );
  }
  return { version, vmlinuz: path.join('/boot', `vmlinuz-${version}`), modulesDir: path.join('/lib/modules', version) };
}

/** Where the compressed payload of a bzImage may start, by compressor (extract-vmlinux's list). */
const PAYLOAD_MAGICS: ReadonlyArray<{ magic: Buffer; tool: [string, ...string[]] }> = [
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), tool: ['xz', '-dcq'] },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), tool: ['zstd', '-dcq'] },
  { magic: Buffer.from([0x1f, 0x8b, 0x08]), tool: ['gzip', '-dcq'] },
];

/**
 * The uncompressed ELF vmlinux inside the bzImage, cached next to the initramfs, or undefined
 * if none can be extracted. Why: qemu boots an ELF vmlinux through its PVH entry point, which
 * skips the guest's own decompression of the kernel — about 9 s of a 16 s boot under TCG.
 */
export function extractVmlinux(kernel: Kernel, cacheDir = path.join(repoRoot(), '.lab', 'vm')): string | undefined {
  const st = fs.statSync(kernel.vmlinuz);
  const out = path.join(cacheDir, `vmlinux-${kernel.version}-${st.size}-${Math.trunc(st.mtimeMs)}`);
  if (fs.existsSync(out)) return out;
  const image = fs.readFileSync(kernel.vmlinuz);
  for (const { magic, tool } of PAYLOAD_MAGICS) {
    const at = image.indexOf(magic);
    if (at < 0) continue;
    const [cmd, ...args] = tool;
    // the payload is followed by other bytes, so the tool ends with "trailing garbage" (status
    // 1) after writing the whole kernel: judge by the output, not the status
    const r = spawnSync(cmd, args, { input: image.subarray(at), maxBuffer: 512 * 1024 * 1024 });
    const elf = r.stdout;
    if (elf === null || elf.length < 1024 * 1024 || elf.subarray(0, 4).toString('latin1') !== '\x7fELF') continue;
    fs.mkdirSync(cacheDir, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, elf);
    fs.renameSync(tmp, out);
    for (const old of fs.readdirSync(cacheDir)) {
      if (old.startsWith('vmlinux-') && path.join(cacheDir, old) !== out) fs.rmSync(path.join(cacheDir, old), { force: true });
    }
    return out;
  }
  return undefined;
}

/** Module name as the kernel spells it: file stem without .ko[.xz|.zst|.gz], '-' read as '_'. */
function moduleName(relPath: string): string {
  return path.basename(relPath).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/**
 * The module files (relative to modulesDir) to insmod, in an order where every module comes
 * after its dependencies. modules.dep lines are `path: dep dep ...` with transitive deps.
 */
export function resolveModules(modulesDir: string, names: readonly string[]): string[] {
  const deps = new Map<string, { file: string; deps: string[] }>();
  for (const line of fs.readFileSync(path.join(modulesDir, 'modules.dep'), 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon);
    const rest = line.slice(colon + 1).trim();
    deps.set(moduleName(file), { file, deps: rest === '' ? [] : rest.split(/\s+/) });
  }
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = (name: string): void => {
    const entry = deps.get(name);
    if (entry === undefined) {
      throw new Error(`vm: module ${name} is not in ${modulesDir}/modules.dep (built in, or missing from this kernel?)`);
    }
    if (order.includes(entry.file) || visiting.has(name)) return;
    visiting.add(name);
    // modules.dep lists deps nearest-last; visiting in reverse keeps the familiar order
    for (const d of [...entry.deps].reverse()) visit(moduleName(d));
    order.push(entry.file);
  };
  for (const n of names) visit(n.replace(/-/g, '_'));
  return order;
}

/** The module's ELF bytes; compressed modules are unpacked on the host (busybox insmod can't). */
function moduleBytes(file: string): Buffer {
  const tools: Record<string, string[]> = { '.xz': ['xz', '-dc'], '.zst': ['zstd', '-dcq'], '.gz': ['gzip', '-dc'] };
  const tool = tools[path.extname(file)];
  if (tool === undefined) return fs.readFileSync(file);
  const [cmd, ...args] = tool as [string, ...string[]];
  const r = spawnSync(cmd, [...args, file], { maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`vm: ${cmd} ${file} failed: ${r.error?.message ?? r.stderr.toString()}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// The initramfs

/** PID 1 of the VM. Fixed text: everything per-run comes through the io export. */
export const INIT_TEMPLATE = String.raw`#!/bin/busybox sh
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
say() { echo "vm-init: $* (uptime $(cut -d' ' -f1 /proc/uptime)s)" > /dev/console; }
halt_vm() { sync; poweroff -f; sleep 2; echo o > /proc/sysrq-trigger; }
fail() { say "FATAL: $*"; halt_vm; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo 1 > /proc/sys/kernel/sysrq
say "kernel up"
while read -r m; do
  insmod "/modules/$m" || fail "insmod $m"
done < /modules.order

# msize: bigger 9p messages, far fewer round trips for node's many small reads
opts=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /io /host
mount -t 9p -o "$opts" io /io || fail "mount 9p io"
# cache=loose: the host root is read-only here and changes little during a run; without a page
# cache every exec of a big Go binary (docker, containerd) re-reads it over 9p (~10 s each)
mount -t 9p -o "$opts,ro,cache=loose" host /host || fail "mount 9p host root"

while read -r d; do
  [ -n "$d" ] || continue
  [ -d "/host$d" ] || fail "tmpfs dir $d does not exist on the host root"
  mode=0755; [ "$d" = /tmp ] && mode=1777
  mount -t tmpfs -o "mode=$mode" tmpfs "/host$d" || fail "tmpfs on $d"
done < /io/tmpfs-dirs

mount -t proc proc /host/proc || fail "proc"
mount -t sysfs sysfs /host/sys || fail "sysfs"
mount -t devtmpfs devtmpfs /host/dev || fail "devtmpfs"
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts || fail "devpts"
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm || fail "shm"
# cgroup v1, by hand: no init system here, and dockerd 20.10 needs the hierarchies
mount -t tmpfs -o mode=0755 cgroup /host/sys/fs/cgroup || fail "cgroup tmpfs"
for c in cpuset cpu cpuacct blkio memory devices freezer net_cls pids; do
  mkdir -p "/host/sys/fs/cgroup/$c"
  mount -t cgroup -o "$c" cgroup "/host/sys/fs/cgroup/$c" || fail "cgroup $c"
done

# The repository comes as an export of its own, mounted at its host path: it may live under a
# directory that is a fresh tmpfs here (a CI clone under /tmp, say), where the host root shows nothing.
repo=$(cat /io/repo-path)
mkdir -p "/host$repo" || fail "no mount point for the repository at $repo"
mount -t 9p -o "$opts,ro,cache=loose" repo "/host$repo" || fail "mount 9p repo"

mkdir -p /host/run/vm-io || fail "/run is not writable (missing from tmpfs-dirs?)"
mount --bind /io /host/run/vm-io || fail "bind io"

say "running script"
chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM=dumb LANG=C.UTF-8 \
  /bin/bash -euo pipefail /run/vm-io/script.sh < /dev/null > /io/output 2>&1
echo $? > /io/exit-code
sync
say "script exited with status $(cat /io/exit-code)"
halt_vm
`;

interface CpioEntry {
  name: string;
  mode: number; // including the file type bits
  data: Buffer;
}

/** A "newc" (070701) cpio archive, the format the kernel unpacks as initramfs. */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad4 = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);
  const hex = (n: number): string => n.toString(16).padStart(8, '0');
  let ino = 1;
  const add = (e: CpioEntry): void => {
    const name = Buffer.from(`${e.name}\0`);
    // magic ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    const fields = [ino++, e.mode, 0, 0, 1, 0, e.data.length, 0, 0, 0, 0, name.length, 0];
    const header = Buffer.from(`070701${fields.map(hex).join('')}`, 'ascii');
    parts.push(header, name, pad4(header.length + name.length), e.data, pad4(e.data.length));
  };
  for (const e of entries) add(e);
  add({ name: 'TRAILER!!!', mode: 0, data: Buffer.alloc(0) });
  return Buffer.concat(parts);
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** Builds (or reuses from <repo>/.lab/vm/) the initramfs for this kernel. Returns its path. */
export function buildInitramfs(kernel: Kernel, cacheDir = path.join(repoRoot(), '.lab', 'vm')): string {
  const modules = resolveModules(kernel.modulesDir, VM_MODULES);
  const hash = createHash('sha256').update(INIT_TEMPLATE);
  for (const f of [BUSYBOX, ...modules.map((m) => path.join(kernel.modulesDir, m))]) {
    const st = fs.statSync(f);
    hash.update(`${f}\0${st.size}\0${st.mtimeMs}\0`);
  }
  const out = path.join(cacheDir, `initramfs-${kernel.version}-${hash.digest('hex').slice(0, 16)}.cpio.gz`);
  if (fs.existsSync(out)) return out;

  const names = modules.map((m) => `${moduleName(m)}.ko`);
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'modules'].map((d) => ({ name: d, mode: S_IFDIR | 0o755, data: Buffer.alloc(0) })),
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: fs.readFileSync(BUSYBOX) },
    { name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(INIT_TEMPLATE) },
    { name: 'modules.order', mode: S_IFREG | 0o644, data: Buffer.from(`${names.join('\n')}\n`) },
    ...modules.map((m, i) => ({
      name: `modules/${names[i] ?? ''}`,
      mode: S_IFREG | 0o644,
      data: moduleBytes(path.join(kernel.modulesDir, m)),
    })),
  ];
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, gzipSync(cpioNewc(entries), { level: 6 }));
  fs.renameSync(tmp, out); // atomic: a concurrent builder writes the same bytes
  for (const old of fs.readdirSync(cacheDir)) {
    if (/^initramfs-.*\.cpio\.gz$/.test(old) && path.join(cacheDir, old) !== out) fs.rmSync(path.join(cacheDir, old), { force: true });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Running

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

function qemuArgs(kernelImage: string, initrd: string, ioDir: string, opts: VmOptions): string[] {
  return [
    '-accel', 'tcg',
    '-cpu', 'max',
    '-m', String(opts.memoryMb ?? 2048),
    '-smp', String(opts.cpus ?? 2),
    '-nographic',
    '-no-reboot',
    '-nic', 'none',
    '-kernel', kernelImage,
    '-initrd', initrd,
    '-append', 'console=ttyS0 panic=-1 quiet',
    '-virtfs', 'local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${ioDir},mount_tag=io,security_model=none`,
    '-virtfs', `local,path=${repoRoot()},mount_tag=repo,security_model=none,readonly=on,multidevs=remap`,
  ];
}

function checkOptions(opts: VmOptions): void {
  if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs <= 0) throw new Error('vm: timeoutMs must be a positive integer');
  if (opts.memoryMb !== undefined && (!Number.isInteger(opts.memoryMb) || opts.memoryMb < 256)) {
    throw new Error('vm: memoryMb must be an integer of at least 256');
  }
  if (opts.cpus !== undefined && (!Number.isInteger(opts.cpus) || opts.cpus < 1)) throw new Error('vm: cpus must be a positive integer');
  for (const name of Object.keys(opts.files ?? {})) {
    if (name === '' || name.includes('/') || name === '.' || name === '..' || /^(script\.sh|output|exit-code|tmpfs-dirs|repo-path)$/.test(name)) {
      throw new Error(`vm: files: bad or reserved name ${JSON.stringify(name)}`);
    }
  }
  for (const d of opts.tmpfsDirs ?? []) {
    if (!d.startsWith('/') || d.includes(',') || /\s/.test(d)) throw new Error(`vm: tmpfsDirs: bad path ${JSON.stringify(d)}`);
  }
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

function tailOfFile(file: string, max = 8 * 1024): string {
  try {
    const s = fs.readFileSync(file, 'utf8');
    return s.length > max ? s.slice(s.length - max) : s;
  } catch {
    return '(none)';
  }
}

interface QemuRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  bootMs: number;
  wallMs: number;
  consoleTail: string;
}

/** Spawns qemu, streams its console to consoleLog, and resolves when it exits or is killed. */
function runQemu(args: string[], consoleLog: string, timeoutMs: number): Promise<QemuRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const log = fs.openSync(consoleLog, 'w');
    const tail = new Tail(CONSOLE_TAIL_BYTES);
    let bootMs = -1;
    let timedOut = false;
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
      reject(new Error(`vm: cannot start ${QEMU} (${err.message}); apt-get install -y --no-install-recommends qemu-system-x86`));
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      process.off('exit', killOnExit);
      fs.closeSync(log);
      resolve({ status, signal, timedOut, bootMs, wallMs: Date.now() - started, consoleTail: tail.text() });
    });
  });
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
  const repo = repoRoot();
  const kernel = findKernel();
  const initrd = buildInitramfs(kernel);
  const kernelImage = extractVmlinux(kernel) ?? kernel.vmlinuz;

  const runsDir = path.join(repo, '.lab', 'vm', 'runs');
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
  const q = await runQemu(qemuArgs(kernelImage, initrd, ioDir, opts), consoleLog, opts.timeoutMs);

  const output = readOrUndefined(path.join(ioDir, 'output'));
  const fail = (why: string): never => {
    const outTail = output === undefined ? '(no output file)' : output.slice(-8 * 1024);
    throw new VmError(`vm: ${why}\n--- script output (tail) ---\n${outTail}`, q.consoleTail.slice(-16 * 1024), runDir);
  };
  if (q.timedOut) fail(`timed out after ${opts.timeoutMs} ms (killed)`);
  if (q.bootMs < 0) fail(`did not boot (qemu exit status ${String(q.status)}, signal ${String(q.signal)})`);
  const codeText = readOrUndefined(path.join(ioDir, 'exit-code'));
  const exitCode = codeText === undefined ? NaN : Number.parseInt(codeText.trim(), 10);
  if (!Number.isInteger(exitCode)) fail(`script left no exit status (exit-code file: ${JSON.stringify(codeText ?? null)})`);
  if (q.status !== 0) fail(`qemu exited with status ${String(q.status)} after the script`);

  if (opts.keep !== true) fs.rmSync(runDir, { recursive: true, force: true });
  const kept = opts.keep === true;
  return { exitCode, output: output ?? '', wallMs: q.wallMs, bootMs: q.bootMs, consoleLog: kept ? consoleLog : '', runDir: kept ? runDir : '' };
}

/** Like runInVm, but also throws (with the output tail) unless the script exited 0. */
export async function runInVmOk(opts: VmOptions): Promise<VmResult> {
  const r = await runInVm(opts);
  if (r.exitCode !== 0) {
    throw new Error(`vm: script exited with status ${r.exitCode}\n--- script output (tail) ---\n${r.output.slice(-16 * 1024)}`);
  }
  return r;
}

/** Failed runs keep their directory for debugging; drop those older than a day. */
function pruneOldRuns(runsDir: string): void {
  const dayAgo = Date.now() - 24 * 3600 * 1000;
  for (const name of fs.readdirSync(runsDir)) {
    const dir = path.join(runsDir, name);
    try {
      if (name.startsWith('run-') && fs.statSync(dir).mtimeMs < dayAgo) fs.rmSync(dir, { recursive: true, force: true });
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

// ---------------------------------------------------------------------------------------------
// Bash helpers for scripts (paste `${VM_BASH_LIB}` at the top of a script)

/**
 * Functions for VM scripts. They take their paths from arguments and the environment only.
 *   vm_mark NAME             prints `MARK NAME <ms since script start>` (timings for the host)
 *   vm_wait_for TIMEOUT_S CMD...   retries CMD every 0.2 s until it succeeds, else fails
 *   vm_netns NS              creates a namespace with lo up
 *   vm_start_dockerd NS DIR  Debian's dockerd in NS, all state under DIR (tmpfs); defines
 *                            `dk` = /usr/bin/docker -H unix://DIR/docker.sock; waits until it answers
 *   vm_start_lanplug NS STATE_DIR [PLUGIN_DIR]   `node $LANPLUG_REPO/bin/lanplug daemon` in NS,
 *                            waits for its sockets in PLUGIN_DIR (default /run/docker/plugins)
 */
export const VM_BASH_LIB = String.raw`
VM_T0=$(date +%s%3N)
vm_mark() { echo "MARK $1 $(( $(date +%s%3N) - VM_T0 ))"; }
vm_wait_for() {
  # a deadline, not a count: one try of a big binary can take seconds under TCG
  local end=$(( $(date +%s) + $1 )); shift
  until timeout 20 "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "vm_wait_for: gave up on: $*" >&2; return 1; }
    sleep 0.2
  done
}
vm_netns() { ip netns add "$1"; ip -n "$1" link set lo up; }
vm_start_dockerd() {
  local ns=$1 dir=$2
  mkdir -p "$dir/data" "$dir/run"
  VM_DOCKER_DIR=$dir
  # containerd first, waited for without limit: dockerd gives its own child containerd only
  # ~15 s to answer, which a cold start over 9p under TCG can exceed
  nsenter --net="/run/netns/$ns" /usr/bin/containerd --root "$dir/containerd/root" \
    --state "$dir/containerd/state" --address "$dir/containerd.sock" > "$dir/containerd.log" 2>&1 &
  VM_CONTAINERD_PID=$!
  vm_wait_for 90 test -S "$dir/containerd.sock" \
    || { echo "containerd did not come up; its log:" >&2; tail -n 40 "$dir/containerd.log" >&2; return 1; }
  nsenter --net="/run/netns/$ns" /usr/sbin/dockerd --iptables=false --ip6tables=false --bridge=none \
    --data-root "$dir/data" --exec-root "$dir/run" --pidfile "$dir/docker.pid" --containerd "$dir/containerd.sock" \
    -H "unix://$dir/docker.sock" > "$dir/dockerd.log" 2>&1 &
  VM_DOCKERD_PID=$!
  vm_wait_for 90 /usr/bin/docker -H "unix://$dir/docker.sock" version \
    || { echo "dockerd did not come up; its log:" >&2; tail -n 40 "$dir/dockerd.log" >&2; return 1; }
}
dk() { /usr/bin/docker -H "unix://$VM_DOCKER_DIR/docker.sock" "$@"; }
vm_start_lanplug() {
  local ns=$1 state=$2 plugins=/run/docker/plugins
  [ $# -lt 3 ] || plugins=$3
  mkdir -p "$state" "$plugins"
  nsenter --net="/run/netns/$ns" node "$LANPLUG_REPO/bin/lanplug" daemon --state-dir "$state" \
    --plugin-dir "$plugins" > "$state/lanplug.log" 2>&1 &
  VM_LANPLUG_PID=$!
  vm_wait_for 60 test -S "$plugins/lanplug-macvlan.sock" \
    || { echo "lanplug did not come up; its log:" >&2; tail -n 40 "$state/lanplug.log" >&2; return 1; }
}
`;
