/**
 * The shared address book's keys and values in etcd, under /lanplug/v1/ (one
 * key per address, never one big value; research/multihost.md §6):
 *
 *   pools/<pool id>        the pool: subnet, --ip-range, gateway, who defined it, which hosts use it
 *   ip/<pool id>/<address> a claim: host, kind, MAC, token
 *   mac/<MAC>              the endpoint that holds a MAC on the LAN
 *   hosts/<host id>        the host's registration, on a lease (presence.ts)
 *   absent/<host id>       since when a host that holds addresses has had no registration
 *   reclaiming/<host id>   the host reclaiming an absent host's addresses now (on its lease)
 *   reclaimed/<host id>/<pool id>/<address>
 *                          an address reclaimed from an absent host: by whom, when (read by that host once back)
 *
 * Values are JSON; what lanplug reads back is checked, and a value it cannot
 * read is an error naming its key.
 */
import { LanplugError } from '../../errors';
import type { AddressKind } from '../../model/ipam';
import { parseAddress, parsePrefix, type IpAddress } from '../../net/address';
import type { BookPool } from '../address-book';
import type { Compare, EtcdClient, KeyValue, Op } from './client';

export const KEY_PREFIX = '/lanplug/v1/';
/** Every operation of the book ends within this (Docker's plugin timeout is 30 s; research: fail closed within 10). */
export const OPERATION_BUDGET_MS = 9_000;
/** Compare-and-swap rounds on one pool key before giving up (only concurrent pool changes cost one). */
export const CAS_ROUNDS = 8;

export const deadlineIn = (): number => Date.now() + OPERATION_BUDGET_MS;

export interface PoolValue {
  poolId: string;
  addressSpace: string;
  pool: string;
  range: string | null;
  gateway: string | null;
  definedBy: string;
  users: string[];
  /** Per user, the token of the write that joined it (tells a join whose answer was lost from an earlier one). */
  joins: Record<string, string>;
}

export interface ClaimValue {
  host: string;
  kind: AddressKind;
  mac: string | null;
  token: string;
  at: string;
}

/** `reclaimed/<host>/<pool>/<address>`: an address another host reclaimed from `host`. */
export interface ReclaimedValue {
  by: string;
  at: string;
  kind: AddressKind;
  mac: string | null;
  claimedAt: string;
}

export interface MacValue {
  host: string;
  poolId: string;
  address: string;
  token: string;
}

export const enc = encodeURIComponent;

export const poolKey = (poolId: string): string => `${KEY_PREFIX}pools/${enc(poolId)}`;
export const claimPrefix = (poolId: string): string => `${KEY_PREFIX}ip/${enc(poolId)}/`;
export const claimKey = (poolId: string, address: IpAddress): string => `${claimPrefix(poolId)}${address.text}`;
export const macKey = (mac: string): string => `${KEY_PREFIX}mac/${mac.toLowerCase()}`;
export const hostKey = (hostId: string): string => `${KEY_PREFIX}hosts/${hostId}`;

/** `ip/<pool id>/<address>` -> its pool id and address. */
export function splitClaimKey(key: string): { poolId: string; address: string } {
  const [, poolPart = '', address = ''] = key.slice(KEY_PREFIX.length).split('/');
  return { poolId: decodeURIComponent(poolPart), address };
}

export const createRevisionIs0 = (key: string): Compare => ({
  key,
  target: 'CREATE',
  result: 'EQUAL',
  createRevision: 0n,
});
export const modRevisionIs = (key: string, revision: bigint): Compare => ({
  key,
  target: 'MOD',
  result: 'EQUAL',
  modRevision: revision,
});
export const put = (key: string, value: object): Op => ({ put: { key, value: JSON.stringify(value) } });

export function busy(poolId: string): LanplugError {
  return new LanplugError(
    'Unavailable',
    `shared pool ${poolId} kept changing under this request (other hosts writing); try again`,
  );
}

export function parsePool(kv: KeyValue): PoolValue {
  const value = JSON.parse(kv.value) as Partial<PoolValue>;
  if (typeof value.poolId !== 'string' || typeof value.pool !== 'string' || !Array.isArray(value.users))
    throw new LanplugError('Internal', `etcd key ${kv.key} does not hold a lanplug pool`);
  return {
    poolId: value.poolId,
    addressSpace: String(value.addressSpace ?? ''),
    pool: value.pool,
    range: typeof value.range === 'string' ? value.range : null,
    gateway: typeof value.gateway === 'string' ? value.gateway : null,
    definedBy: String(value.definedBy ?? '?'),
    users: value.users.map(String),
    joins: Object.fromEntries(
      Object.entries(typeof value.joins === 'object' && value.joins !== null ? value.joins : {}).filter(
        (e): e is [string, string] => typeof e[1] === 'string',
      ),
    ),
  };
}

export function bookPool(value: PoolValue): BookPool {
  return {
    poolId: value.poolId,
    addressSpace: value.addressSpace,
    pool: parsePrefix(value.pool),
    range: value.range === null ? null : parsePrefix(value.range),
    definedBy: value.definedBy,
    gateway: value.gateway === null ? null : parseAddress(value.gateway),
    users: value.users,
  };
}

export const KINDS: readonly AddressKind[] = ['gateway', 'requested', 'aux', 'allocated'];

export function parseClaim(kv: KeyValue): ClaimValue {
  const value = JSON.parse(kv.value) as Partial<ClaimValue>;
  const kind = KINDS.find((k) => k === value.kind);
  if (kind === undefined || typeof value.host !== 'string')
    throw new LanplugError('Internal', `etcd key ${kv.key} does not hold a lanplug claim`);
  return {
    host: value.host,
    kind,
    mac: typeof value.mac === 'string' ? value.mac : null,
    token: String(value.token ?? ''),
    at: String(value.at ?? ''),
  };
}

export async function readPool(client: EtcdClient, poolId: string, deadline: number): Promise<KeyValue | null> {
  const [kv] = await client.range(poolKey(poolId), { deadlineMs: deadline - Date.now() });
  return kv ?? null;
}
