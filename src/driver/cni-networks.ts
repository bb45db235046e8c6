/**
 * The lanplug network behind a CNI or Podman network configuration. A CNI
 * network has no create or remove of its own: it is made (as a lanplug network
 * with the configuration's `name`) at its first ADD, made again if the
 * configuration changed while nothing was attached, and removed once it has had
 * no attachment for `idleMs`, taking any parent lanplug made for it along. The
 * wait keeps a runtime that starts and stops one container after another from
 * paying for the network (its LAN eye, its parent) every time. Apart from the
 * attachments (sandbox-attachments.ts) because a network's life has its own
 * state (the idle timers) and its own questions (the parent, STATUS).
 */
import { conflict, invalidArgument, LanplugError } from '../errors';
import type { Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import type { Subnet } from '../model/network';
import type { RangeAllocator } from '../ipam/ranges';
import type { Store } from '../state/store';
import type { NetworkDriver } from './network-driver';
import type { CreateNetworkRequest } from './requests';
import { OPT_PARENT } from './options';
import type { AttachNetwork } from './attach-request';
import type { SharedClaims } from './attachment-hooks';
import { cniNetworkId } from './attachment-ids';

export class CniNetworks {
  /** Networks without attachments, by id: the timer that removes them. */
  private readonly idle = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly driver: NetworkDriver,
    private readonly rtnl: Rtnl,
    private readonly store: Store,
    private readonly allocator: RangeAllocator,
    private readonly log: Logger,
    /** How long a CNI network stays without attachments; 0 removes it with the last DEL. */
    private readonly idleMs = 0,
    /** Told when a network goes, so that this host's use of its shared pools ends; null where pools are not shared. */
    private readonly shared: SharedClaims | null = null,
  ) {}

  /** Pending removals are dropped: the networks stay recorded, and the reconcile removes them later. */
  stop(): void {
    for (const timer of this.idle.values()) clearTimeout(timer);
    this.idle.clear();
  }

  /**
   * What the first ADD of this network would refuse (options, parent, kernel), refused now with
   * nothing made.
   */
  check(request: AttachNetwork): void {
    this.driver.checkNetwork(this.request(request, cniNetworkId(request.networkName)));
  }

  /** STATUS: ready for an ADD when the parent is there and up. */
  ready(options: Readonly<Record<string, string>>): void {
    const parent = this.parentName(options);
    // An 802.1Q parent (`eth0.10`) is made at the first ADD: its base is what must be there.
    const dot = parent.lastIndexOf('.');
    const vlanBase = dot > 0 && /^\d+$/.test(parent.slice(dot + 1)) ? parent.slice(0, dot) : null;
    const name = this.rtnl.getLink(parent) === null && vlanBase !== null ? vlanBase : parent;
    const link = this.rtnl.getLink(name);
    if (link === null) throw new LanplugError('Unavailable', `parent ${name} does not exist`);
    if (!link.up) throw new LanplugError('Unavailable', `parent ${name} is down`);
  }

  /** The lanplug network for a configuration: made at the first ADD, made again if the configuration changed while unused. */
  ensure(request: AttachNetwork, networkId: string): void {
    const networkRequest = this.request(request, networkId);
    const create = (): void => this.driver.createNetwork(networkRequest);
    try {
      create();
    } catch (err) {
      if (!(err instanceof LanplugError && err.code === 'Conflict')) throw err;
      if (this.store.listEndpoints(networkId).length > 0)
        throw conflict(`network ${request.networkName} is attached with another configuration: ${err.message}`);
      this.log.info('CNI network configuration changed; made again', { network: request.networkName });
      this.driver.deleteNetwork(networkId);
      this.allocator.dropPools(request.networkName);
      create();
    }
  }

  /** The network is in use again: its removal is off. */
  keep(networkId: string): void {
    clearTimeout(this.idle.get(networkId));
    this.idle.delete(networkId);
  }

  /** Once the network has had no attachment for idleMs, it goes (now when idleMs is 0). */
  removeWhenIdle(networkId: string, networkName: string): void {
    if (this.idleMs === 0) {
      this.dropIfUnused(networkId, networkName);
      return;
    }
    if (this.idle.has(networkId) || this.store.listEndpoints(networkId).length > 0) return;
    const timer = setTimeout(() => {
      this.idle.delete(networkId);
      try {
        this.dropIfUnused(networkId, networkName);
      } catch (err) {
        this.log.warn('could not remove an idle CNI network; the reconcile retries', {
          network: networkName,
          error: String(err),
        });
      }
    }, this.idleMs);
    timer.unref();
    this.idle.set(networkId, timer);
  }

  /** Now, if it is still there and has no attachment: its pools go with it, and this host's use of its shared pools. */
  dropIfUnused(networkId: string, networkName: string): void {
    this.keep(networkId);
    if (this.driver.network(networkId) === null || this.store.listEndpoints(networkId).length > 0) return;
    this.driver.deleteNetwork(networkId);
    this.allocator.dropPools(networkName);
    this.shared?.networkDropped(networkName);
    this.log.info('CNI network removed: no attachment left', { network: networkName });
  }

  // ---- helpers ----

  private request(request: AttachNetwork, networkId: string): CreateNetworkRequest {
    const options = { ...request.options, [OPT_PARENT]: this.parentName(request.options) };
    const subnets = request.rangeSets.map((set): Subnet => {
      const first = set[0];
      if (first === undefined) throw invalidArgument('an ipam range set is empty');
      return { pool: first.subnet, gateway: first.gateway };
    });
    return {
      networkId,
      driver: request.driver,
      options,
      ipv4: subnets.filter((s) => s.pool.address.family === 4),
      ipv6: subnets.filter((s) => s.pool.address.family === 6),
      internal: false,
      auxAddresses: request.auxAddresses,
      cniName: request.networkName,
    };
  }

  /** `master`, or (as the reference plugins do) the link of the host's IPv4 default route. */
  private parentName(options: Readonly<Record<string, string>>): string {
    const given = options[OPT_PARENT];
    if (given !== undefined) return given;
    const route = this.rtnl.listRoutes(4).find((r) => r.destination.prefixLength === 0 && r.oifIndex !== null);
    const index = route?.oifIndex ?? null;
    const link = index === null ? null : this.rtnl.getLinkByIndex(index);
    if (link === null)
      throw invalidArgument('master is not set and the host has no IPv4 default route to take it from');
    return link.name;
  }
}
