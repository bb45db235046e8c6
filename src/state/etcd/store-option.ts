/**
 * `lanplug daemon --store`: `sqlite` (this host's state directory, the
 * default) or `etcd://host1:2379,host2:2379,...` for pools shared by every
 * host that names the same cluster. TLS and auth take etcdctl's names:
 * --cacert, --cert, --key (PEM files; with --cacert the members are reached
 * over https) and --user NAME:PASSWORD.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { invalidArgument } from '../../errors';
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
  /** --reclaim-after, in seconds. */
  reclaimAfter: number;
}

const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const MEMBER = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

export function parseStoreChoice(flags: StoreFlags): StoreChoice {
  if (flags.store === 'sqlite') {
    const stray = (['cacert', 'cert', 'key', 'user', 'host-id'] as const).find(
      (f) => flags[f === 'host-id' ? 'hostId' : f] !== '',
    );
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
  let user: EtcdOptions['user'] = null;
  if (flags.user !== '') {
    const colon = flags.user.indexOf(':');
    if (colon <= 0) throw invalidArgument('--user must be NAME:PASSWORD');
    user = { name: flags.user.slice(0, colon), password: flags.user.slice(colon + 1) };
  }
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
