/**
 * A CNI invocation at the edge: the CNI_* environment and the network
 * configuration on stdin, decoded into typed values or refused with the
 * spec's error code and one line that names the field.
 *
 * The plugin keys are the reference `macvlan`/`ipvlan` plugins' (`master`,
 * `mode`, `mtu`, `mac`) and the IPAM keys the reference `host-local`'s
 * (`subnet`, `rangeStart`, `rangeEnd`, `gateway`, `ranges`, `routes`), so that
 * a conflist written for those works with only its `type` fields changed.
 * They are translated into the Docker driver's option vocabulary and
 * validated by the same code, with the same messages. Unknown keys are
 * refused, as `-o` options are: a typo must not silently mean a default.
 */
import type { AddressRange } from '../../model/ipam';
import type { DriverKind } from '../../model/network';
import {
  addressFromValue,
  formatPrefix,
  networkOf,
  parseAddress,
  parsePrefix,
  prefixContains,
  type IpAddress,
  type IpPrefix,
} from '../../net/address';
import { parseMac } from '../../net/mac';
import {
  DHCP_IPAM_NAME,
  OPT_DHCP,
  OPT_DHCP_TIMEOUT,
  OPT_IPVLAN_FLAG,
  OPT_IPVLAN_MODE,
  OPT_HOST_ACCESS,
  OPT_MACVLAN_MODE,
  OPT_MTU,
  OPT_PARENT,
} from '../../driver/options';
import { checkInterfaceName } from '../../driver/names';
import { usableBounds } from '../../ipam/pool';
import { asObject, type Json, type JsonObject } from '../json';
import { CNI_ERROR, CniError } from './errors';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/** Every version lanplug answers in; results are converted to the one the configuration asks for. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** The `type` of each lanplug main plugin, and the driver behind it. */
export const PLUGIN_TYPES: Readonly<Record<string, DriverKind>> = {
  'lanplug-macvlan': 'macvlan',
  'lanplug-ipvlan': 'ipvlan',
};
/** The IPAM `type` lanplug allocates for (host-local's keys, lanplug's store). */
export const IPAM_TYPE = 'lanplug';
/**
 * The IPAM `type` whose addresses come from the LAN's DHCP server, asked by the daemon (lanplug's main
 * plugins only): the name of the Docker IPAM driver that does the same.
 */
export const DHCP_IPAM_TYPE = DHCP_IPAM_NAME;
/** The reference plugins' DHCP IPAM, which needs its own daemon: named in the message that points to lanplug's. */
const REFERENCE_DHCP_TYPE = 'dhcp';

export interface CniEnvironment {
  command: CniCommand;
  containerId: string | null;
  netns: string | null;
  ifname: string | null;
  /** CNI_ARGS, `K=V;K2=V2`. */
  args: ReadonlyMap<string, string>;
}

export interface CniRoute {
  destination: IpPrefix;
  /** null: via the gateway of the address of the same family. */
  gateway: IpAddress | null;
}

export interface CniIpam {
  /** One address from each set; the ranges of a set are tried in order. */
  rangeSets: AddressRange[][];
  routes: CniRoute[];
  /** `"shared": true`: each set is a pool shared on etcd, as the Docker IPAM driver's of the same subnet and range. */
  shared: boolean;
}

/** A runtime's attachment, as GC lists the ones to keep. */
export interface Attachment {
  containerId: string;
  ifname: string;
}

