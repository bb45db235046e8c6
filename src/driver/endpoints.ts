/**
 * Endpoints: a record per container on a network, its link's lifetime
 * around it (made at Join, or at CreateEndpoint for a DHCP endpoint, which
 * asks for its address on it; gone at DeleteEndpoint, through the reaper).
 * A DHCP endpoint is made in two halves around the exchange the endpoint
 * service runs between them (endpoint/dhcp-endpoints.ts).
 */
import { conflict, invalidArgument, LanplugError, withContext } from '../errors';
import { crashPoint } from '../crash-points';
import { macFromIpv4, randomMac } from '../ipam/mac';
import type { LinkInfo } from '../link/link';
import { addressesOf, shortId, type DriverKind, type EndpointRecord, type NetworkSpec } from '../model/network';
import type { IpPrefix } from '../net/address';
import { parseMac } from '../net/mac';
import { quietAskingLink } from './asking-links';
import { checkIds, inNetwork, requireNetwork, type DriverContext } from './driver-context';
import { createEndpointLinkBesideParked, endpointLeftover } from './endpoint-links';
import { removeRoutes, wantedRoutes } from './host-access';
import { checkDockerId, endpointLinkName } from './names';
import { OPT_ENDPOINT_DHCP_ID, parseEndpointLabel } from './options';
import { removeLeftInSandbox } from './sandbox';
import { ensureParent } from './parent';
import type { CreateEndpointRequest, CreateEndpointResult } from './requests';

/** A DHCP endpoint between its two halves: recorded, its link up in the daemon's namespace, no address yet. */
export interface PreparedEndpoint {
  spec: NetworkSpec;
  endpoint: EndpointRecord;
  link: LinkInfo;
}

export function createEndpoint(
  ctx: DriverContext,
  driver: DriverKind,
  request: CreateEndpointRequest,
): CreateEndpointResult {
  checkDockerId(request.endpointId, 'endpoint id');
  const { spec } = requireNetwork(ctx, request.networkId, driver);
  const requestedMac = request.mac === null ? null : parseMac(request.mac);
  if (spec.mode.kind === 'ipvlan' && requestedMac !== null) {
    throw invalidArgument('ipvlan interfaces do not support custom mac address assignment');
  }
  if (spec.mode.kind === 'macvlan' && spec.mode.mode === 'passthru') {
    const others = ctx.store.listEndpoints(spec.networkId).filter((e) => e.endpointId !== request.endpointId);
    if (others.length > 0) {
      throw conflict(
        `macvlan network ${shortId(spec.networkId)} is in mode passthru and parent ${spec.parent.name} is already given to endpoint ${shortId(others[0]?.endpointId ?? '')}; passthru allows one container per parent`,
      );
    }
  }
  const mac = spec.mode.kind === 'ipvlan' ? null : (requestedMac ?? deriveMac(request));
  const slaacIdentity = (spec.slaac ?? null) === null ? null : slaacIdentityOf(ctx, spec, request);
  ctx.store.putEndpoint({
    networkId: spec.networkId,
    endpointId: request.endpointId,
    linkName: endpointLinkName(request.endpointId),
    mac,
    ipv4: request.ipv4,
    ipv6: request.ipv6,
    ...(request.sandbox === undefined ? {} : { sandbox: request.sandbox }),
    ...(slaacIdentity === null ? {} : { slaacIdentity }),
  });
  crashPoint('create-endpoint:recorded');
  return { assignedMac: requestedMac === null ? mac : null };
}

/**
 * The identity an `-o ipv6=slaac` endpoint's address follows (`lanplug.dhcp.id`), or null (its MAC).
 * Two containers of one identity on one network would form one address: the second is refused here.
 */
