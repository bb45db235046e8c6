/**
 * What a namespace's kernel made of the LAN router's advertisements (RFC 4861), read over rtnetlink:
 * the advertisement's M and O flags as the kernel keeps them per interface, and the options it hands
 * to userspace as they arrive: prefixes (with their A flag) and RDNSS/DNSSL (RFC 8106).
 *
 * Why the kernel's reading and not lanplug's own: the kernel of the container's namespace receives
 * and validates every advertisement anyway (hop limit 255, link-local source, accept_ra, the
 * interface's state), and keeps the flags of the latest one in the interface's IPv6 flags
 * (IF_RA_MANAGED, IF_RA_OTHERCONF in IFLA_INET6_FLAGS: /proc/sys has no file for them). Those can be
 * read at any time with one RTM_GETLINK, so a flag is never missed for a socket not yet open.
 * A raw ICMPv6 (or packet) socket of lanplug's in the sandbox would see the same frames, but would
 * have to validate them again, run a receive loop per container, and still not see an advertisement
 * that came before it was open. The options the kernel does not keep (RDNSS, DNSSL) it sends only as
 * notifications (RTM_NEWNDUSEROPT), and the prefixes too (RTM_NEWPREFIX, with the A flag); for those
 * the watch's notification socket (driver/slaac-notes.ts) is opened in the namespace before IPv6 is
 * turned on there, so the answer to the kernel's first router solicitation is already heard.
 *
 * With several routers on a LAN, the flags are those of the last advertisement heard, as for the
 * kernel itself. When an advertisement changes them, the kernel says so: an RTM_NEWLINK of family
 * AF_INET6 to the RTNLGRP_IPV6_IFINFO group (ndisc_router_discovery, only when M or O differ from the
 * last ones), which listenForFlagChanges hears without entering the namespace again.
 */
import { addressFromBytes } from '../net/address';
import { decodeDnsNames } from '../net/dns-name';
import {
  AF_INET6,
  attrMap,
  encodeIfInfoMsg,
  IFLA_AF_SPEC,
  parseAttrs,
  parseIfInfoMsg,
  readU32,
  RTM_GETLINK,
  RTM_NEWLINK,
  type NlMsg,
} from './codec';
import { NetlinkEvents } from './events';
import { NetlinkSocket } from './socket';

/** Inside IFLA_AF_SPEC's AF_INET6 part: the interface's IPv6 flags (struct inet6_dev's if_flags). */
const IFLA_INET6_FLAGS = 1;
/** include/net/if_inet6.h. */
const IF_RA_OTHERCONF = 0x80;
const IF_RA_MANAGED = 0x40;
/** An advertisement came after the kernel's own solicitation (set only once one was sent). */
const IF_RA_RCVD = 0x20;

/** The interfaces' IPv6 state: the kernel notifies here when an advertisement changes M or O. */
const RTNLGRP_IPV6_IFINFO = 12;
/** The groups of those notifications (the watch's socket joins them: driver/slaac-notes.ts). */
export const RTNLGRP_IPV6_PREFIX = 18;
export const RTNLGRP_ND_USEROPT = 20;
export const RTM_NEWPREFIX = 52;
export const RTM_NEWNDUSEROPT = 68;
/** struct prefixmsg: family, pad, pad, ifindex, type, len, flags, pad. */
const PREFIXMSG_LEN = 12;
/**
 * The A flag as prefix_flags carries it: the kernel copies the option's flag byte as it came (L 0x80, A
 * 0x40), not the IF_PREFIX_ONLINK/IF_PREFIX_AUTOCONF (0x01, 0x02) linux/if_addr.h names for it.
 */
const PREFIX_AUTOCONF = 0x40;
/** struct nduseroptmsg: family, pad, opts_len, ifindex, icmp type, icmp code, pad, pad. */
const NDUSEROPTMSG_LEN = 16;
const ND_OPT_RDNSS = 25;
const ND_OPT_DNSSL = 31;

/** The M and O flags of the latest advertisement on an interface; `heard`: one came after the kernel's solicitation. */
export interface AdvertFlags {
  heard: boolean;
  managed: boolean;
  other: boolean;
}