export interface CniNetworkConfig {
  cniVersion: CniVersion;
  name: string;
  driver: DriverKind;
  /** The configuration in the Docker driver's `-o` vocabulary; no parent when `master` was not given. */
  options: Record<string, string>;
  /** `aux_addresses`, as `--aux-address`: `host` / `host6` are the host's own with `host_access`. */
  auxAddresses: Map<string, IpAddress>;
  mac: string | null;
  /** host-local's ranges; null without them (`dhcp`, or no ipam section). */
  ipam: CniIpam | null;
  /** The ipam section's `routes`, of either ipam type (with `dhcp`, a route without `gw` takes the server's router). */
  routes: CniRoute[];
  /** `"ipam": {"type": "lanplug-dhcp"}`: the address is the LAN's DHCP server's (options carry `dhcp=true`). */
  dhcp: boolean;
  /** With `dhcp`, `"ipv6": true`: an IPv6 address from the LAN's DHCPv6 server too. */
  dhcp6: boolean;
  dns: JsonObject | null;
  /** Addresses the runtime asked for (`runtimeConfig.ips`, `args.cni.ips`, CNI_ARGS `IP=`). */
  requestedIps: IpAddress[];
  prevResult: JsonObject | null;
  /** GC: the attachments to keep; null on every other command. */
  validAttachments: Attachment[] | null;
}

/** Keys a runtime adds to every configuration, beside the plugin's own. */
const RUNTIME_KEYS = ['cniVersion', 'name', 'type', 'runtimeConfig', 'prevResult', 'args', 'capabilities'];
const GC_KEYS = ['cni.dev/valid-attachments', 'cni.dev/attachments'];
const PLUGIN_KEYS: Record<DriverKind, readonly string[]> = {
  macvlan: ['master', 'mode', 'mtu', 'mac', 'ipam', 'dns', 'host_access', 'aux_addresses', 'linkInContainer'],
  ipvlan: ['master', 'mode', 'flag', 'mtu', 'ipam', 'dns', 'host_access', 'aux_addresses', 'linkInContainer'],
};
const DHCP_IPAM_KEYS = ['type', 'timeout', 'ipv6', 'routes'];
const IPAM_KEYS = ['type', 'subnet', 'rangeStart', 'rangeEnd', 'gateway', 'ranges', 'routes', 'dataDir', 'shared'];
const RANGE_KEYS = ['subnet', 'rangeStart', 'rangeEnd', 'gateway'];
/** CNI's container ids: letters, digits, '_', '.', '-' (SPEC.md "Parameters"). */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
/** CNI's network names, same alphabet. */
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function parseEnvironment(env: ReadonlyMap<string, string>): CniEnvironment {
  const command = env.get('CNI_COMMAND');
  if (command === undefined || command === '') throw badEnv('CNI_COMMAND is not set');
  if (!(CNI_COMMANDS as readonly string[]).includes(command))
    throw badEnv(`CNI_COMMAND '${command}' is not one of ${CNI_COMMANDS.join(', ')}`);
  const cmd = command as CniCommand;
  const needsSandbox = cmd === 'ADD' || cmd === 'CHECK' || cmd === 'DEL';
  const get = (key: string, required: boolean): string | null => {
    const value = env.get(key);
    if (value === undefined || value === '') {
      if (required) throw badEnv(`${key} is not set; ${cmd} needs it`);
      return null;
    }
    return value;
  };
  const containerId = get('CNI_CONTAINERID', needsSandbox);
  if (containerId !== null && !CONTAINER_ID.test(containerId))
    throw badEnv(`CNI_CONTAINERID '${containerId.slice(0, 80)}' is not valid: letters, digits, '_', '.', '-'`);
  const netns = get('CNI_NETNS', cmd === 'ADD' || cmd === 'CHECK');
  if (netns !== null && !netns.startsWith('/')) throw badEnv(`CNI_NETNS '${netns}' is not an absolute path`);
  const ifname = get('CNI_IFNAME', needsSandbox);
  if (ifname !== null) {
    try {
      checkInterfaceName(ifname, 'CNI_IFNAME');
    } catch (err) {
      throw badEnv(err instanceof Error ? err.message : String(err));
    }
  }
  return { command: cmd, containerId, netns, ifname, args: parseArgs(env.get('CNI_ARGS') ?? '') };
}

