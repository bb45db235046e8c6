/**
 * CONTRACT (to be implemented by the netlink helper; keep these exported names and shapes).
 *
 * Typed rtnetlink operations over one NETLINK_ROUTE socket. All calls are
 * synchronous: the kernel answers rtnetlink requests in microseconds, and a
 * synchronous call keeps the request/ACK pairing trivial. A receive timeout
 * (SO_RCVTIMEO) bounds a lost answer.
 */
import { ifnameProblem } from './ifname';
import { invalidArgument, LanplugError, withContext } from '../errors';
import {
  attrMap,
  bytesToMac,
  encodeIfInfoMsg,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_IPVLAN_FLAGS,
  IFLA_IPVLAN_MODE,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_MACVLAN_MODE,
  IFLA_MTU,
  IFLA_VLAN_ID,
  IPVLAN_F_BRIDGE,
  IPVLAN_F_PRIVATE,
  IPVLAN_F_VEPA,
  IPVLAN_MODE_L2,
  IPVLAN_MODE_L3,
  IPVLAN_MODE_L3S,
  isMac,
  MACVLAN_MODE_BRIDGE,
  MACVLAN_MODE_PASSTHRU,
  MACVLAN_MODE_PRIVATE,
  MACVLAN_MODE_VEPA,
  macToBytes,
  nla,
  nlaNested,
  nlaString,
  nlaU16,
  nlaU32,
  NLM_F_CREATE,
  NLM_F_EXCL,
  parseAttrs,
  parseIfInfoMsg,
  readString,
  readU16,
  readU32,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  type NlMsg,
} from './codec';
import { ENODEV } from './errno';
import { NetlinkSocket } from './socket';

export type MacvlanMode = 'private' | 'vepa' | 'bridge' | 'passthru';
export type IpvlanMode = 'l2' | 'l3' | 'l3s';
export type IpvlanFlag = 'bridge' | 'private' | 'vepa';

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

export interface Rtnl {
  close(): void;
  getLink(name: string): LinkInfo | null;
  getLinkByIndex(index: number): LinkInfo | null;
  listLinks(): LinkInfo[];
  createMacvlan(req: { name: string; parentIndex: number; mode: MacvlanMode; mac?: string; mtu?: number }): LinkInfo;
  createIpvlan(req: { name: string; parentIndex: number; mode: IpvlanMode; flag: IpvlanFlag; mtu?: number }): LinkInfo;
  createVlan(req: { name: string; parentIndex: number; vlanId: number }): LinkInfo;
  createBridge(req: { name: string; mtu?: number }): LinkInfo;
  createDummy(req: { name: string; mtu?: number }): LinkInfo;
  setUp(index: number): void;
  /** Returns false when no such link exists (deleting what is gone is success). */
  deleteLink(index: number): boolean;
}

// ---- implementation ------------------------------------------------------------

const MACVLAN_MODES: Readonly<Record<MacvlanMode, number>> = {
  private: MACVLAN_MODE_PRIVATE,
  vepa: MACVLAN_MODE_VEPA,
  bridge: MACVLAN_MODE_BRIDGE,
  passthru: MACVLAN_MODE_PASSTHRU,
};
const IPVLAN_MODES: Readonly<Record<IpvlanMode, number>> = { l2: IPVLAN_MODE_L2, l3: IPVLAN_MODE_L3, l3s: IPVLAN_MODE_L3S };
const IPVLAN_FLAGS: Readonly<Record<IpvlanFlag, number>> = {
  bridge: IPVLAN_F_BRIDGE,
  private: IPVLAN_F_PRIVATE,
  vepa: IPVLAN_F_VEPA,
};

function reverse<K extends string>(table: Readonly<Record<K, number>>): ReadonlyMap<number, K> {
  return new Map((Object.entries(table) as [K, number][]).map(([k, v]) => [v, k]));
}
const MACVLAN_MODE_NAMES = reverse(MACVLAN_MODES);
const IPVLAN_MODE_NAMES = reverse(IPVLAN_MODES);
const IPVLAN_FLAG_NAMES = reverse(IPVLAN_FLAGS);

/** IFNAMSIZ is 16 including the NUL. Same rules as the kernel's dev_valid_name(). */
export function validateLinkName(name: string): void {
  if (ifnameProblem(name) !== null) {
    throw invalidArgument(
      `interface name must be 1-15 bytes without '/', ':' or whitespace and not '.' or '..', received: ${JSON.stringify(name)}`,
    );
  }
}

function validateIndex(what: string, index: number): void {
  if (!Number.isInteger(index) || index < 1 || index > 0x7fffffff) {
    throw invalidArgument(`${what} must be a positive interface index, received: ${index}`);
  }
}

function validateMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
    throw invalidArgument(`mtu must be an integer between 68 and 65535, received: ${mtu}`);
  }
}

