/**
 * A minimal client for dockerd's own API (not the plugin API): lanplug asks
 * it which of lanplug's networks and endpoints Docker still knows, to drop
 * the rows Docker has forgotten. Never called from a plugin request handler:
 * dockerd calls plugins before it serves its API at boot, and a handler that
 * waited on dockerd would hang both (docker-net-dhcp #2).
 */
import { LanplugError } from '../../errors';
import { unixHttp } from '../unix-http';
import { shortId } from '../../model/network';

export interface DockerNetworkView {
  /** Endpoint ids of the containers attached on this host. */
  endpointIds: Set<string>;
  /** The network's name, as `docker network ls` shows it. */
  name: string | null;
  /** Its IPAM driver (`default` for Docker's own), as `docker network inspect` shows it. */
  ipamDriver: string | null;
  /** Endpoint id -> the container attached by it (`lanplug ls`). */
  containers: Map<string, { containerId: string; name: string | null }>;
}

export class DockerEngine {
  constructor(
    /** The unix socket of dockerd's API, e.g. /var/run/docker.sock. */
    readonly socketPath: string,
    private readonly timeoutMs = 5_000,
  ) {}

  /**
   * The engine's ID (`docker info`'s ID: what tells this dockerd from another one behind a
   * mistyped --docker-host) and its version. Throws when dockerd does not answer.
   */
  async info(): Promise<{ id: string; version: string | null }> {
    const { status, body } = await unixHttp(this.socketPath, 'GET', '/info', undefined, this.timeoutMs);
    if (status !== 200) throw new LanplugError('Unavailable', `dockerd answered ${status} for /info`);
    const parsed: unknown = JSON.parse(body);
    const field = (name: string): unknown =>
      typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>)[name] : undefined;
    const id = field('ID');
    if (typeof id !== 'string' || id === '')
      throw new LanplugError('Unavailable', 'dockerd named no engine ID in /info');
    const version = field('ServerVersion');
    return { id, version: typeof version === 'string' ? version : null };
  }

  /** The network as Docker sees it, null when Docker does not know it; throws when dockerd does not answer. */
  async network(networkId: string): Promise<DockerNetworkView | null> {
    const { status, body } = await unixHttp(
      this.socketPath,
      'GET',
      `/networks/${encodeURIComponent(networkId)}`,
      undefined,
      this.timeoutMs,
    );
    if (status === 404) return null;
    if (status !== 200)
      throw new LanplugError('Unavailable', `dockerd answered ${status} for network ${shortId(networkId)}`);
    const parsed = objectOrEmpty(JSON.parse(body));
    const endpointIds = new Set<string>();
    const attached = new Map<string, { containerId: string; name: string | null }>();
    for (const [containerId, value] of Object.entries(objectOrEmpty(parsed['Containers']))) {
      const container = objectOrEmpty(value);
      const id = container['EndpointID'];
      if (typeof id !== 'string') continue;
      endpointIds.add(id);
      const name = container['Name'];
      attached.set(id, { containerId, name: typeof name === 'string' && name !== '' ? name : null });
    }
    const name = parsed['Name'];
    const ipamDriver = objectOrEmpty(parsed['IPAM'])['Driver'];
    return {
      endpointIds,
      name: typeof name === 'string' ? name : null,
      ipamDriver: typeof ipamDriver === 'string' ? ipamDriver : null,
      containers: attached,
    };
  }
}

/** dockerd's JSON, read field by field: anything but an object reads as one without fields. */
function objectOrEmpty(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** `unix:///var/run/docker.sock` or a bare path -> the socket path. */
export function dockerSocketPath(host: string): string {
  return host.startsWith('unix://') ? host.slice('unix://'.length) : host;
}