/** CNI_ARGS: `IgnoreUnknown=1;IP=10.0.0.5`; keys lanplug does not use are ignored (runtimes add their own). */
function parseArgs(text: string): Map<string, string> {
  const args = new Map<string, string>();
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw badEnv(`CNI_ARGS entry '${pair.slice(0, 80)}' is not KEY=VALUE`);
    args.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return args;
}

/** The configuration's `cniVersion`, checked before anything else is read (the answer is given in it). */
export function parseVersion(conf: JsonObject): CniVersion {
  const version = conf['cniVersion'];
  if (typeof version !== 'string') throw badConfig('cniVersion must be a string such as "1.0.0"');
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version))
    throw new CniError(
      CNI_ERROR.incompatibleVersion,
      `incompatible CNI version ${version}: lanplug supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  return version as CniVersion;
}

export function parseConfigJson(stdin: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CNI_ERROR.decodingFailure, `network configuration is not valid JSON: ${String(err)}`);
  }
  try {
    return asObject(value, 'network configuration');
  } catch (err) {
    throw new CniError(CNI_ERROR.decodingFailure, err instanceof Error ? err.message : String(err));
  }
}

export function parseNetworkConfig(conf: JsonObject, env: CniEnvironment): CniNetworkConfig {
  const cniVersion = parseVersion(conf);
  const name = stringField(conf, 'name', 'network configuration');
  if (!NETWORK_NAME.test(name))
    throw badConfig(`network name '${name.slice(0, 80)}' is not valid: letters, digits, '_', '.', '-'`);
  const type = stringField(conf, 'type', 'network configuration');
  const driver = PLUGIN_TYPES[type];
  if (driver === undefined)
    throw badConfig(`plugin type '${type}' is not lanplug's; use ${Object.keys(PLUGIN_TYPES).join(' or ')}`);
  const known = [...RUNTIME_KEYS, ...PLUGIN_KEYS[driver], ...(env.command === 'GC' ? GC_KEYS : [])];
  checkKeys(conf, known, `${type} configuration`);
  if (conf['linkInContainer'] === true)
    throw new CniError(CNI_ERROR.unsupportedField, 'linkInContainer is not supported: the parent must be a host link');

  const options = Object.create(null) as Record<string, string>;
  const master = optionalString(conf, 'master', type);
  if (master !== null) options[OPT_PARENT] = master;
  const mode = optionalString(conf, 'mode', type);
  if (mode !== null) options[driver === 'macvlan' ? OPT_MACVLAN_MODE : OPT_IPVLAN_MODE] = mode;
  const flag = optionalString(conf, 'flag', type);
  if (flag !== null) options[OPT_IPVLAN_FLAG] = flag;
  const hostAccess = conf['host_access'];
  if (hostAccess !== undefined && hostAccess !== null && hostAccess !== false) {
    if (hostAccess !== true) throw badConfig(`${type} host_access must be true or false`);
    options[OPT_HOST_ACCESS] = 'true';
  }
  const auxAddresses = new Map<string, IpAddress>();
  for (const [key, value] of Object.entries(objectField(conf, 'aux_addresses'))) {
    if (typeof value !== 'string') throw badConfig(`${type} aux_addresses ${key} must be an address string`);
    auxAddresses.set(
      key,
      asConfig(() => parseAddress(value, `aux_addresses ${key}`)),
    );
  }
  const mtu = conf['mtu'];
  if (mtu !== undefined && mtu !== null && mtu !== 0) {
    if (typeof mtu !== 'number' || !Number.isInteger(mtu)) throw badConfig(`${type} mtu must be a whole number`);
    options[OPT_MTU] = String(mtu);
  }

  const runtime = objectField(conf, 'runtimeConfig');
  const cniArgs = objectField(objectField(conf, 'args'), 'cni');
  const macText =
    optionalString(runtime, 'mac', 'runtimeConfig') ??
    optionalString(cniArgs, 'mac', 'args.cni') ??
    env.args.get('MAC') ??
    optionalString(conf, 'mac', type);
  if (macText !== null && driver === 'ipvlan')
    throw badConfig('ipvlan interfaces do not support custom mac address assignment');
  const mac = macText === null ? null : parseMac(macText);

  const requested = requestedIps(conf, env);
  const dhcp = parseDhcpIpam(conf['ipam']);
  if (dhcp !== null) {
    options[OPT_DHCP] = 'true';
    if (dhcp.timeout !== null) options[OPT_DHCP_TIMEOUT] = dhcp.timeout;
    if (options[OPT_HOST_ACCESS] !== undefined)
      throw badConfig(`${type} host_access is not available with ipam type ${DHCP_IPAM_TYPE} yet`);
    if (requested.length > 0)
      throw badConfig(
        `the DHCP server chooses the address with ipam type ${DHCP_IPAM_TYPE}: asking for ${requested.map((a) => a.text).join(', ')} is not possible (reserve it for the pod on the server instead)`,
      );
  }

  const ipam = dhcp === null ? parseIpam(conf['ipam']) : null;
  return {
    cniVersion,
    name,
    driver,
    options,
    auxAddresses,
    mac,
    ipam,
    routes: dhcp?.routes ?? ipam?.routes ?? [],
    dhcp: dhcp !== null,
    dhcp6: dhcp?.ipv6 ?? false,
    dns: conf['dns'] === undefined || conf['dns'] === null ? null : asConfigObject(conf['dns'], 'dns'),
    requestedIps: requested,
    prevResult:
      conf['prevResult'] === undefined || conf['prevResult'] === null
        ? null
        : asConfigObject(conf['prevResult'], 'prevResult'),
    validAttachments: env.command === 'GC' ? parseAttachments(conf) : null,
  };
}

