/**
 * Records the unit tests put in a store: a macvlan network on eth0 with
 * 172.16.86.0/24 (its gateway .1), and one with three endpoints (.2, .3, .4),
 * so that each store gauge and listing has a series to read.
 */
import type { NetworkRecord, NetworkSpec } from '../../src/model/network';
import { parseAddress, parsePrefix } from '../../src/net/address';
import type { Store } from '../../src/state/store';

/** A bridge-mode macvlan network on eth0, 172.16.86.0/24; `extra` replaces parts of its spec. */
export function macvlanNetwork(networkId: string, extra: Partial<NetworkSpec> = {}, cniName?: string): NetworkRecord {
  return {
    spec: {
      networkId,
      mode: { kind: 'macvlan', mode: 'bridge' },
      parent: { kind: 'existing', name: 'eth0' },
      mtu: null,
      internal: false,
      ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
      ipv6: [],
      hostAccess: null,
      conflict: 'refuse',
      announce: { count: 3, intervalMs: 100 },
      dhcp: null,
      ...extra,
    },
    parentCreated: false,
    ...(cniName === undefined ? {} : { cniName }),
  };
}

/** That network recorded, with endpoints at .2, .3 and .4 (MACs 02:00:00:00:00:0N, links dm-N). */
export function putNetworkWithThreeEndpoints(store: Store, networkId: string): void {
  store.insertNetwork(macvlanNetwork(networkId));
  for (const n of [2, 3, 4])
    store.putEndpoint({
      networkId,
      endpointId: String(n).repeat(64),
      linkName: `dm-${n}`,
      mac: `02:00:00:00:00:0${n}`,
      ipv4: parsePrefix(`172.16.86.${n}/24`),
      ipv6: null,
    });
}
