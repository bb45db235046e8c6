/**
 * Typed link operations over one NETLINK_ROUTE socket. Every call is
 * synchronous (see netlink/socket.ts for why).
 *
 * Errors name the operation and the link, then the kernel's errno and reason:
 * "create macvlan link lp-1234: EEXIST (File exists)". Callers add what only
 * they know (the network, the parent's name), nothing more.
 */
import { invalidArgument, LanplugError, withContext } from '../errors';
import { ifnameProblem } from '../net/ifname';
import { isMac, isMulticastMac } from '../net/mac';
import { isMtu, MAX_MTU, MIN_MTU_IPV4 } from '../net/mtu';
import {
  AF_INET,
  AF_INET6,
  encodeIfInfoMsg,
  IFF_UP,
  IFLA_AF_SPEC,
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_INET6_ADDR_GEN_MODE,
  IFLA_INET_CONF,
  IPV4_DEVCONF_ARP_ANNOUNCE,
  IPV4_DEVCONF_ARP_IGNORE,
  IN6_ADDR_GEN_MODE_NONE,
  nlaNested,
  nlaString,
  nlaU32,
  nlaU8,
  encodeIfAddrMsg,
  encodeRtMsg,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RT_TABLE_MAIN,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELROUTE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  type NlMsg,
} from '../netlink/codec';
import { EADDRNOTAVAIL, EAFNOSUPPORT, EEXIST, ENODEV, ESRCH } from '../netlink/errno';
import { NetlinkSocket } from '../netlink/socket';
import type { Family, IpAddress, IpPrefix } from '../net/address';
import {
  decodeAddress,
  decodeRoute,
  encodeAddress,
  encodeDropRoute,
  encodeRoute,
  encodeRouteSelector,
  familyNumber,
  type AddressInfo,
  type DropRouteType,
  type RouteInfo,
} from './ip';
import { encodeIpvlanData, type IpvlanFlag, type IpvlanMode } from './ipvlan';
import {
  decodeLink,
  isNamedInGroup,
  encodeGroupDelete,
  encodeNewLink,
  encodePark,
  encodeSetGroup,
  type LinkInfo,
  type LinkRef,
  type NewLink,
} from './link';
import { encodeMacvlanData, type MacvlanMode } from './macvlan';
import { encodeVlanData, isVlanId, VLAN_ID_MAX, VLAN_ID_MIN } from './vlan';

export interface Rtnl {
  /**
   * The link group every link made through this Rtnl carries: the mark of the state directory
   * whose daemon made it (0: the default group, for tests and tools that own no links).
   */
  readonly ownGroup: number;
  /** Whether `link` was made by the owner of this Rtnl (it carries ownGroup). */
  owns(link: LinkInfo): boolean;
  close(): void;
  getLink(name: string): LinkInfo | null;
  getLinkByIndex(index: number): LinkInfo | null;
  listLinks(): LinkInfo[];
  /**
   * The links of this Rtnl's group (ownGroup) and of one kind whose names start with `namePrefix`
   * (e.g. the LAN eyes). The kernel filters the dump by kind (IFLA_LINKINFO, Linux 4.6+; an older
   * one sends all, and the kind is checked here too) and leaves the statistics out; it does not
   * filter by group, so each message's group and name are read before anything else of it is.
   */
  listOwnLinks(kind: string, namePrefix: string): LinkInfo[];
  createMacvlan(req: {
    name: string;
    parentIndex: number;
    mode: MacvlanMode;
    mac?: string;
    mtu?: number;
    noArp?: boolean;
  }): LinkInfo;
  createIpvlan(req: { name: string; parentIndex: number; mode: IpvlanMode; flag: IpvlanFlag; mtu?: number }): LinkInfo;
  createVlan(req: { name: string; parentIndex: number; vlanId: number }): LinkInfo;
  createBridge(req: { name: string; mtu?: number }): LinkInfo;
  createDummy(req: { name: string; mtu?: number }): LinkInfo;
  setUp(link: LinkRef): void;
  /**
   * No IPv6 address of the kernel's own making on this link (addr_gen_mode none): no link-local
   * address, so no DAD and no router solicitation from it. The netlink way of a quiet link where
   * /proc/sys is read-only (a managed plugin); false on a kernel without IPv6.
   */
  stopIpv6AddressGeneration(link: LinkRef): boolean;
  /**
   * The link answers ARP only for its own addresses (arp_ignore 1) and names only one of its own
   * in the ARP it sends (arp_announce 2), over netlink (a managed plugin's /proc/sys is read-only).
   * Without it a link in the host's namespace answers for every address of the host (Linux's weak
   * host model), with its own MAC.
   */
  answerArpForOwnAddressesOnly(link: LinkRef): void;
  /** Renames a link that is down. */
  rename(link: LinkRef, name: string): void;
  /**
   * Creates a macvlan or ipvlan link (parent in this namespace) directly in
   * the namespace open as `namespaceFd`, under `req.name` there: no move,
   * so no wait for an RCU grace period. Not read back (it is not here).
   * Some kernels check the name against this namespace too (Debian's 6.1
   * for ipvlan: EEXIST for `eth0`), so give a name unique here and rename
   * the link inside.
   */
  createInNamespace(namespaceFd: number, req: EndpointLinkRequest): void;
  /** Returns false when no such link exists (deleting what is gone is success). */
  deleteLink(link: LinkRef): boolean;
  /** Moves a link into link group `group`; false when no such link exists. */
  setGroup(link: LinkRef, group: number): boolean;
  /** Sets a link down and moves it into link group `group`; false when no such link exists. */
  parkLink(link: LinkRef, group: number): boolean;
  /** Removes every link of group `group` at once (one RCU grace period for all); false when it has none. */
  deleteLinkGroup(group: number): boolean;

