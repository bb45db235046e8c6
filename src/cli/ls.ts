/**
 * `lanplug ls`: the running daemon's listing (Lanplug.List on the control
 * socket, observe/listing.ts) as a table for people or JSON for scripts,
 * filtered by network and container here.
 */
import { checkedControlSocket } from './control-client';
import { unixHttp } from '../api/unix-http';
import { shortId } from '../model/network';
import type { EndpointRow, IdentityRow, LanDeviceRow, Listing } from '../observe/listing';
import { isLocked } from '../state/lock';

export interface ListingFilter {
  /** A network's name, its id or the start of its id. */
  network: string | null;
  /** A container's name, its id or the start of its id. */
  container: string | null;
}

/** The running daemon's listing; a one-line error when no daemon runs here or it cannot list. */
export async function askListing(stateDir: string): Promise<Listing> {
  if (!isLocked(stateDir))
    throw new Error(`no lanplug daemon runs on ${stateDir}: lanplug ls asks the running daemon (see lanplug status)`);
  const answer = await unixHttp(checkedControlSocket(stateDir), 'POST', '/Lanplug.List', '{}', 15_000);
  if (answer.status === 404)
    throw new Error('the running daemon is older than lanplug ls: restart it with this version');
  const parsed = JSON.parse(answer.body) as Partial<Listing> & { Err?: unknown };
  if (answer.status !== 200)
    throw new Error(`the daemon could not list: ${typeof parsed.Err === 'string' ? parsed.Err : answer.body}`);
  if (!Array.isArray(parsed.endpoints) || !Array.isArray(parsed.lan))
    throw new Error('the daemon sent a listing lanplug does not understand');
  return {
    endpoints: parsed.endpoints,
    lan: parsed.lan,
    identities: Array.isArray(parsed.identities) ? parsed.identities : [],
    dockerError: parsed.dockerError ?? null,
  };
}

export function filterListing(listing: Listing, filter: ListingFilter): Listing {
  const endpoints = listing.endpoints.filter(
    (e) =>
      (filter.network === null || matches(filter.network, e.networkId, e.network)) &&
      (filter.container === null || matches(filter.container, e.containerId, e.containerName)),
  );
  const kept = new Set(endpoints.map((e) => e.endpointId));
  const networks = new Set(endpoints.map((e) => e.networkId));
  const lan = listing.lan.filter((d) =>
    filter.container !== null
      ? d.claimed !== null && kept.has(d.claimed.endpointId)
      : filter.network === null || (d.networkId !== null && networks.has(d.networkId)),
  );
  const identities = listing.identities.filter(
    (r) =>
      (filter.network === null || matches(filter.network, r.networkId, r.network)) &&
      (filter.container === null || (r.heldBy !== null && kept.has(r.heldBy.endpointId))),
  );
  return { ...listing, endpoints, lan, identities };
}

