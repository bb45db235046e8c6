/**
 * validate(): from a create request, the kernel's links and the networks
 * lanplug already has, to a complete NetworkSpec — or a one-line error.
 * It reads the kernel but never changes it; setup acts only on its result.
 */
import { conflict, invalidArgument } from '../errors';
import type { LinkInfo } from '../link/link';
import {
  shortId,
  type HostAccess,
  type LinkMode,
  type NetworkRecord,
  type NetworkSpec,
  type ParentPlan,
  type Subnet,
} from '../model/network';
import { formatPrefix, prefixContains, sameAddress, type IpAddress } from '../net/address';
import { MAX_MTU, MIN_MTU_IPV4, MIN_MTU_IPV6 } from '../net/mtu';
import { privateParentName } from './names';
import {
  DHCP_ADDRESS_SPACE,
  DHCP_IPAM_NAME,
  OPT_IPV6,
  OPT_MTU,
  parentNotFound,
  parseNetworkOptions,
  type ParentOption,
} from './options';
import type { CreateNetworkRequest } from './requests';

/** What validation may ask the kernel: a read-only view of links by name. */
export interface LinkView {
  getLink(name: string): LinkInfo | null;
}

export interface ValidatedNetwork {
  spec: NetworkSpec;
  /** True when the parent is (or will be) a link lanplug made, and may delete when unused. */
  parentCreated: boolean;
}

/**
 * `lanplugParents`: names of the parents lanplug made that still exist as far
 * as the store knows (used by a network, or waiting in the leftovers to be
 * removed): a network on one of them adopts it rather than calling it the user's.
 */
export function validateNetwork(
  request: CreateNetworkRequest,
  links: LinkView,
  networks: readonly NetworkRecord[],
  lanplugParents: ReadonlySet<string>,
): ValidatedNetwork {
  const byIpam = request.addressSpace === DHCP_ADDRESS_SPACE;
  const options = parseNetworkOptions(request.driver, request.options, byIpam);
  const { plan, parentCreated, parentMtu } = resolveParent(options.parent, request.networkId, links, lanplugParents);
  checkParentSharing(request.driver, options.mode, plan.name, networks);
  const mtu = options.mtu;
  if (mtu !== null) checkMtu(mtu, plan, parentMtu, request.ipv6.length > 0);
  if (options.dhcp !== null) checkDhcp(options.mode, plan, request, options.hostAccess);
  if (byIpam) checkDhcpPools(request, networks);
  if (options.slaac !== null) checkSlaac(options.mode, plan, request);
  if (options.mdns && plan.kind === 'private')
    throw invalidArgument(`-o lanplug.mdns=true needs -o parent: the names are answered on the LAN behind it`);
  return {
    spec: {
      networkId: request.networkId,
      mode: options.mode,
      parent: plan,
      mtu,
      // Docker's own drivers treat "no parent" as --internal: nothing leaves the host.
      internal: request.internal || plan.kind === 'private',
      ipv4: request.ipv4,
      ipv6: request.ipv6,
      hostAccess: options.hostAccess ? resolveHostAccess(options.mode, request) : null,
      conflict: options.conflict,
      announce: options.announce,
      // A lanplug-dhcp network asks each family Docker gave it pools of (`--ipv6`; Docker 28's `--ipv4=false`).
      slaac: options.slaac,
      ...(options.mdns ? { mdns: true } : {}),
      dhcp:
        options.dhcp === null
          ? null
          : { ...options.dhcp, ipv4: !byIpam || request.ipv4.length > 0, ipv6: byIpam && request.ipv6.length > 0 },
    },
    parentCreated,
  };
}

/**
 * DHCP needs the LAN's broadcast domain (a parent, layer 2) and must be the
 * only source of IPv4 addresses: Docker's IPAM would hand out its own.
 */
function checkDhcp(mode: LinkMode, plan: ParentPlan, request: CreateNetworkRequest, hostAccess: boolean): void {
  if (request.addressSpace === DHCP_ADDRESS_SPACE) return checkDhcpByIpam(mode, plan, hostAccess);
  if (plan.kind === 'private')
    throw invalidArgument(`-o dhcp=true needs -o parent: the DHCP server is on the LAN behind a parent interface`);
  if (mode.kind === 'ipvlan' && mode.mode !== 'l2')
    throw invalidArgument(
      `-o dhcp=true needs ipvlan_mode=l2: in mode ${mode.mode} the containers get no broadcasts, so no DHCP answers`,
    );
  if (mode.kind === 'macvlan' && mode.mode === 'passthru')
    throw invalidArgument(`-o dhcp=true is not available with macvlan_mode=passthru; use bridge`);
  const docker = request.ipv4.filter((s) => s.pool.prefixLength !== 0 || s.gateway !== null);
  if (docker.length > 0)
    throw invalidArgument(
      `-o dhcp=true takes IPv4 addresses from the LAN's DHCP server; create the network with --ipam-driver null and without --subnet (got ${docker.map((s) => formatPrefix(s.pool)).join(', ')})`,
    );
  if (hostAccess) throw hostAccessWithDhcp();
}