  /** Adds an address to a link; an address it already has is success. */
  addAddress(link: LinkRef, prefix: IpPrefix): void;
  /** Returns false when the link does not hold it. */
  deleteAddress(link: LinkRef, prefix: IpPrefix): boolean;
  /** Addresses of one family on every link of the namespace. */
  listAddresses(family: Family): AddressInfo[];
  /** Adds or replaces the route to `destination` out of `link` (on-link, or via `gateway`), marked as lanplug's. */
  replaceRoute(destination: IpPrefix, link: LinkRef, source: IpAddress | null, gateway?: IpAddress | null): void;
  /** Adds or replaces a route to `destination` that drops what it matches (blackhole, unreachable, prohibit), marked as lanplug's. */
  replaceDropRoute(destination: IpPrefix, type: DropRouteType): void;
  /** Removes lanplug's route of that type to `destination`; false when there is none. */
  deleteDropRoute(destination: IpPrefix, type: DropRouteType): boolean;
  /** Returns false when there is no such route. */
  deleteRoute(destination: IpPrefix, link: LinkRef): boolean;
  /** Routes of one family in the main table. */
  listRoutes(family: Family): RouteInfo[];
}

/** The last guard before the kernel: the driver has checked all of these with friendlier words. */
function checkName(name: string): void {
  if (ifnameProblem(name) !== null) {
    throw invalidArgument(
      `interface name must be 1-15 bytes without '/', ':' or whitespace and not '.' or '..', received: ${JSON.stringify(name)}`,
    );
  }
}

function checkIndex(what: string, index: number): void {
  if (!Number.isInteger(index) || index < 1 || index > 0x7fffffff) {
    throw invalidArgument(`${what} must be a positive interface index, received: ${index}`);
  }
}

/** Group 0 is every link's default: deleting "group 0" would mean every link there is. */
export function checkGroup(group: number): void {
  if (!Number.isInteger(group) || group < 1 || group > 0xffffffff) {
    throw invalidArgument(`link group must be an integer between 1 and 4294967295, received: ${group}`);
  }
}

function checkNewLink(req: NewLink): void {
  checkName(req.name);
  if (req.parentIndex !== undefined) checkIndex('parent index', req.parentIndex);
  if (req.mtu !== undefined && !isMtu(req.mtu)) {
    throw invalidArgument(`mtu must be an integer between ${MIN_MTU_IPV4} and ${MAX_MTU}, received: ${req.mtu}`);
  }
  if (req.mac !== undefined && !isMac(req.mac)) {
    throw invalidArgument(`MAC address must look like 02:42:ac:10:56:02, received: ${JSON.stringify(req.mac)}`);
  }
  // The kernel refuses a multicast address as a device address.
  if (req.mac !== undefined && isMulticastMac(req.mac))
    throw invalidArgument(`MAC address must be unicast, received: ${req.mac}`);
}

