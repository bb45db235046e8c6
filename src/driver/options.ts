/**
 * Pure parsers for the `-o key=value` options of `docker network create`.
 * No kernel, no store: these only read strings. Every message names the
 * option, the value and what would have been accepted.
 *
 * Docker's own drivers ignore keys they do not know, so a typo such as
 * `macvlan_mod=private` silently yields bridge mode. lanplug refuses unknown
 * keys instead. Keys in Docker's own `com.docker.network.` namespace are
 * accepted (Docker and other tools set them); the MTU one is honoured.
 */
import { invalidArgument } from '../errors';
import { IPVLAN_FLAGS, IPVLAN_MODES, isIpvlanFlag, isIpvlanMode } from '../link/ipvlan';
import { isMacvlanMode, MACVLAN_MODES } from '../link/macvlan';
import { isVlanId, VLAN_ID_MAX, VLAN_ID_MIN } from '../link/vlan';
import type { AnnouncePolicy, ConflictPolicy, DhcpPolicy, DriverKind, LinkMode, SlaacPolicy } from '../model/network';
import { checkInterfaceName } from './names';

export const OPT_PARENT = 'parent';
export const OPT_MACVLAN_MODE = 'macvlan_mode';
export const OPT_IPVLAN_MODE = 'ipvlan_mode';
export const OPT_IPVLAN_FLAG = 'ipvlan_flag';
export const OPT_MTU = 'com.docker.network.driver.mtu';
export const OPT_HOST_ACCESS = 'host_access';
export const OPT_CONFLICT = 'lanplug.conflict';
export const OPT_DHCP = 'dhcp';
export const OPT_DHCP_TIMEOUT = 'dhcp.timeout';
/** `-o ipv6=slaac`: IPv6 from the LAN router's advertisements (the only value so far). */
export const OPT_IPV6 = 'ipv6';
export const OPT_IPV6_RT_INFO_MAX_PLEN = 'ipv6.rt_info_max_plen';
/** `-o lanplug.mdns=true`: lanplug answers `<name>.local` for the network's named containers (src/mdns/). */
export const OPT_MDNS = 'lanplug.mdns';
/** The IPAM driver whose addresses come from the LAN's DHCP servers: `--ipam-driver lanplug-dhcp`. */
export const DHCP_IPAM_NAME = 'lanplug-dhcp';
/** Its address space: how the network driver tells its pools from any other IPAM driver's. */
export const DHCP_ADDRESS_SPACE = 'LanplugDhcp';
/** Per-endpoint (`--driver-opt`, compose `driver_opts`): option 12; the identity's keys are driver/identity.ts's. */
export const OPT_ENDPOINT_HOSTNAME = 'lanplug.dhcp.hostname';
/** Docker's plugin timeout is 30 s; what a DHCP server may take stays well inside it. */
const DHCP_TIMEOUT_MAX_S = 25;
/** Docker's own (≥ 28) announcement knobs; lanplug honours them so that one option rules both. */
export const OPT_ANNOUNCE_COUNT = 'com.docker.network.advertise_addr_nmsgs';
export const OPT_ANNOUNCE_INTERVAL = 'com.docker.network.advertise_addr_ms';
const DOCKER_NAMESPACE = 'com.docker.network.';

const ACCEPTED_KEYS: Record<DriverKind, readonly string[]> = {
  macvlan: [
    OPT_PARENT,
    OPT_MACVLAN_MODE,
    OPT_MTU,
    OPT_HOST_ACCESS,
    OPT_CONFLICT,
    OPT_DHCP,
    OPT_DHCP_TIMEOUT,
    OPT_IPV6,
    OPT_IPV6_RT_INFO_MAX_PLEN,
    OPT_MDNS,
  ],
  ipvlan: [
    OPT_PARENT,
    OPT_IPVLAN_MODE,
    OPT_IPVLAN_FLAG,
    OPT_MTU,
    OPT_HOST_ACCESS,
    OPT_CONFLICT,
    OPT_DHCP,
    OPT_DHCP_TIMEOUT,
    OPT_IPV6,
    OPT_IPV6_RT_INFO_MAX_PLEN,
    OPT_MDNS,
  ],
};

