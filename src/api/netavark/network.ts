/**
 * A Podman network at netavark's plugin edge: the network JSON Podman keeps
 * (netavark's `types::Network`) decoded into the attachment vocabulary the
 * CNI front end uses (driver/attach-request.ts), or refused in one line that
 * names the field. The same decoding serves `create` (where the refusal
 * reaches `podman network create`) and `setup` (the network as Podman stored
 * it after create), so a network create accepted is a network setup can use.
 *
 * Options are lanplug's `-o` vocabulary (parent, macvlan_mode, ipvlan_mode,
 * ipvlan_flag, host_access, lanplug.conflict, dhcp, dhcp.timeout, the MTU),
 * plus the names Podman's own macvlan/ipvlan drivers take for the same things
 * (`mode`, `mtu`, `--interface-name` as the parent), so a network written for
 * those works with only its driver changed. Unknown keys are refused, as the
 * Docker driver refuses them.
 */
import { invalidArgument } from '../../errors';
import type { AttachNetwork } from '../../driver/attach-request';
import {
  DHCP_IPAM_NAME,
  OPT_DHCP,
  OPT_HOST_ACCESS,
  OPT_IPVLAN_MODE,
  OPT_MACVLAN_MODE,
  OPT_MTU,
  OPT_PARENT,
  checkKeys,
  parseNetworkOptions,
} from '../../driver/options';
import type { SandboxRoute } from '../../driver/sandbox';
import { DROP_ROUTE_TYPES } from '../../link/ip';
import { hostAccessWithDhcp } from '../../driver/validate';
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
} from '../../net/address';
import { usableBounds } from '../../ipam/pool';
import { asObject, type Json, type JsonObject } from '../json';
import { PLUGIN_TYPES } from '../cni/config';

/** The driver names Podman networks use, one executable each in netavark's plugin directory. */
export const NETAVARK_DRIVERS: Readonly<Record<string, DriverKind>> = PLUGIN_TYPES;
/** `ipam_options.driver` of a network whose addresses lanplug chooses from its subnets (Podman allocates none). */
export const IPAM_RANGES = 'lanplug';
/** ... and of one whose addresses come from the LAN's DHCP server, asked by lanplug's daemon. */
export const IPAM_DHCP = DHCP_IPAM_NAME;
/** What Podman writes when the user named no IPAM driver, or netavark's own DHCP: both mean lanplug's here. */
const PODMAN_HOST_LOCAL = 'host-local';
const PODMAN_DHCP = 'dhcp';
/** netavark 2.0's `route_type` of a route via a gateway (also when absent); the others drop (DROP_ROUTE_TYPES). */
const UNICAST = 'unicast';
/** Podman's own network ids: 64 hex digits. */
const NETWORK_ID = /^[0-9a-f]{64}$/;
/** Podman has no `--aux-address`: the host's addresses for host access are options of their own. */
export const OPT_HOST_ADDRESS = 'host_address';
export const OPT_HOST_ADDRESS6 = 'host_address6';
/** The addresses come from the shared pool on etcd of --subnet and --ip-range, as a Docker network's with `--ipam-driver lanplug`. */
export const OPT_SHARED = 'lanplug.shared';

/** A Podman network, decoded. */
export interface PodmanNetwork {
  name: string;
  id: string;
  driver: DriverKind;
  /** What the attachments are made of (the lanplug network's name is `podman:<name>`). */
  attach: AttachNetwork;
  /** In each container: a default route via each family's gateway, then the network's `--route`s. */
  routes: SandboxRoute[];
  /** The network as `create` answers it: Podman's JSON with lanplug's IPAM named and the gateways filled in. */
  final: JsonObject;
}

/** The lanplug network a Podman network is served as: its own name space, apart from CNI configurations' names. */
export function podmanNetworkName(name: string): string {
  return `podman:${name}`;
}

