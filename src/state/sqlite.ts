/**
 * The Store on an embedded SQLite database: one SqliteStore implements every
 * store interface the daemon's floors use, each method handed to the tables
 * of its record family (state/sqlite/):
 * - networks.ts: networks, endpoints, leftovers, the engine each network was seen in;
 * - ipam.ts: the IPAM driver's pools and the addresses claimed in them;
 * - leases.ts: DHCP leases and the last address of each client identity;
 * - identities.ts: reservations by identity name (ipam/reservations.ts);
 * - meta.ts, lan-seen.ts, shared-pools.ts: small facts, the LAN seen, what shared pools left here;
 * - connection.ts: opening and migrating the file, transactions, durability.
 *
 * Durability, chosen per record (WAL, synchronous=NORMAL, and an fsync of
 * the WAL after writes that must outlive the machine): networks and pools,
 * which describe what the user configured, are on disk before Docker hears
 * "created" (unless the disk fails that fsync: see sqlite/connection.ts);
 * endpoints, addresses and leftovers, which describe links and containers a
 * power loss takes with it, survive any crash of the daemon but may lose
 * their last changes to a power loss (see sqlite/networks.ts).
 */
import type { Logger } from '../log';
import type { AddressKind, PoolRecord } from '../model/ipam';
import type { LeaseRecord } from '../model/lease';
import type { EndpointRecord, Leftover, NetworkRecord, Stamped } from '../model/network';
import type { IpAddress } from '../net/address';
import type { IdentityReservation } from './identity-store';
import type { IpamStore } from './ipam-store';
import type { LeaseStore } from './lease-store';
import type { LostAddress, PendingPoolRelease, SharedPoolState } from './shared-state';
import { SqliteConnection, type Fsync, type SyncFailure } from './sqlite/connection';
import { storeFigures, type StoreFigures } from './sqlite/figures';
import { IdentityTables } from './sqlite/identities';
import { IpamTables } from './sqlite/ipam';
import { LanSeenTable } from './sqlite/lan-seen';
import { LeaseTables } from './sqlite/leases';
import { MetaTable } from './sqlite/meta';
import { NetworkTables } from './sqlite/networks';
import { SharedPoolTables } from './sqlite/shared-pools';
import type { LanSighting, LanSightings, Store } from './store';

export { DATABASE_FILE, type Fsync, type SyncFailure } from './sqlite/connection';
export type { StoreFigures } from './sqlite/figures';

export class SqliteStore implements Store, IpamStore, LanSightings, LeaseStore, SharedPoolState {
  private readonly networks: NetworkTables;
  private readonly ipam: IpamTables;
  private readonly leases: LeaseTables;
  private readonly meta: MetaTable;
  private readonly lanSeen: LanSeenTable;
  private readonly sharedPools: SharedPoolTables;
  private readonly identities: IdentityTables;

  private constructor(private readonly c: SqliteConnection) {
    this.networks = new NetworkTables(c);
    this.ipam = new IpamTables(c);
    this.leases = new LeaseTables(c);
    this.meta = new MetaTable(c);
    this.lanSeen = new LanSeenTable(c);
    this.sharedPools = new SharedPoolTables(c);
    this.identities = new IdentityTables(c);
  }

  /**
   * Opens `<stateDir>/lanplug.db` for the daemon, made 0700 when missing, its schema brought forward;
   * `log` gets the writes its disk did not confirm (sqlite/connection.ts); `fsync`: tests make it fail.
   */
  static open(stateDir: string, log?: Logger, fsync?: Fsync): SqliteStore {
    return new SqliteStore(SqliteConnection.open(stateDir, log, fsync));
  }

  /** Opens an existing database without creating or migrating anything (status, doctor). */
  static openReadOnly(stateDir: string): SqliteStore {
    return new SqliteStore(SqliteConnection.openReadOnly(stateDir));
  }

  /** The database's size, statements and rows per table (Lanplug.Stats). */
  figures(): StoreFigures {
    return storeFigures(this.c);
  }

  /** For messages: the database file. */
  get path(): string {
    return this.c.path;
  }

  /** The fsyncs after a commit that failed since the store was opened (sqlite/connection.ts). */
  get syncFailure(): SyncFailure | null {
    return this.c.syncFailure;
  }

  /** The schema version the file had before it was opened (0: new). */
  get foundVersion(): number {
    return this.c.foundVersion;
  }

  transaction<T>(fn: () => T): T {
    return this.c.transaction(fn);
  }

  close(): void {
    this.c.close();
  }

  // ---- networks, endpoints, leftovers (sqlite/networks.ts) ----

  get endpointGeneration(): number {
    return this.networks.endpointGeneration;
  }
  getNetwork(networkId: string): (NetworkRecord & Stamped) | null {
    return this.networks.getNetwork(networkId);
  }
  listNetworks(): (NetworkRecord & Stamped)[] {
    return this.networks.listNetworks();
  }
  insertNetwork(record: NetworkRecord): void {
    this.networks.insertNetwork(record);
  }
  /** With its endpoints and its identities' reservations; one keeping an IPAM claim waits for the pool's release. */
  deleteNetwork(networkId: string): void {
    this.c.transaction(() => {
      this.networks.deleteNetwork(networkId);
      this.identities.deleteNetworkReservations(networkId);
    });
  }
  networkEngines(): Map<string, string> {
    return this.networks.networkEngines();
  }
  setNetworkEngine(networkId: string, engineId: string): void {
    this.networks.setNetworkEngine(networkId, engineId);
  }
  getEndpoint(networkId: string, endpointId: string): (EndpointRecord & Stamped) | null {
    return this.networks.getEndpoint(networkId, endpointId);
  }
  listEndpoints(networkId: string): (EndpointRecord & Stamped)[] {
    return this.networks.listEndpoints(networkId);
  }

