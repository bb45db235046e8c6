/**
 * A network as the LAN sees it: the link that probes, announces and watches
 * for it (lanplug's bridge-mode sibling of a macvlan parent, the LAN eye; or
 * the parent), what to check about a new endpoint's addresses (and a failed
 * check in the network's words), and the subnets the host itself is on there.
 */
import { LanplugError } from '../errors';
import type { LinkInfo } from '../link/link';
import type { AddressCheck } from '../lan/conflicts';
import { ensureEye, removeUnusedEyes } from '../lan/eye';
import type { ProbeLink } from '../lan/probe';
import { addressesOf, type DriverKind, type NetworkSpec } from '../model/network';
import type { IpAddress, IpPrefix } from '../net/address';
import { ENODEV, ENXIO } from '../netlink/errno';
import { inNetwork, requireNetwork, type DriverContext } from './driver-context';
import { parentNotFound } from './options';
import type { CreateEndpointRequest } from './requests';

/**
 * The link that probes, announces and watches for a network: on a macvlan
 * parent lanplug's own bridge-mode sibling (it sees the LAN and the
 * containers beside it); on an ipvlan or passthru parent, the parent.
 * None on a parent that is down: nothing on the LAN can answer through it,
 * and Docker's drivers attach containers to a down parent all the same.
 */
export function lanLink(ctx: DriverContext, spec: NetworkSpec, knownParent?: LinkInfo): ProbeLink | null {
  const parent = knownParent ?? ctx.rtnl.getLink(spec.parent.name);
  if (parent === null || parent.mac === null || !parent.up) return null;
  if (spec.mode.kind === 'macvlan' && spec.mode.mode !== 'passthru') {
    // A caller holding a network read before an await (the warmer, a probe) must not bring back the eye of a
    // network removed meanwhile: an eye lives exactly as long as a network of this daemon needs it.
    if (ctx.store.getNetwork(spec.networkId) === null) return null;
    const eye = ensureEye(ctx.rtnl, parent);
    return eye.mac === null ? null : { index: eye.index, name: parent.name, mac: eye.mac, listenAll: false };
  }
  return { index: parent.index, name: parent.name, mac: parent.mac, listenAll: true };
}

/** This daemon's LAN eyes that no network of its own needs any more go (see lan/eye.ts). */
export function removeUnneededEyes(ctx: DriverContext): void {
  removeUnusedEyes(ctx.rtnl, ctx.store.listNetworks());
}

/**
 * What to check about a new endpoint's addresses before it is recorded: that
 * none is this host's, and where to ask the LAN about them (null when
 * conflict=off or the parent is down); null when there is nothing to check
 * (a private network, a retried CreateEndpoint, no address).
 */
export function addressCheck(
  ctx: DriverContext,
  driver: DriverKind,
  request: CreateEndpointRequest,
): AddressCheck | null {
  if (ctx.store.getEndpoint(request.networkId, request.endpointId) !== null) return null;
  return addressCheckOf(ctx, driver, request.networkId, addressesOf(request));
}

/** addressCheck for `addresses` on a network, whatever is recorded (a CNI attachment checks its own). */
export function addressCheckOf(
  ctx: DriverContext,
  driver: DriverKind,
  networkId: string,
  addresses: readonly IpAddress[],
): AddressCheck | null {
  const { spec } = requireNetwork(ctx, networkId, driver);
  if (spec.parent.kind === 'private' || addresses.length === 0) return null;
  const link = spec.conflict === 'off' ? null : lanLink(ctx, spec);
  return {
    addresses: [...addresses],
    lan: link === null || spec.conflict === 'off' ? null : { link, policy: spec.conflict, networkId: spec.networkId },
  };
}

/**
 * A failure of the LAN check of a network's new addresses, in the network's words: a parent deleted
 * while the check was on its way (the LAN eye, a macvlan on it, went with it) is said as Join says it,
 * not as 'send a frame on eth1: ENXIO (No such device or address)' (seen with the parent deleted
 * during a burst of docker run). Any other failure as it is.
 */
export function explainLanCheckFailure(ctx: DriverContext, networkId: string, err: unknown): unknown {
  const network = ctx.store.getNetwork(networkId);
  if (network === null || !(err instanceof LanplugError) || (err.errno !== ENXIO && err.errno !== ENODEV)) return err;
  const { parent } = network.spec;
  const missing =
    parent.kind === 'vlan' && ctx.rtnl.getLink(parent.base) === null
      ? parent.base
      : parent.kind !== 'private' && ctx.rtnl.getLink(parent.name) === null
        ? parent.name
        : null;
  if (missing === null) return err;
  return inNetwork(network.spec, new LanplugError('NotFound', parentNotFound(missing), { errno: ENODEV }));
}

/** The IPv4 subnets the host holds addresses in on a network's parent (the LAN's, seen from here). */
export function parentSubnets4(ctx: DriverContext, spec: NetworkSpec): IpPrefix[] {
  const parent = ctx.rtnl.getLink(spec.parent.name);
  if (parent === null) return [];
  return ctx.rtnl
    .listAddresses(4)
    .filter((a) => a.index === parent.index)
    .map((a) => a.prefix);
}
