/**
 * The SQLite schema, its version (PRAGMA user_version) and the migrations
 * from every earlier version. A database is only ever moved forward, inside
 * one transaction; a newer or foreign file is refused and left untouched.
 * A new database is made by running every step from version 0, so the path
 * an old database takes is the one every new database takes too.
 *
 * Versions:
 * - 1: lanplug 0.1 (no user_version yet): networks and endpoints as JSON records.
 * - 2: adds `leftovers` (what a teardown could not remove, for the reconciler)
 *      and `created_at` on networks and endpoints (ms since the epoch; 0 for
 *      rows migrated from version 1, whose age is unknown).
 * - 3: the IPAM driver's `pools` and `addresses` (one row per address in use:
 *      the primary key is what makes two claims of one address impossible),
 *      endpoints' MACs as a column with a unique index, and `lan_seen`: who
 *      else on the LAN was seen using an address (probe answers, and claims on
 *      a container's address after the fact).
 * - 4: DHCP: `leases` (one per endpoint that holds one) and `dhcp_last` (the
 *      address each client id held last, asked for again at its next start).
 * - 5: `addresses.owner`: who holds a claim made by the `lanplug` CNI IPAM
 *      plugin (network, container, interface), and an index by address (an
 *      address claimed in any pool is taken in all of them).
 * - 6: `meta` (small facts about this state directory: the link groups that
 *      mark its links, its instance id in a shared pool's host registration,
 *      the Docker engine its networks came from), `networks.docker_engine`
 *      (the ID of the dockerd seen to know the network, the only one whose "no
 *      such network" may drop it), and for shared pools (etcd) `pool_releases`
 *      (pools etcd has not yet heard this host leave, retried until it has) and
 *      `lost_addresses` (endpoints here whose address another host reclaimed
 *      meanwhile).
 * - 7: endpoints indexed by network and address (the record's IPv4 and IPv6
 *      prefixes): an address held twice in a network is found without reading
 *      every endpoint, whatever MAC each has (a name's or the user's MAC does
 *      not follow the address, so the unique MAC index no longer catches it).
 * - 8: `identities`: per (network, `lanplug.identity` name) the MAC, addresses
 *      and DHCP ids it had last, the endpoint holding it, the IPAM claims kept
 *      for it while no container does, and when a container last held it
 *      (ipam/reservations.ts); indexed by address.
 */
import type Database from 'better-sqlite3';
import { LanplugError } from '../errors';

export const SCHEMA_VERSION = 8;

/** STEPS[n] moves a database from version n to n + 1. */
const STEPS: readonly string[] = [
  `CREATE TABLE networks (id TEXT PRIMARY KEY, record TEXT NOT NULL);
   CREATE TABLE endpoints (
     network_id  TEXT NOT NULL,
     endpoint_id TEXT NOT NULL,
     record      TEXT NOT NULL,
     PRIMARY KEY (network_id, endpoint_id)
   );`,
  `ALTER TABLE networks ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE endpoints ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
   CREATE TABLE leftovers (name TEXT PRIMARY KEY, record TEXT NOT NULL);`,
  `CREATE TABLE pools (
     id         TEXT PRIMARY KEY,
     record     TEXT NOT NULL,
     created_at INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE addresses (
     pool_id    TEXT NOT NULL,
     address    TEXT NOT NULL,
     kind       TEXT NOT NULL,
     created_at INTEGER NOT NULL DEFAULT 0,
     PRIMARY KEY (pool_id, address)
   );
   CREATE TABLE lan_seen (
     address    TEXT PRIMARY KEY,
     mac        TEXT NOT NULL,
     how        TEXT NOT NULL,
     network_id TEXT,
     first_seen INTEGER NOT NULL,
     last_seen  INTEGER NOT NULL
   );
   ALTER TABLE endpoints ADD COLUMN mac TEXT;
   UPDATE endpoints SET mac = json_extract(record, '$.mac');
   CREATE UNIQUE INDEX endpoints_mac ON endpoints (mac) WHERE mac IS NOT NULL;`,
  `CREATE TABLE leases (
     network_id  TEXT NOT NULL,
     endpoint_id TEXT NOT NULL,
     record      TEXT NOT NULL,
     created_at  INTEGER NOT NULL DEFAULT 0,
     PRIMARY KEY (network_id, endpoint_id)
   );
   CREATE TABLE dhcp_last (
     client_id  TEXT PRIMARY KEY,
     address    TEXT NOT NULL,
     updated_at INTEGER NOT NULL
   );`,
  `ALTER TABLE addresses ADD COLUMN owner TEXT;
   CREATE INDEX addresses_owner ON addresses (owner) WHERE owner IS NOT NULL;
   CREATE INDEX addresses_address ON addresses (address);`,
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   ALTER TABLE networks ADD COLUMN docker_engine TEXT;
   CREATE TABLE pool_releases (
     pool_id   TEXT PRIMARY KEY,
     error     TEXT NOT NULL,
     failed_at INTEGER NOT NULL
   );
   CREATE TABLE lost_addresses (
     address     TEXT PRIMARY KEY,
     record      TEXT NOT NULL,
     noticed_at  INTEGER NOT NULL
   );`,
  `CREATE INDEX endpoints_ipv4 ON endpoints (network_id, json_extract(record, '$.ipv4'));
   CREATE INDEX endpoints_ipv6 ON endpoints (network_id, json_extract(record, '$.ipv6'));`,
  `CREATE TABLE identities (
     network_id  TEXT NOT NULL,
     name        TEXT NOT NULL,
     mac         TEXT,
     ipv4        TEXT,
     ipv6        TEXT,
     client_id   TEXT NOT NULL,
     duid        TEXT NOT NULL,
     endpoint_id TEXT,
     kept        TEXT NOT NULL DEFAULT '[]',
     created_at  INTEGER NOT NULL,
     last_seen   INTEGER NOT NULL,
     PRIMARY KEY (network_id, name)
   );
   CREATE INDEX identities_ipv4 ON identities (ipv4) WHERE ipv4 IS NOT NULL;
   CREATE INDEX identities_ipv6 ON identities (ipv6) WHERE ipv6 IS NOT NULL;`,
];

/** The schema version of an open database; 1 for lanplug 0.1's files, 0 for an empty one. */
export function schemaVersion(db: Database.Database): number {
  const declared = Number(db.pragma('user_version', { simple: true }));
  if (declared !== 0) return declared;
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
  if (tables.length === 0) return 0;
  if (tables.some((t) => t.name === 'networks') && tables.some((t) => t.name === 'endpoints')) return 1;
  throw new LanplugError('Conflict', `holds tables (${tables.map((t) => t.name).join(', ')}) that are not lanplug's`);
}

/** The version found, or a Conflict for a database newer than this code (or not lanplug's). Reads only. */
export function checkMigratable(db: Database.Database): number {
  const found = schemaVersion(db);
  if (found > SCHEMA_VERSION) {
    throw new LanplugError(
      'Conflict',
      `has schema version ${found}, newer than this lanplug understands (${SCHEMA_VERSION})`,
    );
  }
  return found;
}

/**
 * Brings the database to SCHEMA_VERSION. Returns the version it found.
 * Throws (changing nothing) for a database newer than this code.
 */
export function migrate(db: Database.Database): number {
  const found = checkMigratable(db);
  if (found === SCHEMA_VERSION) return found;
  db.transaction(() => {
    for (let version = found; version < SCHEMA_VERSION; version++) db.exec(STEPS[version] ?? '');
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
  return found;
}
