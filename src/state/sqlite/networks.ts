/**
 * The tables of what Docker (or CNI) configured and what links it made:
 * networks (cached as decoded: every request reads its network, and only
 * this daemon writes the file), endpoints, leftovers (links to remove), and
 * the Docker engine each network was seen in.
 *
 * Durability: a network is on disk before Docker hears "created";
 * endpoints and leftovers describe links and containers a power loss takes
 * with it, so they survive any crash of the daemon (the WAL is written
 * before the answer) but may lose their last changes to a power loss, after
 * which reconcile and Docker's own clean-up at boot agree again. That takes
 * an fsync (0.1-3 ms here) off every attach and detach.
 */
import { LanplugError } from '../../errors';
import { formatPrefix } from '../../net/address';
import { shortId, type EndpointRecord, type Leftover, type NetworkRecord, type Stamped } from '../../model/network';
import {
  decodeEndpoint,
  decodeLeftover,
  decodeNetwork,
  encodeEndpoint,
  encodeLeftover,
  encodeNetwork,
} from '../records';
import { addressHeldConflict } from '../store';
import type { Row, SqliteConnection } from './connection';

export class NetworkTables {
  /** Networks as decoded, kept until a network is written (or a transaction rolls back). */
  private networkCache: Map<string, NetworkRecord & Stamped> | null = null;
  /** Counts writes to endpoints, so that readers can tell whether anything changed since they last looked. */
  private endpointWrites = 0;

  constructor(private readonly c: SqliteConnection) {
    c.onRollback(() => (this.networkCache = null));
  }

  get endpointGeneration(): number {
    return this.endpointWrites;
  }

  getNetwork(networkId: string): (NetworkRecord & Stamped) | null {
    if (this.networkCache === null && !this.c.inTransaction && !this.c.readonly) this.listNetworks();
    if (this.networkCache !== null) return this.networkCache.get(networkId) ?? null;
    const row = this.c.stmt('SELECT id, record, created_at FROM networks WHERE id = ?').get(networkId) as
      Row | undefined;
    return row === undefined ? null : this.c.read('network', row, decodeNetwork);
  }

  listNetworks(): (NetworkRecord & Stamped)[] {
    if (this.networkCache !== null) return [...this.networkCache.values()];
    const rows = this.c.stmt('SELECT id, record, created_at FROM networks ORDER BY id').all() as Row[];
    const networks = rows.map((row) => this.c.read('network', row, decodeNetwork));
    // Cached only once every row decoded (a row that does not is an error at every read, never skipped),
    // and only outside a transaction (which may still roll back).
    if (!this.c.readonly && !this.c.inTransaction)
      this.networkCache = new Map(networks.map((n) => [n.spec.networkId, n]));
    return networks;
  }

  insertNetwork(record: NetworkRecord): void {
    const result = this.c.write(
      'INSERT OR IGNORE INTO networks (id, record, created_at) VALUES (?, ?, ?)',
      record.spec.networkId,
      encodeNetwork(record),
      Date.now(),
    );
    if (result.changes === 0)
      throw new LanplugError('Conflict', `network ${record.spec.networkId} is already recorded`);
    this.networkCache = null;
    this.c.durable();
  }

  deleteNetwork(networkId: string): void {
    this.c.transaction(() => {
      this.c.write('DELETE FROM endpoints WHERE network_id = ?', networkId);
      this.c.write('DELETE FROM networks WHERE id = ?', networkId);
      this.networkCache = null;
      this.endpointWrites++;
      this.c.durable();
    });
  }

  /** Network id -> the Docker engine (its /info ID) seen to know it; networks no engine was seen to know are absent. */
  networkEngines(): Map<string, string> {
    const rows = this.c.stmt('SELECT id, docker_engine FROM networks WHERE docker_engine IS NOT NULL').all() as {
      id: string;
      docker_engine: string;
    }[];
    return new Map(rows.map((row) => [row.id, row.docker_engine]));
  }

  setNetworkEngine(networkId: string, engineId: string): void {
    this.c.write('UPDATE networks SET docker_engine = ? WHERE id = ?', engineId, networkId);
    this.c.durable();
  }

  getEndpoint(networkId: string, endpointId: string): (EndpointRecord & Stamped) | null {
    const row = this.c
      .stmt('SELECT endpoint_id AS id, record, created_at FROM endpoints WHERE network_id = ? AND endpoint_id = ?')
      .get(networkId, endpointId) as Row | undefined;
    return row === undefined ? null : this.c.read('endpoint', row, decodeEndpoint);
  }

