/**
 * An endpoint's link in the kernel: the request its network's mode makes,
 * creating it (once more after clearing what lanplug can clear), finding it,
 * and removing a link by name. The network driver's setup, as moby's
 * macvlan_setup.go is its driver's.
 */
import { LanplugError, notFound } from '../errors';
import type { LinkInfo } from '../link/link';
import type { EndpointLinkRequest } from '../link/rtnl';
import { shortId, type EndpointRecord, type Leftover, type NetworkSpec } from '../model/network';
import { EOPNOTSUPP } from '../netlink/errno';
import type { DriverContext } from './driver-context';

/** The endpoint's link as the network's mode makes it, under `name`. */
export function endpointLinkRequest(
  spec: NetworkSpec,
  endpoint: EndpointRecord,
  parent: LinkInfo,
  name: string,
): EndpointLinkRequest {
  const common = { name, parentIndex: parent.index, ...(spec.mtu === null ? {} : { mtu: spec.mtu }) };
  if (spec.mode.kind === 'macvlan')
    return {
      kind: 'macvlan',
      ...common,
      mode: spec.mode.mode,
      ...(endpoint.mac === null ? {} : { mac: endpoint.mac }),
    };
  return { kind: 'ipvlan', ...common, mode: spec.mode.mode, flag: spec.mode.flag };
}

/**
 * Creates the endpoint's link, tried once more when the kernel refuses for
 * a reason lanplug can remove:
 * - a link of that name and of this daemon's group exists: a leftover of an
 *   earlier attempt for this endpoint (names come from the endpoint id), removed first;
 * - links are parked: a parked link is down and has no addresses, so it
 *   collides with nothing a new one needs, except where the kernel counts
 *   every link on a parent (passthru allows one); they go first.
 */
export function createEndpointLinkBesideParked(
  ctx: DriverContext,
  spec: NetworkSpec,
  endpoint: EndpointRecord,
  parent: LinkInfo,
): LinkInfo {
  try {
    return createEndpointLink(ctx, spec, endpoint, parent);
  } catch (err) {
    const existing = ctx.rtnl.getLink(endpoint.linkName);
    if (existing === null && ctx.remover.pending === 0) throw err;
    // A link of that name that is not this daemon's is not a leftover of ours to remove.
    if (existing !== null && !ctx.rtnl.owns(existing)) throw err;
    if (existing !== null) ctx.rtnl.deleteLink(existing);
    ctx.remover.settle();
    return createEndpointLink(ctx, spec, endpoint, parent);
  }
}

function createEndpointLink(
  ctx: DriverContext,
  spec: NetworkSpec,
  endpoint: EndpointRecord,
  parent: LinkInfo,
): LinkInfo {
  const req = endpointLinkRequest(spec, endpoint, parent, endpoint.linkName);
  try {
    return req.kind === 'macvlan' ? ctx.rtnl.createMacvlan(req) : ctx.rtnl.createIpvlan(req);
  } catch (err) {
    throw explainUnsupported(spec, err);
  }
}

/** A link made at CreateEndpoint (a DHCP endpoint's), expected in the daemon's namespace. */
export function requireEndpointLink(ctx: DriverContext, endpoint: EndpointRecord): LinkInfo {
  const link = ctx.rtnl.getLink(endpoint.linkName);
  if (link === null)
    throw notFound(`link ${endpoint.linkName} of endpoint ${shortId(endpoint.endpointId)} is gone from the host`);
  return link;
}

/** Removes the link of that name, if there is one. */
export function deleteLinkNamed(ctx: DriverContext, name: string): void {
  const link = ctx.rtnl.getLink(name);
  if (link !== null) ctx.rtnl.deleteLink(link);
}

/** What the reconciler is left to remove when an endpoint's link could not go (or not yet). */
export function endpointLeftover(
  endpoint: Pick<EndpointRecord, 'networkId' | 'endpointId' | 'linkName'>,
  reason: string,
): Leftover {
  return {
    kind: 'endpoint-link',
    name: endpoint.linkName,
    networkId: endpoint.networkId,
    endpointId: endpoint.endpointId,
    reason,
  };
}

/** EOPNOTSUPP on creating an endpoint link means the kernel lacks the link kind: say so plainly. */
export function explainUnsupported(spec: NetworkSpec, err: unknown): unknown {
  const kind = spec.mode.kind;
  if (err instanceof LanplugError && err.errno === EOPNOTSUPP) {
    return new LanplugError(
      'Unsupported',
      `cannot create ${kind} link on ${spec.parent.name}: this kernel has no ${kind} support (CONFIG_${kind.toUpperCase()})`,
      {
        errno: err.errno,
        cause: err,
      },
    );
  }
  return err;
}
