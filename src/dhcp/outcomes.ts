/**
 * What the DHCPv4 and DHCPv6 clients share with their callers: how a bound
 * address is checked before use, where a malformed answer is said, what a
 * renewal comes to, and a logger that says a rogue server's complaint once.
 */
import type { Fields, Logger } from '../log';
import type { DhcpIdentity, Lease } from '../model/lease';
import type { IpAddress } from '../net/address';

/** What the answer that bound an address said besides it: who sent it, the router it names (DHCPv4), its prefix length, and to whom. */
export interface BoundBy {
  server: IpAddress;
  router: IpAddress | null;
  /** DHCPv4: the mask the answer gave (or the one assumed without one); DHCPv6: the network's. */
  prefixLength: number;
  identity: DhcpIdentity;
}

/**
 * Asks whether an address a server bound (IPv4 or IPv6) may be used before it
 * is (RFC 2131 §4.4.1: the client SHOULD probe it, and DECLINE it when another
 * device answers; RFC 8415 §18.2.10.1 likewise; and what the network knows
 * without asking: its subnet, its router, this host's and its other
 * containers' addresses). Resolves to why not, as a phrase ("in use by
 * aa:bb:… (…)", "outside the network's subnet …"), or null: usable, or in use
 * but the network's policy is to use it anyway. An answer from `ownMac`, the
 * client's own, is no other device: a container that starts over after its
 * lease ran out still holds the address it asks for.
 */
export type OfferCheck = (address: IpAddress, ownMac: string, by: BoundBy) => Promise<string | null>;

/**
 * Where a malformed answer to one of lanplug's transactions is said (fields: the link, the server,
 * why): the keeper's rate-limited log of its network (malformed-log.ts). Without one, a line per
 * exchange and fault.
 */
export type MalformedReport = (fields: Fields) => void;

/**
 * `silent`: the lease stays as it is until the keeper tries again; `message` says why, when a server answered.
 * `declined`: the server moved the lease onto an address the check refused, and was told so; the client
 * starts over (RFC 2131 §4.4.1, RFC 8415 §18.2.8), keeping the address it held meanwhile.
 */
export type RenewOutcome =
  | { kind: 'ack'; lease: Lease }
  | { kind: 'nak'; message: string }
  | { kind: 'declined'; message: string }
  | { kind: 'silent'; message?: string };

/** A warning logger that says each thing once (a rogue server repeats itself at every retransmission). */
export function onceEach(log: Logger): (msg: string, fields: Fields) => void {
  const said = new Set<string>();
  return (msg, fields) => {
    const key = `${msg} ${JSON.stringify(fields)}`;
    if (said.has(key)) return;
    said.add(key);
    log.warn(msg, fields);
  };
}
