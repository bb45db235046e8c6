/**
 * What lanplug persists, and the strict decoders that read it back.
 *
 * Records are versioned JSON. A row that does not decode throws
 * RecordDecodeError; the store turns that into an error naming the row.
 */
import { isIpvlanFlag, isIpvlanMode } from '../link/ipvlan';
import { isMacvlanMode } from '../link/macvlan';
import type {
  AnnouncePolicy,
  ConflictPolicy,
  DhcpPolicy,
  EndpointRecord,
  LearnedDns,
  HostAccess,
  Leftover,
  LinkMode,
  NetworkRecord,
  ParentPlan,
  Sandbox,
  SlaacPolicy,
  Subnet,
} from '../model/network';
import type { PoolRecord } from '../model/ipam';
import { duidFromMac, type Lease, type LeaseRecord, type LeaseState } from '../model/lease';
import { formatPrefix, parseAddress, parsePrefix } from '../net/address';

/**
 * 2: networks may carry `hostAccess`. Version 1 records (lanplug 0.1) are read
 * as networks without host access; a lanplug that knows only version 1 refuses
 * a version 2 row rather than ignore what it cannot honour.
 * 3: networks may carry `dhcp`; DHCP leases.
 * 4: networks may carry `cniName` and endpoints `sandbox` (CNI attachments).
 * 5: networks may carry `slaac` (`-o ipv6=slaac`), and `mdns` (`-o lanplug.mdns=true`; a lanplug
 *    before it ignores the key: that network's names go unanswered, nothing else changes).
 */
export const RECORD_VERSION = 5;
const READABLE_VERSIONS: readonly unknown[] = [1, 2, 3, 4, 5];

export class RecordDecodeError extends Error {}

// ---- encoding: plain JSON with addresses as text ----

export function encodeNetwork(record: NetworkRecord): string {
  const { spec } = record;
  return JSON.stringify({
    v: RECORD_VERSION,
    networkId: spec.networkId,
    mode: spec.mode,
    parent: encodeParent(spec.parent),
    mtu: spec.mtu,
    internal: spec.internal,
    ipv4: spec.ipv4.map(encodeSubnet),
    ipv6: spec.ipv6.map(encodeSubnet),
    parentCreated: record.parentCreated,
    hostAccess:
      spec.hostAccess === null
        ? null
        : { ipv4: spec.hostAccess.ipv4?.text ?? null, ipv6: spec.hostAccess.ipv6?.text ?? null },
    conflict: spec.conflict,
    announce: spec.announce,
    dhcp: spec.dhcp,
    ...((spec.slaac ?? null) === null ? {} : { slaac: spec.slaac }),
    ...(spec.mdns === true ? { mdns: true } : {}),
    ...(record.cniName === undefined ? {} : { cniName: record.cniName }),
  });
}

export function encodeEndpoint(record: EndpointRecord): string {
  return JSON.stringify({
    v: RECORD_VERSION,
    networkId: record.networkId,
    endpointId: record.endpointId,
    linkName: record.linkName,
    mac: record.mac,
    ipv4: record.ipv4 === null ? null : formatPrefix(record.ipv4),
    ipv6: record.ipv6 === null ? null : formatPrefix(record.ipv6),
    ...(record.dockerSandboxKey === undefined ? {} : { dockerSandboxKey: record.dockerSandboxKey }),
    ...(record.sandbox === undefined ? {} : { sandbox: record.sandbox }),
    ...(record.identity === undefined ? {} : { identity: record.identity }),
    ...(record.learnedDns === undefined ? {} : { learnedDns: record.learnedDns }),
  });
}

/** On disk the parent's discriminant is called `type` (record version 1). */
function encodeParent(parent: ParentPlan): Record<string, string | number> {
  const { kind, ...rest } = parent;
  return { type: kind, ...rest };
}

function encodeSubnet(subnet: Subnet): { pool: string; gateway: string | null } {
  return { pool: formatPrefix(subnet.pool), gateway: subnet.gateway?.text ?? null };
}

// ---- decoding: every field checked ----

