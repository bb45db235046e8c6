/**
 * Endpoints of `-o dhcp=true` networks: their IPv4 address comes from the
 * LAN's DHCP server, taken at CreateEndpoint (Docker must have it in the
 * answer), kept by the lease keeper while the container lives, and released
 * at Leave. The driver does the links and records; the keeper does DHCP;
 * this file says what each Docker call means for both.
 *
 * Identity, what makes a server give a container the same address again:
 * - `--mac-address`: the MAC, and client id 01+MAC (reservations by MAC work);
 * - `--driver-opt lanplug.identity=NAME` (or its older spelling
 *   `lanplug.dhcp.id`): client id 00+NAME and a MAC derived from NAME
 *   (reservations by client id or by that MAC work; driver/identity.ts);
 * - neither: a random MAC per start, so a new lease per start. Not a choice:
 *   CreateEndpoint names no container (a new endpoint id, no MAC, only ports
 *   in its options; Join's sandbox is new too, on 20.10 and 28.5 alike), so a
 *   restarted container cannot be told from a new one, and a remembered MAC
 *   could go to the wrong container (docs/dhcp.md, "Why a restart alone...").
 * ipvlan links share the parent's MAC: the client id must tell them apart.
 * The name sent (option 12 and the client FQDN, 81 / DHCPv6 39) is
 * `lanplug.dhcp.hostname`, else NAME when it is a host name; on lanplug-dhcp
 * networks, whose lease is taken before CreateEndpoint, it goes to the server
 * at a renewal as soon as the container joins.
 */
import { conflict, notFound, withContext } from '../errors';
import type { Logger } from '../log';
import type { LeaseKeeper } from '../dhcp/keeper';
import { randomMac } from '../ipam/mac';
import { duidFromMac, leaseOf, type DhcpIdentity, type Lease } from '../model/lease';
import { addressesOf, shortId, type DriverKind } from '../model/network';
import { networkOf, sameAddress } from '../net/address';
import { parseMac } from '../net/mac';
import type { NetworkDriver } from '../driver/network-driver';
import { OPT_ENDPOINT_HOSTNAME, parseEndpointLabel } from '../driver/options';
import {
  clientIdFromIdentity,
  duidFromIdentity,
  endpointIdentity,
  hostnameFromIdentity,
  macFromIdentity,
  type EndpointIdentity,
} from '../driver/identity';
import type { CreateEndpointRequest, CreateEndpointResult, JoinResult } from '../driver/requests';
import { takeOverLeases } from './dhcp-addresses';

/**
 * DHCPv6 hands out addresses, not prefixes (the on-link prefix comes from the
 * LAN's router advertisements): a container's address gets the /64 nearly
 * every LAN uses.
 */
const DHCP6_PREFIX_LENGTH = 64;

export class DhcpEndpoints {
  /** Client ids whose first lease is being asked for now, with the endpoint asking. */
  private readonly asking = new Map<string, { networkId: string; endpointId: string }>();

  constructor(
    private readonly driver: NetworkDriver,
    private readonly keeper: LeaseKeeper,
    private readonly log: Logger,
  ) {}

  /**
   * At daemon start: every lease renews on where it was; an endpoint a crash
   * left between its two halves (a link, no address: Docker got no answer) goes.
   */
  resume(): void {
    for (const network of this.driver.listNetworks()) {
      if (network.spec.dhcp === null) continue;
      for (const endpoint of this.driver.listEndpoints(network.spec.networkId)) {
        // A CNI attachment's link is in its pod: the runtime's DEL of the failed ADD removes both.
        if (endpoint.sandbox !== undefined) continue;
        if (endpoint.ipv4 === null && this.keeper.get(endpoint.networkId, endpoint.endpointId) === null)
          this.driver.deleteEndpoint(endpoint.networkId, endpoint.endpointId);
      }
    }
    this.keeper.resume();
  }

  /** True when the network's addresses come from DHCP (an unknown network is the driver's to refuse). */
  serves(driver: DriverKind, networkId: string): boolean {
    try {
      return this.driver.networkSpec(driver, networkId).dhcp !== null;
    } catch {
      return false;
    }
  }