function validateMac(mac: string): void {
  if (!isMac(mac)) throw invalidArgument(`MAC address must look like 02:42:ac:10:56:02, received: ${JSON.stringify(mac)}`);
  // The I/G bit set means a multicast address, which the kernel refuses as a device address.
  if ((parseInt(mac.slice(0, 2), 16) & 1) !== 0) throw invalidArgument(`MAC address must be unicast, received: ${mac}`);
}

/** Decodes one RTM_NEWLINK message into the contract's LinkInfo. */
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
    // When IFLA_LINK_NETNSID is also present (e.g. a macvlan moved into a
    // container, or a veth whose peer lives elsewhere) this index belongs to
    // that other namespace, not to the one this socket looks at.
    parentIndex: readU32(a.get(IFLA_LINK)) ?? null,
  };
  const linkinfo = a.get(IFLA_LINKINFO);
  if (linkinfo === undefined) return info;
  const li = attrMap(parseAttrs(linkinfo));
  info.kind = readString(li.get(IFLA_INFO_KIND)) ?? null;
  const dataRaw = li.get(IFLA_INFO_DATA);
  const data = dataRaw === undefined ? new Map<number, Buffer>() : attrMap(parseAttrs(dataRaw));
  switch (info.kind) {
    case 'vlan': {
      const id = readU16(data.get(IFLA_VLAN_ID));
      if (id !== undefined) info.vlanId = id;
      break;
    }
    case 'macvlan': {
      const mode = MACVLAN_MODE_NAMES.get(readU32(data.get(IFLA_MACVLAN_MODE)) ?? -1);
      if (mode !== undefined) info.macvlanMode = mode;
      break;
    }
    case 'ipvlan': {
      const mode = IPVLAN_MODE_NAMES.get(readU16(data.get(IFLA_IPVLAN_MODE)) ?? -1);
      if (mode !== undefined) info.ipvlanMode = mode;
      // Old kernels send no flags attribute: that is bridge.
      const flag = IPVLAN_FLAG_NAMES.get(readU16(data.get(IFLA_IPVLAN_FLAGS)) ?? IPVLAN_F_BRIDGE);
      if (flag !== undefined) info.ipvlanFlag = flag;
      break;
    }
  }
  return info;
}

function isErrno(err: unknown, errno: number): boolean {
  return err instanceof LanplugError && err.errno === errno;
}

/** Attributes of the RTM_NEWLINK requests below, in iproute2's order (address, mtu, link, name, linkinfo). */
export interface NewLink {
  name: string;
  kind: string;
  parentIndex?: number;
  mtu?: number;
  mac?: string;
  data?: Buffer[];
}

class RtnlSocket implements Rtnl {
  constructor(private readonly sock: NetlinkSocket) {}

  close(): void {
    this.sock.close();
  }

  getLink(name: string): LinkInfo | null {
    validateLinkName(name);
    return this.getOne(`get link ${name}`, encodeIfInfoMsg(), [nlaString(IFLA_IFNAME, name)]);
  }

  getLinkByIndex(index: number): LinkInfo | null {
    validateIndex('index', index);
    return this.getOne(`get link #${index}`, encodeIfInfoMsg({ index }), []);
  }

  listLinks(): LinkInfo[] {
    try {
      return this.sock
        .dump(RTM_GETLINK, [encodeIfInfoMsg()])
        .filter((m) => m.type === RTM_NEWLINK)
        .map(decodeLink);
    } catch (err) {
      throw withContext('list links', err);
    }
  }

  createMacvlan(req: { name: string; parentIndex: number; mode: MacvlanMode; mac?: string; mtu?: number }): LinkInfo {
    const mode = MACVLAN_MODES[req.mode];
    if (mode === undefined) throw invalidArgument(`macvlan mode must be one of bridge, vepa, private, passthru, received: ${String(req.mode)}`);
    if (req.mac !== undefined) validateMac(req.mac);
    return this.create({
      name: req.name,
      kind: 'macvlan',
      parentIndex: req.parentIndex,
      mac: req.mac,
      mtu: req.mtu,
      data: [nlaU32(IFLA_MACVLAN_MODE, mode)],
    });
  }

  createIpvlan(req: { name: string; parentIndex: number; mode: IpvlanMode; flag: IpvlanFlag; mtu?: number }): LinkInfo {
    const mode = IPVLAN_MODES[req.mode];
    if (mode === undefined) throw invalidArgument(`ipvlan mode must be one of l2, l3, l3s, received: ${String(req.mode)}`);
    const flag = IPVLAN_FLAGS[req.flag];
    if (flag === undefined) throw invalidArgument(`ipvlan flag must be one of bridge, private, vepa, received: ${String(req.flag)}`);
    return this.create({
      name: req.name,
      kind: 'ipvlan',
      parentIndex: req.parentIndex,
      mtu: req.mtu,
      data: [nlaU16(IFLA_IPVLAN_MODE, mode), nlaU16(IFLA_IPVLAN_FLAGS, flag)],
    });
  }