/** Addresses a runtime asked for: `runtimeConfig.ips`, `args.cni.ips`, CNI_ARGS `IP=` (prefix lengths dropped). */
function requestedIps(conf: JsonObject, env: CniEnvironment): IpAddress[] {
  return [
    ...stringList(objectField(conf, 'runtimeConfig'), 'ips', 'runtimeConfig'),
    ...stringList(objectField(objectField(conf, 'args'), 'cni'), 'ips', 'args.cni'),
    ...(env.args.get('IP')?.split(',') ?? []),
  ].map((text) =>
    asConfig(() => parseAddress(text.includes('/') ? text.slice(0, text.indexOf('/')) : text, 'requested IP')),
  );
}

/** What the `lanplug` IPAM plugin reads when another main plugin delegates to it: the ipam section and the runtime's. */
export interface CniIpamConfig {
  cniVersion: CniVersion;
  name: string;
  ipam: CniIpam;
  dns: JsonObject | null;
  requestedIps: IpAddress[];
  validAttachments: Attachment[] | null;
}

/** True when the configuration's main plugin is another's and its IPAM is lanplug's. */
export function isIpamDelegation(conf: JsonObject): boolean {
  const type = conf['type'];
  const ipam = conf['ipam'];
  return (
    typeof type === 'string' &&
    PLUGIN_TYPES[type] === undefined &&
    typeof ipam === 'object' &&
    ipam !== null &&
    !Array.isArray(ipam) &&
    ipam['type'] === IPAM_TYPE
  );
}

