/**
 * CNI and Podman attachments whose address comes from the LAN's DHCP server
 * (`lanplug-dhcp`, `-o dhcp=true`). Their ADD has halves of its own: the
 * attachment recorded without an address, its link made and up in the
 * namespace to ask on (prepare); the leased address and router configured
 * there with the configuration's routes (complete). Between them the endpoint service runs the exchange
 * (endpoint/dhcp-attachments.ts). Apart from sandbox-attachments.ts, whose
 * record, DEL and undo they use, because nothing else there waits for a server
 * or changes the MAC an attachment starts with.
 */
import { invalidArgument, LanplugError, notFound } from '../errors';
import type { Logger } from '../log';
import { shortId } from '../model/network';
import { formatPrefix, parsePrefix, type IpAddress, type IpPrefix } from '../net/address';
import { randomMac } from '../ipam/mac';
import type { Store } from '../state/store';
import { EADDRINUSE } from '../netlink/errno';
import { endpointLinkName } from './names';
import type { NetworkDriver } from './network-driver';
import { addSandboxRoutes, configureSandbox, inSandbox, withNamespaceFd, type SandboxRoute } from './sandbox';
import type { AttachRequest, Attached, PreparedAttachment, PreparedLease } from './attach-request';
import type { SandboxAttachments } from './sandbox-attachments';

const DEFAULT_ROUTE4 = parsePrefix('0.0.0.0/0');

/**
 * Routes of the configuration that cannot be made on a DHCP attachment whatever the server says: one
 * without a gateway takes the DHCPv4 server's router, as on a range it takes the range's gateway, and
 * DHCPv6 names no router. Refused before anything is made or asked.
 */
export function checkLeaseRoutes(routes: readonly SandboxRoute[]): void {
  for (const route of routes)
    if (route.drop === undefined && route.gateway === null && route.destination.address.family === 6)
      throw invalidArgument(
        `route ${formatPrefix(route.destination)} has no gateway, and with addresses from DHCP it would take the server's router: DHCPv6 names none (IPv6 routers announce themselves); give it a gateway`,
      );
}

/**
 * The routes a DHCP attachment gets: a default route via the DHCPv4 server's router (when it named one
 * and the configuration has no IPv4 default route of its own: the runtime is told of the one made),
 * then the configuration's, those without a gateway via that router, drop routes as they are.
 */
export function leaseRoutes(routes: readonly SandboxRoute[], router: IpAddress | null): SandboxRoute[] {
  checkLeaseRoutes(routes);
  const configured = routes.map((route): SandboxRoute => {
    if (route.drop !== undefined || route.gateway !== null) return route;
    if (router === null)
      throw invalidArgument(
        `route ${formatPrefix(route.destination)} has no gateway, and the DHCP server named no router to take for it; give it a gateway`,
      );
    return { destination: route.destination, gateway: router };
  });
  const ownDefault = routes.some((r) => r.destination.address.family === 4 && r.destination.prefixLength === 0);
  return [...(router === null || ownDefault ? [] : [{ destination: DEFAULT_ROUTE4, gateway: router }]), ...configured];
}

/** The kernel's answer to a macvlan brought up with a MAC another link on the parent has. */
export function isMacHeld(err: unknown): boolean {
  return err instanceof LanplugError && err.errno === EADDRINUSE;
}

export class LeasedAttachments {
  constructor(
    private readonly attachments: SandboxAttachments,
    private readonly driver: NetworkDriver,
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  /**
   * The first half of a DHCP ADD: the attachment recorded without an address, its link made in the
   * namespace under its name and up there (no address: the client asks on it from inside). Undone
   * whole on a failure; after it, `abandon` undoes it. `randomMacIfHeld`: when the container's
   * own MAC is still up on the parent (its last namespace went without a DEL and the kernel is not done
   * with the link yet, or, once in 2^46, another link has it), this start takes a random MAC; the server
   * knows the container by its client id, so the address comes back all the same. Without it, that
   * case throws (EADDRINUSE), for the caller to try again a moment later first.
   */
  prepare(request: AttachRequest, randomMacIfHeld = true): PreparedLease {
    try {
      return this.prepareAs(request);
    } catch (err) {
      if (!randomMacIfHeld || !isMacHeld(err) || request.mac !== null) throw err;
      const mac = randomMac();
      this.log.warn("the container's own MAC is held on the parent; starting with a random one", {
        network: request.networkName,
        container: shortId(request.sandbox.containerId),
        ifname: request.sandbox.ifname,
        mac,
      });
      return this.prepareAs({ ...request, mac });
    }
  }

  private prepareAs(request: AttachRequest): PreparedLease {
    checkLeaseRoutes(request.routes);
    const prepared = this.attachments.prepare(request);
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
      this.abandon(prepared);
      throw err;
    }
  }

  /**
   * The second half: the leased addresses (IPv4, and IPv6 when asked), the DHCPv4 server's router (as
   * default route; IPv6 routers announce themselves) and the configuration's routes (leaseRoutes)
   * configured in the namespace, the addresses recorded on the attachment and announced. A failure
   * undoes nothing: the caller gives the leases back and calls `abandon`.
   */
  complete(prepared: PreparedLease, address: IpPrefix, router: IpAddress | null, address6: IpPrefix | null): Attached {
    const { request, networkId, endpointId, link } = prepared;
    const { sandbox, networkName } = request;
    const routes = leaseRoutes(request.routes, router);
    inSandbox(sandbox.netns, (rtnl) => {
      const inside = rtnl.getLink(sandbox.ifname);
      if (inside === null || inside.index !== link.index)
        throw notFound(`interface ${sandbox.ifname} is gone from ${sandbox.netns}`);
      rtnl.addAddress(inside, address);
      if (address6 !== null) rtnl.addAddress(inside, address6);
      addSandboxRoutes(rtnl, inside, routes);
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
  abandon(prepared: PreparedAttachment): void {
    this.attachments.abandonWithLink(prepared);
  }
}
