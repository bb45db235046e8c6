/**
 * Private parents: the link a network with no `-o parent` hangs its
 * endpoints from, reaching nothing outside the host. Docker uses a dummy
 * link; kernels without the dummy driver get an empty bridge instead, which
 * parents macvlan and ipvlan links alike. Neither kind carries IFLA_INFO_DATA.
 */
import { LanplugError } from '../errors';
import { EOPNOTSUPP } from '../netlink/errno';
import type { LinkInfo } from './link';
import type { Rtnl } from './rtnl';

/** The link kinds a private parent may be, in order of preference. */
export const PRIVATE_PARENT_KINDS = ['dummy', 'bridge'] as const;

export function isPrivateParentKind(kind: string | null): boolean {
  return (PRIVATE_PARENT_KINDS as readonly (string | null)[]).includes(kind);
}

/** Creates a dummy link, or a bridge where the kernel has no dummy driver. */
export function createPrivateParent(rtnl: Rtnl, name: string, mtu: number | null): LinkInfo {
  const request = mtu === null ? { name } : { name, mtu };
  try {
    return rtnl.createDummy(request);
  } catch (err) {
    if (!(err instanceof LanplugError && err.errno === EOPNOTSUPP)) throw err;
  }
  return rtnl.createBridge(request);
}
