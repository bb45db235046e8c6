/**
 * The one notification socket a SLAAC watch holds in the container's namespace, joined to the groups
 * of both things the kernel tells only as they happen: the prefixes and options of router
 * advertisements (RTM_NEWPREFIX, RTM_NEWNDUSEROPT: netlink/router-adverts.ts) and the addresses it
 * drops because DAD failed (RTM_DELADDR: slaac-dad.ts). One socket rather than one per concern: each
 * is a file descriptor held in a namespace for the whole watch, up to 64 watches at once. The watch
 * opens it before IPv6 comes on there (the answer to the first solicitation is heard too) and closes
 * it when it ends (an open socket keeps the namespace alive).
 */
import type { FailedAddress } from './slaac-dad';
import { dadFailuresIn } from './slaac-dad';
import { NetlinkEvents, RTNLGRP_IPV6_IFADDR } from '../netlink/events';
import { addNotes, RTNLGRP_IPV6_PREFIX, RTNLGRP_ND_USEROPT, type AdvertNotes } from '../netlink/router-adverts';

/** What the kernel told of one link since the last drain. */
export interface ContainerNotes extends AdvertNotes {
  /** Addresses formed from the advertisement and dropped because another device answered for them. */
  dadFailed: FailedAddress[];
}

export interface ContainerNotesSource {
  drain(index: number): ContainerNotes;
  close(): void;
}

/** Listens in `netns` for advertisement prefixes and options, and for DAD failures. */
export function listenInContainer(netns: string): ContainerNotesSource {
  const events = NetlinkEvents.open([RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_PREFIX, RTNLGRP_ND_USEROPT], { netns });
  return {
    drain: (index) => {
      const messages = events.messages();
      const notes = addNotes({ autoconf: false, prefixes: 0, servers: [], search: [] }, messages, index);
      return { ...notes, dadFailed: dadFailuresIn(messages, index) };
    },
    close: () => events.close(),
  };
}
