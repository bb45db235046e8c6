/**
 * The lanplug-dhcp IPAM driver's side of DHCP: Docker asks it for an
 * endpoint's address (RequestAddress, one call per family) before the
 * network driver hears of the endpoint, with the MAC the container will have
 * (the driver declares RequiresMACAddress). lanplug asks the LAN's server
 * with that MAC there and then, from a link of its own, records the lease
 * under the MAC ("an endpoint to come"), and the network driver takes it
 * over at CreateEndpoint (dhcp-endpoints.ts). From then on the lease lives
 * as any other: renewed in the container, released at Leave. Here, beside
 * the endpoint service, because the exchange is a wait of the endpoint path
 * (see lanplug-ipam.ts); dhcp-ipam.ts says what the driver's calls mean.
 *
 * Identity: the MAC, DUID-LL of the MAC, client id 01+MAC. With
 * `--mac-address` that is the same at every start (so is the address the
 * server gives, and reservations by MAC work); without, Docker makes a new
 * MAC per start, and the server a new lease.
 */
import { conflict, invalidArgument, LanplugError, notFound, withContext } from '../errors';
import type { LeaseKeeper } from '../dhcp/keeper';
import { dockerAddressOf, duidFromMac, leaseOf, type DhcpIdentity, type Lease } from '../model/lease';
import { shortId, type NetworkRecord } from '../model/network';
import { formatPrefix, prefixContains, sameAddress, type IpAddress, type IpPrefix } from '../net/address';
import { parseMac } from '../net/mac';
import { DHCP_IPAM_NAME } from '../driver/options';
import type { AskingLinks } from '../driver/asking-links';
import type { NetworkDriver } from '../driver/network-driver';

/** What RequestAddress brings: the pool (Docker's --subnet), the container's MAC, its name (Docker 29 and later). */
export interface AddressAsk {
  pool: IpPrefix;
  mac: string;
  hostname: string | null;
}

/** The lease store's key for leases taken for an endpoint Docker has not created yet: by MAC. */
export function comingEndpointId(mac: string): string {
  return `coming-${mac.replace(/:/g, '')}`;
}

export class DhcpAddresses {
  constructor(
    private readonly driver: NetworkDriver,
    private readonly keeper: LeaseKeeper,
    private readonly links: AskingLinks,
  ) {}

  /** A lease for `ask.mac` in `ask.pool`'s family: its address, as the container gets it. */
  async request(ask: AddressAsk): Promise<IpPrefix> {
    const network = this.networkOf(ask.pool);
    const { spec } = network;
    const family = ask.pool.address.family;
    const policy = spec.dhcp;
    if (policy === null) throw notFound(`network ${shortId(spec.networkId)} takes no addresses from DHCP`);
    const coming = comingEndpointId(ask.mac);
    const held = this.keeper.get(spec.networkId, coming);
    // Docker asking again for what it was given (a retried call): the same answer, no second lease.
    const already = held === null ? null : leaseOf(held, family);
    if (already !== null) return containerAddress(already, ask.pool);
    const identity = held?.identity ?? identityOf(ask.mac, ask.hostname);
    let lease: Lease | null = null;
    try {
      const leases = await this.links.with(spec, ask.mac, family, (link) =>
        this.keeper.acquire(
          link,
          spec.parent.name,
          identity,
          {
            networkId: spec.networkId,
            ipv4: family === 4,
            ipv6: family === 6,
            prefixLength6: ask.pool.prefixLength,
            subnets4: family === 4 ? [ask.pool] : [],
          },
          policy.timeoutMs,
        ),
      );
      lease = leases[0] ?? null;
      if (lease === null) throw new LanplugError('Internal', 'the DHCP exchange returned no lease');
      if (!prefixContains(ask.pool, lease.address.address))
        throw invalidArgument(
          `the DHCP server gave ${lease.address.address.text}, outside this network's --subnet ${formatPrefix(ask.pool)}; create the network with the subnet the server serves`,
        );
    } catch (err) {
      if (lease !== null) this.keeper.giveBack(spec.networkId, identity, [lease]);
      // Docker asks for IPv4 and then IPv6 in one step and, when the second fails, never gives the
      // first back (it releases an endpoint's addresses only once both were assigned): the IPv4 lease
      // taken a moment ago for this container would stay bound on the server until it expired.
      if (family === 6 && held !== null && leaseOf(held, 4) !== null)
        this.keeper.releaseFamily(spec.networkId, coming, 4, 'its IPv6 address could not be had');
      throw withContext(`network ${shortId(spec.networkId)} on parent ${spec.parent.name}`, err);
    }
    // The other family's lease (asked a moment ago) is read again: it may have gone meanwhile.
    const others = this.keeper.get(spec.networkId, coming)?.leases.filter((l) => l.family !== family) ?? [];
    this.keeper.hold(
      {
        networkId: spec.networkId,
        endpointId: coming,
        identity,
        leases: [...others, lease],
        // Not renewed before it is an endpoint's: the leases still hold what Docker was given.
        dockerAddresses: [...others.map((l) => l.address.address), lease.address.address],
        sandboxKey: null,
        renewedAt: null,
        failures: 0,
        lastError: null,
      },
      [lease],
    );
    return containerAddress(lease, ask.pool);
  }

