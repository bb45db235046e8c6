/**
 * The managed plugin's root file system, assembled offline from what this
 * host already has: the Node binary running lanplug and the shared libraries
 * `ldd` names for it and for the native addons, lanplug's compiled code, and
 * its production dependencies (native addons as built here). No registry, no
 * base image. A chroot runs the result once before Docker ever sees it, so a
 * missing library is a build error, not a plugin that will not enable.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { LanplugError } from '../errors';

/** Where lanplug lives inside the plugin (config.json's entrypoint points here). */
export const APP_DIR = '/lanplug';
export const NODE_PATH = '/usr/bin/node';

/** Top-level directories of a package that no running code reads (sources of an addon built here, docs, tests). */
const SKIPPED_PACKAGE_DIRS = new Set(['deps', 'doc', 'docs', 'test', 'tests', '.github']);

export interface RootfsInput {
  /** The package lanplug runs from: holds package.json, bin/, dist/src and node_modules. */
  packageRoot: string;
  /** The Node binary to ship (the one running now). */
  nodeBinary: string;
  /** Written to /lanplug/BUILD: Docker refuses a second plugin whose layer is byte-identical to another's. */
  buildLabel: string;
}

/** Fills `rootfs` (which must not exist) and returns its size in bytes. */
export function assembleRootfs(rootfs: string, input: RootfsInput): number {
  mkdirSync(rootfs, { recursive: false, mode: 0o755 });
  for (const dir of ['run/docker/plugins', 'run/lanplug', 'var/lib/lanplug', 'etc', 'tmp', 'proc', 'sys', 'dev'])
    mkdirSync(join(rootfs, dir), { recursive: true, mode: 0o755 });
  // network.type host bind-mounts these two over files that must exist.
  writeFileSync(join(rootfs, 'etc/hosts'), '');
  writeFileSync(join(rootfs, 'etc/resolv.conf'), '');

  copyInto(rootfs, input.nodeBinary, NODE_PATH);
  const app = join(rootfs, APP_DIR.slice(1));
  mkdirSync(app, { recursive: true });
  copyFileSync(join(input.packageRoot, 'package.json'), join(app, 'package.json'));
  cpSync(join(input.packageRoot, 'bin'), join(app, 'bin'), { recursive: true });
  cpSync(join(input.packageRoot, 'dist', 'src'), join(app, 'dist', 'src'), { recursive: true });
  const packages = productionPackages(input.packageRoot);
  for (const dir of packages) copyPackage(dir, join(app, relative(input.packageRoot, dir)));
  writeFileSync(join(app, 'BUILD'), `${input.buildLabel}\n`);

  const addons = packages.flatMap((dir) => findFiles(dir, (path) => path.endsWith('.node') && !path.includes('/obj')));
  // A library ldd cannot find is not copied: the chroot check (checkRootfs) then says which one is missing.
  for (const library of sharedLibraries([input.nodeBinary, ...addons])) copyInto(rootfs, library, library);
  return directorySize(rootfs);
}

/**
 * Runs the shipped Node in a chroot of the rootfs and loads what the daemon loads at start (SQLite,
 * libc through the FFI): throws with the loader's own words when something is missing.
 */
export function checkRootfs(rootfs: string): void {
  const probe = `require('${APP_DIR}/dist/src/state/sqlite'); require('${APP_DIR}/dist/src/sys/libc').libc(); new (require('better-sqlite3'))(':memory:').close();`;
  try {
    execFileSync('/usr/sbin/chroot', [rootfs, NODE_PATH, '-e', probe], {
      cwd: '/',
      env: { PATH: '/usr/bin:/bin', NODE_PATH: `${APP_DIR}/node_modules` },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
    });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr
      ?.toString()
      .trim()
      .split('\n')
      .find((l) => /Error|error/.test(l));
    throw new LanplugError('Internal', `the plugin's root file system does not run lanplug: ${stderr ?? String(err)}`);
  }
}

/** The directories of every package `dependencies` (and installed optional ones) pull in, transitively. */
export function productionPackages(packageRoot: string): string[] {
  const found = new Set<string>();
  const visit = (from: string): void => {
    const manifest = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    const required = Object.keys(manifest.dependencies ?? {});
    const optional = Object.keys(manifest.optionalDependencies ?? {});
    for (const name of [...required, ...optional]) {
      const dir = resolvePackage(name, from, packageRoot);
      if (dir === null) {
        if (required.includes(name))
          throw new LanplugError('Internal', `${name} (needed by ${from}) is not installed: run npm ci first`);
        continue; // an optional dependency for another platform
      }
      if (found.has(dir)) continue;
      found.add(dir);
      visit(dir);
    }
  };
  visit(packageRoot);
  return [...found].sort();
}

/** Node's lookup: node_modules/<name> in `from` and each directory above it, up to the package root. */
function resolvePackage(name: string, from: string, packageRoot: string): string | null {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === packageRoot || dir === dirname(dir)) return null;
  }
}

/** A package without what no running code reads; of `build/` only the compiled addons stay. */
function copyPackage(from: string, to: string): void {
  cpSync(from, to, {
    recursive: true,
    dereference: true, // a symlink's target, not a link to a host path the plugin does not have
    filter: (source) => {
      const path = relative(from, source);
      if (path === '') return true;
      const [top] = path.split('/');
      if (top === 'node_modules') return false; // nested packages are copied on their own
      if (top !== undefined && SKIPPED_PACKAGE_DIRS.has(top)) return false;
      if (top === 'src' && existsSync(join(from, 'binding.gyp'))) return false; // an addon's C++ sources
      if (top === 'build') {
        const name = basename(source);
        if (statSync(source).isDirectory()) return !name.startsWith('obj') && name !== 'deps' && name !== '.deps';
        return name.endsWith('.node') && !name.startsWith('test_');
      }
      return true;
    },
  });
}

/** Every shared library the dynamic loader maps for these files (ldd), with the loader itself. */
function sharedLibraries(files: readonly string[]): string[] {
  const libraries = new Set<string>();
  for (const file of files) {
    // ldd fails on an addon built for another libc (koffi ships a musl one too): what it printed still counts.
    const out = spawnSync('ldd', [file], { encoding: 'utf8' }).stdout ?? '';
    for (const line of out.split('\n')) {
      const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
      if (match?.[1] !== undefined) libraries.add(match[1]);
    }
  }
  return [...libraries].sort();
}

/** Copies a host file (following symlinks) to the same or another absolute path inside the rootfs. */
function copyInto(rootfs: string, hostPath: string, pathInside: string): void {
  const target = join(rootfs, pathInside.slice(1));
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(hostPath, target);
}

/** Files under `dir` whose path relative to it is wanted. */
function findFiles(dir: string, wanted: (relativePath: string) => boolean): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && wanted(relative(dir, join(entry.parentPath, entry.name))))
    .map((entry) => join(entry.parentPath, entry.name));
}

function directorySize(dir: string): number {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .reduce((sum, entry) => sum + statSize(join(entry.parentPath, entry.name)), 0);
}

function statSize(path: string): number {
  return statSync(path).size;
}
