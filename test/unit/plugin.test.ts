/**
 * The managed plugin's parts that need no dockerd: who holds the state
 * directory and the one line each side prints, one socket serving the
 * network driver and IPAM APIs with each API's own error field, the relay
 * between two sockets, the role read from the plugin's environment, the
 * packages and config a build ships. The Docker lane builds, enables,
 * upgrades and removes the real plugins (test/e2e/managed-plugin.test.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ipamRoutes } from '../../src/api/docker/ipam-routes';
import { LanplugIpam } from '../../src/endpoint/lanplug-ipam';
import { networkDriverRoutes } from '../../src/api/docker/routes';
import { combinedEndpoint, PluginServer } from '../../src/api/docker/server';
import { NetworkDriver } from '../../src/driver/network-driver';
import { EndpointService } from '../../src/endpoint/service';
import { LanplugError } from '../../src/errors';
import { IpamAllocator } from '../../src/ipam/allocator';
import { silentLogger } from '../../src/log';
import { pluginConfig } from '../../src/plugin/manifest';
import { UnixRelay } from '../../src/plugin/relay';
import { productionPackages } from '../../src/plugin/rootfs';
import { managedRoleFromEnv } from '../../src/plugin/serve';
import { lockHolder, StateLock } from '../../src/state/lock';
import { LocalAddressBook } from '../../src/state/address-book';
import { SqliteStore } from '../../src/state/sqlite';
import { post as postTo } from '../support/plugin-http';
import { FakeRtnl } from '../support/fake-rtnl';
import { repoRoot } from '../support/repo';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-plugin-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function post(socketPath: string, path: string, body: object): ReturnType<typeof postTo> {
  return postTo(socketPath, path, JSON.stringify(body));
}

test('the lock says who holds it: a legacy daemon and a managed plugin refuse each other in one line', () => {
  const state = mkdtempSync(join(dir, 'state-'));
  const plugin = StateLock.acquire(state, { kind: 'plugin', name: 'lanplug/macvlan:latest' });
  try {
    assert.deepEqual(lockHolder(state), {
      pid: process.pid,
      owner: { kind: 'plugin', name: 'lanplug/macvlan:latest' },
    });
    assert.throws(
      () => StateLock.acquire(state),
      (err: unknown) =>
        err instanceof LanplugError &&
        err.code === 'Conflict' &&
        err.message ===
          `the managed Docker plugin lanplug/macvlan:latest holds ${state}/lanplug.lock: a managed and a legacy lanplug never share a state directory; disable the managed plugins first (docker plugin disable lanplug/macvlan:latest lanplug/ipvlan:latest) or give this daemon another --state-dir`,
    );
    // The other plugin gets the holder back, to relay to it.
    const other = StateLock.tryAcquire(state, { kind: 'plugin', name: 'lanplug/ipvlan:latest' });
    assert.ok(!(other instanceof StateLock));
    assert.deepEqual(other.owner, { kind: 'plugin', name: 'lanplug/macvlan:latest' });
  } finally {
    plugin.release();
  }
  // `lanplug gc` run by hand holds it for a moment: a plugin waits, a daemon is told to try again.
  const gc = StateLock.acquire(state, { kind: 'gc' });
  try {
    assert.deepEqual(lockHolder(state), { pid: process.pid, owner: { kind: 'gc' } });
    assert.throws(
      () => StateLock.acquire(state),
      /^LanplugError: lanplug gc \(pid \d+\) holds \S+ for the moment it reconciles/,
    );
  } finally {
    gc.release();
  }
  const daemon = StateLock.acquire(state);
  try {
    assert.deepEqual(lockHolder(state), { pid: process.pid, owner: { kind: 'daemon' } });
    assert.throws(
      () => StateLock.acquire(state, { kind: 'plugin', name: 'lanplug/ipvlan:latest' }),
      new RegExp(
        `^LanplugError: a lanplug daemon \\(pid ${process.pid}\\) outside Docker holds \\S+: .* then docker plugin set lanplug/ipvlan:latest state\\.source=DIR\\)$`,
      ),
    );
  } finally {
    daemon.release();
  }
});

test('one socket serves the network driver and IPAM APIs, each error in its own field', async () => {
  const store = SqliteStore.open(mkdtempSync(join(dir, 'store-')));
  const driver = new NetworkDriver(new FakeRtnl(), store, silentLogger);
  const endpoint = combinedEndpoint('lanplug', [
    {
      name: 'lanplug-macvlan',
      routes: networkDriverRoutes(new EndpointService(driver, silentLogger, null, null), 'macvlan'),
      errorField: 'Err',
    },
    {
      name: 'lanplug',
      routes: ipamRoutes(new LanplugIpam(new IpamAllocator(new LocalAddressBook(store), silentLogger))),
      errorField: 'Error',
    },
  ]);
  const server = await PluginServer.listen(join(dir, 'combined'), endpoint, silentLogger);
  try {
    assert.equal(statSync(server.socketPath).mode & 0o777, 0o600);
    assert.deepEqual((await post(server.socketPath, '/Plugin.Activate', {})).json, {
      Implements: ['NetworkDriver', 'IpamDriver'],
    });
    const driverError = await post(server.socketPath, '/NetworkDriver.DeleteNetwork', {});
    assert.equal(driverError.status, 400);
    assert.match(String(driverError.json.Err), /NetworkID/);
    // The IPAM API carries its error in a 200 reply, under Error.
    const ipamError = await post(server.socketPath, '/IpamDriver.ReleasePool', {});
    assert.equal(ipamError.status, 200);
    assert.match(String(ipamError.json.Error), /PoolID/);
    assert.deepEqual((await post(server.socketPath, '/IpamDriver.GetCapabilities', {})).json, {
      RequiresMACAddress: false,
      RequiresRequestReplay: false,
    });
  } finally {
    await server.close();
    store.close();
  }
});

test('the relay passes calls both ways to the socket that serves them, and fails a call when nothing does', async () => {
  const target = await PluginServer.listen(
    join(dir, 'target'),
    { name: 'peer', routes: new Map([['/Echo', (body) => ({ Got: body })]]), errorField: 'Err' },
    silentLogger,
  );
  const relay = await UnixRelay.listen(join(dir, 'relay.sock'), target.socketPath, silentLogger);
  try {
    assert.equal(statSync(relay.path).mode & 0o777, 0o600);
    assert.deepEqual((await post(relay.path, '/Echo', { A: 1 })).json, { Got: { A: 1 } });
    await target.close();
    await assert.rejects(post(relay.path, '/Echo', {}));
  } finally {
    await relay.close();
  }
});

test("the plugin's role comes from its environment; a broken value is refused in one line", () => {
  const { role } = managedRoleFromEnv({ LANPLUG_PLUGIN_NAME: 'lanplug/ipvlan:latest', LANPLUG_DRIVER: 'ipvlan' });
  assert.deepEqual(role, { pluginName: 'lanplug/ipvlan:latest', kind: 'ipvlan', socketName: 'lanplug' });
  assert.throws(
    () => managedRoleFromEnv({ LANPLUG_PLUGIN_NAME: 'lanplug/ipvlan:latest', LANPLUG_DRIVER: 'bridge' }),
    /LANPLUG_DRIVER must be one of macvlan, ipvlan; got 'bridge'/,
  );
  assert.throws(
    () =>
      managedRoleFromEnv({
        LANPLUG_PLUGIN_NAME: 'lanplug/ipvlan:latest',
        LANPLUG_DRIVER: 'ipvlan',
        LANPLUG_LOG: 'loud',
      }),
    /LANPLUG_LOG must be one of debug, info, warn, error; got 'loud' \(docker plugin set lanplug\/ipvlan:latest LANPLUG_LOG=info\)/,
  );
});

test('a build ships the production dependencies only, and a config with the least capabilities', () => {
  const packages = productionPackages(repoRoot()).map((d) => basename(d));
  for (const needed of ['better-sqlite3', 'koffi', 'bindings']) assert.ok(packages.includes(needed), needed);
  for (const dev of ['typescript', 'eslint', 'prettier']) assert.ok(!packages.includes(dev), dev);
  const config = pluginConfig('macvlan', 'latest', '0.1.0') as {
    interface: { types: string[]; socket: string };
    network: { type: string };
    linux: { capabilities: string[] };
    mounts: { name: string; settable?: string[] }[];
  };
  assert.deepEqual(config.interface, {
    types: ['docker.networkdriver/1.0', 'docker.ipamdriver/1.0'],
    socket: 'lanplug.sock',
  });
  assert.equal(config.network.type, 'host');
  assert.deepEqual(config.linux.capabilities, ['CAP_NET_ADMIN']);
  assert.deepEqual(
    config.mounts.map((m) => `${m.name}:${(m.settable ?? []).join(',')}`),
    ['state:source', 'docker:source'],
  );
});
