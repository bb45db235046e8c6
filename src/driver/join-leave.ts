/**
 * Join and Leave: the endpoint's link made for the container (in the
 * daemon's namespace for Docker to move, or directly in the container's for
 * CNI), the host-access route to it, the announcement of its addresses, and
 * the gateways and routes the runtime configures in the container.
 */
import { notFound } from '../errors';
import { crashPoint } from '../crash-points';
import type { LinkInfo } from '../link/link';
import {
  addressesOf,
  shortId,
  type DriverKind,
  type EndpointRecord,
  type NetworkSpec,
  type Subnet,
} from '../model/network';
import { parsePrefix, prefixContains, type IpAddress, type IpPrefix } from '../net/address';
import { checkIds, inNetwork, requireNetwork, type DriverContext } from './driver-context';
import {
  createEndpointLinkBesideParked,
  endpointLinkRequest,
  explainUnsupported,
  requireEndpointLink,
} from './endpoint-links';
import { addRoutes, ensureShim, wantedRoutes } from './host-access';
import { lanLink } from './lan-link';
import { ensureParent } from './parent';
import type { JoinResult, StaticRoute } from './requests';

/** CNI's Join: the link is made in the container's network namespace (open as `namespaceFd`), named `name` there. */
export interface JoinInto {
  namespaceFd: number;
  name: string;
}

/** Docker's Join: the link is made here for Docker to move into the sandbox `sandboxKey` names. */
export interface JoinForDocker {
  sandboxKey: string | null;
}

/**
 * Creates the endpoint's link in the daemon's namespace. The runtime
 * (Docker) moves it into the container, names it eth<N> and configures
 * addresses and routes. `into` (CNI): the link is made directly in the
 * container's namespace instead, named `into.name` there — a link moved
 * between namespaces waits for an RCU grace period, one made there does not.
 */
export function join(
  ctx: DriverContext,
  driver: DriverKind,
  networkId: string,
  endpointId: string,
  where: JoinInto | JoinForDocker = { sandboxKey: null },
): JoinResult {
  checkIds(networkId, endpointId);
  const { spec } = requireNetwork(ctx, networkId, driver);
  const found = ctx.store.getEndpoint(networkId, endpointId);
  if (found === null) throw notFound(`endpoint ${shortId(endpointId)} not found in network ${shortId(networkId)}`);
  const into = 'namespaceFd' in where ? where : undefined;
  const endpoint = 'sandboxKey' in where ? rememberSandbox(ctx, found, where.sandboxKey) : found;
  let parent: LinkInfo;
  try {
    parent = ensureParent(ctx.rtnl, spec.parent, spec.mtu);
    // A DHCP endpoint's link was made at CreateEndpoint, to ask for its address on.
    if (into !== undefined) {
      try {
        ctx.rtnl.createInNamespace(into.namespaceFd, endpointLinkRequest(spec, endpoint, parent, into.name));
      } catch (err) {
        throw explainUnsupported(spec, err);
      }
    } else {
      const link =
        spec.dhcp?.askedBy === 'driver'
          ? requireEndpointLink(ctx, endpoint)
          : createEndpointLinkBesideParked(ctx, spec, endpoint, parent);
      ctx.log.debug('endpoint link ready', { endpoint: shortId(endpointId), link: link.name, index: link.index });
    }
    // The shim is made again here if its parent went away and came back since.
    if (spec.hostAccess !== null)
      addRoutes(ctx.rtnl, ensureShim(ctx.rtnl, spec, parent), wantedRoutes(spec, [endpoint]));
  } catch (err) {
    throw inNetwork(spec, err);
  }
  crashPoint('join:link-created');
  announceEndpoint(ctx, spec, endpoint, parent);
  // Docker configures the link in the container after this answer; the watch waits for that.
  if ('sandboxKey' in where && where.sandboxKey !== null && (spec.slaac ?? null) !== null)
    ctx.slaac?.watch(spec, endpoint, where.sandboxKey);
  return joinAnswer(spec, endpoint);
}

/**
 * Records the sandbox Docker will move the endpoint's link into, so that DeleteEndpoint can find the
 * link if Docker never moves it back (a dockerd killed while the container ran leaves the sandbox).
 * Written once per Join, and only when it changed.
 */