/** A name matches exactly (Docker shows container names with a leading '/' in places); an id by its start. */
function matches(wanted: string, id: string | null, name: string | null): boolean {
  const bare = wanted.replace(/^\//, '');
  return (name !== null && name.replace(/^\//, '') === bare) || (id !== null && bare.length > 0 && id.startsWith(bare));
}

export function formatEndpoints(listing: Listing): string {
  const rows = listing.endpoints.map((e) => [
    e.network ?? shortId(e.networkId),
    `${e.driver.replace(/^lanplug-/, '')}/${e.mode}`,
    e.parent,
    containerOf(e),
    e.identity ?? '-',
    e.mac ?? '-',
    [
      e.ipv4,
      e.ipv6,
      ...(e.slaac ?? []).filter((a) => a.state === 'preferred').map((a) => `${a.address}(ra)`),
      // `-o ipv6=slaac` with the router's M flag: the DHCPv6 address lanplug put on the container (Docker's has none).
      ...(e.slaac === null ? [] : e.leases.filter((l) => l.family === 6).map((l) => `${l.address}(dhcp6)`)),
    ]
      .filter((a) => a !== null)
      .join(',') || '-',
    e.source,
    leaseOf(e),
    e.hostAccess === null ? '-' : [e.hostAccess.ipv4, e.hostAccess.ipv6].filter((a) => a !== null).join(','),
    e.lastConflict === null ? '-' : `${e.lastConflict.mac} ${e.lastConflict.at}`,
  ]);
  const header = [
    'NETWORK',
    'DRIVER',
    'PARENT',
    'CONTAINER',
    'IDENTITY',
    'MAC',
    'ADDRESSES',
    'SOURCE',
    'LEASE',
    'HOST ACCESS',
    'LAST CONFLICT',
  ];
  const body = rows.length === 0 ? 'no lanplug endpoints\n' : table([header, ...rows]);
  return body + learntDnsNote(listing) + dockerNote(listing);
}

/** `-o ipv6=slaac`: the DNS the LAN offered each container, which its resolver (Docker's) does not use. */
function learntDnsNote(listing: Listing): string {
  return listing.endpoints
    .filter((e) => e.slaacDns !== null && e.slaacDns.servers.length + e.slaacDns.search.length > 0)
    .map((e) => {
      const dns = e.slaacDns ?? { servers: [], search: [], from: [] };
      const search = dns.search.length === 0 ? '' : ` search ${dns.search.join(' ')}`;
      return `dns offered to ${containerOf(e)} (${dns.from.join(', ')}; not in its resolv.conf): ${dns.servers.join(' ') || '-'}${search}\n`;
    })
    .join('');
}

export function formatLanDevices(listing: Listing): string {
  if (listing.lan.length === 0) return 'no LAN devices heard in lanplug pools\n';
  const rows = listing.lan.map((d: LanDeviceRow) => [
    d.address,
    d.mac,
    d.firstSeen,
    d.lastSeen,
    d.claimed === null
      ? '-'
      : `CLAIMED ${d.claimed.containerName ?? shortId(d.claimed.containerId ?? d.claimed.endpointId)}`,
  ]);
  return table([['ADDRESS', 'MAC', 'FIRST SEEN', 'LAST SEEN', "CONTAINER'S ADDRESS"], ...rows]) + dockerNote(listing);
}

/** `lanplug ls --identities`: each reservation, who holds it, or since when none has and until when it lasts. */
export function formatIdentities(listing: Listing): string {
  if (listing.identities.length === 0) return 'no identity reservations\n';
  const rows = listing.identities.map((r: IdentityRow) => [
    r.network ?? shortId(r.networkId),
    r.name,
    r.mac ?? '-',
    [r.ipv4, r.ipv6].filter((a) => a !== null).join(',') || '-',
    r.heldBy === null
      ? '-'
      : (r.heldBy.containerName?.replace(/^\//, '') ?? `endpoint ${shortId(r.heldBy.endpointId)}`),
    r.heldBy === null ? `idle since ${r.lastSeen}${r.expires === null ? '' : `, expires ${r.expires}`}` : 'held',
  ]);
  return table([['NETWORK', 'IDENTITY', 'MAC', 'ADDRESSES', 'CONTAINER', 'STATE'], ...rows]) + dockerNote(listing);
}

function containerOf(e: EndpointRow): string {
  if (e.containerName !== null) return e.containerName.replace(/^\//, '');
  return e.containerId === null ? `endpoint ${shortId(e.endpointId)}` : shortId(e.containerId);
}

/** DHCP leases as `state until expiry` (per family when there are two); renewal failures after. */
function leaseOf(e: EndpointRow): string {
  if (e.leases.length === 0) return '-';
  const leases = e.leases.map(
    (l) => `${e.leases.length > 1 ? `v${l.family} ` : ''}${l.state} until ${l.expires ?? 'forever'}`,
  );
  return leases.join(', ') + (e.renewalFailures > 0 ? ` (${e.renewalFailures} renewals failed)` : '');
}

function dockerNote(listing: Listing): string {
  return listing.dockerError === null ? '' : `note: ${listing.dockerError}: container names and sources are missing\n`;
}

/** Columns padded to their widest cell, two spaces apart; the last is not padded. */
function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}