export function parsePodmanNetwork(value: Json): PodmanNetwork {
  const network = asObject(value, 'network');
  const name = requiredString(network, 'name');
  const id = requiredString(network, 'id');
  if (!NETWORK_ID.test(id)) throw invalidArgument(`network id '${id.slice(0, 80)}' is not 64 hex digits`);
  const driverName = requiredString(network, 'driver');
  const driver = NETAVARK_DRIVERS[driverName];
  if (driver === undefined)
    throw invalidArgument(
      `driver '${driverName}' is not lanplug's; lanplug's are ${Object.keys(NETAVARK_DRIVERS).join(', ')}`,
    );
  if (network['internal'] === true)
    throw invalidArgument(
      'a lanplug network is on the LAN: --internal is not available with its drivers (use a bridge network for that)',
    );
  const options = translateOptions(driver, network);
  // DHCP first: what host access is refused for on it is said before asking for host addresses.
  const dhcp = ipamIsDhcp(network, options);
  if (dhcp) options[OPT_DHCP] = 'true';
  const auxAddresses = hostAddresses(options);
  // An unknown option's message lists lanplug.shared too, though sharedOption took it out.
  checkKeys(driver, options, [OPT_SHARED]);
  const shared = sharedOption(options, dhcp);
  // Every option checked now with the Docker driver's own parser and messages.
  parseNetworkOptions(driver, options);
  const subnets = parseSubnets(network);
  if (!dhcp && subnets.length === 0)
    throw invalidArgument(
      `network ${name} needs --subnet (lanplug chooses each container's address from it), or -o ${OPT_DHCP}=true for addresses from the LAN's DHCP server`,
    );
  for (const family of [4, 6] as const)
    if (subnets.filter((s) => s.subnet.address.family === family).length > 1)
      throw invalidArgument(
        `network ${name} has more than one IPv${family} subnet; lanplug gives one address per family`,
      );
  const routes: SandboxRoute[] = [];
  if (!dhcp)
    for (const s of subnets)
      routes.push({
        destination: parsePrefix(s.subnet.address.family === 4 ? '0.0.0.0/0' : '::/0'),
        gateway: s.gateway,
      });
  routes.push(...parseRoutes(network));
  const final: JsonObject = {
    ...network,
    // Podman's aardvark serves no plugin network: a container must not be told it has a resolver there.
    dns_enabled: false,
    ipam_options: { ...objectField(network, 'ipam_options'), driver: dhcp ? IPAM_DHCP : IPAM_RANGES },
    ...(subnets.length === 0 ? {} : { subnets: withGateways(network, subnets) }),
  };
  return {
    name,
    id,
    driver,
    attach: {
      networkName: podmanNetworkName(name),
      driver,
      options,
      auxAddresses,
      // With DHCP the server chooses: the subnets Podman shows are not handed out from.
      rangeSets: dhcp ? [] : subnets.map((s) => [s]),
      dhcp,
      // `--ipv6` with DHCP: the LAN's DHCPv6 server gives the IPv6 address, as lanplug-dhcp with Docker's --ipv6.
      dhcp6: dhcp && network['ipv6_enabled'] === true,
      shared,
    },
    routes,
    final,
  };
}

/** Podman's option names mapped to lanplug's; lanplug's own pass as they are. */
function translateOptions(driver: DriverKind, network: JsonObject): Record<string, string> {
  const given = objectField(network, 'options');
  const options: Record<string, string> = {};
  for (const [key, value] of Object.entries(given)) {
    if (typeof value !== 'string') throw invalidArgument(`option ${key.slice(0, 60)} must be a string`);
    const lanplugKey =
      key === 'mode' ? (driver === 'macvlan' ? OPT_MACVLAN_MODE : OPT_IPVLAN_MODE) : key === 'mtu' ? OPT_MTU : key;
    if (options[lanplugKey] !== undefined && options[lanplugKey] !== value)
      throw invalidArgument(`options ${key} and ${lanplugKey} say different things; give one`);
    options[lanplugKey] = value;
  }
  const iface = network['network_interface'];
  if (typeof iface === 'string' && iface !== '') {
    if (options[OPT_PARENT] !== undefined && options[OPT_PARENT] !== iface)
      throw invalidArgument(`--interface-name ${iface} and -o ${OPT_PARENT}=${options[OPT_PARENT]} differ; give one`);
    options[OPT_PARENT] = iface;
  }
  if (options[OPT_PARENT] === undefined)
    throw invalidArgument(`-o ${OPT_PARENT}=<the host's LAN interface> is required, such as -o ${OPT_PARENT}=eth0`);
  return options;
}

