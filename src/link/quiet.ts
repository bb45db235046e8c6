/**
 * A link of lanplug's in the host's namespace that must not speak for
 * itself — no IPv6 link-local address, so no duplicate address detection,
 * no router solicitation and no address of the LAN's router advertisements:
 * the LAN eye, a DHCP link before its container has it. IPv6 off on the link
 * (`disable_ipv6`), or where /proc/sys cannot be written (a managed plugin's
 * is read-only) no address of the kernel's making (addr_gen_mode none, over
 * netlink). The kernel resets both when the link moves to another namespace,
 * which then has its own defaults.
 */
import { writeFileSync } from 'node:fs';
import type { LinkInfo } from './link';
import type { Rtnl } from './rtnl';

export function silenceIpv6(rtnl: Rtnl, link: LinkInfo): void {
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${link.name}/disable_ipv6`, '1');
  } catch (err) {
    // No such file: a kernel without IPv6 (nothing to turn off), or no /proc entry for the link here.
    // Read-only: a managed plugin. Either way the netlink form keeps it as quiet.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'EROFS' && code !== 'EACCES') throw err;
    rtnl.stopIpv6AddressGeneration(link);
  }
}
