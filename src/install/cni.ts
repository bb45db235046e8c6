/**
 * Building lanplug's CNI executable from native/cni-shim.c with the host's C
 * compiler, and the names it is installed under. One binary serves every
 * plugin type (the daemon reads `type` from the configuration); the socket
 * it reaches the daemon on is compiled in (LANPLUG_CNI_SOCKET overrides it).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { invalidArgument, LanplugError } from '../errors';

/** The names runtimes exec, by `type`: the two main plugins. */
export const CNI_EXECUTABLES = ['lanplug-macvlan', 'lanplug-ipvlan'] as const;
/** Where CNI runtimes look: containerd/nerdctl, Kubernetes and upstream Podman; Debian's Podman. */
export const CNI_BIN_DIRS = ['/opt/cni/bin', '/usr/lib/cni'] as const;

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
    execFileSync(compiler, ['-O2', '-Wall', `-DLANPLUG_CNI_SOCKET="${socket}"`, '-o', out, source], {
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
