/**
 * Networks: create (validate, record, then the parent and the host-access
 * shim in the kernel, undone on failure), delete (rows first, replaced by
 * leftovers; then every link, each leftover dropped once its link is gone),
 * and finding a network by its pool.
 */
import { conflict, Teardown, withContext } from '../errors';
import { crashPoint } from '../crash-points';
import { removeUnusedEyes } from '../lan/eye';
import { shortId, type Leftover, type NetworkRecord, type NetworkSpec, type Stamped } from '../model/network';
import { formatPrefix, type IpPrefix } from '../net/address';
import { inNetwork, type DriverContext } from './driver-context';
import { deleteLinkNamed, endpointLeftover } from './endpoint-links';
import { ensureShim } from './host-access';
import { checkDockerId, shimLinkName } from './names';
import { ensureParent, ownedParent, releaseParent } from './parent';
import type { CreateNetworkRequest } from './requests';
import { replayDifference, validateNetwork } from './validate';

/**
 * What createNetwork would refuse, checked without recording or making anything: for a front end
 * whose network is declared long before its first use (Podman's `network create`). A lanplug
 * network of the same id (an earlier declaration of that name, unused since) does not count
 * against it: its first use replaces it.
 */
export function checkNetwork(ctx: DriverContext, request: CreateNetworkRequest): void {
  checkDockerId(request.networkId, 'network id');
  const others = ctx.store.listNetworks().filter((n) => n.spec.networkId !== request.networkId);
  const { spec } = validateNetwork(request, ctx.rtnl, others, lanplugParents(ctx, ctx.store.listLeftovers()));
  ctx.features.require(spec.mode);
}

export function createNetwork(ctx: DriverContext, request: CreateNetworkRequest): void {
  checkDockerId(request.networkId, 'network id');
  const { rtnl, store } = ctx;
  const known = store.getNetwork(request.networkId);
  if (known !== null) {
    // Docker may replay CreateNetwork for a network it already gave us: the same one is fine.
    const difference = replayDifference(request, known);
    if (difference !== null) throw conflict(difference);
    return;
  }
  const leftovers = store.listLeftovers();
  const { spec, parentCreated } = validateNetwork(request, rtnl, store.listNetworks(), lanplugParents(ctx, leftovers));
  ctx.features.require(spec.mode);
  const record: NetworkRecord = {
    spec,
    parentCreated,
    ...(request.cniName === undefined ? {} : { cniName: request.cniName }),
  };
  store.transaction(() => {
    store.insertNetwork(record);
    // A parent waiting to be removed is this network's now.
    if (leftovers.some((l) => l.kind === 'parent' && l.name === spec.parent.name))
      store.deleteLeftover(spec.parent.name);
  });
  try {
    const parentLink = ensureParent(rtnl, spec.parent, spec.mtu);
    if (spec.hostAccess !== null) ensureShim(rtnl, spec, parentLink);
  } catch (err) {
    removeShimQuietly(ctx, spec);
    store.deleteNetwork(spec.networkId);
    // A parent this network would have owned is removed again if the failure came after creating it.
    releaseOrRemember(ctx, record, 'undo a failed network create');
    throw inNetwork(spec, err);
  }
  crashPoint('create-network:parent-ready');
  ctx.log.info('network created', {
    network: shortId(spec.networkId),
    mode: spec.mode,
    parent: spec.parent.name,
    parentCreated,
  });
}

/**
 * Idempotent: an unknown network is already deleted. The rows go first,
 * replaced in the same transaction by leftovers for every link to remove;
 * then every endpoint link is tried, then the parent, and each leftover is
 * dropped once its link is gone. What failed stays for the reconciler and
 * is reported together at the end (Docker logs it and forgets the network).
 */