  endpointsHoldingAddressesOf(
    networkId: string,
    record: Pick<EndpointRecord, 'ipv4' | 'ipv6'>,
  ): (EndpointRecord & Stamped)[] {
    return this.networks.endpointsHoldingAddressesOf(networkId, record);
  }
  listAllEndpoints(): (EndpointRecord & Stamped)[] {
    return this.networks.listAllEndpoints();
  }
  putEndpoint(record: EndpointRecord): void {
    this.networks.putEndpoint(record);
  }
  deleteEndpoint(networkId: string, endpointId: string): void {
    this.networks.deleteEndpoint(networkId, endpointId);
  }
  listLeftovers(): Leftover[] {
    return this.networks.listLeftovers();
  }
  putLeftover(leftover: Leftover): void {
    this.networks.putLeftover(leftover);
  }
  deleteLeftover(name: string): void {
    this.networks.deleteLeftover(name);
  }

  // ---- IPAM pools and addresses (sqlite/ipam.ts) ----

  insertPool(pool: PoolRecord): void {
    this.ipam.insertPool(pool);
  }
  getPool(poolId: string): (PoolRecord & Stamped) | null {
    return this.ipam.getPool(poolId);
  }
  listPools(): (PoolRecord & Stamped)[] {
    return this.ipam.listPools();
  }
  deletePool(poolId: string): void {
    this.ipam.deletePool(poolId);
  }
  claimAddress(poolId: string, address: IpAddress, kind: AddressKind, owner?: string): boolean {
    return this.ipam.claimAddress(poolId, address, kind, owner);
  }
  claimsOf(owner: string): { poolId: string; address: IpAddress }[] {
    return this.ipam.claimsOf(owner);
  }
  ownedClaims(prefix: string): { poolId: string; address: IpAddress; owner: string }[] {
    return this.ipam.ownedClaims(prefix);
  }
  poolsClaiming(address: IpAddress): string[] {
    return this.ipam.poolsClaiming(address);
  }
  releaseAddress(poolId: string, address: IpAddress): boolean {
    return this.ipam.releaseAddress(poolId, address);
  }
  claimedAddresses(poolId: string): { address: IpAddress; kind: AddressKind }[] {
    return this.ipam.claimedAddresses(poolId);
  }
  dockerEndpointClaims(): { poolId: string; address: IpAddress; createdAt: number }[] {
    return this.ipam.dockerEndpointClaims();
  }

  // ---- DHCP leases (sqlite/leases.ts) ----

  getLease(networkId: string, endpointId: string): (LeaseRecord & Stamped) | null {
    return this.leases.getLease(networkId, endpointId);
  }
  listLeases(): (LeaseRecord & Stamped)[] {
    return this.leases.listLeases();
  }
  putLease(record: LeaseRecord, durable: boolean): void {
    this.leases.putLease(record, durable);
  }
  moveLease(record: LeaseRecord, from: string): void {
    this.leases.moveLease(record, from);
  }
  deleteLease(networkId: string, endpointId: string): void {
    this.leases.deleteLease(networkId, endpointId);
  }
  rememberAddress(clientId: string, address: IpAddress): void {
    this.leases.rememberAddress(clientId, address);
  }
  lastAddress(clientId: string): IpAddress | null {
    return this.leases.lastAddress(clientId);
  }
  forgetAddressesBefore(cutoff: number): number {
    return this.leases.forgetAddressesBefore(cutoff);
  }

  // ---- small facts, the LAN seen, shared pools (sqlite/meta.ts, lan-seen.ts, shared-pools.ts) ----

  getMeta(key: string): string | null {
    return this.meta.getMeta(key);
  }
  setMeta(key: string, value: string): void {
    this.meta.setMeta(key, value);
  }
  instanceId(): string {
    return this.meta.instanceId();
  }
  recordSighting(sighting: Omit<LanSighting, 'firstSeen' | 'lastSeen'>, at: number): void {
    this.lanSeen.recordSighting(sighting, at);
  }
  listSightings(): LanSighting[] {
    return this.lanSeen.listSightings();
  }
  listPoolReleases(): PendingPoolRelease[] {
    return this.sharedPools.listPoolReleases();
  }
  putPoolRelease(poolId: string, error: string, at: number): void {
    this.sharedPools.putPoolRelease(poolId, error, at);
  }
  deletePoolRelease(poolId: string): void {
    this.sharedPools.deletePoolRelease(poolId);
  }
  listLostAddresses(): LostAddress[] {
    return this.sharedPools.listLostAddresses();
  }
  putLostAddress(lost: LostAddress): void {
    this.sharedPools.putLostAddress(lost);
  }
  deleteLostAddress(address: string): void {
    this.sharedPools.deleteLostAddress(address);
  }
  isAddressLost(networkId: string, address: string): boolean {
    return this.sharedPools.isAddressLost(networkId, address);
  }

  // ---- reservations by identity (sqlite/identities.ts) ----

  getReservation(networkId: string, name: string): IdentityReservation | null {
    return this.identities.getReservation(networkId, name);
  }
  listReservations(): IdentityReservation[] {
    return this.identities.listReservations();
  }
  reservationsOfAddress(address: string): IdentityReservation[] {
    return this.identities.reservationsOfAddress(address);
  }
  putReservation(reservation: IdentityReservation): void {
    this.identities.putReservation(reservation);
  }
  deleteReservation(networkId: string, name: string): boolean {
    return this.identities.deleteReservation(networkId, name);
  }
}