function slaacIdentityOf(ctx: DriverContext, spec: NetworkSpec, request: CreateEndpointRequest): string | null {
  const label = request.endpointOptions?.[OPT_ENDPOINT_DHCP_ID];
  if (label === undefined) return null;
  const identity = parseEndpointLabel(OPT_ENDPOINT_DHCP_ID, label);
  const holder = ctx.store
    .listEndpoints(spec.networkId)
    .find((e) => e.endpointId !== request.endpointId && e.slaacIdentity === identity);
  if (holder !== undefined)
    throw conflict(
      `--driver-opt ${OPT_ENDPOINT_DHCP_ID}=${identity} is already used by endpoint ${shortId(holder.endpointId)} of network ${shortId(spec.networkId)}; its IPv6 address would be the same: give each container its own id`,
    );
  return identity;
}

/**
 * Idempotent: a link or record already gone is success. The row is replaced
 * by a leftover first, so that a crash or a refused delete leaves the link
 * to the reconciler rather than a row Docker has forgotten.
 */
export function deleteEndpoint(ctx: DriverContext, networkId: string, endpointId: string): void {
  checkIds(networkId, endpointId);
  const { store } = ctx;
  const network = store.getNetwork(networkId);
  const endpoint = store.getEndpoint(networkId, endpointId);
  // Docker hands the link back to our namespace after Leave; it is deleted here, as Docker's own driver does.
  const linkName = endpoint?.linkName ?? endpointLinkName(endpointId);
  const leftover = endpointLeftover({ networkId, endpointId, linkName }, 'endpoint removed');
  store.transaction(() => {
    store.deleteEndpoint(networkId, endpointId);
    store.putLeftover(leftover);
  });
  crashPoint('delete-endpoint:row-dropped');
  if (endpoint !== null) ctx.announcer?.withdraw(addressesOf(endpoint));
  try {
    if (network !== null && network.spec.hostAccess !== null && endpoint !== null)
      removeRoutesQuietly(ctx, network.spec, endpoint);
    const link = ctx.rtnl.getLink(linkName);
    if (link === null) {
      const sandboxKey = endpoint?.dockerSandboxKey;
      if (endpoint !== null && sandboxKey !== undefined)
        removeFromDockerSandbox(ctx, network?.spec ?? null, endpoint, sandboxKey);
      store.deleteLeftover(linkName);
    }
    // The leftover record goes once the link is: at once, or when the reaper's batch is done.
    else ctx.remover.remove(link, () => store.deleteLeftover(linkName));
  } catch (err) {
    const failure =
      network === null ? withContext(`endpoint ${shortId(endpointId)}`, err) : inNetwork(network.spec, err);
    store.putLeftover({ ...leftover, reason: failure.message });
    throw failure;
  }
}

/** The link is not back in our namespace: it may still be in a sandbox a killed dockerd left (sandbox.ts). */
function removeFromDockerSandbox(
  ctx: DriverContext,
  spec: NetworkSpec | null,
  endpoint: EndpointRecord,
  sandboxKey: string,
): void {
  const what = { endpoint: shortId(endpoint.endpointId), sandbox: sandboxKey };
  try {
    const parent = spec === null ? null : ctx.rtnl.getLink(spec.parent.name);
    const left = removeLeftInSandbox(sandboxKey, {
      group: ctx.rtnl.ownGroup,
      mac: endpoint.mac,
      addresses: addressesOf(endpoint),
      parentIndex: parent?.index ?? null,
    });
    if (left.kind === 'removed')
      ctx.log.warn("removed a deleted endpoint's link from the sandbox Docker left behind", {
        ...what,
        link: left.name,
      });
    else if (left.kind === 'in use')
      ctx.log.warn("a deleted endpoint's link is still in a sandbox a process lives in; left there", {
        ...what,
        link: left.name,
      });
  } catch (err) {
    // Process-wide trouble (the daemon could not return to its own namespace) is not for a warning.
    if (err instanceof LanplugError && err.code === 'Internal') throw err;
    // Otherwise best effort: Docker has deleted the endpoint whatever lanplug answers.
    ctx.log.warn("could not look for a deleted endpoint's link in its sandbox", { ...what, error: String(err) });
  }
}

