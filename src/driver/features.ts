/**
 * Kernel features a network needs, checked when the network is created
 * rather than when the first container starts: `docker network create`
 * should fail on a kernel without ipvlan, not `docker run` later.
 *
 * The check creates a throw-away ipvlan link on a throw-away bridge (never
 * on the user's parent: a probe there could change the mode of ipvlan links
 * that already hang from it) and deletes both. A positive answer is cached
 * for the daemon's lifetime; a negative one is asked again, since a module
 * may be loaded meanwhile.
 */
import { LanplugError, Teardown, withContext } from '../errors';
import type { LinkMode } from '../model/network';
import { EOPNOTSUPP } from '../netlink/errno';
import type { Rtnl } from '../link/rtnl';
import { probeLinkNames } from './names';

export class KernelFeatures {
  private ipvlanKnown = false;

  constructor(private readonly rtnl: Rtnl) {}

  require(mode: LinkMode): void {
    if (mode.kind === 'ipvlan') this.requireIpvlan();
  }

  private requireIpvlan(): void {
    if (this.ipvlanKnown) return;
    const names = probeLinkNames();
    const bridge = this.rtnl.createBridge({ name: names.bridge });
    const cleanup = new Teardown();
    let refusal: unknown = null;
    try {
      const probe = this.rtnl.createIpvlan({
        name: names.ipvlan,
        parentIndex: bridge.index,
        mode: 'l2',
        flag: 'bridge',
      });
      cleanup.step('remove the ipvlan probe', () => this.rtnl.deleteLink(probe));
    } catch (err) {
      refusal = err;
    }
    cleanup.step('remove the probe bridge', () => this.rtnl.deleteLink(bridge));
    if (refusal !== null) throw explainProbeFailure(refusal);
    cleanup.throwIfFailed();
    this.ipvlanKnown = true;
  }
}

function explainProbeFailure(err: unknown): LanplugError {
  if (err instanceof LanplugError && err.errno === EOPNOTSUPP) {
    return new LanplugError(
      'Unsupported',
      'this kernel has no ipvlan support (load the ipvlan module, or use a kernel built with CONFIG_IPVLAN); lanplug-ipvlan cannot create links',
      { errno: EOPNOTSUPP, cause: err },
    );
  }
  return withContext('check the kernel for ipvlan support', err);
}