  listEndpoints(networkId: string): (EndpointRecord & Stamped)[] {
    const rows = this.c
      .stmt('SELECT endpoint_id AS id, record, created_at FROM endpoints WHERE network_id = ? ORDER BY endpoint_id')
      .all(networkId) as Row[];
    return rows.map((row) => this.c.read('endpoint', row, decodeEndpoint));
  }

  /** The network's endpoints whose IPv4 or IPv6 prefix is one of `record`'s (through the address indexes). */
  endpointsHoldingAddressesOf(
    networkId: string,
    record: Pick<EndpointRecord, 'ipv4' | 'ipv6'>,
  ): (EndpointRecord & Stamped)[] {
    const found: Row[] = [];
    for (const [column, prefix] of [
      ['ipv4', record.ipv4],
      ['ipv6', record.ipv6],
    ] as const) {
      if (prefix === null) continue;
      found.push(
        ...(this.c
          .stmt(
            `SELECT endpoint_id AS id, record, created_at FROM endpoints WHERE network_id = ? AND json_extract(record, '$.${column}') = ?`,
          )
          .all(networkId, formatPrefix(prefix)) as Row[]),
      );
    }
    return found.map((row) => this.c.read('endpoint', row, decodeEndpoint));
  }

  listAllEndpoints(): (EndpointRecord & Stamped)[] {
    const rows = this.c
      .stmt('SELECT endpoint_id AS id, record, created_at FROM endpoints ORDER BY network_id, endpoint_id')
      .all() as Row[];
    return rows.map((row) => this.c.read('endpoint', row, decodeEndpoint));
  }

  putEndpoint(record: EndpointRecord): void {
    try {
      // An endpoint written again (Docker retrying CreateEndpoint) keeps its first time.
      this.c.write(
        `INSERT INTO endpoints (network_id, endpoint_id, record, created_at, mac) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (network_id, endpoint_id) DO UPDATE SET record = excluded.record, mac = excluded.mac`,
        record.networkId,
        record.endpointId,
        encodeEndpoint(record),
        Date.now(),
        record.mac,
      );
      this.endpointWrites++;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SQLITE_CONSTRAINT_UNIQUE' || record.mac === null) throw err;
      const row = this.c
        .stmt('SELECT endpoint_id AS id, record, created_at FROM endpoints WHERE mac = ?')
        .get(record.mac) as Row | undefined;
      const holder = row === undefined ? null : this.c.read('endpoint', row, decodeEndpoint);
      const address = record.ipv4?.address.text ?? record.ipv6?.address.text;
      const held = holder?.ipv4?.address.text ?? holder?.ipv6?.address.text;
      // The same address of the same network (so the same derived MAC), and the advice about --mac-address
      // would be wrong. Seen two ways: Docker's IPAM gave the address out twice (dockerd killed while it started
      // containers: it lost the allocations made just before), or Docker gave it again after forgetting the
      // endpoint lanplug recorded (lanplug killed while answering its CreateEndpoint). lanplug cannot tell them
      // apart here (the first endpoint's link lives in a container, or nowhere), and asks dockerd nothing
      // from a request: refused, in words for both; the periodic check drops a forgotten row.
      if (holder !== null && holder.networkId === record.networkId && address !== undefined && address === held)
        throw addressHeldConflict(address, holder);
      throw new LanplugError(
        'Conflict',
        `MAC address ${record.mac} is already used by endpoint ${shortId(holder?.endpointId ?? '?')}; give each container its own --mac-address`,
      );
    }
  }

  deleteEndpoint(networkId: string, endpointId: string): void {
    this.c.write('DELETE FROM endpoints WHERE network_id = ? AND endpoint_id = ?', networkId, endpointId);
    this.endpointWrites++;
  }

  listLeftovers(): Leftover[] {
    const rows = this.c.stmt('SELECT name AS id, record, 0 AS created_at FROM leftovers ORDER BY name').all() as Row[];
    return rows.map((row) => {
      const { createdAt: _unused, ...leftover } = this.c.read('leftover', row, decodeLeftover);
      return leftover;
    });
  }

  putLeftover(leftover: Leftover): void {
    this.c.write(
      'INSERT OR REPLACE INTO leftovers (name, record) VALUES (?, ?)',
      leftover.name,
      encodeLeftover(leftover),
    );
  }

  deleteLeftover(name: string): void {
    this.c.write('DELETE FROM leftovers WHERE name = ?', name);
  }
}
