/**
 * A container's identity by name, per endpoint: `--driver-opt
 * lanplug.identity=NAME` (compose `driver_opts`), or `lanplug.dhcp.id=NAME`,
 * its older spelling, which means the same. Docker (20.10 to 28) tells a
 * driver nothing else that names a container across `docker rm` + `docker
 * run`: a new endpoint id, no MAC, a new sandbox (docs/identity.md). The name
 * gives the values the LAN knows a device by, the same on every host and
 * every lanplug version:
 * - a locally administered MAC (every address source; `--mac-address` wins);
 * - DHCPv4 client id 00+NAME and a DHCPv6 DUID-UUID of the name.
 * Their derivations are those `lanplug.dhcp.id` always had: reservations made
 * for them keep working.
 */
import { createHash } from 'node:crypto';
import { invalidArgument } from '../errors';
import { isHostName } from '../net/dns-name';
import { bytesToMac } from '../net/mac';
import { parseEndpointLabel } from './options';

export const OPT_ENDPOINT_IDENTITY = 'lanplug.identity';
/** The older spelling, from when only DHCP networks took a name. */
export const OPT_ENDPOINT_DHCP_ID = 'lanplug.dhcp.id';

export interface EndpointIdentity {
  name: string;
  /** The key the user gave it with, for messages in their words. */
  option: typeof OPT_ENDPOINT_IDENTITY | typeof OPT_ENDPOINT_DHCP_ID;
}

/** The identity an endpoint's options name, or null; two different names, or one that is no label, are refused. */
export function endpointIdentity(options: Readonly<Record<string, string>> | undefined): EndpointIdentity | null {
  const identity = options?.[OPT_ENDPOINT_IDENTITY];
  const dhcpId = options?.[OPT_ENDPOINT_DHCP_ID];
  if (identity !== undefined && dhcpId !== undefined && identity !== dhcpId)
    throw invalidArgument(
      `--driver-opt ${OPT_ENDPOINT_IDENTITY}=${identity} and ${OPT_ENDPOINT_DHCP_ID}=${dhcpId} name two identities; give one (${OPT_ENDPOINT_DHCP_ID} is the older name of ${OPT_ENDPOINT_IDENTITY})`,
    );
  if (identity !== undefined)
    return { name: parseEndpointLabel(OPT_ENDPOINT_IDENTITY, identity), option: OPT_ENDPOINT_IDENTITY };
  if (dhcpId !== undefined)
    return { name: parseEndpointLabel(OPT_ENDPOINT_DHCP_ID, dhcpId), option: OPT_ENDPOINT_DHCP_ID };
  return null;
}

/** A MAC that follows a name: the same name, the same MAC, on every host (locally administered, unicast). */
export function macFromIdentity(name: string): string {
  const bytes = Uint8Array.from(createHash('sha256').update(`lanplug.dhcp.id:${name}`).digest().subarray(0, 6));
  bytes[0] = ((bytes[0] ?? 0) & 0xfe) | 0x02;
  return bytesToMac(bytes);
}

/** DUID-UUID (RFC 6355): type 4 and 16 bytes, here a hash of the name, so the same name is the same client. */
export function duidFromIdentity(name: string): string {
  return '0004' + createHash('sha256').update(`lanplug.dhcp.duid:${name}`).digest().subarray(0, 16).toString('hex');
}

/**
 * The name DHCP sends (option 12, the client FQDN options 81 and 39) when no `lanplug.dhcp.hostname` is given:
 * the identity, when it is a host name (`web1`, or `web1.lan.example` fully qualified).
 */
export function hostnameFromIdentity(name: string): string | null {
  return isHostName(name) ? name : null;
}

/** DHCPv4 option 61: type 0 (not a hardware address) and the name's bytes. */
export function clientIdFromIdentity(name: string): string {
  return '00' + Buffer.from(name).toString('hex');
}
