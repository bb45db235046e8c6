/**
 * DAD failures of the addresses a container forms from the LAN router's advertisements, as the kernel
 * tells them. The kernel keeps no trace of an autoconfigured address whose DAD failed (only a
 * permanent one stays, flagged dadfailed): it deletes it and, with stable privacy, forms the next one
 * at once (RFC 7217's DAD counter, up to net.ipv6.conf.*.idgen_retries, 3 by default). A read of the
 * container's addresses can miss the failed one altogether (it is tentative for as little as the
 * first solicitation's random delay), so the watch hears the kernel instead: the notification of the
 * deletion (RTM_DELADDR) carries the dadfailed flag. The watch's notification socket in the container
 * (slaac-notes.ts) brings those notifications here.
 */
import type { LearnedAddress } from './slaac';
import { decodeAddress } from '../link/ip';
import { IFA_F_DADFAILED, RTM_DELADDR, type NlMsg } from '../netlink/codec';

export type FailedAddress = Pick<LearnedAddress, 'address' | 'prefixLength'>;

/** The global addresses of link `index` that `messages` say the kernel dropped because DAD failed for them. */
export function dadFailuresIn(messages: readonly NlMsg[], index: number): FailedAddress[] {
  return messages.flatMap((message) => {
    if (message.type !== RTM_DELADDR) return [];
    const gone = decodeAddress(message);
    if (gone === null || gone.index !== index || gone.scope !== 0) return [];
    if (((gone.flags ?? 0) & IFA_F_DADFAILED) === 0) return [];
    return [{ address: gone.prefix.address.text, prefixLength: gone.prefix.prefixLength }];
  });
}