/** The main plugin's own keys are its business: only the ipam section is checked here. */
export function parseIpamConfig(conf: JsonObject, env: CniEnvironment): CniIpamConfig {
  const cniVersion = parseVersion(conf);
  const name = stringField(conf, 'name', 'network configuration');
  if (!NETWORK_NAME.test(name))
    throw badConfig(`network name '${name.slice(0, 80)}' is not valid: letters, digits, '_', '.', '-'`);
  const ipam = parseIpam(conf['ipam']);
  if (ipam === null) throw badConfig('ipam needs a subnet, or ranges');
  if (ipam.shared)
    throw badConfig(
      `ipam shared goes with lanplug's main plugins (${Object.keys(PLUGIN_TYPES).join(', ')}); the ${IPAM_TYPE} IPAM plugin behind another main plugin keeps this node's addresses`,
    );
  return {
    cniVersion,
    name,
    ipam,
    dns: conf['dns'] === undefined || conf['dns'] === null ? null : asConfigObject(conf['dns'], 'dns'),
    requestedIps: requestedIps(conf, env),
    validAttachments: env.command === 'GC' ? parseAttachments(conf) : null,
  };
}

/** `"ipam": {"type": "lanplug-dhcp", "timeout": "10s", "ipv6": true, "routes": […]}`; null for any other ipam section. */
function parseDhcpIpam(value: Json | undefined): { timeout: string | null; ipv6: boolean; routes: CniRoute[] } | null {
  if (value === undefined || value === null) return null;
  const ipam = asConfigObject(value, 'ipam');
  if (ipam['type'] !== DHCP_IPAM_TYPE) return null;
  checkKeys(ipam, DHCP_IPAM_KEYS, 'ipam');
  return {
    timeout: optionalString(ipam, 'timeout', 'ipam'),
    ipv6: optionalBoolean(ipam, 'ipv6', 'ipam'),
    routes: parseRoutes(ipam),
  };
}

/** host-local's `routes`: `{"dst": …, "gw": …}`, `gw` optional. */
function parseRoutes(ipam: JsonObject): CniRoute[] {
  return (ipam['routes'] === undefined ? [] : arrayField(ipam, 'routes', 'ipam')).map((r, i) => {
    const route = asConfigObject(r, `ipam routes[${i}]`);
    checkKeys(route, ['dst', 'gw'], `ipam routes[${i}]`);
    const gw = optionalString(route, 'gw', `ipam routes[${i}]`);
    return {
      destination: networkOf(asConfig(() => parsePrefix(stringField(route, 'dst', `ipam routes[${i}]`), 'route dst'))),
      gateway: gw === null ? null : asConfig(() => parseAddress(gw, 'route gw')),
    };
  });
}

function parseIpam(value: Json | undefined): CniIpam | null {
  if (value === undefined || value === null) return null;
  const ipam = asConfigObject(value, 'ipam');
  if (Object.keys(ipam).length === 0) return null;
  const type = stringField(ipam, 'type', 'ipam');
  if (type === REFERENCE_DHCP_TYPE)
    throw badConfig(
      `ipam type '${REFERENCE_DHCP_TYPE}' is the reference plugin's, which needs its own DHCP daemon; use "${DHCP_IPAM_TYPE}" (lanplug's daemon asks the LAN's server)`,
    );
  if (type !== IPAM_TYPE)
    throw badConfig(
      `ipam type '${type}' is not supported here; use "${IPAM_TYPE}" (it takes host-local's keys) or "${DHCP_IPAM_TYPE}"`,
    );
  checkKeys(ipam, IPAM_KEYS, 'ipam');
  const sets: AddressRange[][] = [];
  if (ipam['subnet'] !== undefined) sets.push([parseRange(ipam, 'ipam')]);
  if (ipam['ranges'] !== undefined) {
    const ranges = ipam['ranges'];
    if (!Array.isArray(ranges)) throw badConfig('ipam ranges must be an array of range sets');
    ranges.forEach((set, i) => {
      if (!Array.isArray(set) || set.length === 0)
        throw badConfig(`ipam ranges[${i}] must be a non-empty array of ranges`);
      sets.push(
        set.map((range, j) => parseRange(asConfigObject(range, `ipam ranges[${i}][${j}]`), `ipam ranges[${i}][${j}]`)),
      );
    });
  }
  if (sets.length === 0) throw badConfig('ipam needs a subnet, or ranges');
  return { rangeSets: sets, routes: parseRoutes(ipam), shared: optionalBoolean(ipam, 'shared', 'ipam') };
}

