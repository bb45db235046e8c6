/**
 * `-o ipv6=slaac` in a container's sandbox: finding the endpoint's link there once Docker has moved and
 * named it, turning on IPv6 from the LAN router's advertisements on it (per-interface sysctls written
 * inside the namespace: Docker turns IPv6 off on the interface of a network without an IPv6 pool, and
 * per-device settings do not survive the move), and reading what the kernel learned. Synchronous and
 * read-mostly; the waiting around it is slaac-watch.ts's.
 */
import { createHash } from 'node:crypto';
import type { AddressInfo } from '../link/ip';
import type { LinkInfo } from '../link/link';
import { openRtnl } from '../link/rtnl';
import type { EndpointRecord, SlaacPolicy } from '../model/network';
import { sameAddress } from '../net/address';
import { IFA_F_DADFAILED, IFA_F_NODAD, IFA_F_PERMANENT, IFA_F_TENTATIVE } from '../netlink/codec';
import { readSandboxSysctl, writeSandboxSysctl } from './sandbox';

/** net.ipv6.conf.<if>.addr_gen_mode: addresses from the prefix and stable_secret (RFC 7217), not the MAC. */
const ADDR_GEN_STABLE_PRIVACY = '2';

/**
 * The stable-privacy secret of an endpoint: one per (network, identity), never per network alone (all
 * containers on it would form the same address from one prefix on one interface name). The identity is
 * the name the user gave (`lanplug.dhcp.id`); without one, the MAC, so that a container keeps its
 * address exactly as long as it keeps its MAC (`--mac-address`); an ipvlan link has the parent's MAC,
 * so there `mac` is what tells the endpoint apart (its id). The one place the derivation lives.
 */
export function slaacSecret(networkId: string, identityName: string | null, mac: string): string {
  const key = identityName === null ? `mac:${mac.toLowerCase()}` : `identity:${identityName}`;
  const digest = createHash('sha256').update(`lanplug.slaac\0${networkId}\0${key}`).digest();
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(digest.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** The secret of an endpoint as recorded: its identity, else its MAC, else (ipvlan) its endpoint id. */
export function endpointSlaacSecret(endpoint: EndpointRecord): string {
  return slaacSecret(endpoint.networkId, endpoint.identity ?? null, endpoint.mac ?? endpoint.endpointId);
}

/** The endpoint's link as the container has it: Docker moved it in and gave it its name (not lanplug's). */
export function containerLinkOf(
  netns: string,
  endpoint: EndpointRecord,
  owns: (link: LinkInfo) => boolean,
): LinkInfo | null {
  const rtnl = openRtnl({ netns });
  try {
    const mine = rtnl.listLinks().filter((l) => (l.kind === 'macvlan' || l.kind === 'ipvlan') && owns(l));
    if (endpoint.mac !== null) return mine.find((l) => l.mac === endpoint.mac) ?? null;
    const v4 = endpoint.ipv4?.address;
    if (v4 === undefined) return mine.length === 1 ? (mine[0] ?? null) : null;
    const holders = rtnl.listAddresses(4).filter((a) => sameAddress(a.prefix.address, v4));
    return mine.find((l) => holders.some((a) => a.index === l.index)) ?? null;
  } finally {
    rtnl.close();
  }
}

function conf(ifname: string, key: string): string {
  return `/proc/sys/net/ipv6/conf/${ifname}/${key}`;
}

/** Whether IPv6 is off on the interface (Docker's doing on a network without an IPv6 pool); null: no such interface. */
export function ipv6Disabled(netns: string, ifname: string): boolean | null {
  const value = readSandboxSysctl(netns, conf(ifname, 'disable_ipv6'));
  return value === null ? null : value !== '0';
}

/**
 * Router advertisements taken on `ifname`, addresses formed by stable privacy with `secret`: the
 * secret and mode first, IPv6 on last (the kernel forms the link-local address and solicits a router
 * as IPv6 comes on, with the settings it has then). A kernel without route information options
 * (no CONFIG_IPV6_ROUTE_INFO) has no file for them: with a limit of 0 that is no loss.
 */
export function enableSlaac(netns: string, ifname: string, secret: string, policy: SlaacPolicy): void {
  writeSandboxSysctl(netns, conf(ifname, 'stable_secret'), secret);
  writeSandboxSysctl(netns, conf(ifname, 'addr_gen_mode'), ADDR_GEN_STABLE_PRIVACY);
  // A forwarding interface ignores advertisements unless accept_ra is 2.
  const forwarding = readSandboxSysctl(netns, conf(ifname, 'forwarding')) === '1';
  writeSandboxSysctl(netns, conf(ifname, 'accept_ra'), forwarding ? '2' : '1');
  writeSandboxSysctl(netns, conf(ifname, 'autoconf'), '1');
  writeSandboxSysctl(netns, conf(ifname, 'accept_ra_rt_info_max_plen'), String(policy.rtInfoMaxPlen), true);
  // Each address is announced (unsolicited NA) once DAD is done, as lanplug announces the ones it gives: a
  // router whose neighbour cache still has an earlier container's MAC for the same address learns the new one.
  writeSandboxSysctl(netns, conf(ifname, 'ndisc_notify'), '1');
  writeSandboxSysctl(netns, conf(ifname, 'disable_ipv6'), '0');
}

/** What the kernel made of the router's advertisements on a link: its global autoconfigured addresses. */
export interface LearnedAddress {
  address: string;
  prefixLength: number;
  state: 'tentative' | 'dadfailed' | 'preferred';
  /** Added without DAD (`nodad`): never the kernel's own from an advertisement, so never given a host route. */
  nodad?: boolean;
}

/** The global IPv6 addresses the kernel configured itself on `index` (not permanent: from an advertisement). */
export function learnedAddresses(netns: string, index: number): LearnedAddress[] {
  const rtnl = openRtnl({ netns });
  try {
    return rtnl
      .listAddresses(6)
      .filter((a) => a.index === index && a.scope === 0 && ((a.flags ?? 0) & IFA_F_PERMANENT) === 0)
      .map(learned);
  } finally {
    rtnl.close();
  }
}

function learned(a: AddressInfo): LearnedAddress {
  const flags = a.flags ?? 0;
  const state =
    (flags & IFA_F_DADFAILED) !== 0 ? 'dadfailed' : (flags & IFA_F_TENTATIVE) !== 0 ? 'tentative' : 'preferred';
  return {
    address: a.prefix.address.text,
    prefixLength: a.prefix.prefixLength,
    state,
    nodad: (flags & IFA_F_NODAD) !== 0,
  };
}
