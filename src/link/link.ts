/**
 * A link as lanplug sees it (LinkInfo), and the RTM_NEWLINK bodies that make
 * one. Kind-specific attributes are encoded and decoded by the kind's own
 * module (macvlan.ts, ipvlan.ts, vlan.ts); this file only dispatches.
 */
import {
  attrMap,
  encodeIfInfoMsg,
  IFF_NOARP,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_GROUP,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  nla,
  nlaNested,
  nlaString,
  nlaU32,
  parseAttrs,
  parseIfInfoMsg,
  readString,
  readU32,
  type NlMsg,
} from '../netlink/codec';
import { bytesToMac, macToBytes } from '../net/mac';
import { decodeIpvlanData, type IpvlanFlag, type IpvlanMode } from './ipvlan';
import { decodeMacvlanData, type MacvlanMode } from './macvlan';
import { decodeVlanData } from './vlan';

export interface LinkInfo {
  index: number;
  name: string;
  /** IFLA_INFO_KIND, e.g. 'macvlan', 'vlan', 'veth', 'bridge'; null for plain devices (lo, physical NICs). */
  kind: string | null;
  mtu: number;
  /** 'aa:bb:cc:dd:ee:ff' or null when the link has no hardware address. */
  mac: string | null;
  /** IFF_UP is set. */
  up: boolean;
  /** IFF_NOARP is set (decoded; absent where a test's table does not say). */
  noArp?: boolean;
  /**
   * IFLA_GROUP: 0 unless someone put the link in a group. Every link lanplug makes carries the
   * group of its state directory (what tells it from another daemon's), parked ones another.
   */
  group: number;
  /**
   * IFLA_LINK: the lower device's index (macvlan/ipvlan/vlan parent; veth peer), or null.
   * When the kernel also reports IFLA_LINK_NETNSID (a macvlan moved into a
   * container, a veth whose peer lives elsewhere) this index is one of *that*
   * namespace, not of the namespace the socket looks at.
   */
  parentIndex: number | null;
  /** Only for kind 'vlan'. */
  vlanId?: number;
  /** Only for kind 'macvlan'. */
  macvlanMode?: MacvlanMode;
  /** Only for kind 'ipvlan'. */
  ipvlanMode?: IpvlanMode;
  ipvlanFlag?: IpvlanFlag;
}

/** What operations on an existing link need: the index to act on, the name to say in messages. */
export type LinkRef = Pick<LinkInfo, 'index' | 'name'>;

/** Decodes one RTM_NEWLINK message. */
export function decodeLink(msg: NlMsg): LinkInfo {
  const { ifi, attrs } = parseIfInfoMsg(msg.payload);
  const a = attrMap(attrs);
  const address = a.get(IFLA_ADDRESS);
  const info: LinkInfo = {
    index: ifi.index,
    name: readString(a.get(IFLA_IFNAME)) ?? '',
    kind: null,
    mtu: readU32(a.get(IFLA_MTU)) ?? 0,
    mac: address !== undefined && address.length > 0 ? bytesToMac(address) : null,
    up: (ifi.flags & IFF_UP) !== 0,
    noArp: (ifi.flags & IFF_NOARP) !== 0,
    group: readU32(a.get(IFLA_GROUP)) ?? 0,
    parentIndex: readU32(a.get(IFLA_LINK)) ?? null,
  };
  const linkinfo = a.get(IFLA_LINKINFO);
  if (linkinfo === undefined) return info;
  const li = attrMap(parseAttrs(linkinfo));
  info.kind = readString(li.get(IFLA_INFO_KIND)) ?? null;
  const dataRaw = li.get(IFLA_INFO_DATA);
  const data = dataRaw === undefined ? new Map<number, Buffer>() : attrMap(parseAttrs(dataRaw));
  switch (info.kind) {
    case 'vlan':
      return { ...info, ...decodeVlanData(data) };
    case 'macvlan':
      return { ...info, ...decodeMacvlanData(data) };
    case 'ipvlan':
      return { ...info, ...decodeIpvlanData(data) };
    default:
      return info;
  }
}

