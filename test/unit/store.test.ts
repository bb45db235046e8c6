/**
 * The SQLite store's file handling: schema versions and migrations from every
 * earlier schema, files it must refuse and leave untouched (newer, foreign,
 * damaged), rows that cannot be read, the state directory's checks, and a
 * commit whose fsync failed (kept, and remembered for doctor until a later
 * fsync succeeds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LanplugError } from '../../src/errors';
import { DATABASE_FILE, SqliteStore } from '../../src/state/sqlite';
import { SCHEMA_VERSION } from '../../src/state/schema';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { LeaseKeeper, REMEMBER_ADDRESS_MS } from '../../src/dhcp/keeper';
import { NO_LEASE_NETWORKS } from '../../src/dhcp/lease-networks';
import { silentLogger } from '../../src/log';
import type { Check } from '../../src/cli/doctor/check';
import { ControlClient } from '../../src/cli/control-client';
import { askSyncFailure, parseSyncFailure, stateChecks } from '../../src/cli/doctor/state';
import { controlEndpoint } from '../../src/api/control';
import { PluginServer } from '../../src/api/docker/server';
import { StateLock } from '../../src/state/lock';

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-store-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const NETWORK_V1 = JSON.stringify({
  v: 1,
  networkId: 'a'.repeat(64),
  mode: { kind: 'macvlan', mode: 'bridge' },
  parent: { type: 'vlan', name: 'eth0.50', base: 'eth0', vlanId: 50 },
  mtu: null,
  internal: false,
  ipv4: [{ pool: '172.16.86.0/24', gateway: '172.16.86.1' }],
  ipv6: [],
  parentCreated: true,
});
const ENDPOINT_V1 = JSON.stringify({
  v: 1,
  networkId: 'a'.repeat(64),
  endpointId: '1'.repeat(64),
  linkName: 'lp-111111111111',
  mac: '02:42:ac:10:56:02',
  ipv4: '172.16.86.2/24',
  ipv6: null,
});

/** A database exactly as lanplug 0.1 wrote it: no user_version, two tables. */
function writeSchema1(dir: string): void {
  const db = new Database(join(dir, DATABASE_FILE));
  db.exec(`CREATE TABLE networks (id TEXT PRIMARY KEY, record TEXT NOT NULL);
           CREATE TABLE endpoints (network_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (network_id, endpoint_id));`);
  db.prepare('INSERT INTO networks VALUES (?, ?)').run('a'.repeat(64), NETWORK_V1);
  db.prepare('INSERT INTO endpoints VALUES (?, ?, ?)').run('a'.repeat(64), '1'.repeat(64), ENDPOINT_V1);
  db.close();
}

