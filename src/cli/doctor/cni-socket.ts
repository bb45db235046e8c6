/**
 * Where `lanplug doctor` asks the daemon's CNI socket: the daemon may run
 * with `--cni-socket PATH` (or `off`), and a check of the state directory's
 * cni.sock would then fail a healthy daemon. Doctor's own `--cni-socket`
 * first; else what the installed service's command line names (as systemd
 * runs it, drop-ins included); else the daemon's default, STATE-DIR/cni.sock.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SERVICE, serviceArguments } from '../../install/units';
import { cniSocketPath } from '../daemon-flags';
import { UNIT_DIR } from '../install';

/** The socket's path; null when the daemon runs without a CNI front end (`--cni-socket off`). */
export function doctorCniSocket(
  given: string | null,
  stateDir: string,
  serviceCommand: readonly string[] | null,
): string | null {
  if (given !== null) return cniSocketPath(given, stateDir);
  const fromService = serviceCommand === null ? undefined : lastFlagValue(serviceCommand, '--cni-socket');
  return cniSocketPath(fromService ?? '', stateDir);
}

/** The value the daemon's flag parser takes for `flag`: the last `--flag VALUE` or `--flag=VALUE`. */
export function lastFlagValue(args: readonly string[], flag: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === flag) value = args[++i];
    else if (arg.startsWith(`${flag}=`)) value = arg.slice(flag.length + 1);
  }
  return value;
}

/**
 * The installed service's command line, or null when lanplug is not installed as a service here.
 * Where systemd runs, its own view (`systemctl show`): drop-ins anywhere, a unit edited and not
 * reloaded yet aside. Else, or when systemd does not know the unit, the unit file and its drop-ins.
 */
export function installedServiceCommand(): string[] | null {
  const fromFiles = serviceFilesCommand();
  if (!systemdIsInit()) return fromFiles;
  const show = spawnSync('systemctl', ['show', '-p', 'ExecStart', '--value', SERVICE], {
    encoding: 'utf8',
    timeout: 5_000,
  });
  const fromSystemd = show.status === 0 ? systemctlExecStart(show.stdout) : null;
  if (fromSystemd === null) return fromFiles;
  // systemctl joins the words with spaces, unquoted: when the files say the same, their words are exact.
  return fromFiles !== null && fromFiles.join(' ') === fromSystemd.join(' ') ? fromFiles : fromSystemd;
}

/** PID 1 is systemd (not a container's init, not another init system). */
function systemdIsInit(): boolean {
  try {
    return readFileSync('/proc/1/comm', 'utf8').trim() === 'systemd';
  } catch {
    return false;
  }
}

/**
 * The command of `systemctl show -p ExecStart --value`: `{ path=… ; argv[]=WORDS ; ignore_errors=… }`,
 * the last one when there are several. Its words are joined by spaces as they are, so a word with a
 * space in it comes back as two. Null when there is none (the unit is not loaded).
 */
export function systemctlExecStart(value: string): string[] | null {
  const commands = [...value.matchAll(/argv\[\]=(.*?) ; ignore_errors=/g)];
  const last = commands.pop()?.[1];
  return last === undefined ? null : last.split(' ').filter((w) => w !== '');
}

/** ExecStart= of the unit file in unitDir and its drop-ins (SERVICE.d/*.conf, in name order). */
export function serviceFilesCommand(unitDir = UNIT_DIR): string[] | null {
  const unit = join(unitDir, SERVICE);
  if (!existsSync(unit)) return null;
  const dropInDir = `${unit}.d`;
  let dropIns: string[] = [];
  try {
    dropIns = readdirSync(dropInDir)
      .filter((n) => n.endsWith('.conf'))
      .sort()
      .map((n) => join(dropInDir, n));
  } catch {
    // no drop-ins
  }
  return serviceArguments([unit, ...dropIns].map((f) => readFileSync(f, 'utf8')).join('\n'));
}
