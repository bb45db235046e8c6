/**
 * The remote driver API's methods, one handler each, for one driver kind.
 * Handlers translate JSON to the endpoint service's typed requests and back;
 * every decision, and every wait, is the service's.
 */
import type { EndpointService } from '../../endpoint/service';
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

/** One API method: an answer, or a promise of one. */
export type Handler = (body: JsonObject) => JsonObject | Promise<JsonObject>;

/** How the driver describes itself: what dockerd asks when it registers the driver. */
export function networkDriverDescription(): [string, Handler][] {
  return [
    ['/Plugin.Activate', () => ({ Implements: ['NetworkDriver'] })],
    // Scope local: each host keeps its own view; ConnectivityScope global: the LAN spans hosts (as Docker's macvlan).
    ['/NetworkDriver.GetCapabilities', () => ({ Scope: 'local', ConnectivityScope: 'global' })],
  ];
}

/** Each of the driver API's methods: its body decoded, one call to the endpoint service, the answer encoded. */
export function networkDriverRoutes(endpoints: EndpointService, kind: DriverKind): ReadonlyMap<string, Handler> {
  const nothing = (): JsonObject => ({});
  return new Map<string, Handler>([
    ...networkDriverDescription(),
    [
      '/NetworkDriver.CreateNetwork',
      async (body) => {
        await endpoints.createNetwork(decodeCreateNetwork(kind, body));
        return {};
      },
    ],
    [
      '/NetworkDriver.DeleteNetwork',
      async (body) => {
        await endpoints.deleteNetwork(decodeNetworkRef(body));
        return {};
      },
    ],
    [
      '/NetworkDriver.CreateEndpoint',
      async (body) => encodeCreateEndpoint(await endpoints.createEndpoint(kind, decodeCreateEndpoint(body))),
    ],
    [
      '/NetworkDriver.DeleteEndpoint',
      async (body) => {
        await endpoints.deleteEndpoint(decodeEndpointRef(body));
        return {};
      },
    ],
    [
      '/NetworkDriver.EndpointOperInfo',
      (body) => encodeEndpointOperInfo(endpoints.endpointInfo(decodeEndpointRef(body))),
    ],
    ['/NetworkDriver.Join', async (body) => encodeJoin(await endpoints.join(kind, decodeJoin(body)))],
    [
      '/NetworkDriver.Leave',
      async (body) => {
        await endpoints.leave(decodeEndpointRef(body));
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
