/**
 * The metrics read from the store at each scrape, not counted as things
 * happen: a restarted daemon reports them right at once. Per network and
 * subnet, the addresses containers hold and how many the subnet has; the
 * endpoints per network; the DHCP leases by state.
 */
import { Gauge, type Registry } from 'prom-client';
import { stateAt } from '../dhcp/lease-state';
import { shortId } from '../model/network';
import { usableBounds } from '../ipam/pool';
import { formatPrefix, prefixBounds, prefixContains, type IpPrefix } from '../net/address';
import type { SqliteStore } from '../state/sqlite';

const NAMES = {
  pool_size: 'lanplug_pool_size_addresses',
  pool_used: 'lanplug_pool_used_addresses',
  endpoints: 'lanplug_endpoints',
  leases: 'lanplug_leases',
} as const;

/**
 * Registers the store's gauges on `registry`; the returned function takes them off again (a
 * daemon's stop: another may start in the same process).
 */
export function registerStoreMetrics(registry: Registry, store: SqliteStore): () => void {
  // Each gauge is registered where it is made; prom-client calls its collect() at every scrape.
  new Gauge({
    name: NAMES.pool_size,
    help: "Addresses a network's containers may be given, by network id and subnet: the lanplug IPAM pool's --ip-range, else the whole subnet (IPv4 without its network and broadcast addresses); DHCP networks' subnets are the server's and absent",
    labelNames: ['network', 'subnet'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const ranges = ipRanges(store);
      for (const { network, subnet } of subnets(store))
        this.set({ network, subnet: formatPrefix(subnet) }, usable(subnet, ranges.get(formatPrefix(subnet)) ?? null));
    },
  });
  new Gauge({
    name: NAMES.pool_used,
    help: "Addresses of a network's subnet its containers hold, by network id and subnet",
    labelNames: ['network', 'subnet'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const endpoints = store.listAllEndpoints();
      for (const { networkId, network, subnet } of subnets(store)) {
        const held = endpoints.filter(
          (e) =>
            e.networkId === networkId && [e.ipv4, e.ipv6].some((p) => p !== null && prefixContains(subnet, p.address)),
        ).length;
        this.set({ network, subnet: formatPrefix(subnet) }, held);
      }
    },
  });
  new Gauge({
    name: NAMES.endpoints,
    help: 'Endpoints (containers attached) lanplug keeps, by network id and driver',
    labelNames: ['network', 'driver'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { spec } of store.listNetworks())
        this.set(
          { network: shortId(spec.networkId), driver: `lanplug-${spec.mode.kind}` },
          store.listEndpoints(spec.networkId).length,
        );
    },
  });
  new Gauge({
    name: NAMES.leases,
    help: 'DHCP leases held for containers, by family and state (bound, renewing, rebinding, expired, refused)',
    labelNames: ['family', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      const counts = new Map<string, number>();
      for (const record of store.listLeases())
        for (const lease of record.leases) {
          const key = `${lease.family}/${stateAt(lease, now)}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
      for (const [key, count] of counts) {
        const [family = '', state = ''] = key.split('/');
        this.set({ family, state }, count);
      }
    },
  });
  return () => {
    for (const name of Object.values(NAMES)) registry.removeSingleMetric(name);
  };
}

/** The subnets of the networks whose addresses lanplug or Docker hands out (not a DHCP server). */
function subnets(store: SqliteStore): { networkId: string; network: string; subnet: IpPrefix }[] {
  return store
    .listNetworks()
    .filter((n) => n.spec.dhcp === null)
    .flatMap(({ spec }) =>
      [...spec.ipv4, ...spec.ipv6].map((s) => ({
        networkId: spec.networkId,
        network: shortId(spec.networkId),
        subnet: s.pool,
      })),
    );
}

/**
 * The --ip-range of each subnet the lanplug IPAM driver keeps a pool for (by the subnet's text).
 * Docker's own IPAM never tells the network driver its --ip-range: those networks count the subnet.
 * Two pools of one subnet (address spaces) with different ranges: neither is the network's for sure.
 */
function ipRanges(store: SqliteStore): Map<string, IpPrefix | null> {
  const ranges = new Map<string, IpPrefix | null>();
  for (const { pool, range } of store.listPools()) {
    const key = formatPrefix(pool);
    const known = ranges.get(key);
    const same =
      known === undefined || (known !== null && range !== null && formatPrefix(known) === formatPrefix(range));
    ranges.set(key, same ? range : null);
  }
  return ranges;
}

/** How many addresses of `range` (the whole subnet when null) the subnet hands out (ipam/pool.ts), as a float: an IPv6 /64 has 2^64. */
function usable(subnet: IpPrefix, range: IpPrefix | null): number {
  const { lowest, highest } = usableBounds(subnet);
  const { first, last } = prefixBounds(range ?? subnet);
  const low = first > lowest ? first : lowest;
  const high = last < highest ? last : highest;
  return high < low ? 0 : Number(high - low + 1n);
}
