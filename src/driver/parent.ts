/**
 * Parent links: making the ones lanplug owns (802.1Q sub-interfaces and
 * private parents) and removing them again — only when lanplug made them, no
 * other lanplug network uses them, and the kernel still shows the very link
 * lanplug made (a user may have replaced it meanwhile).
 */
import { LanplugError, withContext } from '../errors';
import { ENODEV, EOPNOTSUPP } from '../netlink/errno';
import type { LinkInfo, Rtnl } from '../netlink/rtnl';
import type { NetworkRecord } from '../state/records';
import { parentNotFound } from './options';
import type { ParentPlan } from './types';

/**
 * Makes sure the parent exists and is up; creates it when the plan says it
 * is lanplug's and it is missing. Returns the parent link.
 */
export function ensureParent(rtnl: Rtnl, plan: ParentPlan, mtu: number | null): LinkInfo {
  const present = rtnl.getLink(plan.name);
  if (present !== null) {
    if (!present.up) rtnl.setUp(present.index);
    return present;
  }
  if (plan.type === 'existing') {
    throw new LanplugError('NotFound', parentNotFound(plan.name), { errno: ENODEV });
  }
  const created = plan.type === 'vlan' ? createVlanParent(rtnl, plan) : createPrivateParent(rtnl, plan.name, mtu);
  rtnl.setUp(created.index);
  return created;
}

function createVlanParent(rtnl: Rtnl, plan: Extract<ParentPlan, { type: 'vlan' }>): LinkInfo {
  const base = rtnl.getLink(plan.base);
  if (base === null) throw new LanplugError('NotFound', parentNotFound(plan.base));
  if (!base.up) rtnl.setUp(base.index);
  try {
    return rtnl.createVlan({ name: plan.name, parentIndex: base.index, vlanId: plan.vlanId });
  } catch (err) {
    if (err instanceof LanplugError && err.errno === EOPNOTSUPP) {
      throw new LanplugError(
        'Unsupported',
        `cannot create 802.1Q sub-interface ${plan.name}: this kernel has no 802.1Q VLAN support (load the 8021q module, or use a kernel built with CONFIG_VLAN_8021Q)`,
        { errno: EOPNOTSUPP, cause: err },
      );
    }
    throw withContext(`create 802.1Q sub-interface ${plan.name} (vlan ${plan.vlanId} on ${plan.base})`, err);
  }
}

/**
 * A network without a parent gets one of its own that reaches nothing
 * outside the host. Docker uses a dummy link; kernels without the dummy
 * driver get an empty bridge, which parents macvlan and ipvlan links alike.
 */
function createPrivateParent(rtnl: Rtnl, name: string, mtu: number | null): LinkInfo {
  const request = mtu === null ? { name } : { name, mtu };
  try {
    return rtnl.createDummy(request);
  } catch (err) {
    if (!(err instanceof LanplugError && err.errno === EOPNOTSUPP)) {
      throw withContext(`create private parent ${name}`, err);
    }
  }
  try {
    return rtnl.createBridge(request);
  } catch (err) {
    throw withContext(`create private parent ${name} (this kernel has no dummy driver; tried a bridge)`, err);
  }
}

/**
 * Removes the parent of `network` if lanplug owns it and no other network
 * uses it. `others` are the networks that remain after this one.
 */
export function releaseParent(rtnl: Rtnl, network: NetworkRecord, others: readonly NetworkRecord[]): 'deleted' | 'kept' {
  const plan = network.spec.parent;
  if (!network.parentCreated || plan.type === 'existing') return 'kept';
  if (others.some((n) => n.spec.parent.name === plan.name)) return 'kept';
  const link = rtnl.getLink(plan.name);
  if (link === null) return 'kept';
  if (!isStillOurs(rtnl, plan, link)) return 'kept';
  try {
    rtnl.deleteLink(link.index);
  } catch (err) {
    throw withContext(`delete parent ${plan.name}`, err);
  }
  return 'deleted';
}

function isStillOurs(rtnl: Rtnl, plan: Exclude<ParentPlan, { type: 'existing' }>, link: LinkInfo): boolean {
  if (plan.type === 'private') return link.kind === 'dummy' || link.kind === 'bridge';
  if (link.kind !== 'vlan' || link.vlanId !== plan.vlanId || link.parentIndex === null) return false;
  const base = rtnl.getLink(plan.base);
  return base !== null && base.index === link.parentIndex;
}
