/**
 * What one SLAAC watch (slaac-watch.ts) hears of the LAN router's advertisements, and what it hands on:
 * the notes its socket in the container drains (slaac-notes.ts: prefixes, RDNSS/DNSSL) and the M and O
 * flags the container's kernel keeps (netlink/router-adverts.ts). The DNS servers and search list are
 * logged, recorded as a `slaac.dns` event and handed to the follow-up as they come; the flags once, at
 * the poll after the one that first heard an advertisement, and from then on their changes are followed
 * by slaac-flags.ts. The follow-up (endpoint/slaac-dhcp6.ts) acts on them. The watch keeps its phases and the address; this module keeps what the advertisements said.
 */
import type { LinkInfo } from '../link/link';
import type { Logger } from '../log';
import { recordEvent } from '../metrics/events';
import type { EndpointRecord, LearnedDns, NetworkSpec } from '../model/network';
import type { AdvertFlags } from '../netlink/router-adverts';
import type { ContainerNotes } from './slaac-notes';

/**
 * What the advertisement asks of lanplug beyond the kernel's own SLAAC: the floor above implements it
 * (endpoint/slaac-dhcp6.ts, with the lease keeper); none in unit tests of the watch.
 */
export interface AdvertFollowUp {
  /**
   * The flags of the advertisement once heard (`before` null), and again each time a later one changes
   * them (slaac-flags.ts; `before`: what was followed until then): M asks DHCPv6 for an address, O
   * (without M) for other configuration.
   */
  flags(
    spec: NetworkSpec,
    endpoint: EndpointRecord,
    netns: string,
    link: LinkInfo,
    flags: AdvertFlags,
    before: AdvertFlags | null,
  ): void;
  /** DNS servers and search list heard in advertisements (RDNSS, DNSSL): recorded where users see them. */
  dns(endpoint: EndpointRecord, dns: LearnedDns): void;
  /** Leave, DeleteEndpoint: what runs for the endpoint stops (a lease it was taking goes back). */
  cancel(endpointId: string): void;
}

/** Where one watch's hearing reads and sends: the container's flags, the follow-up, the log. */
export interface HearingContext {
  spec: NetworkSpec;
  endpoint: EndpointRecord;
  netns: string;
  what: Record<string, string>;
  log: Logger;
  followUp: AdvertFollowUp | null;
  /** The kernel's flags of the link (RTM_GETLINK in the container); absent in the cost tests' fakes. */
  readFlags: ((netns: string, index: number) => AdvertFlags | null) | undefined;
  /** The flags went to the follow-up: what follows their later changes starts from them. */
  followed(link: LinkInfo, flags: AdvertFlags): void;
}

/** What one watch has heard of the router's advertisements so far. */
export class AdvertHearing {
  /** When a poll first saw that an advertisement came; the flags are read at the next poll (see hear). */
  private firstAt: number | null = null;
  /** The flags went to the follow-up. */
  private flagsFollowed = false;
  /** A prefix with the A flag was advertised (or an address formed from one failed DAD): an address is coming. */
  private autoconfSeen = false;
  private prefixes = 0;
  private readonly servers: string[] = [];
  private readonly search: string[] = [];

  constructor(private readonly ctx: HearingContext) {}

  /** An advertisement was heard at all. */
  get heardAny(): boolean {
    return this.firstAt !== null;
  }

  get followed(): boolean {
    return this.flagsFollowed;
  }

  get autoconf(): boolean {
    return this.autoconfSeen;
  }

  /**
   * What the advertisements said since the last poll. Heard is: the kernel's flag that one came after its
   * solicitation, or M or O set, or a prefix or option notified, or an address formed. The flags go to the
   * follow-up at the poll after the one that first heard (20 ms or more later): the kernel takes in an
   * advertisement's flags, prefixes and options in one pass, which a poll on another core may see half done.
   */
  hear(link: LinkInfo, notes: ContainerNotes, addressFormed: boolean, now: number): void {
    const { endpoint, netns, what, log, followUp } = this.ctx;
    this.prefixes += notes.prefixes;
    // A DAD failure too says an address is coming (its replacement), should the prefix's note have been lost.
    this.autoconfSeen ||= notes.autoconf || notes.dadFailed.length > 0;
    const servers = notes.servers.filter((s) => !this.servers.includes(s));
    const search = notes.search.filter((s) => !this.search.includes(s));
    if (servers.length + search.length > 0) {
      this.servers.push(...new Set(servers));
      this.search.push(...new Set(search));
      const dns: LearnedDns = { servers: [...this.servers], search: [...this.search], from: ['ra'] };
      log.info('DNS servers from the router advertisement (RDNSS/DNSSL)', {
        ...what,
        servers: dns.servers.join(' '),
        search: dns.search.join(' '),
      });
      recordEvent('slaac.dns', { ...what, servers: dns.servers.join(' '), search: dns.search.join(' '), from: 'ra' });
      followUp?.dns(endpoint, dns);
    }
    if (this.flagsFollowed) return;
    const flags = this.ctx.readFlags?.(netns, link.index) ?? null;
    const came =
      (flags !== null && (flags.heard || flags.managed || flags.other)) ||
      this.prefixes > 0 ||
      this.servers.length > 0 ||
      notes.dadFailed.length > 0 ||
      addressFormed;
    if (!came) return;
    if (this.firstAt === null) {
      this.firstAt = now;
      return;
    }
    this.flagsFollowed = true;
    const managed = flags?.managed ?? false;
    const other = flags?.other ?? false;
    log.info('router advertisement heard in the container', {
      ...what,
      managed: String(managed),
      other: String(other),
      autoconf: String(this.autoconfSeen),
    });
    const followed: AdvertFlags = { heard: true, managed, other };
    followUp?.flags(this.ctx.spec, endpoint, netns, link, followed, null);
    this.ctx.followed(link, followed);
  }
}
