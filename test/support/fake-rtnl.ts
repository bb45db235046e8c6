/**
 * An in-memory stand-in for the kernel's link table, for unit tests of the
 * driver's decisions. The real rtnetlink layer is exercised by the kernel
 * lane (test/kernel) and end to end by the Docker lane (test/e2e).
 *
 * Failures can be injected per operation and link name (`fail('delete',
 * 'lp-1', EBUSY)`), with the same message shape as the real layer.
 */
import { LanplugError } from '../../src/errors';
import { RTPROT_LANPLUG, type AddressInfo, type DropRouteType, type RouteInfo } from '../../src/link/ip';
import type { LinkInfo, LinkRef } from '../../src/link/link';
import { formatPrefix, type Family, type IpAddress, type IpPrefix } from '../../src/net/address';
import type { Rtnl } from '../../src/link/rtnl';
import { describeErrno, EEXIST, ENODEV, EOPNOTSUPP } from '../../src/netlink/errno';

export interface FakeKernelFeatures {
  vlan: boolean;
  ipvlan: boolean;
  dummy: boolean;
}

type Operation = 'create' | 'delete' | 'up';

export class FakeRtnl implements Rtnl {
  readonly links = new Map<number, LinkInfo>();
  private nextIndex = 1;
  readonly calls: string[] = [];
  /** Links handed out by the link listings (what a real dump would have had decoded). */
  linksRead = 0;
  private readonly faults = new Map<string, number>();
  readonly addresses: AddressInfo[] = [];
  readonly routes: RouteInfo[] = [];

  constructor(
    private readonly features: FakeKernelFeatures = { vlan: false, ipvlan: false, dummy: false },
    /**
     * The link group of the daemon this table is the namespace of (links made through it carry it);
     * a test may change it, as a later daemon would see the same table.
     */
    public ownGroup = 0,
  ) {
    this.add({ name: 'lo', kind: null, mtu: 65536, mac: '00:00:00:00:00:00', up: true, parentIndex: null });
    this.add({ name: 'eth0', kind: 'veth', mtu: 1500, mac: '02:00:00:00:00:01', up: true, parentIndex: null });
  }

  /** Every later `op` on link `name` fails with `errno` until cleared with `heal`. */
  fail(op: Operation, name: string, errno: number): void {
    this.faults.set(`${op} ${name}`, errno);
  }
  heal(): void {
    this.faults.clear();
  }

  add(link: Omit<LinkInfo, 'index' | 'group'> & { group?: number }): LinkInfo {
    if (this.getLink(link.name) !== null) throw kernelError(EEXIST);
    const full = { group: 0, ...link, index: this.nextIndex++ };
    this.links.set(full.index, full);
    return full;
  }

