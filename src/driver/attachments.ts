/**
 * Attachments made for CNI runtimes (Podman, containerd, Kubernetes): the
 * same networks, endpoints, links and store as Docker's, driven through the
 * network driver's own operations. What Docker does itself after Join —
 * moving the link into the container and configuring it — is done here.
 *
 * A CNI network has no create or remove of its own: it is made (as a lanplug
 * network with the configuration's `name`) at its first ADD, and removed once
 * it has had no attachment for `idleMs`, taking any parent lanplug made for it
 * along. The wait keeps a runtime that starts and stops one container after
 * another from paying for the network (its LAN eye, its parent) every time.
 *
 * Every operation is synchronous, as the driver's are; an ADD comes in two
 * halves (prepare: addresses claimed and recorded; complete: the link made in
 * the namespace), between which the endpoint service asks the LAN about the
 * addresses (src/endpoint/service.ts). The claim comes first, so no address can
 * be handed out twice while the LAN is asked. An ADD whose address comes from
 * the LAN's DHCP server has other halves (prepareLeased: recorded without an
 * address, the link made and up in the namespace to ask on; completeLeased: the
 * leased address and router configured there), between which the endpoint
 * service runs the exchange (src/endpoint/dhcp-attachments.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { conflict, invalidArgument, LanplugError, notFound, Teardown } from '../errors';
import type { Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import type { AddressRange } from '../model/ipam';
import {
  addressesOf,
  shortId,
  type DriverKind,
  type EndpointRecord,
  type Sandbox,
  type Subnet,
} from '../model/network';
import { parsePrefix, sameAddress, type IpAddress, type IpPrefix } from '../net/address';
import { CniIpam } from '../ipam/cni-ipam';
import { macFromKey, randomMac } from '../ipam/mac';
import { ADVICE_EXPLICIT, inUseMessage } from '../lan/conflicts';
import { hostAddressMessage } from '../lan/host-addresses';
import {
  checkRequestedUsed,
  cniAddressSpace,
  RangeAllocator,
  sharedPoolOf,
  type RangeAllocation,
} from '../ipam/ranges';
import type { Store } from '../state/store';
import type { IpamStore } from '../state/ipam-store';
import { EADDRINUSE } from '../netlink/errno';
import { endpointLinkName } from './names';
import type { NetworkDriver } from './network-driver';
import type { CreateNetworkRequest } from './requests';
import { OPT_PARENT } from './options';
import { configureSandbox, inSandbox, removeFromSandbox, withNamespaceFd, type SandboxRoute } from './sandbox';

const DEFAULT_ROUTE4 = parsePrefix('0.0.0.0/0');

/** The network half of an ADD: what the lanplug network of an attachment is made from. */
export interface AttachNetwork {
  /** The CNI network configuration's `name` (a Podman network's: `podman:<name>`). */
  networkName: string;
  driver: DriverKind;
  /** The configuration in `-o` vocabulary; without a parent the host's default-route link is used. */
  options: Readonly<Record<string, string>>;
  /** As `--aux-address`: never handed out; `host`/`host6` are the host's own with host access. */
  auxAddresses: ReadonlyMap<string, IpAddress>;
  /** One address from each set; none with `dhcp`. */
  rangeSets: readonly (readonly AddressRange[])[];
  /** The address comes from the LAN's DHCP server (the options carry `dhcp=true`). */
  dhcp: boolean;
  /** With `dhcp`: an IPv6 address from the LAN's DHCPv6 server too. */
  dhcp6: boolean;
  /**
   * The addresses come from the shared pools on etcd (`--store etcd://…`), each range set one pool as
   * the Docker IPAM driver names it (`--subnet`, `--ip-range`): claimed by the endpoint service before
   * `prepare` (endpoint/shared-attachments.ts), given back through SharedClaims.
   */
  shared: boolean;
}