/**
 * `-o host_address=` and `-o host_address6=`: the host's own addresses for `-o host_access=true`
 * (Docker's `--aux-address host=…`, which Podman has no flag for). Taken out of the options.
 */
function hostAddresses(options: Record<string, string>): Map<string, IpAddress> {
  if (options[OPT_HOST_ACCESS] === 'true' && options[OPT_DHCP] === 'true') throw hostAccessWithDhcp();
  const aux = new Map<string, IpAddress>();
  for (const [option, name] of [
    [OPT_HOST_ADDRESS, 'host'],
    [OPT_HOST_ADDRESS6, 'host6'],
  ] as const) {
    const text = options[option];
    if (text === undefined) continue;
    delete options[option];
    if (options[OPT_HOST_ACCESS] !== 'true') throw invalidArgument(`-o ${option} is for -o ${OPT_HOST_ACCESS}=true`);
    aux.set(name, parseAddress(text, `-o ${option}`));
  }
  if (options[OPT_HOST_ACCESS] === 'true' && !aux.has('host') && options[OPT_DHCP] !== 'true')
    throw invalidArgument(
      `-o ${OPT_HOST_ACCESS}=true needs the host's own address on this network: add -o ${OPT_HOST_ADDRESS}=<an unused address of the subnet> (and -o ${OPT_HOST_ADDRESS6}= with an IPv6 subnet)`,
    );
  return aux;
}

/** `-o lanplug.shared=true|false`, taken out of the options (the network driver has no such option). */
function sharedOption(options: Record<string, string>, dhcp: boolean): boolean {
  const text = options[OPT_SHARED];
  if (text === undefined) return false;
  delete options[OPT_SHARED];
  if (text !== 'true' && text !== 'false')
    throw invalidArgument(`-o ${OPT_SHARED} must be true or false, not '${text.slice(0, 40)}'`);
  if (text === 'true' && dhcp)
    throw invalidArgument(
      `-o ${OPT_SHARED}=true is for addresses from --subnet; with DHCP the LAN's server chooses them`,
    );
  return text === 'true';
}

/** `--ipam-driver`: none given (Podman's host-local), lanplug's, or DHCP (netavark's name or lanplug's). */
function ipamIsDhcp(network: JsonObject, options: Readonly<Record<string, string>>): boolean {
  const driver = objectField(network, 'ipam_options')['driver'];
  if (
    driver === undefined ||
    driver === null ||
    driver === '' ||
    driver === PODMAN_HOST_LOCAL ||
    driver === IPAM_RANGES
  )
    return options[OPT_DHCP] === 'true';
  if (driver === PODMAN_DHCP || driver === IPAM_DHCP) return true;
  throw invalidArgument(
    `--ipam-driver ${typeof driver === 'string' ? driver.slice(0, 40) : '(not a string)'} is not available with lanplug's drivers; leave it out (lanplug chooses from --subnet) or use ${PODMAN_DHCP}`,
  );
}