  async createEndpoint(driver: DriverKind, request: CreateEndpointRequest): Promise<CreateEndpointResult> {
    if (this.driver.networkSpec(driver, request.networkId).dhcp?.askedBy === 'ipam')
      return this.takeOver(driver, request);
    const known = this.driver.endpointInfo(request.networkId, request.endpointId);
    const held = this.keeper.get(request.networkId, request.endpointId);
    // Docker retrying a CreateEndpoint that succeeded: the same answer, no second lease.
    if (known !== null && held !== null)
      return {
        assignedMac: request.mac === null ? known.mac : null,
        ...(known.ipv4 === null ? {} : { assignedIpv4: known.ipv4 }),
        ...(known.ipv6 === null ? {} : { assignedIpv6: known.ipv6 }),
      };
    const { identity, hostname } = namesOf(request);
    const id = identity?.name ?? null;
    if (id !== null) {
      // Two containers asking as one client would get one address: a duplicate on the LAN. Checked against
      // the leases held and the exchanges under way (of other networks too: the queue orders one network only).
      const clientId = clientIdFromIdentity(id);
      const holder = this.keeper.holderOf(clientId) ?? this.asking.get(clientId) ?? null;
      if (holder !== null)
        throw conflict(
          `--driver-opt ${identity?.option ?? ''}=${id} is already used by endpoint ${shortId(holder.endpointId)} of network ${shortId(holder.networkId)}; give each container its own id`,
        );
      this.asking.set(clientId, { networkId: request.networkId, endpointId: request.endpointId });
      try {
        return await this.acquireFor(driver, request, identity, hostname);
      } finally {
        this.asking.delete(clientId);
      }
    }
    return this.acquireFor(driver, request, identity, hostname);
  }

  /** The first half of the endpoint, a lease from the server, the second half; undone whole on a failure. */
  private async acquireFor(
    driver: DriverKind,
    request: CreateEndpointRequest,
    named: EndpointIdentity | null,
    hostname: string | null,
  ): Promise<CreateEndpointResult> {
    const id = named?.name ?? null;
    const requestedMac = request.mac === null ? null : parseMac(request.mac);
    const mac = driver === 'ipvlan' ? null : (requestedMac ?? (id === null ? randomMac() : macFromIdentity(id)));
    const prepared = this.driver.prepareDhcpEndpoint(driver, request, mac, named);
    const { spec, link } = prepared;
    const linkMac = mac ?? link.mac ?? '00:00:00:00:00:00';
    const identity: DhcpIdentity = {
      mac: linkMac,
      // DHCPv6: the MAC's DUID-LL when the MAC is the container's own, else a UUID DUID of the name or endpoint.
      duid: mac !== null && id === null ? duidFromMac(mac) : duidFromIdentity(id ?? `lanplug-${request.endpointId}`),
      iaid: 1,
      stable: requestedMac !== null || id !== null,
      clientId:
        id !== null
          ? clientIdFromIdentity(id)
          : mac !== null
            ? '01' + mac.replace(/:/g, '')
            : // ipvlan without an id: one MAC for all, so the endpoint tells them apart (a new lease per start).
              '00' + Buffer.from(`lanplug-${shortId(request.endpointId)}`).toString('hex'),
      hostname,
      broadcast: spec.mode.kind === 'ipvlan',
    };
    const policy = spec.dhcp ?? { ipv4: true, ipv6: false, timeoutMs: 10_000 };
    let leases: Lease[] = [];
    try {
      leases = await this.keeper.acquire(
        link,
        spec.parent.name,
        identity,
        {
          networkId: spec.networkId,
          ipv4: policy.ipv4,
          ipv6: policy.ipv6,
          prefixLength6: DHCP6_PREFIX_LENGTH,
          // No --subnet on these networks: the LAN's, as the host has it on the parent.
          subnets4: this.driver.parentSubnets4(spec),
        },
        policy.timeoutMs,
      );
      const endpoint = this.driver.completeDhcpEndpoint(
        prepared,
        leases.find((l) => l.family === 4)?.address ?? null,
        leases.find((l) => l.family === 6)?.address ?? null,
      );
      this.keeper.hold({
        networkId: spec.networkId,
        endpointId: request.endpointId,
        identity,
        leases,
        dockerAddresses: leases.map((l) => l.address.address),
        sandboxKey: null,
        renewedAt: null,
        failures: 0,
        lastError: null,
      });
      return {
        assignedMac: requestedMac === null ? mac : null,
        ...(endpoint.ipv4 === null ? {} : { assignedIpv4: endpoint.ipv4 }),
        ...(endpoint.ipv6 === null ? {} : { assignedIpv6: endpoint.ipv6 }),
      };
    } catch (err) {
      // Nothing stays behind a failed start: no lease, no link, no row.
      this.keeper.giveBack(spec.networkId, identity, leases);
      try {
        this.driver.deleteEndpoint(spec.networkId, request.endpointId);
      } catch (undo) {
        this.log.error('could not undo a failed DHCP endpoint', {
          endpoint: shortId(request.endpointId),
          error: String(undo),
        });
      }
      throw withContext(`network ${shortId(spec.networkId)} on parent ${spec.parent.name}`, err);
    }
  }