function fileHash(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function refusal(fn: () => unknown): LanplugError {
  try {
    fn();
  } catch (err) {
    if (err instanceof LanplugError) return err;
    throw err;
  }
  assert.fail('expected a refusal');
}

test('a new database gets the current schema', () => {
  withDir((dir) => {
    const store = SqliteStore.open(join(dir, 'state'));
    assert.equal(store.foundVersion, 0);
    store.close();
    const db = new Database(join(dir, 'state', DATABASE_FILE), { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    db.close();
    assert.equal(statSync(join(dir, 'state')).mode & 0o777, 0o700);
  });
});

test('schema 1 (lanplug 0.1) is migrated: its networks and endpoints read back, leftovers work', () => {
  withDir((dir) => {
    writeSchema1(dir);
    const store = SqliteStore.open(dir);
    try {
      assert.equal(store.foundVersion, 1);
      const [network] = store.listNetworks();
      assert.deepEqual(network?.spec.parent, { kind: 'vlan', name: 'eth0.50', base: 'eth0', vlanId: 50 });
      assert.equal(network?.createdAt, 0, 'the age of a migrated row is unknown');
      assert.equal(store.getEndpoint('a'.repeat(64), '1'.repeat(64))?.mac, '02:42:ac:10:56:02');
      store.putLeftover({
        kind: 'endpoint-link',
        name: 'lp-111111111111',
        networkId: 'a'.repeat(64),
        endpointId: '1'.repeat(64),
        reason: 'test',
      });
      assert.equal(store.listLeftovers().length, 1);
    } finally {
      store.close();
    }
    const again = SqliteStore.open(dir);
    assert.equal(again.foundVersion, SCHEMA_VERSION, 'migrated once');
    again.close();
  });
});

test('a newer schema is refused with one line and the file is not touched', () => {
  withDir((dir) => {
    const path = join(dir, DATABASE_FILE);
    const db = new Database(path);
    db.pragma('user_version = 9');
    db.close();
    const before = fileHash(path);
    const err = refusal(() => SqliteStore.open(dir));
    assert.equal(
      err.message,
      `${path} has schema version 9, newer than this lanplug understands (${SCHEMA_VERSION}); lanplug leaves it as it is: run the lanplug that wrote it, or move it aside (mv ${path} ${path}.newer)`,
    );
    assert.equal(fileHash(path), before);
  });
});

test('a file that is not a database is refused, named, and left as it is', () => {
  withDir((dir) => {
    const path = join(dir, DATABASE_FILE);
    writeFileSync(path, 'not sqlite '.repeat(100));
    const before = fileHash(path);
    const err = refusal(() => SqliteStore.open(dir));
    assert.match(
      err.message,
      new RegExp(
        `^${path.replace(/\//g, '\\/')} is not a readable lanplug database \\(file is not a database\\); lanplug leaves it as it is: move it aside`,
      ),
    );
    assert.equal(fileHash(path), before);
  });
});

test("a database with someone else's tables is refused", () => {
  withDir((dir) => {
    const db = new Database(join(dir, DATABASE_FILE));
    db.exec('CREATE TABLE users (name TEXT)');
    db.close();
    assert.match(refusal(() => SqliteStore.open(dir)).message, /holds tables \(users\) that are not lanplug's/);
  });
});

test('a row that cannot be read is an error naming it, never an absent network', () => {
  withDir((dir) => {
    const store = SqliteStore.open(dir);
    store.close();
    const db = new Database(join(dir, DATABASE_FILE));
    db.prepare('INSERT INTO networks (id, record) VALUES (?, ?)').run(
      'b'.repeat(64),
      JSON.stringify({ v: 9, networkId: 'b'.repeat(64) }),
    );
    db.close();
    const reopened = SqliteStore.open(dir);
    try {
      const err = refusal(() => reopened.listNetworks());
      assert.match(err.message, /the network row bbbbbbbbbbbb cannot be read \(unsupported record version 9\)/);
      assert.equal(refusal(() => reopened.getNetwork('b'.repeat(64))).message, err.message);
    } finally {
      reopened.close();
    }
  });
});

test('the state directory is refused, never chmodded, when others may write to it', () => {
  withDir((dir) => {
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    assert.match(
      refusal(() => SqliteStore.open(shared)).message,
      /^state directory .*shared is writable by everyone \(mode 1777\); lanplug does not change it/,
    );
    assert.equal(statSync(shared).mode & 0o7777, 0o1777, 'the sticky bit and mode are as they were');
    assert.equal(existsSync(join(shared, DATABASE_FILE)), false);
    chmodSync(shared, 0o770);
    assert.match(refusal(() => SqliteStore.open(shared)).message, /is writable by its group \(mode 0770\)/);
  });
});

test('read-only opening creates nothing: a mistyped path is an error, not a new database', () => {
  withDir((dir) => {
    const missing = join(dir, 'mistyped');
    assert.equal(
      refusal(() => SqliteStore.openReadOnly(missing)).message,
      `no lanplug state directory at ${missing} (the lanplug daemon creates it at its first start)`,
    );
    assert.equal(existsSync(missing), false);
    assert.match(
      refusal(() => SqliteStore.openReadOnly(dir)).message,
      /lanplug\.db does not exist or cannot be opened; the lanplug daemon creates it at its first start$/,
    );
    assert.equal(existsSync(join(dir, DATABASE_FILE)), false);
  });
});

test('a network record reads back exactly as written, every field', async () => {
  const { encodeNetwork, decodeNetwork } = await import('../../src/state/records');
  const record = {
    spec: {
      networkId: 'c'.repeat(64),
      mode: { kind: 'ipvlan' as const, mode: 'l3' as const, flag: 'private' as const },
      parent: { kind: 'vlan' as const, name: 'eth0.50', base: 'eth0', vlanId: 50 },
      mtu: 1400,
      internal: true,
      ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
      ipv6: [{ pool: parsePrefix('2001:db8::/64'), gateway: null }],
      hostAccess: { ipv4: parseAddress('172.16.86.254'), ipv6: parseAddress('2001:db8::fe') },
      conflict: 'warn' as const,
      announce: { count: 1, intervalMs: 250 },
      dhcp: { ipv4: true, ipv6: true, timeoutMs: 7000, askedBy: 'ipam' as const },
    },
    parentCreated: true,
  };
  assert.deepEqual(decodeNetwork(encodeNetwork(record)), record);
  const slaac = { ...record, spec: { ...record.spec, slaac: { rtInfoMaxPlen: 64 } } };
  assert.deepEqual(decodeNetwork(encodeNetwork(slaac)), slaac);
});

test('a lease record reads back exactly as written; the last address of a client id is remembered', async () => {
  const { encodeLease, decodeLease } = await import('../../src/state/records');
  const record = {
    networkId: 'c'.repeat(64),
    endpointId: 'd'.repeat(64),
    identity: {
      mac: '02:00:00:00:00:09',
      clientId: '0102000000000009',
      duid: '00030001020000000009',
      iaid: 1,
      stable: true,
      hostname: 'web',
      broadcast: true,
    },
    leases: [
      {
        family: 4 as const,
        address: parsePrefix('172.16.86.50/24'),
        router: parseAddress('172.16.86.1'),
        dns: [parseAddress('172.16.86.1'), parseAddress('9.9.9.9')],
        serverId: parseAddress('172.16.86.1'),
        serverMac: '02:00:00:00:00:01',
        serverDuid: null,
        leaseSeconds: 120,
        renewSeconds: 60,
        rebindSeconds: 105,
        boundAt: 1_700_000_000_000,
        state: 'bound' as const,
      },
      {
        family: 6 as const,
        address: parsePrefix('2001:db8:86::150/64'),
        router: null,
        dns: [parseAddress('2001:db8:86::53')],
        serverId: parseAddress('fe80::1'),
        serverMac: '02:00:00:00:00:01',
        serverDuid: '000100012a2b3c4d020000000001',
        leaseSeconds: 3600,
        renewSeconds: 1800,
        rebindSeconds: 2880,
        boundAt: 1_700_000_000_000,
        state: 'renewing' as const,
      },
    ],
    // The server moved the IPv4 lease since: Docker still knows the endpoint by its first address.
    dockerAddresses: [parseAddress('172.16.86.40'), parseAddress('2001:db8:86::150')],
    sandboxKey: '/var/run/docker/netns/abc',
    renewedAt: null,
    failures: 2,
    lastError: 'no answer',
  };
  assert.deepEqual(decodeLease(encodeLease(record)), record);
  // A row written before the addresses given to Docker were kept: they are the leases' own.
  const older = JSON.parse(encodeLease(record)) as Record<string, unknown>;
  delete older['dockerAddresses'];
  assert.deepEqual(
    decodeLease(JSON.stringify(older)).dockerAddresses.map((a) => a.text),
    ['172.16.86.50', '2001:db8:86::150'],
  );
  const dir = mkdtempSync(join(tmpdir(), 'lp-lease-'));
  try {
    const store = SqliteStore.open(dir);
    store.putLease(record, true);
    assert.deepEqual(store.getLease(record.networkId, record.endpointId)?.leases, record.leases);
    assert.equal(store.listLeases().length, 1);
    store.deleteLease(record.networkId, record.endpointId);
    assert.equal(store.getLease(record.networkId, record.endpointId), null);
    assert.equal(store.lastAddress('0102000000000009'), null);
    store.rememberAddress('0102000000000009', parseAddress('172.16.86.50'));
    assert.equal(store.lastAddress('0102000000000009')?.text, '172.16.86.50');
    // Remembered rows do not pile up for ever (a pod per container id): the keeper's sweep forgets old ones.
    assert.equal(store.forgetAddressesBefore(Date.now() - 60_000), 0, 'a fresh row stays');
    assert.equal(store.forgetAddressesBefore(Date.now() + 1), 1);
    assert.equal(store.lastAddress('0102000000000009'), null);
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the state directory's instance id (in a shared-pool host's etcd registration) is made once and kept across restarts; another directory has another", () => {
  withDir((dir) => {
    const first = SqliteStore.open(join(dir, 'a'));
    const id = first.instanceId();
    assert.match(id, /^[0-9a-f]{16}$/);
    assert.equal(first.instanceId(), id);
    first.close();
    const again = SqliteStore.open(join(dir, 'a'));
    assert.equal(again.instanceId(), id, 'a restarted daemon is the same instance');
    again.close();
    const other = SqliteStore.open(join(dir, 'b'));
    assert.notEqual(other.instanceId(), id);
    other.close();
  });
});

test('the lease keeper remembers an address it released for a minute on the monotonic clock: a wall clock set forward a day does not forget it at once, one set back an hour does not keep it for the hour', (t) => {
  let wall = Date.UTC(2026, 11, 6);
  t.mock.method(Date, 'now', () => wall);
  withDir((dir) => {
    const store = SqliteStore.open(dir);
    let monotonic = 10_000;
    const keeper = new LeaseKeeper(store, silentLogger, NO_LEASE_NETWORKS, () => monotonic);
    const address = parseAddress('172.16.86.120');
    keeper.hold({
      networkId: 'n'.repeat(64),
      endpointId: 'e'.repeat(64),
      identity: {
        mac: '02:00:00:00:06:01',
        clientId: '01020000000601',
        duid: '00030001020000000601',
        iaid: 1,
        stable: false,
        hostname: null,
        broadcast: false,
      },
      leases: [
        {
          family: 4,
          address: parsePrefix('172.16.86.120/24'),
          router: null,
          dns: [],
          serverId: parseAddress('172.16.86.1'),
          serverMac: '02:00:00:00:00:01',
          serverDuid: null,
          leaseSeconds: 120,
          renewSeconds: 60,
          rebindSeconds: 105,
          boundAt: wall,
          state: 'bound',
        },
      ],
      dockerAddresses: [address],
      sandboxKey: '/run/netns/none',
      renewedAt: null,
      failures: 0,
      lastError: null,
    });
    keeper.release('n'.repeat(64), 'e'.repeat(64), 'leave');
    wall += 24 * 3_600_000;
    monotonic += 1_000;
    assert.equal(keeper.releasedLately(address), true, 'forgotten a second after the release');
    wall -= 25 * 3_600_000;
    monotonic += 60_000;
    assert.equal(keeper.releasedLately(address), false, 'still remembered a minute after the release');
    store.close();
  });
});

test("the lease keeper's sweep forgets last addresses remembered more than a month ago, and keeps the month's", () => {
  withDir((dir) => {
    const store = SqliteStore.open(dir);
    const keeper = new LeaseKeeper(store, silentLogger, NO_LEASE_NETWORKS);
    store.rememberAddress('01old', parseAddress('172.16.86.60'));
    store.rememberAddress('01new', parseAddress('172.16.86.61'));
    // The sweep runs a month and a minute after 'old' was remembered, 'new' a minute later still.
    keeper.sweep(Date.now() + REMEMBER_ADDRESS_MS + 60_000);
    assert.equal(store.lastAddress('01old'), null);
    assert.equal(store.lastAddress('01new'), null, 'both are older than a month by then');
    store.rememberAddress('01new', parseAddress('172.16.86.61'));
    keeper.sweep();
    assert.equal(store.lastAddress('01new')?.text, '172.16.86.61', 'a row of this month stays');
    store.close();
  });
});

test("a commit whose fsync fails (EIO) is kept and remembered where the store shows it (its figures, for doctor) until the store is closed, the first failure's time and the count with the last: a later fsync that succeeds does not clear it", () => {
  withDir((dir) => {
    let failWith: string | null = null;
    const fsync = (): void => {
      if (failWith !== null) throw Object.assign(new Error(`${failWith}: i/o error, fsync`), { code: failWith });
    };
    const store = SqliteStore.open(dir, silentLogger, fsync);
    // Read afresh each time (asserting on the getter itself would narrow its type for the rest of the test).
    const syncFailure = () => store.syncFailure;
    try {
      store.setMeta('first', '1');
      assert.ok(!syncFailure(), 'a confirmed write leaves nothing');
      failWith = 'EIO';
      const before = Date.now();
      store.setMeta('second', '2');
      assert.equal(store.getMeta('second'), '2', 'the write is kept: SQLite committed it');
      const failure = syncFailure();
      assert.ok(failure, 'the failed fsync is remembered');
      assert.equal(failure.code, 'EIO');
      assert.equal(failure.path, join(dir, `${DATABASE_FILE}-wal`));
      assert.ok(failure.at >= before && failure.at <= Date.now());
      assert.equal(failure.since, failure.at, 'the first is the last');
      assert.equal(failure.count, 1);
      assert.deepEqual(store.figures().syncFailure, failure, "in the figures Lanplug.Stats answers (doctor's source)");
      // A later millisecond: the second failure's time differs from the first's.
      while (Date.now() <= failure.at);
      // Inside a transaction: the fsync after its commit counts the same; the first's time is kept, the last's code taken.
      failWith = 'ENOSPC';
      store.transaction(() => store.setMeta('third', '3'));
      const second = syncFailure();
      assert.ok(second);
      assert.deepEqual(
        { since: second.since, count: second.count, code: second.code, path: second.path },
        { since: failure.at, count: 2, code: 'ENOSPC', path: failure.path },
      );
      assert.ok(second.at > failure.at, 'the last failure is the second');
      // A later fsync that succeeds proves nothing for the pages the failed one lost (Linux reports a
      // writeback error once): the failure stays, and is not counted.
      failWith = null;
      store.setMeta('fourth', '4');
      assert.deepEqual(syncFailure(), second);
      assert.deepEqual(store.figures().syncFailure, second);
    } finally {
      store.close();
    }
  });
});

test("doctor's state directory check warns, naming since when, how often, and the last errno and file, when the daemon's fsync failed since it started; ok without one", () => {
  withDir((dir) => {
    const run = (failure: Parameters<typeof stateChecks>[2]): Check[] => {
      const checks: Check[] = [];
      stateChecks(
        { stateDir: dir, pluginDir: dir, dockerSocket: join(dir, 'docker.sock'), cniSocket: null },
        (check, status, detail, fix) => checks.push({ check, status, detail, ...(fix === undefined ? {} : { fix }) }),
        failure,
      );
      return checks.filter((c) => c.check === 'state directory');
    };
    const wal = join(dir, `${DATABASE_FILE}-wal`);
    const since = Date.UTC(2026, 11, 5, 21, 30);
    const at = Date.UTC(2026, 11, 6, 8, 15, 2);
    const [warned, ...more] = run({ since, count: 2, at, code: 'EIO', path: wal });
    assert.equal(more.length, 0, 'one state directory line');
    assert.equal(warned?.status, 'warn');
    assert.equal(
      warned?.detail,
      `${dir}: its disk failed to confirm writes of the daemon: fsync failed 2 times since the daemon started, first at 2026-12-05T21:30:00.000Z, last at 2026-12-06T08:15:02.000Z (EIO on ${wal}); the database has them, but a power loss may take them, and no later fsync can confirm them`,
    );
    assert.match(warned?.fix ?? '', /dmesg.*until the daemon restarts/);
    assert.equal(
      run({ since, count: 1, at: since, code: 'ENOSPC', path: wal })[0]?.detail,
      `${dir}: its disk failed to confirm a write of the daemon (fsync of ${wal} failed with ENOSPC at 2026-12-05T21:30:00.000Z); the database has it, but a power loss may take it, and no later fsync can confirm it`,
    );
    // A daemon older than the count told its last failure alone: said as it was.
    assert.equal(
      run({ since: null, count: null, at, code: 'EIO', path: wal })[0]?.detail,
      `${dir}: its disk failed to confirm a write of the daemon (fsync of ${wal} failed with EIO at 2026-12-06T08:15:02.000Z, the last such failure since the daemon started); the database has the write, but a power loss may take it, and no later fsync can confirm it`,
    );
    assert.deepEqual(
      run(null).map((c) => c.status),
      ['ok'],
    );
  });
});

test("doctor takes the daemon's failed fsyncs only well typed: since and count both (a time it can print, a count of at least 1) or neither (an older daemon)", () => {
  const last = { at: Date.UTC(2026, 11, 6), code: 'EIO', path: '/var/lib/lanplug/lanplug.db-wal' };
  const since = Date.UTC(2026, 11, 5);
  assert.deepEqual(parseSyncFailure({ ...last, since, count: 3 }), { ...last, since, count: 3 });
  assert.deepEqual(parseSyncFailure(last), { ...last, since: null, count: null }, "an older daemon's answer");
  for (const bad of [
    { ...last, since },
    { ...last, count: 3 },
    { ...last, since: String(since), count: 3 },
    { ...last, since: 8.7e15, count: 3 },
    { ...last, since: Number.NaN, count: 3 },
    { ...last, since, count: 0 },
    { ...last, code: 'EIO\u001b[2J' }, // a terminal's escape in what doctor prints
    { ...last, path: `/var/lib/${'x'.repeat(5_000)}` },
    { ...last, code: '' },
    { ...last, since, count: 2.5 },
    { ...last, since, count: '3' },
    { ...last, since, count: Number.POSITIVE_INFINITY },
    { ...last, at: undefined, since, count: 3 },
    { ...last, code: 5, since, count: 3 },
    { ...last, path: null, since, count: 3 },
    null,
    'EIO',
  ])
    assert.equal(parseSyncFailure(bad), null, JSON.stringify(bad));
});

test('an out-of-descriptors open of the write-ahead log (EMFILE) is said as such, not kept as a failed fsync of the disk; the next write confirms', () => {
  withDir((dir) => {
    const errors: string[] = [];
    const log = { ...silentLogger, error: (msg: string) => errors.push(msg) };
    // The log is opened for its first fsync, at the first durable write after the store opened.
    const store = SqliteStore.open(dir, log);
    const held: number[] = [];
    try {
      // Every descriptor this process may still open taken (synchronously: nothing else runs meanwhile).
      try {
        for (;;) held.push(openSync('/dev/null', 'r'));
      } catch (err) {
        assert.equal((err as { code?: unknown }).code, 'EMFILE');
      }
      store.setMeta('k', 'v');
      for (const fd of held.splice(0)) closeSync(fd);
      assert.equal(store.getMeta('k'), 'v', 'committed all the same');
      assert.equal(store.syncFailure, null, 'no disk failure for doctor');
      assert.equal(errors.length, 1, errors.join('\n'));
      assert.match(
        errors[0] ?? '',
        /^lanplug is out of file descriptors \(EMFILE\): it could not open the database's write-ahead log/,
      );
      assert.doesNotMatch(errors[0] ?? '', /disk/);
      store.setMeta('k', 'w');
      assert.equal(store.syncFailure, null);
      assert.equal(errors.length, 1, 'the next write opened the log and confirmed');
    } finally {
      for (const fd of held) closeSync(fd);
      store.close();
    }
  });
});

test("doctor learns the running daemon's failed fsync over the control socket (Lanplug.SyncFailure, not the costly Lanplug.Stats), and keeps warning after a later one succeeded", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-store-'));
  const lock = StateLock.acquire(dir, { kind: 'daemon' });
  let failWith: string | null = 'ENOSPC';
  const store = SqliteStore.open(dir, silentLogger, () => {
    if (failWith !== null)
      throw Object.assign(new Error(`${failWith}: no space left on device, fsync`), { code: failWith });
  });
  const reject = (): Promise<never> => Promise.reject(new Error('not asked'));
  const server = await PluginServer.listen(
    dir,
    controlEndpoint(
      { gc: reject, sharedPools: reject, forget: reject },
      () => {
        throw new Error('doctor must not ask for Lanplug.Stats');
      },
      { listing: reject, health: reject, syncFailure: () => store.syncFailure },
    ),
    silentLogger,
  );
  try {
    store.setMeta('k', 'v');
    // What runDoctor hands its state directory check (whose text the test above reads).
    const told = await askSyncFailure(new ControlClient(dir));
    assert.ok(told !== null && !('unasked' in told));
    assert.equal(told?.code, 'ENOSPC');
    assert.equal(told?.path, join(dir, `${DATABASE_FILE}-wal`));
    failWith = null;
    store.setMeta('k', 'w');
    assert.deepEqual(
      await askSyncFailure(new ControlClient(dir)),
      told,
      'a later fsync that succeeded does not clear it',
    );
  } finally {
    await server.close();
    store.close();
    lock.release();
    rmSync(dir, { recursive: true, force: true });
  }
});
