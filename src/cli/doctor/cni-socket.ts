/**
 * Where `lanplug doctor` asks the daemon's CNI socket: the daemon may run
 * with `--cni-socket PATH` (or `off`), and a check of the state directory's
 * cni.sock would then fail a healthy daemon. Doctor's own `--cni-socket`
 * first; else what the installed service's command line names; else the
 * daemon's default, STATE-DIR/cni.sock.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SERVICE, serviceArguments } from '../../install/units';
import { cniSocketPath } from '../daemon-flags';
import { UNIT_DIR } from '../install';

/** The socket's path; null when the daemon runs without a CNI front end (`--cni-socket off`). */
export function doctorCniSocket(given: string | null, stateDir: string, serviceUnit: string | null): string | null {
  if (given !== null) return cniSocketPath(given, stateDir);
  const args = serviceUnit === null ? null : serviceArguments(serviceUnit);
  const at = args?.lastIndexOf('--cni-socket') ?? -1;
  const fromService = at < 0 ? undefined : args?.[at + 1];
  return cniSocketPath(fromService ?? '', stateDir);
}

/** The installed service's unit text, or null when lanplug is not installed as a service here. */
export function installedServiceUnit(): string | null {
  const path = join(UNIT_DIR, SERVICE);
  return existsSync(path) ? readFileSync(path, 'utf8') : null;
}
