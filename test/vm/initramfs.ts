// The VM's initramfs: PID 1 (INIT_TEMPLATE, a busybox sh script), the "newc" cpio writer, and
// buildInitramfs, which packs /bin/busybox, /init and the kernel modules (in load order) into a
// gzipped archive cached in <repo>/.lab/vm. What /init does, step by step: README.md here.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { moduleBytes, moduleName, resolveModules, VM_MODULES, vmCacheDir, type Kernel } from './kernel';

const BUSYBOX = '/bin/busybox';

/** What /init prints on the console when it starts the script (the end of the boot, for timings). */
export const BOOT_MARKER = 'vm-init: running script';

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
export function buildInitramfs(kernel: Kernel, cacheDir = vmCacheDir()): string {
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
    if (/^initramfs-.*\.cpio\.gz$/.test(old) && path.join(cacheDir, old) !== out)
      fs.rmSync(path.join(cacheDir, old), { force: true });
  }
  return out;
}
