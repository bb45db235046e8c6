/**
 * What an operator asks about shared pools, gathered by the running daemon
 * (it holds the etcd connection and its settings) for `lanplug status` and
 * `lanplug doctor`: each member's answer and clock, who is registered, every
 * pool with its users, who holds which address, and where this host's
 * endpoints and etcd disagree.
 */
import { isEndpointKind, type AddressKind } from '../model/ipam';
import { parseAddress, prefixContains } from '../net/address';
import type { BookPool } from '../state/address-book';
import type { EtcdAddressBook } from '../state/etcd/address-book';
import { HOST_TTL_SECONDS } from '../state/etcd/presence';

export interface MemberReport {
  endpoint: string;
  error?: string;
  version?: string;
  /** The leader's member id as this member sees it ('0': none). */
  leader?: string;
  /** The member's clock minus this host's, in ms (its Date header has one-second resolution). */
  skewMs?: number;
}

export interface SharedPoolsReport {
  hostId: string;
  leaseSeconds: number;
  members: MemberReport[];
  registered: string[];
  /** Why this daemon is not registered: another host's registration holds its host id. */
  refusal?: string;
  pools: { poolId: string; definedBy: string; users: string[]; gateway: string | null }[];
  holdings: { poolId: string; address: string; host: string; kind: AddressKind; mac: string | null }[];
  /** Addresses endpoints here hold that etcd does not record as this host's (another host may take them). */
  unrecorded: string[];
  /** Addresses etcd records as this host's endpoints that no endpoint here holds (the orphan check frees them). */
  unheld: string[];
  /** Pools etcd still lists this host as using, although Docker removed its network here (retried). */
  owedReleases?: { poolId: string; error: string; since: string }[];
  /** Why the pools could not be read (the members' own answers are still reported). */
  error?: string;
}

export async function sharedPoolsReport(
  book: EtcdAddressBook,
  localAddresses: ReadonlySet<string>,
  poolWatched: (pool: BookPool) => boolean,
): Promise<SharedPoolsReport> {
  const asked = Date.now();
  const members: MemberReport[] = (await book.members(3_000)).map((m) =>
    'error' in m
      ? m
      : {
          endpoint: m.endpoint,
          version: m.version,
          leader: m.leader,
          ...(m.clock === null ? {} : { skewMs: m.clock.getTime() - asked }),
        },
  );
  const report: SharedPoolsReport = {
    hostId: book.hostId,
    leaseSeconds: HOST_TTL_SECONDS,
    members,
    registered: [],
    pools: [],
    holdings: [],
    unrecorded: [],
    unheld: [],
    owedReleases: book.owedPoolReleases(),
    ...(book.presence.refused === null ? {} : { refusal: book.presence.refused }),
  };
  try {
    const [registered, pools, holdings] = await Promise.all([
      book.registeredHosts(),
      book.poolsAsStored(),
      book.holdings(),
    ]);
    report.registered = registered;
    report.pools = pools.map((p) => ({
      poolId: p.poolId,
      definedBy: p.definedBy ?? '?',
      users: p.users,
      gateway: p.gateway?.text ?? null,
    }));
    report.holdings = holdings;
    const mine = new Set(
      holdings.filter((h) => h.host === book.hostId && isEndpointKind(h.kind)).map((h) => h.address),
    );
    // Only addresses inside a shared pool that a lanplug network here uses: those etcd must record.
    const watched = pools.filter(poolWatched);
    const inWatchedPool = (text: string): boolean => {
      const address = parseAddress(text);
      return watched.some((p) => address.family === p.pool.address.family && prefixContains(p.pool, address));
    };
    // Lost addresses (another host's since this one was away) are reported on their own (doctor).
    const lost = new Set(book.lostAddresses().map((l) => l.address));
    report.unrecorded = [...localAddresses].filter((a) => !mine.has(a) && !lost.has(a) && inWatchedPool(a)).sort();
    report.unheld = [...mine].filter((a) => !localAddresses.has(a)).sort();
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err);
  }
  return report;
}