/**
 * `-o ipv6=slaac`: the router's advertisements reach the container only on the LAN's broadcast
 * domain (a parent, layer 2), and they are the only source of its IPv6: an IPv6 pool of any IPAM
 * driver would give it a second address Docker configures and the router knows nothing of.
 */
function checkSlaac(mode: LinkMode, plan: ParentPlan, request: CreateNetworkRequest): void {
  const what = `-o ${OPT_IPV6}=slaac`;
  if (request.cniName !== undefined) throw invalidArgument(`${what} is for Docker networks; CNI has no support yet`);
  if (plan.kind === 'private')
    throw invalidArgument(`${what} needs -o parent: the router that advertises the prefix is on the LAN behind it`);
  if (mode.kind === 'ipvlan' && mode.mode !== 'l2')
    throw invalidArgument(
      `${what} needs ipvlan_mode=l2: in mode ${mode.mode} the router's advertisements do not reach the containers`,
    );
  if (request.internal)
    throw invalidArgument(`${what} takes the LAN router's default route; an --internal network has none`);
  if (request.ipv6.length > 0)
    throw invalidArgument(
      `${what} takes IPv6 from the LAN router's advertisements; create the network without --ipv6 and without an IPv6 --subnet (got ${request.ipv6.map((s) => formatPrefix(s.pool)).join(', ')})`,
    );
}

/** Host access needs the host's own address on the network's subnet; a DHCP network has no subnet of its own. */
export function hostAccessWithDhcp(): Error {
  return invalidArgument(`-o host_access=true needs a --subnet; it is not available with -o dhcp=true yet`);
}

/**
 * `--ipam-driver lanplug-dhcp`: the IPAM driver asks the LAN's server with a
 * link of the container's MAC on the parent, before the container's own link
 * exists; ipvlan links have no MAC of their own to ask with.
 */
function checkDhcpByIpam(mode: LinkMode, plan: ParentPlan, hostAccess: boolean): void {
  const using = `--ipam-driver ${DHCP_IPAM_NAME}`;
  if (plan.kind === 'private')
    throw invalidArgument(`${using} needs -o parent: the DHCP server is on the LAN behind a parent interface`);
  if (mode.kind === 'ipvlan')
    throw invalidArgument(
      `${using} is for lanplug-macvlan networks; for ipvlan use --ipam-driver null -o dhcp=true (IPv4, ipvlan_mode=l2)`,
    );
  if (mode.mode === 'passthru')
    throw invalidArgument(`${using} is not available with macvlan_mode=passthru; use bridge`);
  if (hostAccess) throw invalidArgument(`-o host_access=true is not available with ${using} yet`);
}

/**
 * The IPAM driver finds a lanplug-dhcp network by its pool (RequestAddress
 * names nothing else): two networks on one subnet would be two LANs it
 * could not tell apart.
 */
function checkDhcpPools(request: CreateNetworkRequest, networks: readonly NetworkRecord[]): void {
  for (const subnet of [...request.ipv4, ...request.ipv6]) {
    const other = networks.find(
      (n) =>
        n.spec.networkId !== request.networkId &&
        n.spec.dhcp?.askedBy === 'ipam' &&
        [...n.spec.ipv4, ...n.spec.ipv6].some((s) => formatPrefix(s.pool) === formatPrefix(subnet.pool)),
    );
    if (other !== undefined)
      throw conflict(
        `network ${shortId(other.spec.networkId)} already takes ${formatPrefix(subnet.pool)} from DHCP on ${other.spec.parent.name}; each ${DHCP_IPAM_NAME} network needs its own --subnet`,
      );
  }
}

interface ResolvedParent {
  plan: ParentPlan;
  parentCreated: boolean;
  /** MTU of the parent (or, for a VLAN parent still to be made, of its base); null for private parents. */
  parentMtu: number | null;
}