  /**
   * A lanplug-dhcp endpoint: its addresses are Docker's from the IPAM driver,
   * which leased them for the endpoint's MAC; the endpoint is made as on any
   * network, and the leases become its own.
   */
  private takeOver(driver: DriverKind, request: CreateEndpointRequest): CreateEndpointResult {
    const result = this.driver.createEndpoint(driver, request);
    try {
      // The endpoint's options come after the lease was taken: a name they give reaches the server from here.
      const { hostname } = namesOf(request);
      takeOverLeases(this.keeper, request.networkId, request.endpointId, request.mac, addressesOf(request), hostname);
      return result;
    } catch (err) {
      this.driver.deleteEndpoint(request.networkId, request.endpointId);
      throw err;
    }
  }

  /** Join's answer gets the server's router as gateway; the keeper learns the container's namespace. */
  joined(
    driver: DriverKind,
    ref: { networkId: string; endpointId: string; sandboxKey: string | null },
    answer: JoinResult,
  ): JoinResult {
    const { networkId, endpointId, sandboxKey } = ref;
    const record =
      sandboxKey === null
        ? this.keeper.get(networkId, endpointId)
        : this.keeper.joined(networkId, endpointId, sandboxKey);
    const spec = this.driver.networkSpec(driver, networkId);
    // The lease went (the watchdog released it: no Join came within a minute): the server may have given the
    // address to someone else, so the container must not configure it.
    if (record === null && spec.dhcp !== null)
      throw notFound(
        `endpoint ${shortId(endpointId)} of network ${shortId(networkId)} holds no DHCP lease any more (released before its container joined); start the container again`,
      );
    // An --internal network gets no gateway, from Docker's IPAM or from a DHCP server; nor does a network whose
    // only lease is a DHCPv6 one `-o ipv6=slaac` took after a Join (its gateways are Docker's IPAM's).
    if (record === null || spec.internal || spec.dhcp === null) return answer;
    // DHCPv6 names no router (the LAN's routers announce themselves to the container); an IPv6 gateway is
    // the user's --gateway, never the pool's own address that lanplug-dhcp answers Docker's gateway request with.
    const gatewayIpv6 =
      answer.gatewayIpv6 !== null && !spec.ipv6.some((s) => sameAddress(networkOf(s.pool).address, answer.gatewayIpv6))
        ? answer.gatewayIpv6
        : null;
    return { ...answer, gatewayIpv4: leaseOf(record, 4)?.router ?? null, gatewayIpv6 };
  }

  /** Leave: the container stops; its lease goes back to the server. */
  release(networkId: string, endpointId: string, why: string): void {
    this.keeper.release(networkId, endpointId, why);
  }

  /** Every lease on the network goes back, its endpoints' and those lanplug-dhcp took for endpoints to come. */
  releaseNetwork(networkId: string): void {
    for (const record of this.keeper.heldOn(networkId))
      this.keeper.release(networkId, record.endpointId, 'network removed');
  }
}

/** The identity an endpoint's options name, and the name its DHCP messages carry: `lanplug.dhcp.hostname`, else the identity's. */
function namesOf(request: CreateEndpointRequest): { identity: EndpointIdentity | null; hostname: string | null } {
  const options = request.endpointOptions ?? {};
  const identity = endpointIdentity(options);
  const hostnameOption = options[OPT_ENDPOINT_HOSTNAME];
  const hostname =
    hostnameOption !== undefined
      ? parseEndpointLabel(OPT_ENDPOINT_HOSTNAME, hostnameOption)
      : identity !== null
        ? hostnameFromIdentity(identity.name)
        : null;
  return { identity, hostname };
}