export interface AttachRequest extends AttachNetwork {
  /** Routes in the container; a null gateway is the gateway of the address of the same family. */
  routes: readonly SandboxRoute[];
  mac: string | null;
  requestedIps: readonly IpAddress[];
  sandbox: Sandbox;
}

/** An attachment between its two halves (SandboxAttachments.prepare and complete). */
export interface PreparedAttachment {
  request: AttachRequest;
  networkId: string;
  endpointId: string;
  claims: RangeAllocation[];
  assignedMac: string | null;
}

export interface Attached {
  ifname: string;
  mac: string;
  netns: string;
  /** The gateway is null where a DHCP server named no router. */
  addresses: { address: IpPrefix; gateway: IpAddress | null }[];
  routes: SandboxRoute[];
  /** DNS servers a DHCP server named; none for addresses from ranges. */
  nameservers: IpAddress[];
}

/** A DHCP attachment between its halves: recorded without an address, its link up in the namespace. */
export interface PreparedLease extends PreparedAttachment {
  /** The link in the container's namespace, as the DHCP client asks on it. */
  link: { index: number; name: string; mac: string };
}

/** The lanplug network id of a CNI network: stable, so every ADD of one configuration finds it. */
export function cniNetworkId(networkName: string): string {
  return createHash('sha256').update(`lanplug-cni\0${networkName}`).digest('hex');
}

/** One attachment per (network, container, interface), as CNI keys them. */
export function attachmentId(networkName: string, containerId: string, ifname: string): string {
  return createHash('sha256').update(`${networkName}\0${containerId}\0${ifname}`).digest('hex');
}

/**
 * The MAC of a macvlan attachment the configuration gives none. On a DHCP network it follows the
 * attachment (network, container id, interface): a restarted Podman container keeps its id, so it comes
 * back as the same machine to the LAN, the same client to the server (its client id follows the
 * container too: endpoint/dhcp-attachments.ts). Elsewhere random, as the reference plugin's: a MAC
 * derived from the address (Docker's way) would clash with the link of a namespace the runtime has
 * just deleted, which the kernel destroys a little later, when another container gets the address.
 */
function unconfiguredMac(request: AttachRequest, endpointId: string): string {
  return request.dhcp ? macFromKey(endpointId) : randomMac();
}

/** The kernel's answer to a macvlan brought up with a MAC another link on the parent has. */
export function isMacHeld(err: unknown): boolean {
  return err instanceof LanplugError && err.errno === EADDRINUSE;
}