function formatPrefixText(prefix: IpPrefix): string {
  return `${prefix.address.text}/${prefix.prefixLength}`;
}

function isErrno(err: unknown, errno: number): boolean {
  return err instanceof LanplugError && err.errno === errno;
}

/** A container's link: what createInNamespace makes. */
export type EndpointLinkRequest =
  | { kind: 'macvlan'; name: string; parentIndex: number; mode: MacvlanMode; mac?: string; mtu?: number }
  | { kind: 'ipvlan'; name: string; parentIndex: number; mode: IpvlanMode; flag: IpvlanFlag; mtu?: number };

class RtnlSocket implements Rtnl {
  constructor(
    private readonly sock: NetlinkSocket,
    readonly ownGroup: number,
  ) {}

  owns(link: LinkInfo): boolean {
    return link.group === this.ownGroup;
  }

  close(): void {
    this.sock.close();
  }

  getLink(name: string): LinkInfo | null {
    checkName(name);
    return this.getOne(`get link ${name}`, encodeIfInfoMsg(), [nlaString(IFLA_IFNAME, name)]);
  }

  getLinkByIndex(index: number): LinkInfo | null {
    checkIndex('index', index);
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

  listOwnLinks(kind: string, namePrefix: string): LinkInfo[] {
    const request = [
      encodeIfInfoMsg(),
      nlaU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS),
      nlaNested(IFLA_LINKINFO, [nlaString(IFLA_INFO_KIND, kind)]),
    ];
    try {
      return this.sock
        .dump(RTM_GETLINK, request)
        .filter((m) => m.type === RTM_NEWLINK && isNamedInGroup(m, this.ownGroup, namePrefix))
        .map(decodeLink)
        .filter((link) => link.kind === kind);
    } catch (err) {
      throw withContext(`list ${kind} links`, err);
    }
  }

  createMacvlan(req: Parameters<Rtnl['createMacvlan']>[0]): LinkInfo {
    const { mode, ...rest } = req;
    return this.create({ ...rest, kind: 'macvlan', data: encodeMacvlanData(mode) });
  }

  createIpvlan(req: { name: string; parentIndex: number; mode: IpvlanMode; flag: IpvlanFlag; mtu?: number }): LinkInfo {
    const { mode, flag, ...rest } = req;
    return this.create({ ...rest, kind: 'ipvlan', data: encodeIpvlanData(mode, flag) });
  }

  createVlan(req: { name: string; parentIndex: number; vlanId: number }): LinkInfo {
    if (!isVlanId(req.vlanId))
      throw invalidArgument(`vlan id must be between ${VLAN_ID_MIN}-${VLAN_ID_MAX}, received: ${req.vlanId}`);
    return this.create({
      name: req.name,
      kind: 'vlan',
      parentIndex: req.parentIndex,
      data: encodeVlanData(req.vlanId),
    });
  }

  createBridge(req: { name: string; mtu?: number }): LinkInfo {
    return this.create({ ...req, kind: 'bridge' });
  }

  createDummy(req: { name: string; mtu?: number }): LinkInfo {
    return this.create({ ...req, kind: 'dummy' });
  }

  setUp(link: LinkRef): void {
    checkIndex('index', link.index);
    try {
      this.sock.request(RTM_NEWLINK, 0, [encodeIfInfoMsg({ index: link.index, flags: IFF_UP, change: IFF_UP })]);
    } catch (err) {
      throw withContext(`set link ${link.name} up`, err);
    }
  }