export function deleteNetwork(ctx: DriverContext, networkId: string): void {
  checkDockerId(networkId, 'network id');
  const { rtnl, store } = ctx;
  const network = store.getNetwork(networkId);
  if (network === null) return;
  const endpoints = store.listEndpoints(networkId);
  const parent = ownedParent(network);
  store.transaction(() => {
    store.deleteNetwork(networkId);
    for (const endpoint of endpoints) store.putLeftover(endpointLeftover(endpoint, 'network removed'));
    if (parent !== null)
      store.putLeftover({ kind: 'parent', name: parent.name, parent, networkId, reason: 'network removed' });
  });
  crashPoint('delete-network:rows-dropped');
  const teardown = new Teardown();
  // Links still parked from DeleteEndpoint go now: `docker network rm` leaves nothing behind when it returns.
  teardown.step('remove detached endpoint links', () => ctx.remover.settle());
  if (network.spec.hostAccess !== null) {
    // The shim's routes go with it.
    const shim = shimLinkName(networkId);
    const removed = teardown.step('remove the host-access shim', () => deleteLinkNamed(ctx, shim));
    if (!removed.ok) store.putLeftover({ kind: 'shim', name: shim, networkId, reason: removed.error.message });
  }
  for (const endpoint of endpoints) {
    const removed = teardown.step(`endpoint ${shortId(endpoint.endpointId)}`, () =>
      deleteLinkNamed(ctx, endpoint.linkName),
    );
    if (removed.ok) store.deleteLeftover(endpoint.linkName);
    else store.putLeftover(endpointLeftover(endpoint, removed.error.message));
  }
  let parentLink = 'kept';
  if (parent !== null) {
    const released = teardown.step('release parent', () => releaseParent(rtnl, parent, store.listNetworks()));
    if (released.ok) store.deleteLeftover(parent.name);
    else store.putLeftover({ kind: 'parent', name: parent.name, parent, networkId, reason: released.error.message });
    parentLink = released.ok ? released.value : 'failed';
  }
  // The LAN eye on that parent goes with the last lanplug network on it (reconcile retries a failure).
  teardown.step('remove the LAN eye', () => removeUnusedEyes(rtnl, store.listNetworks()));
  ctx.log.info('network deleted', {
    network: shortId(networkId),
    parent: network.spec.parent.name,
    parentLink,
    failures: teardown.failed.length,
  });
  try {
    teardown.throwIfFailed();
  } catch (err) {
    throw inNetwork(network.spec, err);
  }
}

/**
 * The lanplug network whose subnet is exactly `pool` (the IPAM drivers' pools know no parent), among
 * those `which` accepts.
 */
export function networkOfPool(
  ctx: DriverContext,
  pool: IpPrefix,
  which: (network: NetworkRecord) => boolean = () => true,
): (NetworkRecord & Stamped) | null {
  const wanted = formatPrefix(pool);
  return (
    ctx.store
      .listNetworks()
      .find((n) => which(n) && [...n.spec.ipv4, ...n.spec.ipv6].some((s) => formatPrefix(s.pool) === wanted)) ?? null
  );
}

/**
 * The lanplug-dhcp network whose pool this is: RequestAddress names only
 * the pool, and each such network has pools of its own (validate.ts).
 */
export function dhcpNetworkOfPool(ctx: DriverContext, pool: IpPrefix): NetworkRecord | null {
  return networkOfPool(ctx, pool, (n) => n.spec.dhcp?.askedBy === 'ipam');
}

/**
 * Releases the parent of a network that is gone; a failure is kept as a
 * leftover and logged, never thrown (it must not hide the error being reported).
 */
function releaseOrRemember(ctx: DriverContext, network: NetworkRecord, why: string): void {
  const parent = ownedParent(network);
  if (parent === null) return;
  try {
    releaseParent(ctx.rtnl, parent, ctx.store.listNetworks());
  } catch (err) {
    const reason = withContext(why, err).message;
    ctx.store.putLeftover({ kind: 'parent', name: parent.name, parent, networkId: network.spec.networkId, reason });
    ctx.log.error('could not remove parent link', { parent: parent.name, error: reason });
  }
}

/** On the undo path of a failed create: the shim, if it was made, goes again. */
function removeShimQuietly(ctx: DriverContext, spec: NetworkSpec): void {
  if (spec.hostAccess === null) return;
  const name = shimLinkName(spec.networkId);
  try {
    deleteLinkNamed(ctx, name);
  } catch (err) {
    ctx.store.putLeftover({ kind: 'shim', name, networkId: spec.networkId, reason: String(err) });
    ctx.log.error('could not remove the host-access shim', { shim: name, error: String(err) });
  }
}

/** Parents lanplug made that the store still knows: used by a network, or waiting to be removed. */
function lanplugParents(ctx: DriverContext, leftovers: readonly Leftover[]): Set<string> {
  const names = ctx.store.listNetworks().flatMap((n) => (n.parentCreated ? [n.spec.parent.name] : []));
  return new Set([...names, ...leftovers.flatMap((l) => (l.kind === 'parent' ? [l.name] : []))]);
}
