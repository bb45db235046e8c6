/**
 * DAD failures of the addresses a container forms from the LAN router's advertisements, as the kernel
 * tells them. The kernel keeps no trace of an autoconfigured address whose DAD failed (only a
 * permanent one stays, flagged dadfailed): it deletes it and, with stable privacy, forms the next one
 * at once (RFC 7217's DAD counter, up to net.ipv6.conf.*.idgen_retries, 3 by default). A read of the
 * container's addresses can miss the failed one altogether (it is tentative for as little as the
 * first solicitation's random delay), so the watch hears the kernel instead: the notification of the
 * deletion (RTM_DELADDR) carries the dadfailed flag. The socket is opened in the container's namespace
 * before IPv6 comes on there, and closed when the watch ends (an open socket keeps a namespace alive).
 */
import type { LearnedAddress } from './slaac';
import { decodeAddress } from '../link/ip';
import { IFA_F_DADFAILED, RTM_DELADDR } from '../netlink/codec';
import { NetlinkEvents, RTNLGRP_IPV6_IFADDR } from '../netlink/events';

export interface DadFailures {
  /** The global addresses of the link whose DAD failed since the last call (each once). */
  failed(): Pick<LearnedAddress, 'address' | 'prefixLength'>[];
  close(): void;
}

/** Listens in `netns` for the kernel dropping an address of link `index` because DAD failed for it. */
export function listenForDadFailures(netns: string, index: number): DadFailures {
  const events = NetlinkEvents.open([RTNLGRP_IPV6_IFADDR], { netns });
  return {
    failed: () =>
      events.messages().flatMap((message) => {
        if (message.type !== RTM_DELADDR) return [];
        const gone = decodeAddress(message);
        if (gone === null || gone.index !== index || gone.scope !== 0) return [];
        if (((gone.flags ?? 0) & IFA_F_DADFAILED) === 0) return [];
        return [{ address: gone.prefix.address.text, prefixLength: gone.prefix.prefixLength }];
      }),
    close: () => events.close(),
  };
}
