/**
 * Addresses and routes as lanplug sees them, and the RTM_*ADDR / RTM_*ROUTE
 * bodies that make them. Used for host access (a shim link with the host's
 * address, routes to each container through it). Every route lanplug adds
 * carries its own protocol number, so lanplug's routes are told from anyone
 * else's with `ip route show proto 76`.
 */
import {
  AF_INET,
  AF_INET6,
  attrMap,
  encodeIfAddrMsg,
  encodeRtMsg,
  IFA_ADDRESS,
  IFA_F_NODAD,
  IFA_FLAGS,
  IFA_LOCAL,
  nla,
  nlaU32,
  parseIfAddrMsg,
  parseRtMsg,
  readU32,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_TABLE,
  RTN_BLACKHOLE,
  RTN_PROHIBIT,
  RTN_UNICAST,
  RTN_UNREACHABLE,
  type NlMsg,
} from '../netlink/codec';
import { addressBytes, addressFromBytes, type Family, type IpAddress, type IpPrefix } from '../net/address';

/** The rtnetlink protocol of lanplug's routes (unassigned in iproute2's rt_protos). */
export const RTPROT_LANPLUG = 76;

export interface AddressInfo {
  /** The link that holds it. */
  index: number;
  prefix: IpPrefix;
  /** IFA_F_* (IFA_FLAGS where the kernel sends it): tentative, dadfailed, permanent (not autoconfigured)... */
  flags?: number;
  /** RT_SCOPE_*: 0 universe (global), 253 link. */
  scope?: number;
}

export interface RouteInfo {
  destination: IpPrefix;
  /** The output link, or null (e.g. a multipath or blackhole route). */
  oifIndex: number | null;
  gateway: IpAddress | null;
  preferredSource: IpAddress | null;
  protocol: number;
  table: number;
}

export function familyNumber(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

/** An address on a link: IPv4 with IFA_LOCAL and IFA_ADDRESS alike, IPv6 usable at once (no DAD). */
export function encodeAddress(index: number, prefix: IpPrefix): Buffer[] {
  const bytes = addressBytes(prefix.address);
  const v6 = prefix.address.family === 6;
  return [
    encodeIfAddrMsg({
      family: familyNumber(prefix.address.family),
      prefixLength: prefix.prefixLength,
      flags: v6 ? IFA_F_NODAD : 0,
      scope: 0,
      index,
    }),
    nla(IFA_LOCAL, bytes),
    nla(IFA_ADDRESS, bytes),
    ...(v6 ? [nlaU32(IFA_FLAGS, IFA_F_NODAD)] : []),
  ];
}

export function decodeAddress(msg: NlMsg): AddressInfo | null {
  const { ifa, attrs } = parseIfAddrMsg(msg.payload);
  const a = attrMap(attrs);
  const raw = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
  if (raw === undefined || (raw.length !== 4 && raw.length !== 16)) return null;
  return {
    index: ifa.index,
    prefix: { address: addressFromBytes(raw), prefixLength: ifa.prefixLength },
    flags: readU32(a.get(IFA_FLAGS)) ?? ifa.flags,
    scope: ifa.scope,
  };
}

/**
 * A route to `destination` out of link `oifIndex`, in the main table, marked
 * lanplug's: on-link, or through `gateway` when one is given.
 */
export function encodeRoute(
  destination: IpPrefix,
  oifIndex: number,
  source: IpAddress | null,
  gateway: IpAddress | null = null,
): Buffer[] {
  return [
    encodeRtMsg({
      family: familyNumber(destination.address.family),
      dstLength: destination.prefixLength,
      table: RT_TABLE_MAIN,
      protocol: RTPROT_LANPLUG,
      scope: gateway === null ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE,
      type: RTN_UNICAST,
    }),
    nla(RTA_DST, addressBytes(destination.address)),
    nlaU32(RTA_OIF, oifIndex),
    ...(source === null ? [] : [nla(RTA_PREFSRC, addressBytes(source))]),
    ...(gateway === null ? [] : [nla(RTA_GATEWAY, addressBytes(gateway))]),
  ];
}

/** The route types that drop what they match, as `ip route` and netavark 2.0's `route_type` name them. */
export const DROP_ROUTE_TYPES = ['blackhole', 'unreachable', 'prohibit'] as const;
export type DropRouteType = (typeof DROP_ROUTE_TYPES)[number];

const DROP_ROUTE_KERNEL_TYPE: Readonly<Record<DropRouteType, number>> = {
  blackhole: RTN_BLACKHOLE,
  unreachable: RTN_UNREACHABLE,
  prohibit: RTN_PROHIBIT,
};

/** A route to `destination` that drops what it matches (no link, no gateway), in the main table, marked lanplug's. */
export function encodeDropRoute(destination: IpPrefix, type: DropRouteType): Buffer[] {
  return [
    encodeRtMsg({
      family: familyNumber(destination.address.family),
      dstLength: destination.prefixLength,
      table: RT_TABLE_MAIN,
      protocol: RTPROT_LANPLUG,
      scope: RT_SCOPE_UNIVERSE,
      type: DROP_ROUTE_KERNEL_TYPE[type],
    }),
    nla(RTA_DST, addressBytes(destination.address)),
  ];
}

/**
 * The selector of a route to delete: family, destination, table, and the link it leaves by. Scope
 * RT_SCOPE_NOWHERE means "any scope" to the kernel's lookup (as iproute2 sends it for `ip route del`).
 */
export function encodeRouteSelector(destination: IpPrefix, oifIndex: number): Buffer[] {
  return [
    encodeRtMsg({
      family: familyNumber(destination.address.family),
      dstLength: destination.prefixLength,
      table: RT_TABLE_MAIN,
      scope: RT_SCOPE_NOWHERE,
    }),
    nla(RTA_DST, addressBytes(destination.address)),
    nlaU32(RTA_OIF, oifIndex),
  ];
}

export function decodeRoute(msg: NlMsg): RouteInfo {
  const { rtm, attrs } = parseRtMsg(msg.payload);
  const a = attrMap(attrs);
  const dst = a.get(RTA_DST);
  const address = (bytes: Buffer | undefined): IpAddress | null =>
    bytes === undefined ? null : addressFromBytes(bytes);
  const zero = Buffer.alloc(rtm.family === AF_INET ? 4 : 16);
  return {
    destination: { address: addressFromBytes(dst ?? zero), prefixLength: rtm.dstLength },
    oifIndex: readU32(a.get(RTA_OIF)) ?? null,
    gateway: address(a.get(RTA_GATEWAY)),
    preferredSource: address(a.get(RTA_PREFSRC)),
    protocol: rtm.protocol,
    // RTA_TABLE holds tables above 255; rtm_table says 252 (RT_TABLE_COMPAT) then.
    table: readU32(a.get(RTA_TABLE)) ?? rtm.table,
  };
}