/** `--subnet`, `--gateway`, `--ip-range` as Podman writes them; the gateway defaults to the first address. */
function parseSubnets(network: JsonObject): AddressRange[] {
  const list = network['subnets'];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw invalidArgument('subnets must be a list');
  return list.map((entry, i) => {
    const o = asObject(entry, `subnets[${i}]`);
    const subnet = networkOf(parsePrefix(requiredString(o, 'subnet', `subnets[${i}]`), 'subnet'));
    const family = subnet.address.family;
    const { lowest, highest } = usableBounds(subnet);
    const inside = (text: string, what: string): IpAddress => {
      const address = parseAddress(text, what);
      if (!prefixContains(subnet, address))
        throw invalidArgument(`${what} ${address.text} is not inside subnet ${formatPrefix(subnet)}`);
      return address;
    };
    const gatewayText = optionalString(o, 'gateway');
    const gateway = gatewayText === null ? addressFromValue(family, lowest) : inside(gatewayText, '--gateway');
    const lease = o['lease_range'];
    let start = addressFromValue(family, lowest);
    let end = addressFromValue(family, highest);
    if (lease !== undefined && lease !== null) {
      const range = asObject(lease, `subnets[${i}].lease_range`);
      const startText = optionalString(range, 'start_ip');
      const endText = optionalString(range, 'end_ip');
      if (startText !== null) start = inside(startText, '--ip-range start');
      if (endText !== null) end = inside(endText, '--ip-range end');
      if (start.value > end.value)
        throw invalidArgument(`--ip-range starts at ${start.text}, after its end ${end.text}`);
    }
    return { subnet, start, end, gateway };
  });
}

/** Podman's subnet entries as given, each with the gateway lanplug routes through (the first address when none was given). */
function withGateways(network: JsonObject, ranges: readonly AddressRange[]): Json[] {
  const list = network['subnets'] as Json[];
  return list.map((entry, i) => ({ ...asObject(entry, `subnets[${i}]`), gateway: ranges[i]?.gateway.text ?? null }));
}

/**
 * `--route destination,gateway[,metric]`, and netavark 2.0's `--route destination,type[,metric]`
 * whose `route_type` blackhole, unreachable or prohibit makes a route in the container that drops
 * what it matches (no gateway: netavark passes these to a plugin at create and at setup, and makes
 * them itself for its own drivers). The metric is the kernel default here.
 */
function parseRoutes(network: JsonObject): SandboxRoute[] {
  const list = network['routes'];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw invalidArgument('routes must be a list');
  return list.map((entry, i) => {
    const o = asObject(entry, `routes[${i}]`);
    const destination = networkOf(parsePrefix(requiredString(o, 'destination', `routes[${i}]`), '--route destination'));
    const type = optionalString(o, 'route_type') ?? UNICAST;
    const gateway = optionalString(o, 'gateway');
    if (type === UNICAST) {
      if (gateway === null) throw invalidArgument(`--route ${formatPrefix(destination)} needs a gateway`);
      return { destination, gateway: parseAddress(gateway, '--route gateway') };
    }
    const drop = DROP_ROUTE_TYPES.find((t) => t === type);
    if (drop === undefined)
      throw invalidArgument(
        `--route ${formatPrefix(destination)} of type ${type.slice(0, 20)}: the types are ${[UNICAST, ...DROP_ROUTE_TYPES].join(', ')}`,
      );
    if (gateway !== null)
      throw invalidArgument(
        `--route ${formatPrefix(destination)} of type ${drop} drops what it matches: give it no gateway (${gateway.slice(0, 40)})`,
      );
    return { destination, gateway: null, drop };
  });
}

function requiredString(o: JsonObject, key: string, what = 'network'): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') throw invalidArgument(`${what} ${key} must be a non-empty string`);
  return v;
}

function optionalString(o: JsonObject, key: string): string | null {
  const v = o[key];
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw invalidArgument(`${key} must be a string`);
  return v;
}

function objectField(o: JsonObject, key: string): JsonObject {
  const v = o[key];
  return v === undefined || v === null ? {} : asObject(v, key);
}