/** Where an ifinfomsg's attributes start, and the bits of an attribute's type that are its type. */
const IFINFOMSG_LEN = 16;
const NLA_TYPE_MASK = 0x3fff;

/**
 * Whether an RTM_NEWLINK is of link group `group` and its name starts with `namePrefix`, read
 * without decoding the rest of it: a dump of 10,000 links is ~15 MB, and this is what is left of
 * each link that is not wanted (the kernel does not filter a dump by group).
 */
export function isNamedInGroup(msg: NlMsg, group: number, namePrefix: string): boolean {
  const b = msg.payload;
  let linkGroup = 0;
  let named = false;
  for (let off = IFINFOMSG_LEN; off + 4 <= b.length;) {
    const len = b.readUInt16LE(off);
    if (len < 4) break;
    const type = b.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (type === IFLA_GROUP && len >= 8) linkGroup = b.readUInt32LE(off + 4);
    else if (type === IFLA_IFNAME)
      named = b
        .subarray(off + 4, off + len)
        .toString('latin1')
        .startsWith(namePrefix);
    off += (len + 3) & ~3;
  }
  return named && linkGroup === group;
}

/** A link to create: IFLA_INFO_KIND plus the kind's IFLA_INFO_DATA, already encoded by its module. */
export interface NewLink {
  name: string;
  kind: string;
  parentIndex?: number;
  mtu?: number;
  mac?: string;
  data?: Buffer[];
  /** Made directly in the network namespace open as this fd (IFLA_NET_NS_FD), the name applying there. */
  namespaceFd?: number;
  /** IFLA_GROUP; absent (or 0): the default group. */
  group?: number;
  /** IFF_NOARP: the link's own stack never answers ARP (it would answer for every address of the namespace). */
  noArp?: boolean;
}

/** The body (ifinfomsg + attributes) of an RTM_NEWLINK, in iproute2's order (address, mtu, link, name, linkinfo). */
export function encodeNewLink(req: NewLink): Buffer[] {
  const body: Buffer[] = [encodeIfInfoMsg(req.noArp === true ? { flags: IFF_NOARP, change: IFF_NOARP } : {})];
  if (req.mac !== undefined) body.push(nla(IFLA_ADDRESS, macToBytes(req.mac)));
  if (req.mtu !== undefined) body.push(nlaU32(IFLA_MTU, req.mtu));
  if (req.parentIndex !== undefined) body.push(nlaU32(IFLA_LINK, req.parentIndex));
  body.push(nlaString(IFLA_IFNAME, req.name));
  if (req.namespaceFd !== undefined) body.push(nlaU32(IFLA_NET_NS_FD, req.namespaceFd));
  if (req.group !== undefined && req.group !== 0) body.push(nlaU32(IFLA_GROUP, req.group));
  const linkinfo = [nlaString(IFLA_INFO_KIND, req.kind)];
  if (req.data !== undefined) linkinfo.push(nlaNested(IFLA_INFO_DATA, req.data));
  body.push(nlaNested(IFLA_LINKINFO, linkinfo));
  return body;
}

/** RTM_NEWLINK body that moves a link into link group `group` (nothing else changes). */
export function encodeSetGroup(index: number, group: number): Buffer[] {
  return [encodeIfInfoMsg({ index }), nlaU32(IFLA_GROUP, group)];
}

/** RTM_NEWLINK body that sets a link down and moves it into link group `group`. */
export function encodePark(index: number, group: number): Buffer[] {
  return [encodeIfInfoMsg({ index, flags: 0, change: IFF_UP }), nlaU32(IFLA_GROUP, group)];
}

/** RTM_DELLINK body that removes every link of group `group` at once (index 0, no name). */
export function encodeGroupDelete(group: number): Buffer[] {
  return [encodeIfInfoMsg(), nlaU32(IFLA_GROUP, group)];
}