  owns(link: LinkInfo): boolean {
    return link.group === this.ownGroup;
  }
  setGroup(ref: LinkRef, group: number): boolean {
    const link = this.links.get(ref.index);
    if (link === undefined) return false;
    this.calls.push(`group ${link.name} ${group}`);
    this.links.set(ref.index, { ...link, group });
    return true;
  }
  close(): void {}
  getLink(name: string): LinkInfo | null {
    return [...this.links.values()].find((l) => l.name === name) ?? null;
  }
  getLinkByIndex(index: number): LinkInfo | null {
    return this.links.get(index) ?? null;
  }
  listLinks(): LinkInfo[] {
    const all = [...this.links.values()];
    this.linksRead += all.length;
    return all;
  }
  listOwnLinks(kind: string, namePrefix: string): LinkInfo[] {
    const own = [...this.links.values()].filter(
      (l) => l.group === this.ownGroup && l.kind === kind && l.name.startsWith(namePrefix),
    );
    this.linksRead += own.length;
    return own;
  }
  createMacvlan(req: Parameters<Rtnl['createMacvlan']>[0]): LinkInfo {
    this.calls.push(`macvlan ${req.name} ${req.mode}`);
    const parent = this.beforeCreate('macvlan', req.name, true, req.parentIndex);
    return this.add({
      name: req.name,
      group: this.ownGroup,
      kind: 'macvlan',
      mtu: req.mtu ?? parent.mtu,
      mac: req.mac ?? '02:11:22:33:44:55',
      up: false,
      ...(req.noArp === true ? { noArp: true } : {}),
      parentIndex: parent.index,
      macvlanMode: req.mode,
    });
  }
  createIpvlan(req: Parameters<Rtnl['createIpvlan']>[0]): LinkInfo {
    this.calls.push(`ipvlan ${req.name} ${req.mode} ${req.flag}`);
    const parent = this.beforeCreate('ipvlan', req.name, this.features.ipvlan, req.parentIndex);
    return this.add({
      name: req.name,
      group: this.ownGroup,
      kind: 'ipvlan',
      mtu: req.mtu ?? parent.mtu,
      mac: parent.mac,
      up: false,
      parentIndex: parent.index,
      ipvlanMode: req.mode,
      ipvlanFlag: req.flag,
    });
  }
  createVlan(req: Parameters<Rtnl['createVlan']>[0]): LinkInfo {
    this.calls.push(`vlan ${req.name} ${req.vlanId}`);
    const parent = this.beforeCreate('vlan', req.name, this.features.vlan, req.parentIndex);
    return this.add({
      name: req.name,
      group: this.ownGroup,
      kind: 'vlan',
      mtu: parent.mtu,
      mac: parent.mac,
      up: false,
      parentIndex: parent.index,
      vlanId: req.vlanId,
    });
  }
  createBridge(req: { name: string; mtu?: number }): LinkInfo {
    this.calls.push(`bridge ${req.name}`);
    this.beforeCreate('bridge', req.name, true);
    return this.add({
      name: req.name,
      group: this.ownGroup,
      kind: 'bridge',
      mtu: req.mtu ?? 1500,
      mac: '02:00:00:00:00:99',
      up: false,
      parentIndex: null,
    });
  }
  createDummy(req: { name: string; mtu?: number }): LinkInfo {
    this.calls.push(`dummy ${req.name}`);
    this.beforeCreate('dummy', req.name, this.features.dummy);
    return this.add({
      name: req.name,
      group: this.ownGroup,
      kind: 'dummy',
      mtu: req.mtu ?? 1500,
      mac: '02:00:00:00:00:98',
      up: false,
      parentIndex: null,
    });
  }
  setUp(ref: LinkRef): void {
    this.injected('up', ref.name, `set link ${ref.name} up`);
    this.requireIndex(ref.index, `set link ${ref.name} up`).up = true;
  }
  answerArpForOwnAddressesOnly(ref: LinkRef): void {
    this.requireIndex(ref.index, `make link ${ref.name} answer ARP for its own addresses only`);
    this.calls.push(`arp-own ${ref.name}`);
  }
  stopIpv6AddressGeneration(ref: LinkRef): boolean {
    this.requireIndex(ref.index, `stop IPv6 address generation on link ${ref.name}`);
    return true;
  }
  rename(ref: LinkRef, name: string): void {
    const link = this.requireIndex(ref.index, `rename link ${ref.name} to ${name}`);
    this.links.set(ref.index, { ...link, name });
  }
  /** Made elsewhere: this table never sees it. */
  createInNamespace(_namespaceFd: number, req: { kind: string; name: string }): void {
    this.calls.push(`create ${req.kind} ${req.name} elsewhere`);
  }
  deleteLink(ref: LinkRef): boolean {
    this.injected('delete', ref.name, `delete link ${ref.name}`);
    const link = this.links.get(ref.index);
    if (link === undefined) return false;
    this.calls.push(`delete ${link.name}`);
    this.links.delete(ref.index);
    // The kernel takes a link's addresses and routes, and the links stacked on it, with it.
    for (const list of [this.addresses, this.routes] as { index?: number; oifIndex?: number | null }[][]) {
      for (let i = list.length - 1; i >= 0; i--)
        if ((list[i]?.index ?? list[i]?.oifIndex) === ref.index) list.splice(i, 1);
    }
    for (const child of [...this.links.values()].filter((l) => l.parentIndex === ref.index)) this.deleteLink(child);
    return true;
  }
  parkLink(ref: LinkRef, group: number): boolean {
    const link = this.links.get(ref.index);
    if (link === undefined) return false;
    this.calls.push(`park ${link.name}`);
    this.links.set(ref.index, { ...link, up: false, group });
    return true;
  }
  deleteLinkGroup(group: number): boolean {
    const members = [...this.links.values()].filter((l) => l.group === group);
    for (const link of members) this.deleteLink(link);
    return members.length > 0;
  }
  addAddress(ref: LinkRef, prefix: IpPrefix): void {
    this.requireIndex(ref.index, `add address to ${ref.name}`);
    if (!this.addresses.some((a) => a.index === ref.index && formatPrefix(a.prefix) === formatPrefix(prefix))) {
      this.addresses.push({ index: ref.index, prefix });
    }
  }
  deleteAddress(ref: LinkRef, prefix: IpPrefix): boolean {
    const at = this.addresses.findIndex(
      (a) => a.index === ref.index && formatPrefix(a.prefix) === formatPrefix(prefix),
    );
    if (at < 0) return false;
    this.addresses.splice(at, 1);
    return true;
  }
  listAddresses(family: Family): AddressInfo[] {
    return this.addresses.filter((a) => a.prefix.address.family === family && this.links.has(a.index));
  }
  replaceRoute(destination: IpPrefix, ref: LinkRef, source: IpAddress | null): void {
    this.injected(
      'create',
      `route ${formatPrefix(destination)}`,
      `add route to ${formatPrefix(destination)} via ${ref.name}`,
    );
    this.requireIndex(ref.index, `add route to ${formatPrefix(destination)} via ${ref.name}`);
    this.deleteRoute(destination, ref);
    this.routes.push({
      destination,
      oifIndex: ref.index,
      gateway: null,
      preferredSource: source,
      protocol: RTPROT_LANPLUG,
      table: 254,
    });
  }
  replaceDropRoute(destination: IpPrefix, type: DropRouteType): void {
    this.injected('create', `route ${formatPrefix(destination)}`, `add ${type} route to ${formatPrefix(destination)}`);
    const at = this.routes.findIndex(
      (r) => r.oifIndex === null && formatPrefix(r.destination) === formatPrefix(destination),
    );
    if (at >= 0) this.routes.splice(at, 1);
    this.routes.push({
      destination,
      oifIndex: null,
      gateway: null,
      preferredSource: null,
      protocol: RTPROT_LANPLUG,
      table: 254,
    });
  }
  deleteDropRoute(destination: IpPrefix): boolean {
    const at = this.routes.findIndex(
      (r) => r.oifIndex === null && formatPrefix(r.destination) === formatPrefix(destination),
    );
    if (at < 0) return false;
    this.routes.splice(at, 1);
    return true;
  }
  deleteRoute(destination: IpPrefix, ref: LinkRef): boolean {
    const at = this.routes.findIndex(
      (r) => r.oifIndex === ref.index && formatPrefix(r.destination) === formatPrefix(destination),
    );
    if (at < 0) return false;
    this.routes.splice(at, 1);
    return true;
  }
  listRoutes(family: Family): RouteInfo[] {
    return this.routes.filter(
      (r) => r.destination.address.family === family && r.oifIndex !== null && this.links.has(r.oifIndex),
    );
  }
  names(): string[] {
    return [...this.links.values()].map((l) => l.name).sort();
  }

  /** The checks of a create, in the kernel's order: kind support, injected fault, parent, name. */
  private beforeCreate(kind: string, name: string, supported: boolean, parentIndex?: number): LinkInfo {
    const what = `create ${kind} link ${name}`;
    if (!supported) throw kernelError(EOPNOTSUPP, what);
    this.injected('create', name, what);
    const parent = parentIndex === undefined ? null : this.requireIndex(parentIndex, what);
    if (this.getLink(name) !== null) throw kernelError(EEXIST, what);
    return parent ?? (this.links.get(1) as LinkInfo);
  }
  private injected(op: Operation, name: string, what: string): void {
    const errno = this.faults.get(`${op} ${name}`);
    if (errno !== undefined) throw kernelError(errno, what);
  }
  private requireIndex(index: number, what: string): LinkInfo {
    const link = this.links.get(index);
    if (link === undefined) throw kernelError(ENODEV, what);
    return link;
  }
}

function kernelError(errno: number, what?: string): LanplugError {
  const text = describeErrno(errno);
  return new LanplugError('Kernel', what === undefined ? text : `${what}: ${text}`, { errno });
}