export function decodeNetwork(text: string): NetworkRecord {
  const o = object(JSON.parse(text), 'network');
  version(o);
  return {
    spec: {
      networkId: str(o, 'networkId'),
      mode: decodeMode(o['mode']),
      parent: decodeParent(o['parent']),
      mtu: nullable(o, 'mtu', num),
      internal: bool(o, 'internal'),
      ipv4: array(o, 'ipv4').map(decodeSubnet),
      ipv6: array(o, 'ipv6').map(decodeSubnet),
      hostAccess: o['v'] === 1 || o['hostAccess'] === null ? null : decodeHostAccess(o['hostAccess']),
      // Absent in rows written before lanplug looked at the LAN: the defaults.
      conflict: o['conflict'] === undefined ? 'refuse' : decodeConflict(o['conflict']),
      announce: o['announce'] === undefined ? { count: 3, intervalMs: 1000 } : decodeAnnounce(o['announce']),
      dhcp: o['dhcp'] === undefined || o['dhcp'] === null ? null : decodeDhcpPolicy(o['dhcp']),
      ...(o['slaac'] === undefined || o['slaac'] === null ? {} : { slaac: decodeSlaac(o['slaac']) }),
      ...(o['mdns'] === true ? { mdns: true } : {}),
    },
    parentCreated: bool(o, 'parentCreated'),
    ...(o['cniName'] === undefined ? {} : { cniName: str(o, 'cniName') }),
  };
}

function decodeSlaac(value: unknown): SlaacPolicy {
  return { rtInfoMaxPlen: num(object(value, 'slaac'), 'rtInfoMaxPlen') };
}

function decodeDhcpPolicy(value: unknown): DhcpPolicy {
  const o = object(value, 'dhcp');
  // Rows from before DHCPv6 knew only IPv4.
  return {
    ipv4: o['ipv4'] === undefined ? true : bool(o, 'ipv4'),
    ipv6: o['ipv6'] === undefined ? false : bool(o, 'ipv6'),
    timeoutMs: num(o, 'timeoutMs'),
    // Rows from before the lanplug-dhcp IPAM driver: the network driver asked.
    askedBy: o['askedBy'] === undefined ? 'driver' : decodeAskedBy(o['askedBy']),
  };
}

function decodeAskedBy(value: unknown): DhcpPolicy['askedBy'] {
  if (value === 'driver' || value === 'ipam') return value;
  throw new RecordDecodeError(`unknown DHCP asker ${JSON.stringify(value)}`);
}

function decodeConflict(value: unknown): ConflictPolicy {
  if (value === 'refuse' || value === 'warn' || value === 'off') return value;
  throw new RecordDecodeError(`unknown conflict policy ${JSON.stringify(value)}`);
}

function decodeAnnounce(value: unknown): AnnouncePolicy {
  const o = object(value, 'announce');
  return { count: num(o, 'count'), intervalMs: num(o, 'intervalMs') };
}

function decodeHostAccess(value: unknown): HostAccess {
  const o = object(value, 'hostAccess');
  const ipv4 = nullable(o, 'ipv4', str);
  const ipv6 = nullable(o, 'ipv6', str);
  return { ipv4: ipv4 === null ? null : parseAddress(ipv4), ipv6: ipv6 === null ? null : parseAddress(ipv6) };
}

export function decodeEndpoint(text: string): EndpointRecord {
  const o = object(JSON.parse(text), 'endpoint');
  version(o);
  return {
    networkId: str(o, 'networkId'),
    endpointId: str(o, 'endpointId'),
    linkName: str(o, 'linkName'),
    mac: nullable(o, 'mac', str),
    ipv4: nullable(o, 'ipv4', str) === null ? null : parsePrefix(str(o, 'ipv4')),
    ipv6: nullable(o, 'ipv6', str) === null ? null : parsePrefix(str(o, 'ipv6')),
    ...(o['sandbox'] === undefined ? {} : { sandbox: decodeSandbox(o['sandbox']) }),
    ...(o['dockerSandboxKey'] === undefined ? {} : { dockerSandboxKey: str(o, 'dockerSandboxKey') }),
    ...(o['identity'] === undefined ? {} : { identity: str(o, 'identity') }),
    ...(o['learnedDns'] === undefined ? {} : { learnedDns: decodeLearnedDns(o['learnedDns']) }),
  };
}

function decodeLearnedDns(value: unknown): LearnedDns {
  const o = object(value, 'learnedDns');
  const strings = (key: string): string[] =>
    array(o, key).map((v) => {
      if (typeof v !== 'string') throw new RecordDecodeError(`field '${key}' holds a non-string`);
      return v;
    });
  const from = strings('from').filter((f): f is 'ra' | 'dhcpv6' => f === 'ra' || f === 'dhcpv6');
  return { servers: strings('servers'), search: strings('search'), from };
}