function rememberSandbox(ctx: DriverContext, endpoint: EndpointRecord, sandboxKey: string | null): EndpointRecord {
  if (sandboxKey === null || endpoint.dockerSandboxKey === sandboxKey) return endpoint;
  // What an earlier start learnt of the LAN's DNS (`-o ipv6=slaac`) is learnt anew in this one.
  const { learnedDns: _earlier, ...rest } = endpoint;
  const updated = { ...rest, dockerSandboxKey: sandboxKey };
  try {
    ctx.store.putEndpoint(updated);
  } catch (err) {
    // Best effort: without it only that cleanup is lost; the container starts all the same.
    ctx.log.warn('could not record the sandbox of an endpoint', {
      endpoint: shortId(endpoint.endpointId),
      error: err instanceof Error ? err.message : String(err),
    });
    return endpoint;
  }
  return updated;
}

/**
 * Docker moves the link back and then calls DeleteEndpoint; only the endpoint's IPv6 watch ends here
 * (the container stopped: a crash-looping one would leave one behind per start).
 */
export function leave(ctx: DriverContext, networkId: string, endpointId: string): void {
  checkIds(networkId, endpointId);
  ctx.slaac?.cancel(endpointId);
  if (ctx.store.getEndpoint(networkId, endpointId) === null) {
    ctx.log.debug('leave for an endpoint lanplug does not know', {
      network: shortId(networkId),
      endpoint: shortId(endpointId),
    });
  }
}

/**
 * A CNI DHCP attachment's address, known only after its link was made (Join announced none): announced
 * now, as Join announces an endpoint's.
 */
export function announceAddresses(ctx: DriverContext, networkId: string, endpointId: string): void {
  const network = ctx.store.getNetwork(networkId);
  const endpoint = ctx.store.getEndpoint(networkId, endpointId);
  if (network !== null && endpoint !== null) announceEndpoint(ctx, network.spec, endpoint);
}

/** Gratuitous ARP / unsolicited NA with the container's MAC, in the background; a failure is only logged. */
function announceEndpoint(ctx: DriverContext, spec: NetworkSpec, endpoint: EndpointRecord, parent?: LinkInfo): void {
  if (ctx.announcer === null || spec.announce.count === 0 || spec.parent.kind === 'private') return;
  try {
    const link = lanLink(ctx, spec, parent);
    const mac = endpoint.mac ?? link?.mac ?? null; // ipvlan: the parent's MAC
    if (link !== null && mac !== null) ctx.announcer.announce(link, mac, addressesOf(endpoint), spec.announce);
  } catch (err) {
    ctx.log.warn('could not announce an endpoint', { endpoint: shortId(endpoint.endpointId), error: String(err) });
  }
}

function joinAnswer(spec: NetworkSpec, endpoint: EndpointRecord): JoinResult {
  const answer: JoinResult = { linkName: endpoint.linkName, gatewayIpv4: null, gatewayIpv6: null, staticRoutes: [] };
  if (spec.internal) return answer;
  if (spec.mode.kind === 'ipvlan' && spec.mode.mode !== 'l2') {
    // l3/l3s route through the parent's stack: no gateway, an on-link default route.
    answer.staticRoutes = [
      ...(endpoint.ipv4 === null ? [] : [connectedDefault('0.0.0.0/0')]),
      ...(endpoint.ipv6 === null ? [] : [connectedDefault('::/0')]),
    ];
    return answer;
  }
  answer.gatewayIpv4 = gatewayFor(spec.ipv4, endpoint.ipv4);
  answer.gatewayIpv6 = gatewayFor(spec.ipv6, endpoint.ipv6);
  return answer;
}

function connectedDefault(prefix: string): StaticRoute {
  return { destination: parsePrefix(prefix), kind: 'connected', nextHop: null };
}

/** The gateway of the subnet that holds the endpoint's address (same length, containing it). */
function gatewayFor(subnets: readonly Subnet[], address: IpPrefix | null): IpAddress | null {
  if (address === null) return null;
  const subnet = subnets.find(
    (s) => s.pool.prefixLength === address.prefixLength && prefixContains(s.pool, address.address),
  );
  return subnet?.gateway ?? null;
}
