/**
 * libnetwork's remote driver API, as Docker speaks it (field names as on the
 * wire), and the translation from those JSON bodies into the driver's typed
 * requests. The API is documented in moby's libnetwork docs/remote.md.
 */
import type {
  CreateEndpointRequest,
  CreateEndpointResult,
  CreateNetworkRequest,
  EndpointRef,
  JoinRef,
  JoinResult,
} from '../../driver/requests';
import type { DriverKind, Subnet } from '../../model/network';
import { formatPrefix, parseAddress, parsePrefix, type IpAddress } from '../../net/address';
import { invalidArgument } from '../../errors';
import {
  asObject,
  optionalArray,
  optionalBoolean,
  optionalObject,
  optionalString,
  requiredString,
  stringMap,
  type JsonObject,
} from './decode';

/** Network option keys Docker puts beside the user's `-o` options. */
export const GENERIC_OPTIONS = 'com.docker.network.generic';
export const INTERNAL = 'com.docker.network.internal';

/** GwAllocCheck (Docker 28+): the network's options, before it is created; only whether it is internal matters. */
export function decodeGwAllocCheck(body: JsonObject): { internal: boolean } {
  const options = optionalObject(body, 'Options');
  const generic = optionalObject(options, GENERIC_OPTIONS);
  return { internal: optionalBoolean(options, INTERNAL) || generic[INTERNAL] === 'true' };
}

export function decodeCreateNetwork(driver: DriverKind, body: JsonObject): CreateNetworkRequest {
  const options = optionalObject(body, 'Options');
  const generic = optionalObject(options, GENERIC_OPTIONS);
  const ipv4Data = optionalArray(body, 'IPv4Data');
  const ipv6Data = optionalArray(body, 'IPv6Data');
  return {
    networkId: requiredString(body, 'NetworkID'),
    driver,
    options: stringMap(generic, 'option'),
    ipv4: ipv4Data.map((d) => decodeIpamData(d, 'IPv4Data')),
    ipv6: ipv6Data.map((d) => decodeIpamData(d, 'IPv6Data')),
    auxAddresses: decodeAuxAddresses([...ipv4Data, ...ipv6Data]),
    // Docker 20.10 sends internal as a top-level option; some callers put it among the generic ones.
    internal: optionalBoolean(options, INTERNAL) || generic[INTERNAL] === 'true',
    // Docker 28's --ipv4=false sends no IPv4 pools: the IPv6 ones tell then.
    ...addressSpaceOf([...ipv4Data, ...ipv6Data]),
  };
}

/** Every pool of a network is from one IPAM driver: the first one's address space tells which. */
function addressSpaceOf(data: readonly unknown[]): { addressSpace?: string } {
  const [first] = data;
  const space = first === undefined ? null : optionalString(asObject(first, 'IPAM data'), 'AddressSpace');
  return space === null ? {} : { addressSpace: space };
}

/** `"AuxAddresses":{"host":"172.16.86.254/24"}` of every subnet -> name -> bare address. */
function decodeAuxAddresses(data: readonly unknown[]): Map<string, IpAddress> {
  const out = new Map<string, IpAddress>();
  for (const item of data) {
    const aux = optionalObject(asObject(item, 'IPAM data'), 'AuxAddresses');
    for (const [name, value] of Object.entries(aux)) {
      if (typeof value !== 'string') throw invalidArgument(`aux address ${name} must be a string`);
      out.set(
        name,
        value.includes('/')
          ? parsePrefix(value, `aux address ${name}`).address
          : parseAddress(value, `aux address ${name}`),
      );
    }
  }
  return out;
}

