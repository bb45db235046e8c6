// A router advertisement carrying a Route Information option (RFC 4191), sent once on the LAN's
// bridge from inside the LAN namespace: dnsmasq (router-adverts.ts) has no way to send one. The
// advertisement names no default router (router lifetime 0) and no prefix, so it changes nothing but
// the route it announces; it comes from a link-local address of its own, the route's next hop.

import { icmpv6Checksum, multicastMac } from '../../src/l2/frames';
import { PacketSocket, SEND_ONLY } from '../../src/l2/packet-socket';
import { openRtnl } from '../../src/link/rtnl';
import { addressBytes, parseAddress, parsePrefix, type IpPrefix } from '../../src/net/address';
import { inNetworkNamespace } from '../../src/netlink/netns';
import type { Lan } from './lan';

const ND_ROUTER_ADVERT = 134;
const ND_OPT_ROUTE_INFO = 24;
const ALL_NODES = parseAddress('ff02::1');
const ETH_P_IPV6 = 0x86dd;

/** The link-local address the advertisement comes from: the next hop of the route it announces. */
export const ROUTE_INFO_ROUTER = 'fe80::24:1';

/** Sends one advertisement of `route` (prefix length up to 64) with a lifetime of `lifetimeS` seconds. */
export function sendRouteInformation(lan: Lan, route: string, lifetimeS = 600): void {
  const prefix = parsePrefix(route);
  const netns = `/run/netns/${lan.ns}`;
  const bridge = openRtnl({ netns });
  const link = (() => {
    try {
      return bridge.getLink(lan.bridge);
    } finally {
      bridge.close();
    }
  })();
  if (link === null || link.mac === null) throw new Error(`lab: no ${lan.bridge} in ${lan.ns}`);
  const frame = routerAdvert(link.mac, prefix, lifetimeS);
  const socket = inNetworkNamespace(
    netns,
    () => PacketSocket.open(link.index, SEND_ONLY, lan.bridge),
    (s) => void s.close(),
  );
  try {
    socket.send(frame);
  } finally {
    void socket.close();
  }
}

function routerAdvert(mac: string, route: IpPrefix, lifetimeS: number): Buffer {
  if (route.prefixLength > 64) throw new Error('lab: route information of at most /64 here');
  const source = parseAddress(ROUTE_INFO_ROUTER);
  const option = Buffer.alloc(16); // type, length 2 (16 bytes), prefix length, flags, lifetime, 8 bytes of prefix
  option[0] = ND_OPT_ROUTE_INFO;
  option[1] = 2;
  option[2] = route.prefixLength;
  option.writeUInt32BE(lifetimeS, 4);
  addressBytes(route.address).copy(option, 8, 0, 8);
  const header = Buffer.alloc(16); // type, code, checksum, hop limit, flags, router lifetime 0, reachable, retrans
  header[0] = ND_ROUTER_ADVERT;
  header[4] = 64;
  const icmp = Buffer.concat([header, option]);
  icmp.writeUInt16BE(icmpv6Checksum(source, ALL_NODES, icmp), 2);
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(icmp.length, 4);
  ip[6] = 58; // ICMPv6
  ip[7] = 255; // RFC 4861: neighbour discovery with any other hop limit is dropped
  addressBytes(source).copy(ip, 8);
  addressBytes(ALL_NODES).copy(ip, 24);
  const ethernet = Buffer.alloc(14);
  Buffer.from(multicastMac(ALL_NODES).replace(/:/g, ''), 'hex').copy(ethernet, 0);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(ethernet, 6);
  ethernet.writeUInt16BE(ETH_P_IPV6, 12);
  return Buffer.concat([ethernet, ip, icmp]);
}
