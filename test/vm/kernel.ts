// The kernel the full-kernel VM boots: finding Debian's kernel and its modules on this machine,
// unpacking the bzImage's payload into an ELF vmlinux that qemu boots through its PVH entry
// (cached), and turning module names into the files to insmod, in dependency order, as bytes
// busybox insmod can read. Facts and timings: README.md in this directory.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../support/repo';

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

/** Where the kernel, the initramfs and the VM runs are cached: <repo>/.lab/vm (gitignored). */
export const vmCacheDir = (): string => path.join(repoRoot(), '.lab', 'vm');

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
      "vm: no /boot/vmlinuz-<ver> with /lib/modules/<ver>/modules.dep; install Debian's kernel: " +
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
export function extractVmlinux(kernel: Kernel, cacheDir = vmCacheDir()): string | undefined {
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
      if (old.startsWith('vmlinux-') && path.join(cacheDir, old) !== out)
        fs.rmSync(path.join(cacheDir, old), { force: true });
    }
    return out;
  }
  return undefined;
}

/** Module name as the kernel spells it: file stem without .ko[.xz|.zst|.gz], '-' read as '_'. */
export function moduleName(relPath: string): string {
  return path
    .basename(relPath)
    .replace(/\.ko(\.(xz|zst|gz))?$/, '')
    .replace(/-/g, '_');
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
      throw new Error(
        `vm: module ${name} is not in ${modulesDir}/modules.dep (built in, or missing from this kernel?)`,
      );
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
export function moduleBytes(file: string): Buffer {
  const tools: Record<string, string[]> = { '.xz': ['xz', '-dc'], '.zst': ['zstd', '-dcq'], '.gz': ['gzip', '-dc'] };
  const tool = tools[path.extname(file)];
  if (tool === undefined) return fs.readFileSync(file);
  const [cmd, ...args] = tool as [string, ...string[]];
  const r = spawnSync(cmd, [...args, file], { maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`vm: ${cmd} ${file} failed: ${r.error?.message ?? r.stderr.toString()}`);
  return r.stdout;
}
