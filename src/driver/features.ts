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
import { randomBytes } from 'node:crypto';
import { LanplugError, withContext } from '../errors';
import { EOPNOTSUPP } from '../netlink/errno';
import type { Rtnl } from '../netlink/rtnl';
import type { LinkMode } from './types';

const PROBE_PREFIX = 'lp-probe-';

export class KernelFeatures {
  private ipvlanKnown = false;

  constructor(private readonly rtnl: Rtnl) {}

  require(mode: LinkMode): void {
    if (mode.kind === 'ipvlan') this.requireIpvlan();
  }

  private requireIpvlan(): void {
    if (this.ipvlanKnown) return;
    const suffix = randomBytes(3).toString('hex');
    const bridge = this.rtnl.createBridge({ name: `${PROBE_PREFIX}${suffix}` });
    try {
      const probe = this.rtnl.createIpvlan({ name: `lp-probe-i${suffix}`.slice(0, 15), parentIndex: bridge.index, mode: 'l2', flag: 'bridge' });
      this.rtnl.deleteLink(probe.index);
      this.ipvlanKnown = true;
    } catch (err) {
      if (err instanceof LanplugError && err.errno === EOPNOTSUPP) {
        throw new LanplugError('Unsupported', 'this kernel has no ipvlan support (load the ipvlan module, or use a kernel built with CONFIG_IPVLAN); lanplug-ipvlan cannot create links', {
          errno: EOPNOTSUPP,
          cause: err,
        });
      }
      throw withContext('check the kernel for ipvlan support', err);
    } finally {
      this.rtnl.deleteLink(bridge.index);
    }
  }
}
