/**
 * The CNI front end's parts wired together: one range allocator that steps
 * around every address in use, shared by the attachments and the CNI IPAM
 * plugin, and the daemon's hooks handed in. Apart so that the daemon and an
 * offline `lanplug gc` build the same parts the same way, and so that the
 * attachment modules do not know one another's constructors.
 */
import type { Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import { CniIpam } from '../ipam/cni-ipam';
import { RangeAllocator } from '../ipam/ranges';
import type { Store } from '../state/store';
import type { IpamStore } from '../state/ipam-store';
import type { NetworkDriver } from './network-driver';
import type { AttachmentLeases, KnownTaken, SharedClaims } from './attachment-hooks';
import { addressesInUse } from './attachment-ranges';
import { CniNetworks } from './cni-networks';
import { SandboxAttachments } from './sandbox-attachments';
import { LeasedAttachments } from './leased-attachments';

/** The CNI front end's operations over a driver and store, allocating around everything in use. */
export function cniServices(
  driver: NetworkDriver,
  rtnl: Rtnl,
  store: Store & IpamStore,
  log: Logger,
  options: { lan?: KnownTaken; idleMs?: number; leases?: AttachmentLeases; shared?: SharedClaims } = {},
): { attachments: SandboxAttachments; leased: LeasedAttachments; ipam: CniIpam } {
  const allocator = new RangeAllocator(store, () => addressesInUse(store, options.lan ?? null));
  const shared = options.shared ?? null;
  const networks = new CniNetworks(driver, rtnl, store, allocator, log, options.idleMs ?? 0, shared);
  const attachments = new SandboxAttachments(driver, store, allocator, networks, log, options.leases ?? null, shared);
  return {
    attachments,
    leased: new LeasedAttachments(attachments, driver, store, log),
    ipam: new CniIpam(store, allocator, log),
  };
}
