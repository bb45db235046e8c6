/**
 * The remote driver API's methods, one handler each, for one driver kind.
 * Handlers translate JSON to the driver's typed requests and back; all
 * decisions are the driver's.
 */
import type { NetworkDriver } from '../../driver/network-driver';
import type { DriverKind } from '../../model/network';
import type { JsonObject } from './decode';
import {
  decodeCreateEndpoint,
  decodeCreateNetwork,
  decodeEndpointRef,
  decodeNetworkRef,
  encodeCreateEndpoint,
  encodeEndpointOperInfo,
  encodeJoin,
} from './wire';

/** One API method: synchronous for the drivers (see server.ts), a promise only for control requests. */
export type Handler = (body: JsonObject) => JsonObject | Promise<JsonObject>;

export function networkDriverRoutes(driver: NetworkDriver, kind: DriverKind): ReadonlyMap<string, Handler> {
  const nothing = (): JsonObject => ({});
  return new Map<string, Handler>([
    ['/Plugin.Activate', () => ({ Implements: ['NetworkDriver'] })],
    // Scope local: each host keeps its own view; ConnectivityScope global: the LAN spans hosts (as Docker's macvlan).
    ['/NetworkDriver.GetCapabilities', () => ({ Scope: 'local', ConnectivityScope: 'global' })],
    [
      '/NetworkDriver.CreateNetwork',
      (body) => {
        driver.createNetwork(decodeCreateNetwork(kind, body));
        return {};
      },
    ],
    [
      '/NetworkDriver.DeleteNetwork',
      (body) => {
        driver.deleteNetwork(decodeNetworkRef(body));
        return {};
      },
    ],
    [
      '/NetworkDriver.CreateEndpoint',
      (body) => encodeCreateEndpoint(driver.createEndpoint(kind, decodeCreateEndpoint(body)).assignedMac),
    ],
    [
      '/NetworkDriver.DeleteEndpoint',
      (body) => {
        const ref = decodeEndpointRef(body);
        driver.deleteEndpoint(ref.networkId, ref.endpointId);
        return {};
      },
    ],
    [
      '/NetworkDriver.EndpointOperInfo',
      (body) => {
        const ref = decodeEndpointRef(body);
        return encodeEndpointOperInfo(driver.endpointInfo(ref.networkId, ref.endpointId));
      },
    ],
    [
      '/NetworkDriver.Join',
      (body) => {
        const ref = decodeEndpointRef(body);
        return encodeJoin(driver.join(kind, ref.networkId, ref.endpointId));
      },
    ],
    [
      '/NetworkDriver.Leave',
      (body) => {
        const ref = decodeEndpointRef(body);
        driver.leave(ref.networkId, ref.endpointId);
        return {};
      },
    ],
    // Neither driver needs discovery events, external connectivity (no NAT, no port mapping on a LAN
    // network), or swarm-wide allocation; they are answered so Docker's calls succeed.
    ['/NetworkDriver.DiscoverNew', nothing],
    ['/NetworkDriver.DiscoverDelete', nothing],
    ['/NetworkDriver.ProgramExternalConnectivity', nothing],
    ['/NetworkDriver.RevokeExternalConnectivity', nothing],
    ['/NetworkDriver.AllocateNetwork', () => ({ Options: {} })],
    ['/NetworkDriver.FreeNetwork', nothing],
  ]);
}
