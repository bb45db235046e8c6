/**
 * What every operation of the network driver shares (networks.ts,
 * endpoints.ts, join-leave.ts, endpoint-links.ts, lan-link.ts): the kernel,
 * the store, the log, how endpoint links go, and the three checks each
 * operation starts or ends with.
 */
import { LanplugError, notFound, withContext } from '../errors';
import type { Rtnl } from '../link/rtnl';
import type { LinkRemover } from '../link/reaper';
import type { Logger } from '../log';
import type { Announcer } from '../lan/announce';
import { shortId, type DriverKind, type NetworkRecord, type NetworkSpec } from '../model/network';
import type { Store } from '../state/store';
import type { KernelFeatures } from './features';
import { checkDockerId } from './names';
import type { SlaacWatch } from './slaac-watch';

/** How old a row must be before Docker's not knowing it counts, unless the daemon says (--grace-seconds). */
export const DEFAULT_FORGOTTEN_GRACE_MS = 60_000;

export interface DriverContext {
  readonly rtnl: Rtnl;
  readonly store: Store;
  readonly log: Logger;
  /** The kernel probe at network create (features.ts). */
  readonly features: KernelFeatures;
  /** Sends gratuitous ARP / unsolicited NA at Join; none in unit tests. */
  readonly announcer: Announcer | null;
  /** How endpoint links go at DeleteEndpoint: the daemon's reaper takes them off the request path. */
  readonly remover: LinkRemover;
  /**
   * How old an endpoint must be before lanplug concludes on its own evidence that Docker forgot it
   * (endpoints.ts containerGone): the daemon's --grace-seconds, as for the periodic check's rows.
   */
  readonly forgottenAfterMs: number;
  /** Turns IPv6 from router advertisements on in containers after Join (`-o ipv6=slaac`), until Leave or DeleteEndpoint. */
  readonly slaac: SlaacWatch | null;
}

/** The network of this driver kind; NotFound for any other (Docker asks the driver the network was made by). */
export function requireNetwork(ctx: DriverContext, networkId: string, driver: DriverKind): NetworkRecord {
  const network = ctx.store.getNetwork(networkId);
  if (network === null || network.spec.mode.kind !== driver) {
    throw notFound(`network ${shortId(networkId)} is not a lanplug-${driver} network known to this host`);
  }
  return network;
}

/** Ids become link names and state keys: anything but a Docker id is refused before it is used. */
export function checkIds(networkId: string, endpointId: string): void {
  checkDockerId(networkId, 'network id');
  checkDockerId(endpointId, 'endpoint id');
}

/** The one piece of context this layer adds to a failure: which network, on which parent. */
export function inNetwork(spec: NetworkSpec, err: unknown): LanplugError {
  if (err instanceof LanplugError && (err.code === 'InvalidArgument' || err.code === 'Unsupported')) return err;
  return withContext(`network ${shortId(spec.networkId)} on parent ${spec.parent.name}`, err);
}
