/**
 * Attachments made for CNI runtimes (Podman, containerd, Kubernetes): the
 * same networks, endpoints, links and store as Docker's, driven through the
 * network driver's own operations. What Docker does itself after Join —
 * moving the link into the container and configuring it — is done here.
 *
 * The lanplug network behind a configuration is made at its first ADD and
 * removed once idle (cni-networks.ts).
 *
 * Every operation is synchronous, as the driver's are; an ADD comes in two
 * halves (prepare: addresses claimed and recorded; complete: the link made in
 * the namespace), between which the endpoint service asks the LAN about the
 * addresses (src/endpoint/service.ts). The claim comes first, so no address can
 * be handed out twice while the LAN is asked. An ADD whose address comes from
 * the LAN's DHCP server has halves of its own (leased-attachments.ts) over this
 * record and undo; DEL, CHECK and GC are the same for both.
 *
 * Around this file: the request's words (attach-request.ts), the store ids
 * (attachment-ids.ts), the range rules (attachment-ranges.ts), the networks
 * (cni-networks.ts), the daemon's hooks (attachment-hooks.ts), the wiring
 * (cni-services.ts).
 */
import { existsSync } from 'node:fs';
import { conflict, notFound, Teardown } from '../errors';
import type { Logger } from '../log';
import { addressesOf, shortId, type EndpointRecord, type Sandbox } from '../model/network';
import { sameAddress, type IpAddress } from '../net/address';
import { macFromKey, randomMac } from '../ipam/mac';
import { checkRequestedUsed, cniAddressSpace, type RangeAllocation, type RangeAllocator } from '../ipam/ranges';
import type { Store } from '../state/store';
import type { IpamStore } from '../state/ipam-store';
import { endpointLinkName } from './names';
import type { NetworkDriver } from './network-driver';
import { configureSandbox, inSandbox, removeFromSandbox, withNamespaceFd } from './sandbox';
import type { AttachNetwork, AttachRequest, Attached, PreparedAttachment } from './attach-request';
import { attachmentId, cniNetworkId } from './attachment-ids';
import type { AttachmentLeases, SharedClaims } from './attachment-hooks';
import { checkRangeSets, gatewayOfFamily } from './attachment-ranges';
import type { CniNetworks } from './cni-networks';

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

export class SandboxAttachments {
  constructor(
    private readonly driver: NetworkDriver,
    private readonly store: Store & IpamStore,
    private readonly allocator: RangeAllocator,
    /** The lanplug network behind each configuration: made at the first ADD, removed once idle. */
    private readonly networks: CniNetworks,
    private readonly log: Logger,
    /** Gives a removed attachment's DHCP lease back; null where no lease keeper runs (an offline `lanplug gc`). */
    private readonly leases: AttachmentLeases | null = null,
    /** Gives a removed attachment's shared-pool addresses back; null where pools are not shared. */
    private readonly shared: SharedClaims | null = null,
  ) {}

  /** The network is about to be used (a shared-pool claim is made before `prepare`): its idle removal is off. */
  hold(networkName: string): void {
    this.networks.keep(cniNetworkId(networkName));
  }

  /** Once every shared-pool address and pool given back so far has gone back (or failed, logged). */
  settled(): Promise<void> {
    return this.shared?.settled() ?? Promise.resolve();
  }

  /** Pending removals are dropped: the networks stay recorded, and the reconcile removes them later. */
  stop(): void {
    this.networks.stop();
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
    this.networks.keep(networkId);
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
    this.networks.ensure(request, networkId);
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
   * A recorded attachment whose link was made in the namespace and that holds no claims (a DHCP ADD
   * that failed after its first half, leased-attachments.ts): its link, row and (unused) network go.
   */
  abandonWithLink(prepared: PreparedAttachment): void {
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
   * reconciler (the driver keeps a leftover) and is reported. A DEL with nothing left to do succeeds
   * too (runtimes repeat DELs). `onRemoved` is called once the attachment's record is gone, even when a
   * later step fails: a repeated DEL finds nothing to tell. When it throws, the DEL goes on and its
   * result is the removal's (a warning says the telling failed).
   */
  detach(
    networkName: string,
    containerId: string,
    ifname: string,
    netns: string | null,
    onRemoved: () => void = () => undefined,
  ): void {
    const networkId = cniNetworkId(networkName);
    const endpoint = this.store.getEndpoint(networkId, attachmentId(networkName, containerId, ifname));
    if (endpoint === null) {
      this.networks.removeWhenIdle(networkId, networkName);
      return;
    }
    const teardown = new Teardown();
    this.removeEndpoint(teardown, networkName, endpoint, netns ?? endpoint.sandbox?.netns ?? null, 'CNI DEL');
    // Telling is no part of the removal: a DEL that removed everything succeeds even when telling fails.
    if (this.store.getEndpoint(networkId, endpoint.endpointId) === null) {
      try {
        onRemoved();
      } catch (err) {
        this.log.warn('an attachment was removed, but telling it failed', { network: networkName, error: String(err) });
      }
    }
    teardown.step('remove the network when idle', () => this.networks.removeWhenIdle(networkId, networkName));
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
    teardown.step('remove the network', () => this.networks.dropIfUnused(networkId, networkName));
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
      if (!dryRun) teardown.step('remove the network', () => this.networks.dropIfUnused(network.spec.networkId, name));
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
    this.networks.ready(options);
  }

  /**
   * What the first ADD of this network would refuse (options, parent, sharing, kernel), refused now
   * with nothing made: for a runtime that declares its network before using it (Podman's create).
   */
  checkNetwork(request: AttachNetwork): void {
    checkRangeSets(request);
    this.networks.check(request);
  }

  // ---- helpers ----

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
    teardown.step('remove the network when idle', () => this.networks.removeWhenIdle(networkId, networkName));
    for (const failure of teardown.failed)
      this.log.error('could not undo a failed CNI ADD', { network: networkName, error: failure.message });
  }
}