  stopIpv6AddressGeneration(link: LinkRef): boolean {
    checkIndex('index', link.index);
    const inet6 = nlaNested(AF_INET6, [nlaU8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE)], false);
    try {
      this.sock.request(RTM_NEWLINK, 0, [
        encodeIfInfoMsg({ index: link.index }),
        nlaNested(IFLA_AF_SPEC, [inet6], false),
      ]);
      return true;
    } catch (err) {
      if (err instanceof LanplugError && err.errno === EAFNOSUPPORT) return false;
      throw withContext(`stop IPv6 address generation on link ${link.name}`, err);
    }
  }

  answerArpForOwnAddressesOnly(link: LinkRef): void {
    checkIndex('index', link.index);
    const conf = nlaNested(
      IFLA_INET_CONF,
      [nlaU32(IPV4_DEVCONF_ARP_IGNORE, 1), nlaU32(IPV4_DEVCONF_ARP_ANNOUNCE, 2)],
      false,
    );
    try {
      this.sock.request(RTM_NEWLINK, 0, [
        encodeIfInfoMsg({ index: link.index }),
        nlaNested(IFLA_AF_SPEC, [nlaNested(AF_INET, [conf], false)], false),
      ]);
    } catch (err) {
      throw withContext(`make link ${link.name} answer ARP for its own addresses only`, err);
    }
  }

  createInNamespace(namespaceFd: number, req: EndpointLinkRequest): void {
    const link: NewLink =
      req.kind === 'macvlan'
        ? { ...withoutMode(req), kind: 'macvlan', data: encodeMacvlanData(req.mode), namespaceFd, group: this.ownGroup }
        : {
            ...withoutMode(req),
            kind: 'ipvlan',
            data: encodeIpvlanData(req.mode, req.flag),
            namespaceFd,
            group: this.ownGroup,
          };
    checkNewLink(link);
    try {
      this.sock.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, encodeNewLink(link));
    } catch (err) {
      throw withContext(`create ${req.kind} link ${req.name} in another namespace`, err);
    }
  }

  rename(link: LinkRef, name: string): void {
    checkIndex('index', link.index);
    checkName(name);
    try {
      this.sock.request(RTM_NEWLINK, 0, [encodeIfInfoMsg({ index: link.index }), nlaString(IFLA_IFNAME, name)]);
    } catch (err) {
      throw withContext(`rename link ${link.name} to ${name}`, err);
    }
  }

  deleteLink(link: LinkRef): boolean {
    checkIndex('index', link.index);
    try {
      this.sock.request(RTM_DELLINK, 0, [encodeIfInfoMsg({ index: link.index })]);
      return true;
    } catch (err) {
      if (isErrno(err, ENODEV)) return false;
      throw withContext(`delete link ${link.name}`, err);
    }
  }

  setGroup(link: LinkRef, group: number): boolean {
    checkIndex('index', link.index);
    try {
      this.sock.request(RTM_NEWLINK, 0, encodeSetGroup(link.index, group));
      return true;
    } catch (err) {
      if (isErrno(err, ENODEV)) return false;
      throw withContext(`move link ${link.name} into group ${group}`, err);
    }
  }

  parkLink(link: LinkRef, group: number): boolean {
    checkIndex('index', link.index);
    try {
      this.sock.request(RTM_NEWLINK, 0, encodePark(link.index, group));
      return true;
    } catch (err) {
      if (isErrno(err, ENODEV)) return false;
      throw withContext(`set link ${link.name} down into group ${group}`, err);
    }
  }

  deleteLinkGroup(group: number): boolean {
    checkGroup(group);
    try {
      this.sock.request(RTM_DELLINK, 0, encodeGroupDelete(group));
      return true;
    } catch (err) {
      if (isErrno(err, ENODEV)) return false;
      throw withContext(`delete the links of group ${group}`, err);
    }
  }

  addAddress(link: LinkRef, prefix: IpPrefix): void {
    checkIndex('index', link.index);
    try {
      this.sock.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, encodeAddress(link.index, prefix));
    } catch (err) {
      if (isErrno(err, EEXIST)) return;
      throw withContext(`add address ${formatPrefixText(prefix)} to ${link.name}`, err);
    }
  }

  deleteAddress(link: LinkRef, prefix: IpPrefix): boolean {
    checkIndex('index', link.index);
    try {
      this.sock.request(RTM_DELADDR, 0, encodeAddress(link.index, prefix));
      return true;
    } catch (err) {
      if (isErrno(err, EADDRNOTAVAIL) || isErrno(err, ENODEV)) return false;
      throw withContext(`delete address ${formatPrefixText(prefix)} from ${link.name}`, err);
    }
  }

  listAddresses(family: Family): AddressInfo[] {
    try {
      return this.sock
        .dump(RTM_GETADDR, [
          encodeIfAddrMsg({ family: familyNumber(family), prefixLength: 0, flags: 0, scope: 0, index: 0 }),
        ])
        .filter((m) => m.type === RTM_NEWADDR)
        .flatMap((m) => decodeAddress(m) ?? []);
    } catch (err) {
      throw withContext('list addresses', err);
    }
  }

  replaceRoute(destination: IpPrefix, link: LinkRef, source: IpAddress | null, gateway: IpAddress | null = null): void {
    checkIndex('index', link.index);
    try {
      this.sock.request(
        RTM_NEWROUTE,
        NLM_F_CREATE | NLM_F_REPLACE,
        encodeRoute(destination, link.index, source, gateway),
      );
    } catch (err) {
      throw withContext(`add route to ${formatPrefixText(destination)} via ${link.name}`, err);
    }
  }

  replaceDropRoute(destination: IpPrefix, type: DropRouteType): void {
    try {
      this.sock.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, encodeDropRoute(destination, type));
    } catch (err) {
      throw withContext(`add ${type} route to ${formatPrefixText(destination)}`, err);
    }
  }

  deleteDropRoute(destination: IpPrefix, type: DropRouteType): boolean {
    try {
      // the kernel deletes only a route of this type and protocol (lanplug's)
      this.sock.request(RTM_DELROUTE, 0, encodeDropRoute(destination, type));
      return true;
    } catch (err) {
      if (isErrno(err, ESRCH)) return false;
      throw withContext(`delete ${type} route to ${formatPrefixText(destination)}`, err);
    }
  }

  deleteRoute(destination: IpPrefix, link: LinkRef): boolean {
    checkIndex('index', link.index);
    try {
      this.sock.request(RTM_DELROUTE, 0, encodeRouteSelector(destination, link.index));
      return true;
    } catch (err) {
      if (isErrno(err, ESRCH) || isErrno(err, ENODEV)) return false;
      throw withContext(`delete route to ${formatPrefixText(destination)} via ${link.name}`, err);
    }
  }

  listRoutes(family: Family): RouteInfo[] {
    try {
      return this.sock
        .dump(RTM_GETROUTE, [encodeRtMsg({ family: familyNumber(family) })])
        .filter((m) => m.type === RTM_NEWROUTE)
        .map(decodeRoute)
        .filter((r) => r.table === RT_TABLE_MAIN);
    } catch (err) {
      throw withContext('list routes', err);
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

  /** RTM_NEWLINK with NLM_F_CREATE|NLM_F_EXCL, then the link read back by name. */
  private create(req: NewLink): LinkInfo {
    checkNewLink(req);
    const what = `create ${req.kind} link ${req.name}`;
    try {
      this.sock.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, encodeNewLink({ ...req, group: this.ownGroup }));
    } catch (err) {
      throw withContext(what, err);
    }
    const link = this.getLink(req.name);
    if (link === null) throw new LanplugError('Internal', `${what}: created, but gone when read back`);
    return link;
  }
}

function withoutMode(req: EndpointLinkRequest): { name: string; parentIndex: number; mac?: string; mtu?: number } {
  return {
    name: req.name,
    parentIndex: req.parentIndex,
    ...('mac' in req && req.mac !== undefined ? { mac: req.mac } : {}),
    ...(req.mtu === undefined ? {} : { mtu: req.mtu }),
  };
}

/**
 * Opens one NETLINK_ROUTE socket, in the caller's network namespace or in the
 * one named by `netns` (a file such as /run/netns/x). Every operation on the
 * result then acts in that namespace, whatever thread calls it. Every link it
 * makes carries link group `group` (default 0, the kernel's default group).
 */
export function openRtnl(options: { netns?: string; group?: number } = {}): Rtnl {
  const group = options.group ?? 0;
  if (group !== 0) checkGroup(group);
  return new RtnlSocket(NetlinkSocket.open(options.netns === undefined ? {} : { netns: options.netns }), group);
}
