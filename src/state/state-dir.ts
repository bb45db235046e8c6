/**
 * The state directory: lanplug's database and lock live here, and whoever can
 * write to it can make lanplug delete links. It is created root-only when
 * missing and refused — never chmodded — when it is not safe: a user who
 * points --state-dir at /tmp must not lose /tmp's sticky bit.
 */
import { lstatSync, mkdirSync, type Stats } from 'node:fs';
import { LanplugError } from '../errors';

/** For the daemon: creates the directory (0700) when missing, then checks it. */
export function prepareStateDir(dir: string): void {
  if (statOrNull(dir) === null) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new LanplugError(
        'Internal',
        `cannot create state directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        { cause: err },
      );
    }
  }
  checkStateDir(dir);
}

/** For every command: the directory must exist, be a directory, and be writable only by its owner (root). */
export function checkStateDir(dir: string): void {
  const st = statOrNull(dir);
  if (st === null)
    throw new LanplugError(
      'NotFound',
      `no lanplug state directory at ${dir} (the lanplug daemon creates it at its first start)`,
    );
  const problem = stateDirProblem(st);
  if (problem !== null)
    throw new LanplugError(
      'Conflict',
      `state directory ${dir} ${problem}; lanplug does not change it: use a directory of its own (e.g. /var/lib/lanplug)`,
    );
}

/** Why a directory may not hold lanplug's state, or null. Exported for `lanplug doctor`. */
export function stateDirProblem(st: Stats): string | null {
  if (st.isSymbolicLink()) return 'is a symbolic link';
  if (!st.isDirectory()) return 'is not a directory';
  const me = process.getuid?.() ?? 0;
  if (st.uid !== 0 && st.uid !== me) return `is owned by uid ${st.uid}, not root`;
  if ((st.mode & 0o022) !== 0)
    return `is writable by ${(st.mode & 0o002) !== 0 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
  return null;
}

function statOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
