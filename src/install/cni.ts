/**
 * Building lanplug's CNI executable from native/cni-shim.c with the host's C
 * compiler, and the names it is installed under. One binary serves every
 * plugin type (the daemon reads `type` from the configuration); the socket
 * it reaches the daemon on is compiled in (LANPLUG_CNI_SOCKET overrides it).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { invalidArgument, LanplugError } from '../errors';

/** The names runtimes exec, by `type`: the two main plugins, and the IPAM plugin other main plugins delegate to. */
export const CNI_EXECUTABLES = ['lanplug-macvlan', 'lanplug-ipvlan', 'lanplug'] as const;
/** Where CNI runtimes look: containerd/nerdctl, Kubernetes and upstream Podman; Debian's Podman. */
export const CNI_BIN_DIRS = ['/opt/cni/bin', '/usr/lib/cni'] as const;

/** A string every build of the executable carries: how uninstall knows its own files. */
export const CNI_IDENTITY = 'lanplug CNI executable (native/cni-shim.c)';

/** The C source, beside the compiled JavaScript's package root (dist/src/install -> native/). */
export function shimSource(packageRoot: string): string {
  return join(packageRoot, 'native', 'cni-shim.c');
}

/** Compiles the executable to `out`; the one line on failure says what to install. */
export function buildCniExecutable(packageRoot: string, out: string, socket: string, compiler = 'cc'): void {
  if (!/^\/[A-Za-z0-9._/+-]{1,100}$/.test(socket))
    throw invalidArgument(`CNI socket path '${socket}' must be absolute and plain (letters, digits, . _ - + /)`);
  const source = shimSource(packageRoot);
  if (!existsSync(source)) throw new LanplugError('NotFound', `${source} is missing: reinstall lanplug`);
  try {
    const defines = [`-DLANPLUG_CNI_SOCKET="${socket}"`, `-DLANPLUG_VERSION="${builtVersion(packageRoot)}"`];
    execFileSync(compiler, ['-O2', '-Wall', ...defines, '-o', out, source], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new LanplugError('NotFound', `no C compiler (${compiler}) to build the CNI plugin: apt-get install gcc`);
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err);
    throw new LanplugError('Internal', `building the CNI plugin failed: ${stderr}`);
  }
}

/** The package's version, for netavark's `info` (answered by the executable alone); plain characters only. */
function builtVersion(packageRoot: string): string {
  try {
    const version = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version?: unknown })
      .version;
    return typeof version === 'string' && /^[A-Za-z0-9.+~-]{1,40}$/.test(version) ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export interface CniInstallOptions {
  root: string;
  dryRun: boolean;
  packageRoot: string;
  /** The daemon's CNI socket, compiled into the executable. */
  socket: string;
}

/**
 * Builds the executable once and puts it, under each plugin name, in
 * /opt/cni/bin (made if missing) and in /usr/lib/cni where that exists
 * (Debian's reference plugins, where Debian's Podman looks first). A file
 * of that name that is not lanplug's is never replaced.
 */
export function installCniExecutables(options: CniInstallOptions): string[] {
  const done: string[] = [];
  const dirs = CNI_BIN_DIRS.map((dir) => join(options.root, dir)).filter((dir, i) => i === 0 || existsSync(dir));
  for (const dir of dirs)
    for (const name of CNI_EXECUTABLES) {
      const path = join(dir, name);
      if (existsSync(path) && !isLanplugExecutable(path))
        throw new LanplugError(
          'Conflict',
          `${path} exists and is not lanplug's CNI executable; remove or rename it first`,
        );
    }
  if (options.dryRun) {
    for (const dir of dirs)
      for (const name of CNI_EXECUTABLES) done.push(`would build ${join(dir, name)} (socket ${options.socket})`);
    return done;
  }
  const [first, ...others] = dirs.flatMap((dir) => CNI_EXECUTABLES.map((name) => join(dir, name)));
  if (first === undefined) return done;
  mkdirSync(join(options.root, CNI_BIN_DIRS[0]), { recursive: true, mode: 0o755 });
  // Each file appears whole, by rename: a runtime may exec it at any moment (and an old one may be running).
  const staged = `${first}.new-${process.pid}`;
  buildCniExecutable(options.packageRoot, staged, options.socket);
  chmodSync(staged, 0o755);
  for (const path of others) {
    const copy = `${path}.new-${process.pid}`;
    copyFileSync(staged, copy);
    chmodSync(copy, 0o755);
    renameSync(copy, path);
    done.push(`wrote ${path}`);
  }
  renameSync(staged, first);
  done.unshift(`built ${first} (reaches the daemon at ${options.socket})`);
  return done;
}

/** Removes lanplug's executables from the CNI directories; anything else is left alone. */
export function uninstallCniExecutables(root: string, dryRun: boolean): string[] {
  const done: string[] = [];
  for (const dir of CNI_BIN_DIRS)
    for (const name of CNI_EXECUTABLES) {
      const path = join(root, dir, name);
      if (!existsSync(path)) continue;
      if (!isLanplugExecutable(path)) {
        done.push(`kept ${path}: not lanplug's CNI executable`);
        continue;
      }
      if (!dryRun) rmSync(path);
      done.push(`${dryRun ? 'would remove' : 'removed'} ${path}`);
    }
  return done;
}

/** The file is a build of lanplug's executable (CNI and netavark alike): uninstall removes only those. */
export function isLanplugExecutable(path: string): boolean {
  return readFileSync(path).includes(Buffer.from(CNI_IDENTITY));
}