/** The kernel's advertisement flags of link `index` in `netns`; null when it has no IPv6 (or no such link). */
export function readAdvertFlags(netns: string, index: number): AdvertFlags | null {
  const sock = NetlinkSocket.open({ netns });
  try {
    const reply = sock.request(RTM_GETLINK, 0, [encodeIfInfoMsg({ index })]).find((m) => m.type === RTM_NEWLINK);
    if (reply === undefined) return null;
    const spec = attrMap(parseIfInfoMsg(reply.payload).attrs).get(IFLA_AF_SPEC);
    const inet6 = spec === undefined ? undefined : attrMap(parseAttrs(spec)).get(AF_INET6);
    const flags = inet6 === undefined ? undefined : readU32(attrMap(parseAttrs(inet6)).get(IFLA_INET6_FLAGS));
    if (flags === undefined) return null;
    return {
      heard: (flags & IF_RA_RCVD) !== 0,
      managed: (flags & IF_RA_MANAGED) !== 0,
      other: (flags & IF_RA_OTHERCONF) !== 0,
    };
  } finally {
    sock.close();
  }
}

/** What tells that the flags of an interface in the namespace may have changed since the last call. */
export interface FlagChanges {
  /** True when the kernel notified anything since the last call (or lost notifications): read the flags again. */
  changed(): boolean;
  close(): void;
}

/**
 * A socket in `netns` joined to the group the kernel tells changes of the advertisement flags to; its
 * checks read what is queued without waiting and without entering the namespace (a notification says
 * only that some interface's IPv6 state changed: the flags are read again with readAdvertFlags).
 */
export function listenForFlagChanges(netns: string): FlagChanges {
  return NetlinkEvents.open([RTNLGRP_IPV6_IFINFO], { netns });
}

/** What one batch of notifications said about an interface. */
export interface AdvertNotes {
  /** A prefix was advertised with the A flag (autoconfiguration). */
  autoconf: boolean;
  /** Any prefix was advertised (an advertisement was heard). */
  prefixes: number;
  /** RDNSS servers with a lifetime above 0, in the order given. */
  servers: string[];
  /** DNSSL names with a lifetime above 0. */
  search: string[];
}

/** What `messages` (prefix and ND user option notifications) say about link `index`, added to `notes`. */
export function addNotes(notes: AdvertNotes, messages: readonly NlMsg[], index: number): AdvertNotes {
  for (const msg of messages) {
    if (msg.type === RTM_NEWPREFIX) notePrefix(msg.payload, index, notes);
    if (msg.type === RTM_NEWNDUSEROPT) noteUserOption(msg.payload, index, notes);
  }
  return notes;
}

function notePrefix(payload: Buffer, index: number, notes: AdvertNotes): void {
  if (payload.length < PREFIXMSG_LEN || payload.readInt32LE(4) !== index) return;
  notes.prefixes += 1;
  if ((payload.readUInt8(10) & PREFIX_AUTOCONF) !== 0) notes.autoconf = true;
}

/** One RDNSS or DNSSL option (the kernel passes one option per notification); a lifetime of 0 withdraws, and is skipped. */
function noteUserOption(payload: Buffer, index: number, notes: AdvertNotes): void {
  if (payload.length < NDUSEROPTMSG_LEN || payload.readInt32LE(4) !== index) return;
  const length = payload.readUInt16LE(2);
  const option = payload.subarray(NDUSEROPTMSG_LEN, NDUSEROPTMSG_LEN + length);
  if (option.length < 8 || option.length < (option[1] ?? 0) * 8) return;
  const body = option.subarray(8, (option[1] ?? 0) * 8);
  if (option.readUInt32BE(4) === 0) return;
  if (option[0] === ND_OPT_RDNSS)
    for (let off = 0; off + 16 <= body.length; off += 16)
      notes.servers.push(addressFromBytes(body.subarray(off, off + 16)).text);
  if (option[0] === ND_OPT_DNSSL) notes.search.push(...decodeDnsNames(body));
}