/** `{"Pool":"172.16.86.0/24","Gateway":"172.16.86.1/24","AuxAddresses":{…}}` -> Subnet. */
function decodeIpamData(value: unknown, what: string): Subnet {
  const data = asObject(value, what);
  const pool = parsePrefix(requiredString(data, 'Pool'), `${what} Pool`);
  const gatewayText = optionalString(data, 'Gateway');
  // The gateway arrives as a CIDR ("172.16.86.1/24"); the bare address is what a container uses.
  const gateway =
    gatewayText === null
      ? null
      : gatewayText.includes('/')
        ? parsePrefix(gatewayText, `${what} Gateway`).address
        : parseAddress(gatewayText, `${what} Gateway`);
  return { pool, gateway };
}

export function decodeCreateEndpoint(body: JsonObject): CreateEndpointRequest {
  const iface = optionalObject(body, 'Interface');
  const v4 = optionalString(iface, 'Address');
  const v6 = optionalString(iface, 'AddressIPv6');
  return {
    networkId: requiredString(body, 'NetworkID'),
    endpointId: requiredString(body, 'EndpointID'),
    ipv4: v4 === null ? null : parsePrefix(v4, 'Interface Address'),
    ipv6: v6 === null ? null : parsePrefix(v6, 'Interface AddressIPv6'),
    mac: optionalString(iface, 'MacAddress'),
    endpointOptions: endpointOptions(optionalObject(body, 'Options')),
  };
}

/** The string-valued per-endpoint options; Docker's own keys (ports, MAC as base64) are not lanplug's. */
function endpointOptions(options: JsonObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(options)) {
    if (typeof value === 'string' && !name.startsWith('com.docker.')) out[name] = value;
  }
  return out;
}

export function decodeJoin(body: JsonObject): JoinRef {
  return { ...decodeEndpointRef(body), sandboxKey: optionalString(body, 'SandboxKey') };
}

export function decodeEndpointRef(body: JsonObject): EndpointRef {
  return { networkId: requiredString(body, 'NetworkID'), endpointId: requiredString(body, 'EndpointID') };
}

export function decodeNetworkRef(body: JsonObject): string {
  return requiredString(body, 'NetworkID');
}

// ---- responses ----

/** CreateEndpoint may only fill fields that were empty in the request: the MAC and address lanplug chose. */
export function encodeCreateEndpoint(result: CreateEndpointResult): JsonObject {
  const iface: JsonObject = {};
  if (result.assignedMac !== null) iface['MacAddress'] = result.assignedMac;
  if (result.assignedIpv4 !== undefined) iface['Address'] = formatPrefix(result.assignedIpv4);
  if (result.assignedIpv6 !== undefined) iface['AddressIPv6'] = formatPrefix(result.assignedIpv6);
  return { Interface: Object.keys(iface).length === 0 ? null : iface };
}

export function encodeJoin(result: JoinResult): JsonObject {
  const response: JsonObject = {
    InterfaceName: { SrcName: result.linkName, DstPrefix: 'eth' },
    // Without this, Docker attaches docker_gwbridge to a network that has no gateway.
    DisableGatewayService: true,
  };
  if (result.gatewayIpv4 !== null) response['Gateway'] = result.gatewayIpv4.text;
  if (result.gatewayIpv6 !== null) response['GatewayIPv6'] = result.gatewayIpv6.text;
  if (result.staticRoutes.length > 0) {
    response['StaticRoutes'] = result.staticRoutes.map((route) => ({
      Destination: formatPrefix(route.destination),
      // libnetwork's types.NEXTHOP = 0, types.CONNECTED = 1
      RouteType: route.kind === 'connected' ? 1 : 0,
      ...(route.nextHop === null ? {} : { NextHop: route.nextHop.text }),
    }));
  }
  return response;
}

export function encodeEndpointOperInfo(endpoint: { linkName: string; mac: string | null } | null): JsonObject {
  if (endpoint === null) return { Value: {} };
  const value: JsonObject = { 'com.lanplug.link': endpoint.linkName };
  if (endpoint.mac !== null) value['com.docker.network.endpoint.macaddress'] = endpoint.mac;
  return { Value: value };
}