export class SandboxAttachments {
  /** Networks without attachments, by id: the timer that removes them. */
  private readonly idle = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly driver: NetworkDriver,
    private readonly rtnl: Rtnl,
    private readonly store: Store & IpamStore,
    private readonly allocator: RangeAllocator,
    private readonly log: Logger,
    /** How long a CNI network stays without attachments; 0 removes it with the last DEL. */
    private readonly idleMs = 0,
    /** Gives a removed attachment's DHCP lease back; null where no lease keeper runs (an offline `lanplug gc`). */
    private readonly leases: AttachmentLeases | null = null,
    /** Gives a removed attachment's shared-pool addresses back; null where pools are not shared. */
    private readonly shared: SharedClaims | null = null,
  ) {}

  /** The network is about to be used (a shared-pool claim is made before `prepare`): its idle removal is off. */
  hold(networkName: string): void {
    this.keepNetwork(cniNetworkId(networkName));
  }

  /** Once every shared-pool address and pool given back so far has gone back (or failed, logged). */
  settled(): Promise<void> {
    return this.shared?.settled() ?? Promise.resolve();
  }

  /** Pending removals are dropped: the networks stay recorded, and the reconcile removes them later. */
  stop(): void {
    for (const timer of this.idle.values()) clearTimeout(timer);
    this.idle.clear();
  }

  /**
   * The first half of an ADD: the attachment recorded with its addresses (claims and row together: a
   * crash leaves neither an orphaned claim nor a row without one), nothing made in the namespace yet.
   * The endpoint service asks the LAN about the addresses between the halves; `abandon` undoes this.
   * `shared`: the addresses the endpoint service claimed in the shared pools, taken instead of the
   * ranges'; the service gives them back when this fails.
   */
  prepare(request: AttachRequest, shared: readonly RangeAllocation[] | null = null): PreparedAttachment {
    const { sandbox, networkName, driver } = request;
    const networkId = cniNetworkId(networkName);
    const endpointId = attachmentId(networkName, sandbox.containerId, sandbox.ifname);
    checkRangeSets(request);
    const taken = inSandbox(sandbox.netns, (rtnl) => rtnl.getLink(sandbox.ifname) !== null);
    if (taken) throw conflict(`interface ${sandbox.ifname} already exists in ${sandbox.netns}`);
    this.keepNetwork(networkId);
    const known = this.store.getEndpoint(networkId, endpointId);
    if (known !== null) {
      // A runtime reuses a container id after a reboot: an attachment whose namespace is gone is stale.
      const stale = known.sandbox !== undefined && !existsSync(known.sandbox.netns);
      if (!stale)
        throw conflict(
          `container ${sandbox.containerId} already has ${sandbox.ifname} on network ${networkName}; DEL it first`,
        );
      const teardown = new Teardown();
      this.removeEndpoint(teardown, networkName, known, null, 'namespace gone, container id used again');
      teardown.throwIfFailed();
    }
    this.ensureNetwork(request, networkId);
    const claimed: RangeAllocation[] = [];
    try {
      const created = this.store.transaction(() => {
        const reserved = [...request.auxAddresses.values()];
        if (shared !== null) claimed.push(...shared);
        else
          for (const set of request.rangeSets)
            claimed.push(this.allocator.allocate(networkName, set, request.requestedIps, { reserved }));
        checkRequestedUsed(request.requestedIps, claimed);
        const ipv4 = claimed.find((c) => c.address.address.family === 4)?.address ?? null;
        const ipv6 = claimed.find((c) => c.address.address.family === 6)?.address ?? null;
        return this.driver.createEndpoint(driver, {
          networkId,
          endpointId,
          ipv4,
          ipv6,
          mac: request.mac ?? (driver === 'macvlan' ? unconfiguredMac(request, endpointId) : null),
          sandbox,
        });
      });
      return { request, networkId, endpointId, claims: claimed, assignedMac: created.assignedMac };
    } catch (err) {
      this.undoAttach(networkId, networkName, endpointId, sandbox, {
        claims: claimed,
        recorded: false,
        linkMade: false,
        mac: request.mac,
      });
      throw err;
    }
  }

  /** The addresses a prepared attachment holds, for the check between the halves. */
  claimedAddresses(prepared: PreparedAttachment): IpAddress[] {
    return prepared.claims.map((c) => c.address.address);
  }

  /** The second half: the link made in the namespace and configured there; undone whole on a failure. */
  complete(prepared: PreparedAttachment): Attached {
    const { request, networkId, endpointId, claims } = prepared;
    const { sandbox, networkName, driver } = request;
    try {
      // Made under lanplug's own link name, renamed inside (configureSandbox): see Rtnl.createInNamespace.
      const madeAs = endpointLinkName(endpointId);
      withNamespaceFd(sandbox.netns, (namespaceFd) =>
        this.driver.join(driver, networkId, endpointId, { namespaceFd, name: madeAs }),
      );
      const routes = request.routes.map((route) =>
        route.drop !== undefined
          ? route
          : {
              destination: route.destination,
              gateway: route.gateway ?? gatewayOfFamily(claims, route.destination.address.family),
            },
      );
      const inside = configureSandbox(
        sandbox.netns,
        madeAs,
        sandbox.ifname,
        claims.map((c) => c.address),
        routes,
      );
      this.log.info('attachment created', {
        network: networkName,
        container: shortId(sandbox.containerId),
        ifname: sandbox.ifname,
        addresses: claims.map((c) => c.address.address.text).join(' '),
      });
      return {
        ifname: sandbox.ifname,
        mac: inside.mac ?? prepared.assignedMac ?? request.mac ?? '',
        netns: sandbox.netns,
        addresses: claims.map((c) => ({ address: c.address, gateway: c.gateway })),
        routes,
        nameservers: [],
      };
    } catch (err) {
      // From the join on, the namespace may hold our link (the ADD checked that it had none of that name).
      this.undoAttach(networkId, networkName, endpointId, sandbox, {
        claims,
        recorded: true,
        linkMade: true,
        mac: request.mac,
      });
      throw err;
    }
  }

  /**
   * The first half of a DHCP ADD: the attachment recorded without an address, its link made in the
   * namespace under its name and up there (no address: the client asks on it from inside). Undone
   * whole on a failure; after it, `abandonLeased` undoes it. `randomMacIfHeld`: when the container's
   * own MAC is still up on the parent (its last namespace went without a DEL and the kernel is not done
   * with the link yet, or, once in 2^46, another link has it), this start takes a random MAC; the server
   * knows the container by its client id, so the address comes back all the same. Without it, that
   * case throws (EADDRINUSE), for the caller to try again a moment later first.
   */
  prepareLeased(request: AttachRequest, randomMacIfHeld = true): PreparedLease {
    try {
      return this.prepareLeasedAs(request);
    } catch (err) {
      if (!randomMacIfHeld || !isMacHeld(err) || request.mac !== null) throw err;
      const mac = randomMac();
      this.log.warn("the container's own MAC is held on the parent; starting with a random one", {
        network: request.networkName,
        container: shortId(request.sandbox.containerId),
        ifname: request.sandbox.ifname,
        mac,
      });
      return this.prepareLeasedAs({ ...request, mac });
    }
  }

  private prepareLeasedAs(request: AttachRequest): PreparedLease {
    const prepared = this.prepare(request);
    const { networkId, endpointId } = prepared;
    const { sandbox, driver } = request;
    try {
      const madeAs = endpointLinkName(endpointId);
      withNamespaceFd(sandbox.netns, (namespaceFd) =>
        this.driver.join(driver, networkId, endpointId, { namespaceFd, name: madeAs }),
      );
      const link = configureSandbox(sandbox.netns, madeAs, sandbox.ifname, [], []);
      if (link.mac === null) throw new LanplugError('Internal', `${sandbox.ifname} in ${sandbox.netns} has no MAC`);
      return { ...prepared, link: { index: link.index, name: sandbox.ifname, mac: link.mac } };
    } catch (err) {
      this.abandonLeased(prepared);
      throw err;
    }
  }

  /**
   * The second half: the leased addresses (IPv4, and IPv6 when asked) and the DHCPv4 server's router
   * (as default route; IPv6 routers announce themselves) configured in the namespace, the addresses
   * recorded on the attachment and announced. A failure undoes nothing: the caller gives the leases
   * back and calls `abandonLeased`.
   */
  completeLeased(
    prepared: PreparedLease,
    address: IpPrefix,
    router: IpAddress | null,
    address6: IpPrefix | null,
  ): Attached {
    const { request, networkId, endpointId, link } = prepared;
    const { sandbox, networkName } = request;
    const routes: SandboxRoute[] = router === null ? [] : [{ destination: DEFAULT_ROUTE4, gateway: router }];
    inSandbox(sandbox.netns, (rtnl) => {
      const inside = rtnl.getLink(sandbox.ifname);
      if (inside === null || inside.index !== link.index)
        throw notFound(`interface ${sandbox.ifname} is gone from ${sandbox.netns}`);
      rtnl.addAddress(inside, address);
      if (address6 !== null) rtnl.addAddress(inside, address6);
      for (const route of routes) rtnl.replaceRoute(route.destination, inside, null, route.gateway);
    });
    const endpoint = this.store.getEndpoint(networkId, endpointId);
    if (endpoint === null) throw notFound(`attachment ${shortId(endpointId)} of network ${networkName} is gone`);
    this.store.putEndpoint({ ...endpoint, ipv4: address, ipv6: address6 });
    this.driver.announce(networkId, endpointId);
    this.log.info('attachment created', {
      network: networkName,
      container: shortId(sandbox.containerId),
      ifname: sandbox.ifname,
      addresses: [address, address6].flatMap((a) => (a === null ? [] : [a.address.text])).join(','),
      from: 'dhcp',
    });
    return {
      ifname: sandbox.ifname,
      mac: link.mac,
      netns: sandbox.netns,
      addresses: [{ address, gateway: router }, ...(address6 === null ? [] : [{ address: address6, gateway: null }])],
      routes,
      nameservers: [],
    };
  }

  /** A DHCP ADD that failed after its first half: its link, row and (unused) network go. */
  abandonLeased(prepared: PreparedAttachment): void {
    const { request, networkId, endpointId } = prepared;
    this.undoAttach(networkId, request.networkName, endpointId, request.sandbox, {
      claims: [],
      recorded: true,
      linkMade: true,
      mac: request.mac,
    });
  }

  /** A prepared attachment the LAN check refused: its row and claims go, nothing was made in the namespace. */
  abandon(prepared: PreparedAttachment): void {
    const { request, networkId, endpointId, claims } = prepared;
    this.undoAttach(networkId, request.networkName, endpointId, request.sandbox, {
      claims,
      recorded: true,
      linkMade: false,
      mac: request.mac,
    });
  }

  /**
   * Idempotent, and best effort as CNI's DEL must be: an attachment, link or
   * namespace already gone is success; what cannot be removed stays with the
   * reconciler (the driver keeps a leftover) and is reported.
   */
  detach(networkName: string, containerId: string, ifname: string, netns: string | null): void {
    const networkId = cniNetworkId(networkName);
    const endpoint = this.store.getEndpoint(networkId, attachmentId(networkName, containerId, ifname));
    if (endpoint === null) {
      this.removeWhenIdle(networkId, networkName);
      return;
    }
    const teardown = new Teardown();
    this.removeEndpoint(teardown, networkName, endpoint, netns ?? endpoint.sandbox?.netns ?? null, 'CNI DEL');
    teardown.step('remove the network when idle', () => this.removeWhenIdle(networkId, networkName));
    teardown.throwIfFailed();
  }

  /** CHECK: the attachment is recorded and its link is in the namespace with its MAC and addresses. */
  check(networkName: string, containerId: string, ifname: string, netns: string): void {
    const endpoint = this.store.getEndpoint(cniNetworkId(networkName), attachmentId(networkName, containerId, ifname));
    if (endpoint === null) throw notFound(`container ${containerId} has no ${ifname} on network ${networkName}`);
    inSandbox(netns, (rtnl) => {
      const link = rtnl.getLink(ifname);
      if (link === null) throw notFound(`interface ${ifname} is gone from ${netns}`);
      if (endpoint.mac !== null && link.mac !== endpoint.mac)
        throw conflict(`interface ${ifname} in ${netns} has MAC ${link.mac ?? '(none)'}, not ${endpoint.mac}`);
      if (!link.up) throw conflict(`interface ${ifname} in ${netns} is down`);
      for (const address of addressesOf(endpoint)) {
        const held = rtnl
          .listAddresses(address.family)
          .some((a) => a.index === link.index && sameAddress(a.prefix.address, address));
        if (!held) throw notFound(`interface ${ifname} in ${netns} has lost address ${address.text}`);
      }
    });
  }

  /** GC: every attachment of the network that is not in `keep` goes; failures are logged and the rest goes on. */
  collect(networkName: string, keep: readonly { containerId: string; ifname: string }[]): number {
    const networkId = cniNetworkId(networkName);
    const kept = new Set(keep.map((a) => attachmentId(networkName, a.containerId, a.ifname)));
    const teardown = new Teardown();
    let removed = 0;
    for (const endpoint of this.store.listEndpoints(networkId)) {
      if (kept.has(endpoint.endpointId)) continue;
      this.removeEndpoint(teardown, networkName, endpoint, endpoint.sandbox?.netns ?? null, 'CNI GC');
      removed++;
    }
    teardown.step('remove the network', () => this.dropNetworkIfUnused(networkId, networkName));
    for (const failure of teardown.failed)
      this.log.warn('gc could not remove everything', { network: networkName, error: failure.message });
    this.log.info('attachments collected', { network: networkName, removed, kept: kept.size });
    return removed;
  }

  /**
   * Attachments whose namespace is gone without a DEL (a runtime killed, a
   * host rebooted: runtimes keep netns files under /run): their addresses
   * go back to the pool and the network with its last attachment. Run with
   * the reconcile; GC from a runtime does the same for what it knows.
   */
  collectVanished(dryRun: boolean): string[] {
    const found: string[] = [];
    for (const network of this.driver.listNetworks()) {
      const name = network.cniName;
      if (name === undefined) continue;
      const teardown = new Teardown();
      for (const endpoint of this.store.listEndpoints(network.spec.networkId)) {
        const sandbox = endpoint.sandbox;
        if (sandbox === undefined || existsSync(sandbox.netns)) continue;
        found.push(`cni:${name} container ${shortId(sandbox.containerId)} ${sandbox.ifname}: ${sandbox.netns} is gone`);
        if (!dryRun) this.removeEndpoint(teardown, name, endpoint, null, 'namespace gone without a DEL');
      }
      // An empty network goes now too (its timer died with an earlier daemon, or is still running).
      if (!dryRun) teardown.step('remove the network', () => this.dropNetworkIfUnused(network.spec.networkId, name));
      for (const failure of teardown.failed)
        this.log.warn('could not remove an attachment whose namespace is gone', {
          network: name,
          error: failure.message,
        });
    }
    if (found.length > 0) this.log.info('attachments whose namespace is gone', { count: found.length, dryRun });
    return found;
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

  // ---- helpers ----

  /**
   * What the first ADD of this network would refuse (options, parent, sharing, kernel), refused now
   * with nothing made: for a runtime that declares its network before using it (Podman's create).
   */
  checkNetwork(request: AttachNetwork): void {
    checkRangeSets(request);
    this.driver.checkNetwork(this.networkRequest(request, cniNetworkId(request.networkName)));
  }

  private networkRequest(request: AttachNetwork, networkId: string): CreateNetworkRequest {
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

  /** The lanplug network for a configuration: made at the first ADD, made again if the configuration changed while unused. */
  private ensureNetwork(request: AttachRequest, networkId: string): void {
    const networkRequest = this.networkRequest(request, networkId);
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

  /**
   * The link first: while it cannot be removed (other than with its
   * namespace), the record and the addresses stay, so that the address is
   * never handed out again while a link still holds it, and a retried DEL
   * tries again. Then a DHCP lease goes back to its server (while the
   * network's LAN link, which sends the release, is still there), the
   * addresses (an endpoint row still holds them for allocation), the row.
   */
  private removeEndpoint(
    teardown: Teardown,
    networkName: string,
    endpoint: EndpointRecord,
    netns: string | null,
    why: string,
  ): void {
    const ifname = endpoint.sandbox?.ifname;
    if (netns !== null && ifname !== undefined) {
      // Also the name the link was made under, left by a crash before the rename.
      const removed = teardown.step(`remove ${ifname} from ${netns}`, () =>
        removeFromSandbox(netns, [endpointLinkName(endpoint.endpointId), ifname], endpoint.mac),
      );
      if (!removed.ok) return;
    }
    const { leases } = this;
    if (leases !== null)
      teardown.step('release the DHCP lease', () => leases.release(endpoint.networkId, endpoint.endpointId, why));
    teardown.step('release addresses', () => this.releaseAddresses(networkName, addressesOf(endpoint)));
    const { shared } = this;
    if (shared !== null)
      teardown.step('give back shared-pool addresses', () => shared.freed(networkName, addressesOf(endpoint)));
    teardown.step(`endpoint ${shortId(endpoint.endpointId)}`, () =>
      this.driver.deleteEndpoint(endpoint.networkId, endpoint.endpointId),
    );
  }

  private releaseAddresses(networkName: string, addresses: readonly IpAddress[]): void {
    const space = `${cniAddressSpace(networkName)}/`;
    for (const address of addresses)
      for (const poolId of this.store.poolsClaiming(address))
        if (poolId.startsWith(space)) this.allocator.release(poolId, address);
  }

  /** The network is in use again: its removal is off. */
  private keepNetwork(networkId: string): void {
    clearTimeout(this.idle.get(networkId));
    this.idle.delete(networkId);
  }

  /** Once the network has had no attachment for idleMs, it goes (now when idleMs is 0). */
  private removeWhenIdle(networkId: string, networkName: string): void {
    if (this.idleMs === 0) {
      this.dropNetworkIfUnused(networkId, networkName);
      return;
    }
    if (this.idle.has(networkId) || this.store.listEndpoints(networkId).length > 0) return;
    const timer = setTimeout(() => {
      this.idle.delete(networkId);
      try {
        this.dropNetworkIfUnused(networkId, networkName);
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

  private dropNetworkIfUnused(networkId: string, networkName: string): void {
    this.keepNetwork(networkId);
    if (this.driver.network(networkId) === null || this.store.listEndpoints(networkId).length > 0) return;
    this.driver.deleteNetwork(networkId);
    this.allocator.dropPools(networkName);
    this.shared?.networkDropped(networkName);
    this.log.info('CNI network removed: no attachment left', { network: networkName });
  }

  /** Undo of a failed ADD, in reverse; a failure here is logged, the ADD's own error is what the runtime sees. */
  private undoAttach(
    networkId: string,
    networkName: string,
    endpointId: string,
    sandbox: Sandbox,
    done: { claims: RangeAllocation[]; recorded: boolean; linkMade: boolean; mac: string | null },
  ): void {
    const teardown = new Teardown();
    const endpoint = this.store.getEndpoint(networkId, endpointId);
    if (done.linkMade)
      teardown.step(`remove ${sandbox.ifname} from ${sandbox.netns}`, () =>
        removeFromSandbox(sandbox.netns, [endpointLinkName(endpointId), sandbox.ifname], endpoint?.mac ?? done.mac),
      );
    if (done.recorded) teardown.step('delete the endpoint', () => this.driver.deleteEndpoint(networkId, endpointId));
    teardown.step('release addresses', () => {
      for (const claim of done.claims) this.allocator.release(claim.poolId, claim.address.address);
    });
    teardown.step('remove the network when idle', () => this.removeWhenIdle(networkId, networkName));
    for (const failure of teardown.failed)
      this.log.error('could not undo a failed CNI ADD', { network: networkName, error: failure.message });
  }
}

/**
 * The store keeps one IPv4 and one IPv6 address per endpoint, as Docker's endpoints have; a shared
 * network's range set is one range that names a pool (ipam/ranges.ts sharedPoolOf).
 */
function checkRangeSets(request: AttachNetwork): void {
  const sets: readonly (readonly AddressRange[])[] = request.rangeSets;
  for (const family of [4, 6] as const) {
    const count = sets.filter((set) => set[0]?.subnet.address.family === family).length;
    if (count > 1)
      throw invalidArgument(`ipam has ${count} IPv${family} range sets; lanplug gives one address per family`);
  }
  if (!request.shared) return;
  if (request.dhcp) throw invalidArgument('a shared pool is for addresses from ranges; with DHCP the server chooses');
  if (sets.length === 0) throw invalidArgument('a shared pool needs a subnet');
  for (const set of sets) {
    const [range] = set;
    if (range === undefined || set.length > 1)
      throw invalidArgument('a shared pool is one range per family (one subnet, one --ip-range)');
    sharedPoolOf(range);
  }
}

function gatewayOfFamily(claims: readonly RangeAllocation[], family: 4 | 6): IpAddress | null {
  return claims.find((c) => c.address.address.family === family)?.gateway ?? null;
}

/**
 * Addresses lanplug knows to be in use beside the pools' claims, with why: every
 * endpoint's (Docker's default IPAM hands those out), every network's gateway and
 * host-access address, this host's own, and what the LAN was seen using. Read once per
 * CNI allocation.
 */
function addressesInUse(store: Store, lan: KnownTaken | null): (address: IpAddress) => string | null {
  const held = new Set<string>();
  for (const endpoint of store.listAllEndpoints()) for (const address of addressesOf(endpoint)) held.add(address.text);
  for (const { spec } of store.listNetworks()) {
    for (const subnet of [...spec.ipv4, ...spec.ipv6]) if (subnet.gateway !== null) held.add(subnet.gateway.text);
    for (const own of [spec.hostAccess?.ipv4, spec.hostAccess?.ipv6]) if (own) held.add(own.text);
  }
  return (address) => {
    if (held.has(address.text)) return `Address already in use: ${address.text}`;
    const link = lan?.hostHolder(address) ?? null;
    if (link !== null) return hostAddressMessage(address, link, 'ask for another address');
    const device = lan?.knownHolder(null, address) ?? null;
    return device !== null ? inUseMessage(address, device, ADVICE_EXPLICIT) : null;
  };
}

/** What this host holds and the LAN is known to use (the daemon's LAN side); none for an offline `lanplug gc`. */
export interface KnownTaken {
  /** `link` null: on any LAN (a CNI allocation does not probe from a link of its own). */
  knownHolder(link: null, address: IpAddress): { mac: string; how: string } | null;
  hostHolder(address: IpAddress): string | null;
}

/**
 * Where a shared network's addresses and pools go back (endpoint/shared-attachments.ts): called
 * synchronously where the rows go, it gives them back to etcd in the background.
 */
export interface SharedClaims {
  /** A removed attachment of `networkName` held these: their shared-pool claims go (none: nothing). */
  freed(networkName: string, addresses: readonly IpAddress[]): void;
  /** The network went: this host's use of its shared pools ends. */
  networkDropped(networkName: string): void;
  /** Resolves once what was given back so far has gone (failures are logged). */
  settled(): Promise<void>;
}

/** What gives a removed attachment's DHCP lease back to its server: the daemon's lease keeper. Idempotent. */
export interface AttachmentLeases {
  release(networkId: string, endpointId: string, why: string): void;
}

/** The CNI front end's operations over a driver and store, allocating around everything in use. */
export function cniServices(
  driver: NetworkDriver,
  rtnl: Rtnl,
  store: Store & IpamStore,
  log: Logger,
  options: { lan?: KnownTaken; idleMs?: number; leases?: AttachmentLeases; shared?: SharedClaims } = {},
): { attachments: SandboxAttachments; ipam: CniIpam } {
  const allocator = new RangeAllocator(store, () => addressesInUse(store, options.lan ?? null));
  return {
    attachments: new SandboxAttachments(
      driver,
      rtnl,
      store,
      allocator,
      log,
      options.idleMs ?? 0,
      options.leases ?? null,
      options.shared ?? null,
    ),
    ipam: new CniIpam(store, allocator, log),
  };
}
