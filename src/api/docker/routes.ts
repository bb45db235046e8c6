/**
 * The remote driver API's methods, one handler each, for one driver kind.
 * Handlers translate JSON to the endpoint service's typed requests and back;
 * every decision, and every wait, is the service's.
 */
import type { EndpointService } from '../../endpoint/service';
import type { EngineVersion } from './engine-version';
import type { DriverKind } from '../../model/network';
import type { JsonObject } from './decode';
import {
  decodeCreateEndpoint,
  decodeCreateNetwork,
  decodeEndpointRef,
  decodeGwAllocCheck,
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
    // GwAllocChecker: Docker 28 and later ask, before each network, whether to reserve a default gateway.
    ['/NetworkDriver.GetCapabilities', () => ({ Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true })],
  ];
}

/**
 * Each of the driver API's methods: its body decoded, one call to the endpoint service, the answer
 * encoded. `engine`: the engine's version as last learned (GwAllocCheck's answer follows it); null:
 * as on an engine not known yet.
 */
export function networkDriverRoutes(
  endpoints: EndpointService,
  kind: DriverKind,
  engine: EngineVersion | null = null,
): ReadonlyMap<string, Handler> {
  const nothing = (): JsonObject => ({});
  return new Map<string, Handler>([
    ...networkDriverDescription(),
    [
      '/NetworkDriver.GwAllocCheck',
      (body) => {
        const { internal } = decodeGwAllocCheck(body);
        const skip = engine === null ? internal : engine.skipsGateway(internal);
        return { SkipIPv4: skip, SkipIPv6: skip };
      },
    ],
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