function resolveParent(
  option: ParentOption,
  networkId: string,
  links: LinkView,
  lanplugParents: ReadonlySet<string>,
): ResolvedParent {
  if (option.kind === 'none') {
    return { plan: { kind: 'private', name: privateParentName(networkId) }, parentCreated: true, parentMtu: null };
  }
  if (option.kind === 'plain') {
    const link = links.getLink(option.name);
    if (link === null) throw invalidArgument(parentNotFound(option.name));
    return { plan: { kind: 'existing', name: option.name }, parentCreated: false, parentMtu: link.mtu };
  }
  const existing = links.getLink(option.name);
  if (existing !== null) {
    // A sub-interface lanplug made stays lanplug's: whichever network is
    // removed last removes it. One the user made is never touched.
    const createdByLanplug = lanplugParents.has(option.name);
    const plan: ParentPlan = createdByLanplug
      ? { kind: 'vlan', name: option.name, base: option.base, vlanId: option.vlanId }
      : { kind: 'existing', name: option.name };
    return { plan, parentCreated: createdByLanplug, parentMtu: existing.mtu };
  }
  const base = links.getLink(option.base);
  if (base === null) throw invalidArgument(parentNotFound(option.base));
  return {
    plan: { kind: 'vlan', name: option.name, base: option.base, vlanId: option.vlanId },
    parentCreated: true,
    parentMtu: base.mtu,
  };
}

/**
 * Sharing rules for one parent, checked against lanplug's own networks:
 * - macvlan passthru hands the whole parent to one network (Docker's wording);
 * - the kernel refuses macvlan and ipvlan links on one parent;
 * - the kernel keeps one ipvlan mode per parent, so ipvlan networks sharing a
 *   parent must agree on mode and flag.
 */
function checkParentSharing(
  driver: CreateNetworkRequest['driver'],
  mode: LinkMode,
  parent: string,
  networks: readonly NetworkRecord[],
): void {
  for (const other of networks) {
    if (other.spec.parent.name !== parent) continue;
    const otherId = shortId(other.spec.networkId);
    const otherMode = other.spec.mode;
    if (mode.kind === 'macvlan' && mode.mode === 'passthru' && otherMode.kind === 'macvlan') {
      throw conflict(
        `cannot use mode passthru, macvlan network ${otherId} is already using parent interface ${parent}`,
      );
    }
    if (otherMode.kind === 'macvlan' && otherMode.mode === 'passthru') {
      throw conflict(`macvlan network ${otherId} is already using parent interface ${parent} in mode passthru`);
    }
    if (otherMode.kind !== mode.kind) {
      throw conflict(
        `${otherMode.kind} network ${otherId} is already using parent interface ${parent}; ` +
          `the kernel cannot hold macvlan and ipvlan links on one parent, so lanplug-${driver} cannot use it`,
      );
    }
    if (
      otherMode.kind === 'ipvlan' &&
      mode.kind === 'ipvlan' &&
      (otherMode.mode !== mode.mode || otherMode.flag !== mode.flag)
    ) {
      throw conflict(
        `ipvlan network ${otherId} is already using parent interface ${parent} in mode ${otherMode.mode} flag ${otherMode.flag}; ` +
          `the kernel keeps one ipvlan mode per parent, so this network must use the same (requested ${mode.mode} flag ${mode.flag})`,
      );
    }
  }
}

function checkMtu(mtu: number, plan: ParentPlan, parentMtu: number | null, ipv6: boolean): void {
  const minimum = ipv6 ? MIN_MTU_IPV6 : MIN_MTU_IPV4;
  if (mtu < minimum) {
    throw invalidArgument(
      `-o ${OPT_MTU}=${mtu} is below the minimum of ${minimum}` + (ipv6 ? ' for a network with IPv6' : ' for IPv4'),
    );
  }
  if (parentMtu === null && mtu > MAX_MTU) {
    throw invalidArgument(`-o ${OPT_MTU}=${mtu} is larger than ${MAX_MTU}, the largest MTU Linux accepts`);
  }
  if (parentMtu !== null && mtu > parentMtu) {
    throw invalidArgument(`-o ${OPT_MTU}=${mtu} is larger than the MTU of parent ${plan.name} (${parentMtu})`);
  }
}

/**
 * Docker may send CreateNetwork again for a network it already gave lanplug
 * (swarm workers do). That is fine when it asks for the same network; a
 * different one under a known id is a conflict that names the first
 * difference. Pure: compares the request's options and pools with the record.
 */