/** A parent as the user wrote it, before the kernel is asked about it. */
export type ParentOption =
  { kind: 'none' } | { kind: 'plain'; name: string } | { kind: 'vlan'; name: string; base: string; vlanId: number };

export interface ParsedOptions {
  mode: LinkMode;
  parent: ParentOption;
  mtu: number | null;
  /** `-o host_access=true`: the Docker host reaches the network's containers through a shim. */
  hostAccess: boolean;
  /** `-o lanplug.conflict=`: what to do with an address the LAN already uses. */
  conflict: ConflictPolicy;
  announce: AnnouncePolicy;
  /** `-o dhcp=true`, with `-o dhcp.timeout=`; null without. */
  dhcp: DhcpPolicy | null;
  /** `-o ipv6=slaac`, with `-o ipv6.rt_info_max_plen=`; null without. */
  slaac: SlaacPolicy | null;
  /** `-o lanplug.mdns=true`: `<name>.local` answered over mDNS. */
  mdns: boolean;
}

/**
 * `dhcpByIpam`: the network's pools are the lanplug-dhcp IPAM driver's, so its
 * addresses come from DHCP whatever `-o dhcp` says.
 */
export function parseNetworkOptions(
  driver: DriverKind,
  options: Readonly<Record<string, string>>,
  dhcpByIpam = false,
): ParsedOptions {
  checkKeys(driver, options);
  return {
    mode: driver === 'macvlan' ? parseMacvlanMode(options[OPT_MACVLAN_MODE]) : parseIpvlanMode(options),
    parent: parseParent(options[OPT_PARENT]),
    mtu: parseMtu(options[OPT_MTU]),
    hostAccess: parseBoolean(OPT_HOST_ACCESS, options[OPT_HOST_ACCESS]),
    conflict: parseConflict(options[OPT_CONFLICT]),
    announce: {
      count: parseWhole(OPT_ANNOUNCE_COUNT, options[OPT_ANNOUNCE_COUNT], 0, 3, 3),
      intervalMs: parseWhole(OPT_ANNOUNCE_INTERVAL, options[OPT_ANNOUNCE_INTERVAL], 100, 2000, 1000),
    },
    dhcp: parseDhcp(options, dhcpByIpam),
    slaac: parseSlaac(options),
    mdns: parseMdns(driver, options),
  };
}

/**
 * `-o lanplug.mdns=true`, macvlan only: the answers go out on the LAN eye, lanplug's own macvlan beside the
 * containers. Without one (passthru; ipvlan, whose only link on the LAN is the parent) lanplug would have to
 * read every IPv4 frame of the host's own interface to hear the queries.
 */
function parseMdns(driver: DriverKind, options: Readonly<Record<string, string>>): boolean {
  const on = parseBoolean(OPT_MDNS, options[OPT_MDNS]);
  if (on && driver === 'ipvlan')
    throw invalidArgument(
      `-o ${OPT_MDNS}=true is for lanplug-macvlan networks: on ipvlan lanplug's only link on the LAN is the parent, and it does not read the host's own traffic`,
    );
  if (on && options[OPT_MACVLAN_MODE] === 'passthru')
    throw invalidArgument(
      `-o ${OPT_MDNS}=true needs a macvlan mode with lanplug's own link beside the containers (bridge, vepa, private), not passthru`,
    );
  return on;
}