function decodeSandbox(value: unknown): Sandbox {
  const o = object(value, 'sandbox');
  return { containerId: str(o, 'containerId'), netns: str(o, 'netns'), ifname: str(o, 'ifname') };
}

export function encodeLeftover(leftover: Leftover): string {
  if (leftover.kind !== 'parent') return JSON.stringify({ v: RECORD_VERSION, ...leftover });
  return JSON.stringify({ v: RECORD_VERSION, ...leftover, parent: encodeParent(leftover.parent) });
}

export function decodeLeftover(text: string): Leftover {
  const o = object(JSON.parse(text), 'leftover');
  version(o);
  const kind = str(o, 'kind');
  const name = str(o, 'name');
  const reason = str(o, 'reason');
  const networkId = str(o, 'networkId');
  if (kind === 'endpoint-link') return { kind, name, networkId, endpointId: str(o, 'endpointId'), reason };
  if (kind === 'shim') return { kind, name, networkId, reason };
  if (kind === 'parent') {
    const parent = decodeParent(o['parent']);
    if (parent.kind === 'existing') throw new RecordDecodeError('a leftover parent must be one lanplug made');
    return { kind, name, parent, networkId, reason };
  }
  throw new RecordDecodeError(`unknown leftover kind '${kind}'`);
}

function decodeMode(value: unknown): LinkMode {
  const o = object(value, 'mode');
  const kind = str(o, 'kind');
  const mode = str(o, 'mode');
  if (kind === 'macvlan' && isMacvlanMode(mode)) return { kind, mode };
  if (kind === 'ipvlan' && isIpvlanMode(mode)) {
    const flag = str(o, 'flag');
    if (isIpvlanFlag(flag)) return { kind, mode, flag };
  }
  throw new RecordDecodeError(`unknown link mode ${JSON.stringify(value)}`);
}

function decodeParent(value: unknown): ParentPlan {
  const o = object(value, 'parent');
  const kind = str(o, 'type');
  const name = str(o, 'name');
  if (kind === 'existing' || kind === 'private') return { kind, name };
  if (kind === 'vlan') return { kind, name, base: str(o, 'base'), vlanId: num(o, 'vlanId') };
  throw new RecordDecodeError(`unknown parent type '${kind}'`);
}

function decodeSubnet(value: unknown): Subnet {
  const o = object(value, 'subnet');
  const gateway = nullable(o, 'gateway', str);
  return { pool: parsePrefix(str(o, 'pool')), gateway: gateway === null ? null : parseAddress(gateway) };
}

type Obj = Record<string, unknown>;

function object(value: unknown, what: string): Obj {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new RecordDecodeError(`${what} is not an object`);
  }
  return value as Obj;
}

function version(o: Obj): void {
  if (!READABLE_VERSIONS.includes(o['v']))
    throw new RecordDecodeError(`unsupported record version ${JSON.stringify(o['v'])}`);
}

function str(o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new RecordDecodeError(`field '${key}' is not a string`);
  return v;
}

function num(o: Obj, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new RecordDecodeError(`field '${key}' is not an integer`);
  return v;
}

function bool(o: Obj, key: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') throw new RecordDecodeError(`field '${key}' is not a boolean`);
  return v;
}

function array(o: Obj, key: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new RecordDecodeError(`field '${key}' is not an array`);
  return v;
}

function nullable<T>(o: Obj, key: string, read: (o: Obj, key: string) => T): T | null {
  return o[key] === null ? null : read(o, key);
}

export function encodePool(pool: PoolRecord): string {
  return JSON.stringify({
    v: RECORD_VERSION,
    poolId: pool.poolId,
    addressSpace: pool.addressSpace,
    pool: formatPrefix(pool.pool),
    range: pool.range === null ? null : formatPrefix(pool.range),
  });
}

export function decodePool(text: string): PoolRecord {
  const o = object(JSON.parse(text), 'pool');
  version(o);
  const range = nullable(o, 'range', str);
  return {
    poolId: str(o, 'poolId'),
    addressSpace: str(o, 'addressSpace'),
    pool: parsePrefix(str(o, 'pool')),
    range: range === null ? null : parsePrefix(range),
  };
}