/** host-local's defaults: the whole subnet but its network (and IPv4 broadcast) address; gateway the first. */
function parseRange(o: JsonObject, what: string): AddressRange {
  checkKeys(o, what === 'ipam' ? IPAM_KEYS : RANGE_KEYS, what);
  const subnet = networkOf(asConfig(() => parsePrefix(stringField(o, 'subnet', what), `${what} subnet`)));
  const family = subnet.address.family;
  const { lowest, highest } = usableBounds(subnet);
  const inside = (key: string, fallback: bigint): IpAddress => {
    const text = optionalString(o, key, what);
    if (text === null) return addressFromValue(family, fallback);
    const address = asConfig(() => parseAddress(text, `${what} ${key}`));
    if (!prefixContains(subnet, address))
      throw badConfig(`${what} ${key} ${address.text} is not inside subnet ${formatPrefix(subnet)}`);
    return address;
  };
  const start = inside('rangeStart', lowest);
  const end = inside('rangeEnd', highest);
  if (start.value > end.value) throw badConfig(`${what} rangeStart ${start.text} is after rangeEnd ${end.text}`);
  return { subnet, start, end, gateway: inside('gateway', lowest) };
}

function parseAttachments(conf: JsonObject): Attachment[] {
  const list = conf['cni.dev/valid-attachments'] ?? conf['cni.dev/attachments'];
  // Without the list every attachment would look stale: refused rather than guessed.
  if (list === undefined || list === null) throw badConfig('GC needs cni.dev/valid-attachments');
  if (!Array.isArray(list)) throw badConfig('cni.dev/valid-attachments must be an array');
  return list.map((entry, i) => {
    const o = asConfigObject(entry, `cni.dev/valid-attachments[${i}]`);
    return {
      containerId: stringField(o, 'containerID', `cni.dev/valid-attachments[${i}]`),
      ifname: stringField(o, 'ifname', `cni.dev/valid-attachments[${i}]`),
    };
  });
}

// ---- field readers: every failure is a configuration error naming the field ----

function checkKeys(o: JsonObject, known: readonly string[], what: string): void {
  for (const key of Object.keys(o)) {
    if (!known.includes(key))
      throw badConfig(`${what}: unknown key '${key.slice(0, 60)}'; known keys: ${known.join(', ')}`);
  }
}

function stringField(o: JsonObject, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') throw badConfig(`${what} ${key} must be a non-empty string`);
  return v;
}

function optionalString(o: JsonObject, key: string, what: string): string | null {
  const v = o[key];
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw badConfig(`${what} ${key} must be a string`);
  return v;
}

function optionalBoolean(o: JsonObject, key: string, what: string): boolean {
  const v = o[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badConfig(`${what} ${key} must be true or false`);
  return v;
}

function objectField(o: JsonObject, key: string): JsonObject {
  const v = o[key];
  return v === undefined || v === null ? {} : asConfigObject(v, key);
}

function arrayField(o: JsonObject, key: string, what: string): Json[] {
  const v = o[key];
  if (!Array.isArray(v)) throw badConfig(`${what} ${key} must be an array`);
  return v;
}

function stringList(o: JsonObject, key: string, what: string): string[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
    throw badConfig(`${what} ${key} must be a list of strings`);
  return v as string[];
}

function asConfigObject(value: Json, what: string): JsonObject {
  return asConfig(() => asObject(value, what));
}

/** Runs a parser of lanplug's and turns its InvalidArgument into CNI's "invalid configuration". */
function asConfig<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw badConfig(err instanceof Error ? err.message : String(err));
  }
}

function badConfig(message: string): CniError {
  return new CniError(CNI_ERROR.invalidConfig, message);
}

function badEnv(message: string): CniError {
  return new CniError(CNI_ERROR.invalidEnvironment, message);
}