/** `-o ipv6=slaac`; the route information option's limit means nothing without it. */
function parseSlaac(options: Readonly<Record<string, string>>): SlaacPolicy | null {
  const how = options[OPT_IPV6];
  const plenText = options[OPT_IPV6_RT_INFO_MAX_PLEN];
  if (how === undefined || how === '') {
    if (plenText !== undefined) throw invalidArgument(`-o ${OPT_IPV6_RT_INFO_MAX_PLEN} needs -o ${OPT_IPV6}=slaac`);
    return null;
  }
  if (how !== 'slaac')
    throw invalidArgument(
      `-o ${OPT_IPV6}=${how} is not valid; accepted: slaac (for IPv6 from Docker's IPAM use --ipv6 --subnet, from DHCPv6 --ipam-driver ${DHCP_IPAM_NAME} --ipv6)`,
    );
  return { rtInfoMaxPlen: parseWhole(OPT_IPV6_RT_INFO_MAX_PLEN, plenText, 0, 128, 0) };
}

/** IPv6 is decided by the caller for a lanplug-dhcp network (`--ipv6`); `-o dhcp=true` is IPv4 only. */
function parseDhcp(options: Readonly<Record<string, string>>, byIpam: boolean): DhcpPolicy | null {
  const timeoutText = options[OPT_DHCP_TIMEOUT];
  const asked = parseBoolean(OPT_DHCP, options[OPT_DHCP]);
  if (byIpam && asked)
    throw invalidArgument(
      `-o ${OPT_DHCP}=true is for --ipam-driver null; with --ipam-driver ${DHCP_IPAM_NAME} the addresses come from DHCP already, leave it out`,
    );
  if (!asked && !byIpam) {
    if (timeoutText !== undefined) throw invalidArgument(`-o ${OPT_DHCP_TIMEOUT} needs -o ${OPT_DHCP}=true`);
    return null;
  }
  const askedBy = byIpam ? 'ipam' : 'driver';
  if (timeoutText === undefined || timeoutText === '') return { ipv4: true, ipv6: false, timeoutMs: 10_000, askedBy };
  const match = /^(\d{1,2})s?$/.exec(timeoutText);
  const seconds = match === null ? NaN : Number(match[1]);
  if (!(seconds >= 1 && seconds <= DHCP_TIMEOUT_MAX_S))
    throw invalidArgument(
      `-o ${OPT_DHCP_TIMEOUT}=${timeoutText} is not valid; expected seconds from 1 to ${DHCP_TIMEOUT_MAX_S}, such as 10s (Docker gives a plugin 30 s)`,
    );
  return { ipv4: true, ipv6: false, timeoutMs: seconds * 1000, askedBy };
}

