/**
 * `lanplug daemon --store`: `sqlite` (this host's state directory, the
 * default) or `etcd://host1:2379,host2:2379,...` for pools shared by every
 * host that names the same cluster. TLS and auth take etcdctl's names:
 * --cacert, --cert, --key (PEM files; with --cacert the members are reached
 * over https) and --user NAME:PASSWORD. The password is better given by
 * --user-file FILE (NAME:PASSWORD on one line, in a file only root reads):
 * a command line is every local user's to read (ps, /proc/PID/cmdline, and
 * `systemctl show` for a service's).
 */
import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { invalidArgument, LanplugError } from '../../errors';
import type { EtcdOptions } from './client';

export type StoreChoice =
  | { kind: 'sqlite' }
  | {
      kind: 'etcd';
      etcd: EtcdOptions;
      hostId: string;
      /** How long a host holding addresses must have been unregistered before they may be reclaimed. */
      reclaimAfterMs: number;
    };

export interface StoreFlags {
  store: string;
  hostId: string;
  cacert: string;
  cert: string;
  key: string;
  user: string;
  /** The file that holds NAME:PASSWORD (--user-file). */
  userFile: string;
  /** --reclaim-after, in seconds. */
  reclaimAfter: number;
}

const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const MEMBER = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

export function parseStoreChoice(flags: StoreFlags): StoreChoice {
  if (flags.store === 'sqlite') {
    const names = {
      cacert: 'cacert',
      cert: 'cert',
      key: 'key',
      user: 'user',
      'user-file': 'userFile',
      'host-id': 'hostId',
    } as const;
    const stray = (Object.keys(names) as (keyof typeof names)[]).find((f) => flags[names[f]] !== '');
    if (stray !== undefined) throw invalidArgument(`--${stray} is for --store etcd://...; the SQLite store takes none`);
    return { kind: 'sqlite' };
  }
  if (!flags.store.startsWith('etcd://'))
    throw invalidArgument(`--store must be sqlite or etcd://HOST:PORT[,HOST:PORT...]; got '${flags.store}'`);
  const tls = flags.cacert !== '';
  const endpoints = flags.store
    .slice('etcd://'.length)
    .split(',')
    .map((member) => {
      if (!MEMBER.test(member)) throw invalidArgument(`--store: '${member}' is not HOST:PORT`);
      return `${tls ? 'https' : 'http'}://${member.includes(':') && !member.endsWith(']') ? member : `${member}:2379`}`;
    });
  const hostId = flags.hostId === '' ? hostname() : flags.hostId;
  if (!HOST_ID.test(hostId))
    throw invalidArgument(`--host-id must be 1-63 letters, digits, '.', '_' or '-'; got '${hostId}'`);
  if ((flags.cert === '') !== (flags.key === '')) throw invalidArgument('--cert and --key go together');
  if (flags.cert !== '' && !tls)
    throw invalidArgument('--cert needs --cacert (the members are then reached over https)');
  if (flags.user !== '' && flags.userFile !== '')
    throw invalidArgument('--user and --user-file both give the etcd user: give one');
  let user: EtcdOptions['user'] = null;
  if (flags.user !== '') {
    user = nameAndPassword(flags.user);
    if (user === null) throw invalidArgument('--user must be NAME:PASSWORD');
  }
  if (flags.userFile !== '') user = readUserFile(flags.userFile);
  const read = (path: string, flag: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw invalidArgument(`${flag} ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  return {
    kind: 'etcd',
    hostId,
    reclaimAfterMs: flags.reclaimAfter * 1000,
    etcd: {
      endpoints,
      user,
      tls: tls
        ? {
            ca: read(flags.cacert, '--cacert'),
            ...(flags.cert === '' ? {} : { cert: read(flags.cert, '--cert'), key: read(flags.key, '--key') }),
          }
        : null,
    },
  };
}

function nameAndPassword(text: string): { name: string; password: string } | null {
  const colon = text.indexOf(':');
  return colon <= 0 ? null : { name: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** --user-file: refused unless only root (or the daemon's own user) can read it. */
function readUserFile(path: string): { name: string; password: string } {
  const refuse = (why: string): never => {
    throw invalidArgument(`--user-file ${path}${why}`);
  };
  let text = '';
  try {
    const stat = statSync(path);
    if (!stat.isFile()) refuse(' is not a file');
    if (stat.uid !== 0 && stat.uid !== process.getuid?.())
      refuse(` is owned by uid ${stat.uid}: it must be root's (it holds the etcd password)`);
    if ((stat.mode & 0o077) !== 0)
      refuse(` has mode 0${(stat.mode & 0o777).toString(8)}: other users can read the etcd password; chmod 600 it`);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof LanplugError) throw err;
    refuse(`: ${err instanceof Error ? err.message : String(err)}`);
  }
  const line = text.replace(/\r?\n$/, '');
  const user = /[\r\n]/.test(line) ? null : nameAndPassword(line);
  return user ?? refuse(' must hold NAME:PASSWORD on one line');
}
