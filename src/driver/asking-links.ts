/**
 * The links the lanplug-dhcp IPAM driver asks the LAN's DHCP server with.
 * It asks before the container's link exists (RequestAddress comes before
 * CreateEndpoint), so for each exchange it makes a macvlan with the
 * container's MAC on the network's parent, up in the daemon's namespace for
 * the length of the exchange, then removes it. Named `lpd-<random>`:
 * reconcile removes one a crash left, and leaves alone those in use now.
 * How such a link keeps quiet is here too (quietAskingLink): a `-o dhcp=true`
 * endpoint's link asks from the daemon's namespace the same way before Join.
 */
import { writeFileSync } from 'node:fs';
import { conflict, LanplugError, withContext } from '../errors';
import type { LinkInfo } from '../link/link';
import { silenceIpv6 } from '../link/quiet';
import type { Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import { shortId, type NetworkSpec } from '../model/network';
import type { Family } from '../net/address';
import { EADDRINUSE } from '../netlink/errno';
import { askingLinkName } from './names';
import { ensureParent } from './parent';

export class AskingLinks {
  /** The names of the links exchanges are using now. */
  readonly inUse = new Set<string>();

  constructor(
    private readonly rtnl: Rtnl,
    private readonly log: Logger,
  ) {}

  /** `ask` runs with a link of `mac` on the network's parent, made for it and removed after. */
  async with<T>(spec: NetworkSpec, mac: string, family: Family, ask: (link: LinkInfo) => Promise<T>): Promise<T> {
    const where = `network ${shortId(spec.networkId)} on parent ${spec.parent.name}`;
    const name = askingLinkName();
    this.inUse.add(name);
    let link: LinkInfo;
    try {
      const parent = ensureParent(this.rtnl, spec.parent, spec.mtu);
      link = this.rtnl.createMacvlan({ name, parentIndex: parent.index, mode: 'bridge', mac });
    } catch (err) {
      this.inUse.delete(name);
      throw withContext(where, err);
    }
    try {
      quietAskingLink(this.rtnl, link, family);
      try {
        this.rtnl.setUp(link);
      } catch (err) {
        // The kernel refuses a second link of one MAC up on one parent: a running container has it already.
        if (err instanceof LanplugError && err.errno === EADDRINUSE)
          throw conflict(
            `MAC ${mac} is already in use on parent ${spec.parent.name}; give each container its own --mac-address`,
          );
        throw withContext(where, err);
      }
      return await ask(link);
    } finally {
      try {
        this.rtnl.deleteLink(link);
      } catch (err) {
        // The next reconcile removes it (its name says what it was).
        this.log.warn('could not remove a DHCP asking link', { link: link.name, error: String(err) });
      }
      this.inUse.delete(name);
    }
  }
}

/**
 * A link that asks a DHCP server from the daemon's namespace (an asking link, or a `-o dhcp=true`
 * endpoint's link before Join) speaks only for its exchange. IPv4: no IPv6 at all (link/quiet.ts). IPv6: its link-local address at once, without
 * duplicate address detection, so the kernel answers the server's neighbour solicitation for it
 * within milliseconds (the server answers that address); no router advertisements taken, so the
 * host never gets an address or a route through it. Set before the link is up. The kernel resets
 * these when the link moves to a container's namespace, which then has its own defaults.
 */
export function quietAskingLink(rtnl: Rtnl, link: LinkInfo, family: Family): void {
  if (family === 4) return silenceIpv6(rtnl, link);
  const set = (key: string, value: string): void => writeFileSync(`/proc/sys/net/ipv6/conf/${link.name}/${key}`, value);
  set('accept_ra', '0');
  set('autoconf', '0');
  set('accept_dad', '0');
  set('disable_ipv6', '0');
}
