/**
 * The remote driver API's methods, one handler each, for one driver kind.
 * Handlers translate JSON to the driver's typed requests and back; all
 * decisions are the driver's.
 */
import type { DhcpEndpoints } from '../../driver/dhcp-endpoints';
import type { NetworkDriver } from '../../driver/network-driver';
import { ADVICE_DEFAULT_IPAM, HOST_ADVICE_DEFAULT_IPAM, type LanConflicts } from '../../lan/conflicts';
import type { DriverKind } from '../../model/network';
import type { JsonObject } from './decode';
import {
  decodeCreateEndpoint,
  decodeCreateNetwork,
  decodeEndpointRef,
  decodeJoin,
  decodeNetworkRef,
  encodeCreateEndpoint,
  encodeEndpointOperInfo,
  encodeJoin,
} from './wire';

/** One API method: synchronous for the drivers (see server.ts), a promise only for control requests. */
export type Handler = (body: JsonObject) => JsonObject | Promise<JsonObject>;

/** How the driver describes itself: what dockerd asks when it registers the driver. */
export function networkDriverDescription(): [string, Handler][] {
  return [
    ['/Plugin.Activate', () => ({ Implements: ['NetworkDriver'] })],
    // Scope local: each host keeps its own view; ConnectivityScope global: the LAN spans hosts (as Docker's macvlan).
    ['/NetworkDriver.GetCapabilities', () => ({ Scope: 'local', ConnectivityScope: 'global' })],
  ];
}

/**
 * `lan`: checks an endpoint's addresses (not this host's; asks the LAN) before it
 * is recorded (the only await on a driver path, and before any state is touched); null: never.
 */
export function networkDriverRoutes(
  driver: NetworkDriver,
  kind: DriverKind,
  lan: LanConflicts | null = null,
  dhcp: DhcpEndpoints | null = null,
): ReadonlyMap<string, Handler> {
  const nothing = (): JsonObject => ({});
  return new Map<string, Handler>([
    ...networkDriverDescription(),
    [
      '/NetworkDriver.CreateNetwork',
      (body) => {
        driver.createNetwork(decodeCreateNetwork(kind, body));
        // Its first addresses are asked about now: the `docker run` that follows a `network create` finds them known.
        lan?.networkAdded();
        return {};
      },
    ],
    [
      '/NetworkDriver.DeleteNetwork',
      (body) => {
        const networkId = decodeNetworkRef(body);
        dhcp?.releaseNetwork(networkId);
        driver.deleteNetwork(networkId);
        return {};
      },
    ],
    [
      '/NetworkDriver.CreateEndpoint',
      async (body) => {
        const request = decodeCreateEndpoint(body);
        // The LAN's DHCP server picks the address: nothing to ask the LAN about first.
        if (dhcp?.serves(kind, request.networkId))
          return encodeCreateEndpoint(await dhcp.createEndpoint(kind, request));
        const check = lan === null ? null : driver.addressCheck(kind, request);
        if (lan !== null && check !== null)
          await lan.requireUsable(check, { host: HOST_ADVICE_DEFAULT_IPAM, lan: ADVICE_DEFAULT_IPAM });
        return encodeCreateEndpoint(driver.createEndpoint(kind, request));
      },
    ],
    [
      '/NetworkDriver.DeleteEndpoint',
      (body) => {
        const ref = decodeEndpointRef(body);
        // Released at Leave already, unless the container never started (no Join, no Leave).
        dhcp?.release(ref.networkId, ref.endpointId, 'endpoint removed');
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
        const ref = decodeJoin(body);
        const answer = driver.join(kind, ref.networkId, ref.endpointId);
        return encodeJoin(dhcp === null ? answer : dhcp.joined(kind, ref, answer));
      },
    ],
    [
      '/NetworkDriver.Leave',
      (body) => {
        const ref = decodeEndpointRef(body);
        try {
          driver.leave(ref.networkId, ref.endpointId);
        } finally {
          // The container stops: its lease goes back to the server, whatever else failed.
          dhcp?.release(ref.networkId, ref.endpointId, 'container stopped');
        }
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
