/**
 * CNI results on the wire, in the version the configuration asked for.
 * 1.x results are the spec's current shape; 0.3.x and 0.4.0 also carry
 * `version` ("4"/"6") on each address, which 1.0.0 removed.
 */
import type { IpAddress, IpPrefix } from '../../net/address';
import { formatPrefix } from '../../net/address';
import type { Json, JsonObject } from '../json';
import { SUPPORTED_VERSIONS, type CniVersion } from './config';

/** What an ADD made, in lanplug's values. */
export interface AttachResult {
  /** null for an IPAM plugin's result: no interfaces, and no `interface` index on the addresses. */
  interface: { name: string; mac: string; sandbox: string } | null;
  addresses: { address: IpPrefix; gateway: IpAddress | null }[];
  routes: { destination: IpPrefix; gateway: IpAddress | null }[];
  dns: JsonObject | null;
}

export function encodeResult(result: AttachResult, version: CniVersion): JsonObject {
  const legacy = version.startsWith('0.');
  const ips: Json[] = result.addresses.map(({ address, gateway }) => ({
    ...(legacy ? { version: String(address.address.family) } : {}),
    address: formatPrefix(address),
    ...(gateway === null ? {} : { gateway: gateway.text }),
    ...(result.interface === null ? {} : { interface: 0 }),
  }));
  const routes: Json[] = result.routes.map(({ destination, gateway }) => ({
    dst: formatPrefix(destination),
    ...(gateway === null ? {} : { gw: gateway.text }),
  }));
  return {
    cniVersion: version,
    ...(result.interface === null ? {} : { interfaces: [{ ...result.interface }] }),
    ips,
    routes,
    dns: result.dns ?? {},
  };
}

/** VERSION's answer; needs no daemon, so the executable gives it too (native/cni-shim.c keeps the same list). */
export function versionAnswer(): JsonObject {
  return { cniVersion: '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS] };
}

export function errorAnswer(version: string, code: number, msg: string, details: string): JsonObject {
  return { cniVersion: version, code, msg, ...(details === '' ? {} : { details }) };
}
