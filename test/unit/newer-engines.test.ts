/**
 * The remote API as Docker 28 and 29 speak it, replayed from the bodies their
 * source sends (moby's daemon/libnetwork/drivers/remote: api.go and
 * driver.go, and the options netlabel names), for what the lab's engines do
 * not send: 20.10 never asks GwAllocCheck, and no lane runs 29. The Docker 28
 * lane (test/docker28/) runs the rest on a real 28.5.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineVersion, engineFeatures, parseEngineVersion } from '../../src/api/docker/engine-version';
import { networkDriverRoutes } from '../../src/api/docker/routes';
import { PluginServer } from '../../src/api/docker/server';
import { NetworkDriver } from '../../src/driver/network-driver';
import { EndpointService } from '../../src/endpoint/service';
import { silentLogger } from '../../src/log';
import { SqliteStore } from '../../src/state/sqlite';
import { FakeRtnl } from '../support/fake-rtnl';
import { replaysEngineBodies } from '../support/engine-proof';
import { post } from '../support/plugin-http';

// Its tagged tests are the versions table's proof for Docker 29 (docs/docker.md), which no lane runs.
replaysEngineBodies('docker29');

const NETWORK_ID = 'd'.repeat(64);
const ENDPOINT_ID = 'e'.repeat(64);
let dir: string;
let store: SqliteStore;
let server: PluginServer;
let engine: EngineVersion;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-newer-'));
  store = SqliteStore.open(join(dir, 'state'));
  engine = new EngineVersion(store);
  const driver = new NetworkDriver(new FakeRtnl(), store, silentLogger);
  server = await PluginServer.listen(
    join(dir, 'plugins'),
    {
      name: 'lanplug-macvlan',
      routes: networkDriverRoutes(new EndpointService(driver, silentLogger, null, null), 'macvlan', engine),
      errorField: 'Err',
    },
    silentLogger,
  );
});

after(async () => {
  await server.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = async (path: string, body: object): Promise<Record<string, unknown>> => {
  const answer = await post(server.socketPath, path, JSON.stringify(body));
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  return answer.json;
};

/** GwAllocCheck's body: the Options CreateNetwork will carry (api.go GwAllocCheckerRequest). */
const gwAllocCheck = (internal: boolean): object => ({
  Options: {
    'com.docker.network.enable_ipv4': true,
    'com.docker.network.enable_ipv6': false,
    'com.docker.network.generic': { parent: 'eth0' },
    ...(internal ? { 'com.docker.network.internal': true } : {}),
  },
});

test("GwAllocCheck answers as the engine's own macvlan: 29 reserves no gateway without --gateway, 28 only for --internal, an engine not known yet as 28 [engine:gateway-without-flag]", async () => {
  const ask = (internal: boolean): Promise<Record<string, unknown>> =>
    call('/NetworkDriver.GwAllocCheck', gwAllocCheck(internal));
  assert.deepEqual(await ask(false), { SkipIPv4: false, SkipIPv6: false }, 'not known yet: a gateway is reserved');
  engine.learned('28.5.2');
  assert.deepEqual(await ask(false), { SkipIPv4: false, SkipIPv6: false });
  assert.deepEqual(await ask(true), { SkipIPv4: true, SkipIPv6: true });
  engine.learned('29.7.2');
  assert.deepEqual(await ask(false), { SkipIPv4: true, SkipIPv6: true });
  assert.equal(new EngineVersion(store).known, '29.7.2', 'remembered across a restart of the daemon');
});

test('Docker 28 and 29 CreateEndpoint options (ifname, sysctls, the MAC of connect --mac-address) and Join options: accepted as 20.10s [engine:mac-address] [engine:endpoint-sysctls] [engine:gw-priority]', async () => {
  await call('/NetworkDriver.CreateNetwork', {
    NetworkID: NETWORK_ID,
    Options: {
      'com.docker.network.enable_ipv4': true,
      'com.docker.network.enable_ipv6': false,
      'com.docker.network.generic': { parent: 'eth0' },
    },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Gateway: '172.16.86.1/24', Pool: '172.16.86.0/24' }],
    IPv6Data: [],
  });
  const created = await call('/NetworkDriver.CreateEndpoint', {
    NetworkID: NETWORK_ID,
    EndpointID: ENDPOINT_ID,
    // docker network connect --mac-address (29.3) fills it as --mac-address does on docker run.
    Interface: { Address: '172.16.86.7/24', AddressIPv6: '', MacAddress: '02:00:00:00:00:29' },
    Options: {
      'com.docker.network.endpoint.exposedports': [],
      'com.docker.network.portmap': [],
      'com.docker.network.endpoint.macaddress': 'AgAAAAAp',
      // 28: the name asked for inside the container; a remote driver's answer cannot carry it (moby#52865).
      'com.docker.network.endpoint.ifname': 'lan0',
      // 27: applied by Docker itself in the container once the link is there.
      'com.docker.network.endpoint.sysctls': 'net.ipv4.conf.IFNAME.arp_notify=1',
    },
  });
  assert.equal(created['Interface'] ?? null, null, 'a MAC Docker gave is not answered again');
  const joined = await call('/NetworkDriver.Join', {
    NetworkID: NETWORK_ID,
    EndpointID: ENDPOINT_ID,
    SandboxKey: '/var/run/docker/netns/29',
    Options: { 'com.docker.network.endpoint.gwpriority': 10 },
  });
  assert.equal(joined['Gateway'], '172.16.86.1');
  await call('/NetworkDriver.Leave', { NetworkID: NETWORK_ID, EndpointID: ENDPOINT_ID });
  await call('/NetworkDriver.DeleteEndpoint', { NetworkID: NETWORK_ID, EndpointID: ENDPOINT_ID });
  await call('/NetworkDriver.DeleteNetwork', { NetworkID: NETWORK_ID });
});

test('what each engine gives a lanplug network, by version (for lanplug doctor)', () => {
  assert.deepEqual(parseEngineVersion('20.10.24+dfsg1'), { major: 20, minor: 10 });
  assert.equal(parseEngineVersion('nightly'), null);
  assert.deepEqual(engineFeatures('20.10.24+dfsg1'), []);
  assert.ok(engineFeatures('28.5.2').includes('IPv6-only networks'));
  assert.ok(!engineFeatures('28.5.2').includes('no gateway without --gateway'));
  assert.ok(engineFeatures('29.0.0').includes('no gateway without --gateway'));
  assert.ok(!engineFeatures('29.2.1').includes('network connect --mac-address'));
  assert.ok(engineFeatures('29.3.0').includes('network connect --mac-address'));
});
