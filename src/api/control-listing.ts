/**
 * The daemon's side of `lanplug ls` (Lanplug.List on the control socket): its
 * store read as it is now, and dockerd asked about each of Docker's networks
 * for their names and containers. A dockerd that does not answer leaves those
 * out and says why; the store's rows are listed all the same.
 */
import { containerLinkOf, learnedAddresses, type LearnedAddress } from '../driver/slaac';
import type { EndpointRecord, NetworkRecord } from '../model/network';
import { buildListing, type Listing } from '../observe/listing';
import type { SqliteStore } from '../state/sqlite';
import type { DockerEngine, DockerNetworkView } from './docker/engine';

export async function gatherListing(
  store: SqliteStore,
  engine: DockerEngine,
  sharedPools: boolean,
  identityExpireMs?: number,
): Promise<Listing> {
  const networks = store.listNetworks();
  const views = new Map<string, DockerNetworkView | null>();
  let dockerError: string | null = null;
  for (const network of networks) {
    if (network.cniName !== undefined || dockerError !== null) continue; // Docker never knows a CNI network
    try {
      views.set(network.spec.networkId, await engine.network(network.spec.networkId));
    } catch (err) {
      dockerError = `dockerd at ${engine.socketPath} did not answer (${err instanceof Error ? err.message : String(err)})`;
    }
  }
  // Read after dockerd answered, so a container that came meanwhile is in both.
  return buildListing({
    networks: store.listNetworks(),
    endpoints: store.listAllEndpoints(),
    leases: store.listLeases(),
    sightings: store.listSightings(),
    views,
    sharedPools,
    inLocalPool: (address) => store.poolsClaiming(address).length > 0,
    dockerError,
    now: Date.now(),
    learnedIpv6: readLearnedIpv6,
    reservations: store.listReservations(),
    ...(identityExpireMs === undefined ? {} : { identityExpireMs }),
  });
}

/**
 * What the container of an `-o ipv6=slaac` endpoint formed from the router's advertisements, read in
 * its namespace (read only); null when it cannot be read (the container is stopping, never started).
 * Its MAC finds a macvlan link; an ipvlan link is the one holding the endpoint's IPv4 address.
 */
function readLearnedIpv6(_network: NetworkRecord, endpoint: EndpointRecord): LearnedAddress[] | null {
  const netns = endpoint.dockerSandboxKey;
  if (netns === undefined) return null;
  try {
    const link = containerLinkOf(netns, endpoint, () => true);
    return link === null ? null : learnedAddresses(netns, link.index);
  } catch {
    return null;
  }
}