/** A DHCP client id or hostname a user gave per endpoint: printable, no spaces, at most 63 bytes. */
export function parseEndpointLabel(key: string, value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/.test(value))
    throw invalidArgument(
      `--driver-opt ${key}=${value} is not valid; expected 1-63 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
    );
  return value;
}

const CONFLICT_POLICIES: readonly ConflictPolicy[] = ['refuse', 'warn', 'off'];

function parseConflict(value: string | undefined): ConflictPolicy {
  if (value === undefined || value === '') return 'refuse';
  const policy = CONFLICT_POLICIES.find((p) => p === value);
  if (policy === undefined)
    throw invalidArgument(`-o ${OPT_CONFLICT}=${value} is not valid; accepted: ${CONFLICT_POLICIES.join(', ')}`);
  return policy;
}

/** A whole number within Docker's documented range for the option, or its default when absent. */
function parseWhole(key: string, value: string | undefined, min: number, max: number, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!/^\d{1,6}$/.test(value) || n < min || n > max)
    throw invalidArgument(`-o ${key}=${value} is not valid; expected a whole number from ${min} to ${max}`);
  return n;
}

/** Refuses an option the driver does not know; `alsoAccepted`: a front end's own (named in the message too). */
export function checkKeys(
  driver: DriverKind,
  options: Readonly<Record<string, string>>,
  alsoAccepted: readonly string[] = [],
): void {
  const accepted = [...ACCEPTED_KEYS[driver], ...alsoAccepted];
  for (const key of Object.keys(options)) {
    if (accepted.includes(key) || key.startsWith(DOCKER_NAMESPACE)) continue;
    throw invalidArgument(`unknown option '${key}' for lanplug-${driver}; accepted options: ${accepted.join(', ')}`);
  }
}

function parseMacvlanMode(value: string | undefined): LinkMode {
  if (value === undefined || value === '') return { kind: 'macvlan', mode: 'bridge' };
  if (!isMacvlanMode(value)) {
    throw invalidArgument(
      `requested macvlan mode '${value}' is not valid, 'bridge' mode is the macvlan driver default; accepted: ${MACVLAN_MODES.join(', ')}`,
    );
  }
  return { kind: 'macvlan', mode: value };
}

function parseIpvlanMode(options: Readonly<Record<string, string>>): LinkMode {
  const modeText = options[OPT_IPVLAN_MODE];
  const flagText = options[OPT_IPVLAN_FLAG];
  const mode = modeText === undefined || modeText === '' ? 'l2' : isIpvlanMode(modeText) ? modeText : undefined;
  if (mode === undefined) {
    throw invalidArgument(
      `requested ipvlan mode '${modeText}' is not valid, 'l2' mode is the ipvlan driver default; accepted: ${IPVLAN_MODES.join(', ')}`,
    );
  }
  const flag = flagText === undefined || flagText === '' ? 'bridge' : isIpvlanFlag(flagText) ? flagText : undefined;
  if (flag === undefined) {
    throw invalidArgument(
      `requested ipvlan flag '${flagText}' is not valid, 'bridge' is the ipvlan driver default; accepted: ${IPVLAN_FLAGS.join(', ')}`,
    );
  }
  return { kind: 'ipvlan', mode, flag };
}

/**
 * `eth0` -> plain; `eth0.50` -> 802.1Q sub-interface 50 of eth0 (Docker's
 * convention: a dot in the parent name means "VLAN sub-interface").
 */
export function parseParent(value: string | undefined): ParentOption {
  if (value === undefined) return { kind: 'none' };
  if (value === '') throw invalidArgument(`-o parent is empty; expected an interface name such as -o parent=eth0`);
  // Bounds the whole name (a VLAN parent `base.id` included) to 15 bytes.
  checkInterfaceName(value, '-o parent interface name');
  if (value === 'lo') {
    throw invalidArgument(
      `-o parent=lo is the loopback interface, which cannot carry macvlan or ipvlan links; use an Ethernet interface such as eth0`,
    );
  }
  if (!value.includes('.')) return { kind: 'plain', name: value };

  const parts = value.split('.');
  const [base, idText] = parts;
  if (parts.length !== 2 || base === undefined || base === '' || idText === undefined || !/^\d+$/.test(idText)) {
    throw invalidArgument(
      `required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead received ${value}`,
    );
  }
  const vlanId = Number(idText);
  if (!isVlanId(vlanId))
    throw invalidArgument(`vlan id must be between ${VLAN_ID_MIN}-${VLAN_ID_MAX}, received: ${idText}`);
  return { kind: 'vlan', name: value, base, vlanId };
}

/** Docker's wording, used wherever a named parent (or a VLAN parent's base) is missing. */
export function parentNotFound(name: string): string {
  return `-o parent interface was not found on the host: ${name}`;
}

export function parseMtu(value: string | undefined): number | null {
  if (value === undefined || value === '') return null;
  if (!/^\d{1,6}$/.test(value)) {
    throw invalidArgument(`-o ${OPT_MTU}=${value} is not valid; expected a whole number such as 1500`);
  }
  return Number(value);
}

/** `true`/`false` (absent or empty: false); anything else is refused rather than guessed. */
export function parseBoolean(key: string, value: string | undefined): boolean {
  if (value === undefined || value === '' || value === 'false') return false;
  if (value === 'true') return true;
  throw invalidArgument(`-o ${key}=${value} is not valid; expected true or false`);
}