/**
 * The first half of a DHCP CreateEndpoint: the endpoint recorded without an
 * address, and its link made now (not at Join) in the daemon's namespace and
 * set up, for the client to ask for an address on. `mac` null: ipvlan (the
 * parent's). Undone by deleteEndpoint.
 */
export function prepareDhcpEndpoint(
  ctx: DriverContext,
  driver: DriverKind,
  request: CreateEndpointRequest,
  mac: string | null,
): PreparedEndpoint {
  checkDockerId(request.endpointId, 'endpoint id');
  const { spec } = requireNetwork(ctx, request.networkId, driver);
  if (spec.mode.kind === 'ipvlan' && request.mac !== null) {
    throw invalidArgument('ipvlan interfaces do not support custom mac address assignment');
  }
  const endpoint: EndpointRecord = {
    networkId: spec.networkId,
    endpointId: request.endpointId,
    linkName: endpointLinkName(request.endpointId),
    mac,
    ipv4: null,
    ipv6: request.ipv6,
  };
  ctx.store.putEndpoint(endpoint);
  try {
    const parent = ensureParent(ctx.rtnl, spec.parent, spec.mtu);
    const link = createEndpointLinkBesideParked(ctx, spec, endpoint, parent);
    // Up in the daemon's namespace to ask on: as quiet there as lanplug-dhcp's asking links.
    quietAskingLink(ctx.rtnl, link, spec.dhcp?.ipv6 === true ? 6 : 4);
    ctx.rtnl.setUp(link);
    return { spec, endpoint, link };
  } catch (err) {
    const failure = inNetwork(spec, err);
    try {
      deleteEndpoint(ctx, spec.networkId, request.endpointId);
    } catch (undo) {
      ctx.log.error('could not undo a failed DHCP endpoint', {
        endpoint: shortId(request.endpointId),
        error: String(undo),
      });
    }
    throw failure;
  }
}

/** The second half: the addresses the servers granted, recorded on the endpoint. */
export function completeDhcpEndpoint(
  ctx: DriverContext,
  prepared: PreparedEndpoint,
  ipv4: IpPrefix | null,
  ipv6: IpPrefix | null,
): EndpointRecord {
  const endpoint = {
    ...prepared.endpoint,
    ipv4: ipv4 ?? prepared.endpoint.ipv4,
    ipv6: ipv6 ?? prepared.endpoint.ipv6,
  };
  ctx.store.putEndpoint(endpoint);
  return endpoint;
}

/** A DHCP server moved the container: the endpoint's address follows (the LAN watch defends what endpoints hold). */
export function moveEndpointAddress(
  ctx: DriverContext,
  networkId: string,
  endpointId: string,
  address: IpPrefix,
): void {
  const endpoint = ctx.store.getEndpoint(networkId, endpointId);
  if (endpoint === null) return;
  ctx.store.putEndpoint(address.address.family === 4 ? { ...endpoint, ipv4: address } : { ...endpoint, ipv6: address });
}

/** A route that will not go is only logged: reconcile compares the routes with the endpoints. */
function removeRoutesQuietly(ctx: DriverContext, spec: NetworkSpec, endpoint: EndpointRecord): void {
  try {
    removeRoutes(ctx.rtnl, spec, wantedRoutes(spec, [endpoint]));
  } catch (err) {
    ctx.log.warn('could not remove a host-access route; reconcile retries', {
      endpoint: shortId(endpoint.endpointId),
      error: String(err),
    });
  }
}

/** Docker 20.10's rule: the MAC follows the IPv4 address; without one, a random local MAC. */
function deriveMac(request: CreateEndpointRequest): string {
  return request.ipv4 === null ? randomMac() : macFromIpv4(request.ipv4.address);
}