  /**
   * ReleaseAddress: Docker no longer uses `address` — a start that failed
   * after RequestAddress, a container that turned that family off, or an
   * endpoint gone (its lease went at Leave: then nothing is done, for the
   * server may have leased the address to another container since).
   * Only that family's lease goes, and only the lease of the endpoint Docker
   * gave `address` to (Docker names no endpoint, no MAC): a lease the server
   * moved onto `address` is another container's, whatever Docker thinks.
   */
  release(pool: IpPrefix, address: IpAddress): void {
    const network = this.driver.dhcpNetworkOfPool(pool);
    if (network === null || this.keeper.releasedLately(address)) return;
    const given = this.keeper
      .heldOn(network.spec.networkId)
      .filter((r) => sameAddress(dockerAddressOf(r, address.family), address));
    // Two endpoints were given it when the server moved the first off it and then gave it to the second:
    // Docker's call is for one that has not left (the first released all at its Leave), the one that holds it.
    const meant =
      given.length <= 1
        ? given[0]
        : given.find((r) => sameAddress(leaseOf(r, address.family)?.address.address ?? null, address));
    if (meant !== undefined)
      this.keeper.releaseFamily(meant.networkId, meant.endpointId, address.family, 'address released by Docker');
  }

  private networkOf(pool: IpPrefix): NetworkRecord {
    const network = this.driver.dhcpNetworkOfPool(pool);
    if (network === null)
      throw notFound(
        `no lanplug network uses the ${DHCP_IPAM_NAME} pool ${formatPrefix(pool)}; ${DHCP_IPAM_NAME} serves networks of -d lanplug-macvlan`,
      );
    return network;
  }
}

/**
 * CreateEndpoint of a lanplug-dhcp network: the leases the IPAM driver took
 * for the endpoint's MAC become the endpoint's. They must be the addresses
 * Docker gives the endpoint.
 */
export function takeOverLeases(
  keeper: LeaseKeeper,
  networkId: string,
  endpointId: string,
  mac: string | null,
  addresses: readonly IpAddress[],
  hostname: string | null = null,
): void {
  if (keeper.get(networkId, endpointId) !== null) return; // Docker retrying a CreateEndpoint that succeeded
  if (mac === null)
    throw invalidArgument(
      `endpoint ${shortId(endpointId)} came without a MAC address; a ${DHCP_IPAM_NAME} network needs the one dockerd sends its IPAM driver: create the network with --ipam-driver ${DHCP_IPAM_NAME}`,
    );
  const coming = keeper.get(networkId, comingEndpointId(parseMac(mac)));
  if (coming === null)
    throw notFound(
      `no DHCP lease is held for MAC ${mac} on network ${shortId(networkId)} (taken too long ago, or released); start the container again`,
    );
  for (const address of addresses) {
    if (!coming.leases.some((l) => sameAddress(l.address.address, address)))
      throw conflict(
        `endpoint ${shortId(endpointId)} was given ${address.text}, which is not the address DHCP leased for MAC ${mac}`,
      );
  }
  keeper.handOver(networkId, comingEndpointId(parseMac(mac)), endpointId, hostname);
}

/** The address a container gets: IPv4 with the server's mask, IPv6 with the pool's prefix (DHCPv6 sends none). */
function containerAddress(lease: Lease, pool: IpPrefix): IpPrefix {
  return lease.family === 4 ? lease.address : { address: lease.address.address, prefixLength: pool.prefixLength };
}

function identityOf(mac: string, hostname: string | null): DhcpIdentity {
  return {
    mac,
    clientId: '01' + mac.replace(/:/g, ''),
    duid: duidFromMac(mac),
    iaid: 1,
    // Docker's MAC is new at every start unless the user fixed it, and lanplug cannot tell which: the server's
    // own binding (by MAC, client id, DUID) gives a fixed MAC its address back; nothing is kept here for it.
    stable: false,
    hostname,
    broadcast: false,
  };
}
