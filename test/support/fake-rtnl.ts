/**
 * An in-memory stand-in for the kernel's link table, for unit tests of the
 * driver's decisions. The real rtnetlink layer is exercised by the kernel
 * lane (test/kernel) and end to end by the Docker lane (test/e2e).
 */
import { LanplugError } from '../../src/errors';
import { EEXIST, ENODEV, EOPNOTSUPP } from '../../src/netlink/errno';
import type { LinkInfo, Rtnl } from '../../src/netlink/rtnl';

export interface FakeKernelFeatures {
  vlan: boolean;
  ipvlan: boolean;
  dummy: boolean;
}

export class FakeRtnl implements Rtnl {
  readonly links = new Map<number, LinkInfo>();
  private nextIndex = 1;
  readonly calls: string[] = [];

  constructor(private readonly features: FakeKernelFeatures = { vlan: false, ipvlan: false, dummy: false }) {
    this.add({ name: 'lo', kind: null, mtu: 65536, mac: '00:00:00:00:00:00', up: true, parentIndex: null });
    this.add({ name: 'eth0', kind: 'veth', mtu: 1500, mac: '02:00:00:00:00:01', up: true, parentIndex: null });
  }

  add(link: Omit<LinkInfo, 'index'>): LinkInfo {
    if (this.getLink(link.name) !== null) throw kernelError(EEXIST, 'File exists');
    const full = { ...link, index: this.nextIndex++ };
    this.links.set(full.index, full);
    return full;
  }

  close(): void {}
  getLink(name: string): LinkInfo | null {
    return [...this.links.values()].find((l) => l.name === name) ?? null;
  }
  getLinkByIndex(index: number): LinkInfo | null {
    return this.links.get(index) ?? null;
  }
  listLinks(): LinkInfo[] {
    return [...this.links.values()];
  }
  createMacvlan(req: Parameters<Rtnl['createMacvlan']>[0]): LinkInfo {
    this.calls.push(`macvlan ${req.name} ${req.mode}`);
    const parent = this.requireIndex(req.parentIndex);
    return this.add({ name: req.name, kind: 'macvlan', mtu: req.mtu ?? parent.mtu, mac: req.mac ?? '02:11:22:33:44:55', up: false, parentIndex: parent.index, macvlanMode: req.mode });
  }
  createIpvlan(req: Parameters<Rtnl['createIpvlan']>[0]): LinkInfo {
    this.calls.push(`ipvlan ${req.name} ${req.mode} ${req.flag}`);
    if (!this.features.ipvlan) throw kernelError(EOPNOTSUPP, 'Operation not supported');
    const parent = this.requireIndex(req.parentIndex);
    return this.add({ name: req.name, kind: 'ipvlan', mtu: req.mtu ?? parent.mtu, mac: parent.mac, up: false, parentIndex: parent.index, ipvlanMode: req.mode, ipvlanFlag: req.flag });
  }
  createVlan(req: Parameters<Rtnl['createVlan']>[0]): LinkInfo {
    this.calls.push(`vlan ${req.name} ${req.vlanId}`);
    if (!this.features.vlan) throw kernelError(EOPNOTSUPP, 'Operation not supported');
    const parent = this.requireIndex(req.parentIndex);
    return this.add({ name: req.name, kind: 'vlan', mtu: parent.mtu, mac: parent.mac, up: false, parentIndex: parent.index, vlanId: req.vlanId });
  }
  createBridge(req: { name: string; mtu?: number }): LinkInfo {
    this.calls.push(`bridge ${req.name}`);
    return this.add({ name: req.name, kind: 'bridge', mtu: req.mtu ?? 1500, mac: '02:00:00:00:00:99', up: false, parentIndex: null });
  }
  createDummy(req: { name: string; mtu?: number }): LinkInfo {
    this.calls.push(`dummy ${req.name}`);
    if (!this.features.dummy) throw kernelError(EOPNOTSUPP, 'Operation not supported');
    return this.add({ name: req.name, kind: 'dummy', mtu: req.mtu ?? 1500, mac: '02:00:00:00:00:98', up: false, parentIndex: null });
  }
  setUp(index: number): void {
    this.requireIndex(index).up = true;
  }
  deleteLink(index: number): boolean {
    const link = this.links.get(index);
    if (link === undefined) return false;
    this.calls.push(`delete ${link.name}`);
    this.links.delete(index);
    return true;
  }
  names(): string[] {
    return [...this.links.values()].map((l) => l.name).sort();
  }
  private requireIndex(index: number): LinkInfo {
    const link = this.links.get(index);
    if (link === undefined) throw kernelError(ENODEV, 'No such device');
    return link;
  }
}

function kernelError(errno: number, text: string): LanplugError {
  return new LanplugError('Kernel', text, { errno });
}
