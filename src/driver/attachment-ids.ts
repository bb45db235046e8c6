/**
 * The ids a CNI network and a CNI attachment have in the store, derived from
 * what CNI keys them by. Apart because the endpoint service and the tests name
 * attachments by these ids without making any, and because they must never
 * change: every ADD, CHECK and DEL of one attachment, across daemon restarts,
 * has to find the same rows.
 */
import { createHash } from 'node:crypto';

/** The lanplug network id of a CNI network: stable, so every ADD of one configuration finds it. */
export function cniNetworkId(networkName: string): string {
  return createHash('sha256').update(`lanplug-cni\0${networkName}`).digest('hex');
}

/** One attachment per (network, container, interface), as CNI keys them. */
export function attachmentId(networkName: string, containerId: string, ifname: string): string {
  return createHash('sha256').update(`${networkName}\0${containerId}\0${ifname}`).digest('hex');
}
