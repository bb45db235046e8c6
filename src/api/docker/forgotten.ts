/**
 * Rows Docker has forgotten: a network or endpoint lanplug still records but
 * dockerd no longer knows — because a remove reached a daemon that was down,
 * or a crash came between recording and answering. Such a row would block a
 * parent for good (passthru, ipvlan mode, "parent already given to endpoint").
 *
 * Asked of dockerd's API in the background (never from a plugin handler),
 * only for rows older than a grace period (Docker records a network or
 * endpoint only after the plugin has answered), and removed through the
 * driver's own teardown so links and parents go with them.
 *
 * Only on the word of the dockerd the network came from: "no such network"
 * from another one (a mistyped --docker-host, a second engine on the host)
 * would drop every network and take away parents and shims that running
 * containers use. Each network remembers the engine (its /info ID) first seen
 * to know it; a network no engine was seen to know yet is dropped only on the
 * word of the engine the state directory's other networks came from. After
 * Docker was reinstalled (a new engine, its networks gone with the old one),
 * `lanplug gc --accept-engine` takes the dockerd asked at its word for all.
 */
import { DEFAULT_FORGOTTEN_GRACE_MS } from '../../driver/driver-context';
import type { NetworkDriver } from '../../driver/network-driver';
import { shortId } from '../../model/network';
import type { Logger } from '../../log';
import type { Store } from '../../state/store';
import type { DockerEngine } from './engine';

/** The meta key of the engine this state directory's networks came from. */
const ENGINE_KEY = 'docker_engine';
type EngineMemory = Pick<Store, 'networkEngines' | 'setNetworkEngine' | 'getMeta' | 'setMeta'>;

export const DEFAULT_GRACE_MS = DEFAULT_FORGOTTEN_GRACE_MS;

export interface ForgottenReport {
  /** False when dockerd did not answer: nothing was decided. */
  asked: boolean;
  networks: string[];
  endpoints: string[];
  /** Networks this dockerd does not know and that came from another engine (or none is known): kept. */
  kept?: { networks: string[]; engine: string; theirs: string | null };
  error?: string;
}

export async function dropForgottenRows(
  driver: NetworkDriver,
  engine: DockerEngine,
  memory: EngineMemory,
  log: Logger,
  options: {
    dryRun?: boolean;
    graceMs?: number;
    now?: number;
    acceptEngine?: boolean;
    /** The engine's version, as dockerd told it (engine-version.ts). */
    onVersion?: (version: string) => void;
  } = {},
): Promise<ForgottenReport> {
  const now = options.now ?? Date.now();
  const grace = options.graceMs ?? DEFAULT_GRACE_MS;
  const report: ForgottenReport = { asked: false, networks: [], endpoints: [] };
  const views = new Map<string, Awaited<ReturnType<DockerEngine['network']>>>();
  let engineId: string;
  try {
    const info = await engine.info();
    engineId = info.id;
    if (info.version !== null && options.dryRun !== true) options.onVersion?.(info.version);
    for (const network of dockerNetworks(driver))
      views.set(network.spec.networkId, await engine.network(network.spec.networkId));
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err);
    log.debug('dockerd not asked about forgotten rows', { error: report.error });
    return report;
  }
  report.asked = true;
  // The answers are awaited first and acted on after, synchronously: the store is read again
  // here, so a row created or removed while dockerd was being asked is judged as it is now.
  // A network id is 64 random hex digits: an engine that knows one is the engine it came from.
  for (const [id, view] of views) {
    if (view === null || driver.network(id) === null) continue;
    if (memory.networkEngines().get(id) !== engineId && options.dryRun !== true) memory.setNetworkEngine(id, engineId);
    if (memory.getMeta(ENGINE_KEY) !== engineId && options.dryRun !== true) memory.setMeta(ENGINE_KEY, engineId);
  }
  const engines = memory.networkEngines();
  const ours = memory.getMeta(ENGINE_KEY) ?? (options.dryRun === true ? sawAny(views, engineId) : null);
  const kept: string[] = [];
  for (const network of dockerNetworks(driver)) {
    if (now - network.createdAt < grace || !views.has(network.spec.networkId)) continue;
    const view = views.get(network.spec.networkId) ?? null;
    const id = network.spec.networkId;
    // `--accept-engine`: the dockerd asked speaks for every network (Docker was reinstalled).
    if (view === null && options.acceptEngine !== true && (engines.get(id) ?? ours) !== engineId) {
      kept.push(id);
      continue;
    }
    if (view === null) {
      report.networks.push(id);
      log.info('dropping a network Docker has forgotten', { network: shortId(id), dryRun: options.dryRun === true });
      if (options.dryRun !== true) tryDrop(log, () => driver.deleteNetwork(id));
      continue;
    }
    for (const endpoint of driver.listEndpoints(id)) {
      if (now - endpoint.createdAt < grace || view.endpointIds.has(endpoint.endpointId)) continue;
      report.endpoints.push(endpoint.endpointId);
      log.info('dropping an endpoint Docker has forgotten', {
        network: shortId(id),
        endpoint: shortId(endpoint.endpointId),
        dryRun: options.dryRun === true,
      });
      if (options.dryRun !== true) tryDrop(log, () => driver.deleteEndpoint(id, endpoint.endpointId));
    }
  }
  if (kept.length > 0) {
    const theirs = [...new Set(kept.map((id) => engines.get(id) ?? ours))][0] ?? null;
    report.kept = { networks: kept, engine: engineId, theirs };
    log.warn(
      "dockerd does not know these networks, but they did not come from it: kept (is --docker-host lanplug's dockerd? If Docker was reinstalled and they went with it: lanplug gc --accept-engine)",
      {
        engine: engineId,
        theirs: theirs ?? 'not yet known',
        networks: kept.map(shortId).join(' '),
      },
    );
  }
  return report;
}

/** On a dry run nothing is remembered: the engine that knows one of the networks now counts as theirs. */
function sawAny(views: ReadonlyMap<string, unknown>, engineId: string): string | null {
  return [...views.values()].some((v) => v !== null) ? engineId : null;
}

/** CNI networks are not Docker's to forget: their runtimes' DEL and GC remove them. */
function dockerNetworks(driver: NetworkDriver): ReturnType<NetworkDriver['listNetworks']> {
  return driver.listNetworks().filter((n) => n.cniName === undefined);
}

/** The teardown keeps a leftover for whatever it cannot remove; the failure is only logged here. */
function tryDrop(log: Logger, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    log.error('could not remove everything of a forgotten row; the reconciler retries', { error: String(err) });
  }
}