  createVlan(req: { name: string; parentIndex: number; vlanId: number }): LinkInfo {
    if (!Number.isInteger(req.vlanId) || req.vlanId < 1 || req.vlanId > 4094) {
      throw invalidArgument(`vlan id must be between 1-4094, received: ${req.vlanId}`);
    }
    return this.create({
      name: req.name,
      kind: 'vlan',
      parentIndex: req.parentIndex,
      data: [nlaU16(IFLA_VLAN_ID, req.vlanId)],
    });
  }

  createBridge(req: { name: string; mtu?: number }): LinkInfo {
    return this.create({ name: req.name, kind: 'bridge', mtu: req.mtu });
  }

  createDummy(req: { name: string; mtu?: number }): LinkInfo {
    return this.create({ name: req.name, kind: 'dummy', mtu: req.mtu });
  }

  setUp(index: number): void {
    validateIndex('index', index);
    this.change(`set link #${index} up`, encodeIfInfoMsg({ index, flags: IFF_UP, change: IFF_UP }), []);
  }

  setMtu(index: number, mtu: number): void {
    validateIndex('index', index);
    validateMtu(mtu);
    this.change(`set mtu of link #${index} to ${mtu}`, encodeIfInfoMsg({ index }), [nlaU32(IFLA_MTU, mtu)]);
  }

  setMac(index: number, mac: string): void {
    validateIndex('index', index);
    validateMac(mac);
    this.change(`set MAC of link #${index} to ${mac}`, encodeIfInfoMsg({ index }), [
      nla(IFLA_ADDRESS, macToBytes(mac)),
    ]);
  }

  deleteLink(index: number): boolean {
    validateIndex('index', index);
    try {
      this.sock.request(RTM_DELLINK, 0, [encodeIfInfoMsg({ index })]);
      return true;
    } catch (err) {
      if (isErrno(err, ENODEV)) return false;
      throw withContext(`delete link #${index}`, err);
    }
  }

  /** RTM_GETLINK for one link; ENODEV means "no such link" and answers null. */
  private getOne(what: string, ifi: Buffer, attrs: Buffer[]): LinkInfo | null {
    let replies: NlMsg[];
    try {
      replies = this.sock.request(RTM_GETLINK, 0, [ifi, ...attrs]);
    } catch (err) {
      if (isErrno(err, ENODEV)) return null;
      throw withContext(what, err);
    }
    const msg = replies.find((m) => m.type === RTM_NEWLINK);
    if (msg === undefined) throw new LanplugError('Internal', `${what}: the kernel answered without a link`);
    return decodeLink(msg);
  }

  private change(what: string, ifi: Buffer, attrs: Buffer[]): void {
    try {
      this.sock.request(RTM_NEWLINK, 0, [ifi, ...attrs]);
    } catch (err) {
      throw withContext(what, err);
    }
  }

  /** RTM_NEWLINK with NLM_F_CREATE|NLM_F_EXCL, then the link read back by name. */
  private create(req: NewLink): LinkInfo {
    validateLinkName(req.name);
    if (req.parentIndex !== undefined) validateIndex('parentIndex', req.parentIndex);
    if (req.mtu !== undefined) validateMtu(req.mtu);
    const what = `create ${req.kind} link ${req.name}${req.parentIndex === undefined ? '' : ` on parent #${req.parentIndex}`}`;
    try {
      this.sock.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, encodeNewLink(req));
    } catch (err) {
      throw withContext(what, err);
    }
    const link = this.getLink(req.name);
    if (link === null) throw new LanplugError('Internal', `${what}: created, but gone when read back`);
    return link;
  }
}

/** The body (ifinfomsg + attributes) of an RTM_NEWLINK that creates a link. Exported for golden tests. */
export function encodeNewLink(req: NewLink): Buffer[] {
  const body: Buffer[] = [encodeIfInfoMsg()];
  if (req.mac !== undefined) body.push(nla(IFLA_ADDRESS, macToBytes(req.mac)));
  if (req.mtu !== undefined) body.push(nlaU32(IFLA_MTU, req.mtu));
  if (req.parentIndex !== undefined) body.push(nlaU32(IFLA_LINK, req.parentIndex));
  body.push(nlaString(IFLA_IFNAME, req.name));
  const linkinfo = [nlaString(IFLA_INFO_KIND, req.kind)];
  if (req.data !== undefined) linkinfo.push(nlaNested(IFLA_INFO_DATA, req.data));
  body.push(nlaNested(IFLA_LINKINFO, linkinfo));
  return body;
}

/** Rtnl plus helpers beyond the contract. */
export interface RtnlExtra extends Rtnl {
  setMtu(index: number, mtu: number): void;
  setMac(index: number, mac: string): void;
}

/**
 * Opens one NETLINK_ROUTE socket, in the caller's network namespace or in the
 * one named by `netns` (a file such as /run/netns/x). Every operation on the
 * result then acts in that namespace, whatever thread calls it.
 */
export function openRtnl(options: { netns?: string } = {}): RtnlExtra {
  return new RtnlSocket(NetlinkSocket.open(options.netns === undefined ? {} : { netns: options.netns }));
}