function encodeOneLease(lease: Lease): Record<string, unknown> {
  return {
    family: lease.family,
    address: formatPrefix(lease.address),
    router: lease.router?.text ?? null,
    dns: lease.dns.map((a) => a.text),
    serverId: lease.serverId.text,
    serverMac: lease.serverMac,
    serverDuid: lease.serverDuid,
    leaseSeconds: lease.leaseSeconds,
    renewSeconds: lease.renewSeconds,
    rebindSeconds: lease.rebindSeconds,
    boundAt: lease.boundAt,
    state: lease.state,
  };
}

export function encodeLease(record: LeaseRecord): string {
  return JSON.stringify({
    v: RECORD_VERSION,
    networkId: record.networkId,
    endpointId: record.endpointId,
    identity: record.identity,
    leases: record.leases.map(encodeOneLease),
    dockerAddresses: record.dockerAddresses.map((a) => a.text),
    sandboxKey: record.sandboxKey,
    renewedAt: record.renewedAt,
    failures: record.failures,
    lastError: record.lastError,
  });
}

function decodeOneLease(value: unknown): Lease {
  const l = object(value, 'lease');
  const router = nullable(l, 'router', str);
  // Absent in rows written before DHCPv6: those were DHCPv4 leases.
  const family = l['family'] === undefined ? 4 : num(l, 'family');
  if (family !== 4 && family !== 6) throw new RecordDecodeError(`unknown lease family ${family}`);
  return {
    family,
    address: parsePrefix(str(l, 'address')),
    router: router === null ? null : parseAddress(router),
    dns: array(l, 'dns').map((a) => {
      if (typeof a !== 'string') throw new RecordDecodeError('a DNS server is not a string');
      return parseAddress(a);
    }),
    serverId: parseAddress(str(l, 'serverId')),
    serverMac: str(l, 'serverMac'),
    serverDuid: l['serverDuid'] === undefined ? null : nullable(l, 'serverDuid', str),
    leaseSeconds: num(l, 'leaseSeconds'),
    renewSeconds: num(l, 'renewSeconds'),
    rebindSeconds: num(l, 'rebindSeconds'),
    boundAt: num(l, 'boundAt'),
    // Absent in rows written before it was kept: the clock moves a bound lease on (dhcp/lease-state.ts).
    state: l['state'] === undefined ? 'bound' : leaseState(str(l, 'state')),
  };
}

const LEASE_STATES: readonly LeaseState[] = ['bound', 'renewing', 'rebinding', 'expired', 'refused'];

function leaseState(text: string): LeaseState {
  const state = LEASE_STATES.find((s) => s === text);
  if (state === undefined) throw new RecordDecodeError(`unknown lease state ${text}`);
  return state;
}

export function decodeLease(text: string): LeaseRecord {
  const o = object(JSON.parse(text), 'lease');
  version(o);
  const id = object(o['identity'], 'identity');
  const mac = str(id, 'mac');
  const leases = o['leases'] === undefined ? [decodeOneLease(o['lease'])] : array(o, 'leases').map(decodeOneLease);
  return {
    networkId: str(o, 'networkId'),
    endpointId: str(o, 'endpointId'),
    identity: {
      mac,
      clientId: str(id, 'clientId'),
      duid: id['duid'] === undefined ? duidFromMac(mac) : str(id, 'duid'),
      iaid: id['iaid'] === undefined ? 1 : num(id, 'iaid'),
      stable: id['stable'] === undefined ? true : bool(id, 'stable'),
      hostname: nullable(id, 'hostname', str),
      broadcast: bool(id, 'broadcast'),
    },
    leases,
    // Absent in rows written before it was kept: Docker was given the addresses the leases hold.
    dockerAddresses:
      o['dockerAddresses'] === undefined
        ? leases.map((l) => l.address.address)
        : array(o, 'dockerAddresses').map((a) => {
            if (typeof a !== 'string') throw new RecordDecodeError('an address given to Docker is not a string');
            return parseAddress(a);
          }),
    sandboxKey: nullable(o, 'sandboxKey', str),
    renewedAt: nullable(o, 'renewedAt', num),
    failures: num(o, 'failures'),
    lastError: nullable(o, 'lastError', str),
  };
}
