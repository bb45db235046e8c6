/**
 * The DHCP side of the store: the lease each endpoint holds, and the address
 * each client id held last (asked for again at its next start, so that a
 * restarted container gets its address back even from a server that forgot it).
 */
import type { LeaseRecord } from '../model/lease';
import type { Stamped } from '../model/network';
import type { IpAddress } from '../net/address';

export interface LeaseStore {
  getLease(networkId: string, endpointId: string): (LeaseRecord & Stamped) | null;
  listLeases(): (LeaseRecord & Stamped)[];
  /** Inserts or replaces. `durable`: fsync'd before returning (a new lease), else at the next durable write. */
  putLease(record: LeaseRecord, durable: boolean): void;
  /** `record` replaces the lease held under endpoint id `from`, in one durable transaction. */
  moveLease(record: LeaseRecord, from: string): void;
  deleteLease(networkId: string, endpointId: string): void;

  rememberAddress(clientId: string, address: IpAddress): void;
  lastAddress(clientId: string): IpAddress | null;
  /** Forgets the addresses remembered before `cutoff` (ms since the epoch); returns how many. */
  forgetAddressesBefore(cutoff: number): number;
}