export function replayDifference(request: CreateNetworkRequest, known: NetworkRecord): string | null {
  const spec = known.spec;
  const id = shortId(spec.networkId);
  if (spec.mode.kind !== request.driver) return `network ${id} already exists as a lanplug-${spec.mode.kind} network`;
  const byIpam = request.addressSpace === DHCP_ADDRESS_SPACE;
  const options = parseNetworkOptions(request.driver, request.options, byIpam);
  const differ = (what: string, stored: string, requested: string): string | null =>
    stored === requested
      ? null
      : `network ${id} already exists with ${what} ${stored}; this request has ${what} ${requested}`;
  const parentName = (p: ParentOption): string => (p.kind === 'none' ? '(none)' : p.name);
  const storedParent = spec.parent.kind === 'private' ? '(none)' : spec.parent.name;
  const subnets = (list: readonly Subnet[]): string =>
    list.map((s) => `${formatPrefix(s.pool)}${s.gateway === null ? '' : ` gateway ${s.gateway.text}`}`).join(', ') ||
    '(none)';
  return (
    differ('mode', describeMode(spec.mode), describeMode(options.mode)) ??
    differ('parent', storedParent, parentName(options.parent)) ??
    differ('mtu', String(spec.mtu ?? 'of the parent'), String(options.mtu ?? 'of the parent')) ??
    differ('internal', String(spec.internal), String(request.internal || options.parent.kind === 'none')) ??
    differ('IPv4 subnets', subnets(spec.ipv4), subnets(request.ipv4)) ??
    differ('IPv6 subnets', subnets(spec.ipv6), subnets(request.ipv6)) ??
    differ('host_access', String(spec.hostAccess !== null), String(options.hostAccess)) ??
    differ('ipv6', (spec.slaac ?? null) === null ? '(none)' : 'slaac', options.slaac === null ? '(none)' : 'slaac')
  );
}

function describeMode(mode: LinkMode): string {
  return mode.kind === 'macvlan' ? mode.mode : `${mode.mode} flag ${mode.flag}`;
}

/** Why a mode cannot carry host access: the shim is a sibling of the containers' links on the parent. */
const NO_HOST_ACCESS: Readonly<Record<string, string>> = {
  vepa: 'in vepa mode siblings reach each other only through an external switch that hairpins, so the shim would not reach the containers',
  private: 'in private mode siblings never reach each other, so the shim would not reach the containers',
  passthru: 'in passthru mode the parent belongs to one container, with no room for a shim beside it',
};

/**
 * `-o host_access=true`: the host's addresses come from `--aux-address host=…`
 * (and `host6=…` on a network with IPv6), which also keeps Docker's IPAM from
 * ever giving them to a container. The shim is a sibling of the containers'
 * links, so the mode must let siblings talk: macvlan bridge, ipvlan flag bridge.
 */
function resolveHostAccess(mode: LinkMode, request: CreateNetworkRequest): HostAccess {
  if (mode.kind === 'macvlan' && mode.mode !== 'bridge') {
    throw invalidArgument(`-o host_access=true needs macvlan_mode=bridge: ${NO_HOST_ACCESS[mode.mode] ?? ''}`);
  }
  if (mode.kind === 'ipvlan' && mode.flag !== 'bridge') {
    throw invalidArgument(`-o host_access=true needs ipvlan_flag=bridge: ${NO_HOST_ACCESS[mode.flag] ?? ''}`);
  }
  return { ipv4: hostAddress(request, 4), ipv6: hostAddress(request, 6) };
}

function hostAddress(request: CreateNetworkRequest, family: 4 | 6): IpAddress | null {
  const subnets = family === 4 ? request.ipv4 : request.ipv6;
  const name = family === 4 ? 'host' : 'host6';
  const address = request.auxAddresses.get(name) ?? null;
  if (subnets.length === 0) {
    if (address !== null)
      throw invalidArgument(
        `--aux-address ${name}=${address.text} is given, but the network has no IPv${family} subnet`,
      );
    return null;
  }
  const pools = subnets.map((s) => formatPrefix(s.pool)).join(', ');
  if (address === null) {
    throw invalidArgument(
      `-o host_access=true needs the host's own IPv${family} address on this network: add --aux-address ${name}=<an unused address in ${pools}>` +
        (family === 4 ? '' : ' (IPv6 networks need host6 beside host)'),
    );
  }
  const subnet = subnets.find((s) => prefixContains(s.pool, address));
  if (subnet === undefined || address.family !== family) {
    throw invalidArgument(
      `--aux-address ${name}=${address.text} is not in the network's IPv${family} subnets (${pools})`,
    );
  }
  if (sameAddress(subnet.gateway, address)) {
    throw invalidArgument(
      `--aux-address ${name}=${address.text} is the gateway; the host needs an address of its own on the network`,
    );
  }
  return address;
}
