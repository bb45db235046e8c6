/**
 * Parent links: making the ones lanplug owns (802.1Q sub-interfaces and
 * private parents) and removing them again — only when lanplug made them, no
 * other lanplug network uses them, and the kernel still shows the very link
 * lanplug made (a user may have replaced it meanwhile).
 *
 * Errors carry the kernel layer's words ("create vlan link eth0.50: EEXIST …");
 * the network driver adds which network and parent they were for.
 */
import { LanplugError } from '../errors';
import type { LinkInfo } from '../link/link';
import { createPrivateParent, isPrivateParentKind } from '../link/private-parent';
import type { Rtnl } from '../link/rtnl';
import type { NetworkRecord, ParentPlan } from '../model/network';
import { ENODEV, EOPNOTSUPP } from '../netlink/errno';
import { parentNotFound } from './options';

/**
 * Makes sure the parent exists; creates it (up) when the plan says it is
 * lanplug's and it is missing. Returns the parent link.
 *
 * The admin state of a link lanplug finds is never changed: an administrator
 * who took eth0 down meant it, and a container on a parent that is down still
 * starts (it gets no carrier until the parent comes up), as with Docker's own
 * driver since 28.0.
 */
export function ensureParent(rtnl: Rtnl, plan: ParentPlan, mtu: number | null): LinkInfo {
  const present = rtnl.getLink(plan.name);
  if (present !== null) return present;
  if (plan.kind === 'existing') {
    throw new LanplugError('NotFound', parentNotFound(plan.name), { errno: ENODEV });
  }
  const created = plan.kind === 'vlan' ? createVlanParent(rtnl, plan) : createPrivateParent(rtnl, plan.name, mtu);
  rtnl.setUp(created);
  return created;
}

function createVlanParent(rtnl: Rtnl, plan: Extract<ParentPlan, { kind: 'vlan' }>): LinkInfo {
  const base = rtnl.getLink(plan.base);
  if (base === null) throw new LanplugError('NotFound', parentNotFound(plan.base), { errno: ENODEV });
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
    throw err;
  }
}

/** A parent lanplug made: the only kind it may ever delete. */
export type OwnedParent = Exclude<ParentPlan, { kind: 'existing' }>;

/** The parent of `network` if lanplug made it (and so may remove it when unused), else null. */
export function ownedParent(network: NetworkRecord): OwnedParent | null {
  const plan = network.spec.parent;
  return network.parentCreated && plan.kind !== 'existing' ? plan : null;
}

/**
 * Removes a parent lanplug made when no network in `users` uses it and the
 * kernel still shows the very link lanplug made. 'gone' when there is nothing
 * to remove; 'kept' when it is in use or no longer lanplug's.
 */
export function releaseParent(
  rtnl: Rtnl,
  plan: OwnedParent,
  users: readonly NetworkRecord[],
): 'deleted' | 'kept' | 'gone' {
  if (users.some((n) => n.spec.parent.name === plan.name)) return 'kept';
  const link = rtnl.getLink(plan.name);
  if (link === null) return 'gone';
  if (!isStillOurs(rtnl, plan, link)) return 'kept';
  return rtnl.deleteLink(link) ? 'deleted' : 'gone';
}

/**
 * The link is the very one lanplug made under that name: it carries this daemon's link group (a
 * VLAN the OS made again after lanplug's went — ifupdown, NetworkManager — does not) and is of
 * the kind lanplug made (a user may have replaced it meanwhile).
 */
export function isStillOurs(rtnl: Rtnl, plan: OwnedParent, link: LinkInfo): boolean {
  return rtnl.owns(link) && isTheLinkMade(rtnl, plan, link);
}

/** The link is of the kind, VLAN id and base lanplug would make for `plan` (whoever made it). */
export function isTheLinkMade(rtnl: Rtnl, plan: OwnedParent, link: LinkInfo): boolean {
  if (plan.kind === 'private') return isPrivateParentKind(link.kind);
  if (link.kind !== 'vlan' || link.vlanId !== plan.vlanId || link.parentIndex === null) return false;
  const base = rtnl.getLink(plan.base);
  return base !== null && base.index === link.parentIndex;
}
