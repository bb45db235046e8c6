/**
 * The remote driver API's shapes, over a real unix socket, with the JSON
 * dockerd 20.10 was observed to send (shared/DESIGN.md). The driver below
 * runs on the in-memory link table; the Docker lane runs the same API with
 * dockerd itself.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { networkDriverRoutes } from '../../src/api/docker/routes';
import { PluginServer } from '../../src/api/docker/server';
import { NetworkDriver } from '../../src/driver/network-driver';
import { EndpointService } from '../../src/endpoint/service';
import { events } from '../../src/metrics/events';
import { silentLogger } from '../../src/log';
import { SqliteStore } from '../../src/state/sqlite';
import { post as postTo } from '../support/plugin-http';
import { FakeRtnl } from '../support/fake-rtnl';

let dir: string;
let store: SqliteStore;
let server: PluginServer;
let socket: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-api-'));
  store = SqliteStore.open(join(dir, 'state'));
  const driver = new NetworkDriver(new FakeRtnl(), store, silentLogger);
  server = await PluginServer.listen(
    join(dir, 'plugins'),
    {
      name: 'lanplug-macvlan',
      routes: networkDriverRoutes(new EndpointService(driver, silentLogger, null, null), 'macvlan'),
      errorField: 'Err',
    },
    silentLogger,
  );
  socket = server.socketPath;
});

after(async () => {
  await server.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A request to the server under test, as dockerd sends it. */
function post(path: string, body: string | object, method = 'POST'): ReturnType<typeof postTo> {
  return postTo(socket, path, typeof body === 'string' ? body : JSON.stringify(body), { method });
}

const NETWORK_ID = '5e3ec79625d388dbcc03dcf4a6dc4548644eb99d58864cf8eee2252dcfc0cc9f';
const ENDPOINT_ID = '8caf93c862b22f379b60515975acf96f7b54b7cf0ba0fb4a33cf18ae9e5c1d89';

test('the socket is root-only', () => {
  assert.equal(statSync(socket).mode & 0o777, 0o600);
});

test('activation and capabilities', async () => {
  assert.deepEqual((await post('/Plugin.Activate', '')).json, { Implements: ['NetworkDriver'] });
  assert.deepEqual((await post('/NetworkDriver.GetCapabilities', '')).json, {
    Scope: 'local',
    ConnectivityScope: 'global',
    GwAllocChecker: true,
  });
});

test('the observed dockerd sequence: CreateNetwork, CreateEndpoint, Join, Leave, DeleteEndpoint, DeleteNetwork', async () => {
  const create = await post('/NetworkDriver.CreateNetwork', {
    NetworkID: NETWORK_ID,
    Options: {
      'com.docker.network.enable_ipv6': false,
      'com.docker.network.generic': { macvlan_mode: 'bridge', parent: 'eth0' },
    },
    IPv4Data: [
      {
        AddressSpace: 'LocalDefault',
        AuxAddresses: { 'my-router': '172.16.86.129/24' },
        Gateway: '172.16.86.1/24',
        Pool: '172.16.86.0/24',
      },
    ],
    IPv6Data: [],
  });
  assert.deepEqual(create, { status: 200, json: {} });
  const endpoint = await post('/NetworkDriver.CreateEndpoint', {
    NetworkID: NETWORK_ID,
    EndpointID: ENDPOINT_ID,
    Interface: { Address: '172.16.86.128/24', AddressIPv6: '', MacAddress: '' },
    Options: {},
  });
  assert.deepEqual(endpoint.json, { Interface: { MacAddress: '02:42:ac:10:56:80' } });
  const join = await post('/NetworkDriver.Join', {
    NetworkID: NETWORK_ID,
    EndpointID: ENDPOINT_ID,
    SandboxKey: '/var/run/docker/netns/x',
    Options: {},
  });
  assert.deepEqual(join.json, {
    InterfaceName: { SrcName: 'lp-8caf93c862b2', DstPrefix: 'eth' },
    DisableGatewayService: true,
    Gateway: '172.16.86.1',
  });
  assert.deepEqual(
    (
      await post('/NetworkDriver.ProgramExternalConnectivity', {
        NetworkID: NETWORK_ID,
        EndpointID: ENDPOINT_ID,
        Options: {},
      })
    ).json,
    {},
  );
  const info = await post('/NetworkDriver.EndpointOperInfo', { NetworkID: NETWORK_ID, EndpointID: ENDPOINT_ID });
  assert.equal(info.status, 200);
  assert.deepEqual((await post('/NetworkDriver.Leave', { NetworkID: NETWORK_ID, EndpointID: ENDPOINT_ID })).json, {});
  assert.deepEqual(
    (await post('/NetworkDriver.DeleteEndpoint', { NetworkID: NETWORK_ID, EndpointID: ENDPOINT_ID })).json,
    {},
  );
  assert.deepEqual((await post('/NetworkDriver.DeleteNetwork', { NetworkID: NETWORK_ID })).json, {});
});

test('a MAC Docker already set is not answered again (CreateEndpoint may only fill empty fields)', async () => {
  await post('/NetworkDriver.CreateNetwork', {
    NetworkID: NETWORK_ID,
    Options: { 'com.docker.network.generic': { parent: 'eth0' } },
    IPv4Data: [{ Pool: '172.16.86.0/24', Gateway: '172.16.86.1/24' }],
    IPv6Data: [],
  });
  const endpoint = await post('/NetworkDriver.CreateEndpoint', {
    NetworkID: NETWORK_ID,
    EndpointID: ENDPOINT_ID,
    Interface: { Address: '172.16.86.5/24', MacAddress: '02:aa:bb:cc:dd:ee' },
  });
  assert.deepEqual(endpoint.json, { Interface: null });
  await post('/NetworkDriver.DeleteEndpoint', { NetworkID: NETWORK_ID, EndpointID: ENDPOINT_ID });
  await post('/NetworkDriver.DeleteNetwork', { NetworkID: NETWORK_ID });
});

test("CreateEndpoint with Docker's body for --network name=lan,driver-opt=lanplug.identity=web1: the name's MAC, and lanplug events says which identity the endpoint took", async () => {
  await post('/NetworkDriver.CreateNetwork', {
    NetworkID: NETWORK_ID,
    Options: { 'com.docker.network.generic': { parent: 'eth0' } },
    IPv4Data: [{ Pool: '172.16.86.0/24', Gateway: '172.16.86.1/24' }],
    IPv6Data: [],
  });
  const from = Date.now();
  // As dockerd 20.10.24 sent it in the lab (docs/identity.md).
  const endpoint = await post('/NetworkDriver.CreateEndpoint', {
    NetworkID: NETWORK_ID,
    EndpointID: ENDPOINT_ID,
    Interface: { Address: '172.16.86.2/24', AddressIPv6: '', MacAddress: '' },
    Options: {
      'com.docker.network.endpoint.exposedports': [],
      'com.docker.network.portmap': [],
      'lanplug.identity': 'web1',
    },
  });
  assert.deepEqual(endpoint.json, { Interface: { MacAddress: '9a:ea:7f:c1:5d:5c' } });
  const created = events.since(from).filter((e) => e.kind === 'endpoint.created');
  assert.deepEqual(
    created.map((e) => e.fields),
    [{ network: NETWORK_ID.slice(0, 12), endpoint: ENDPOINT_ID.slice(0, 12), identity: 'web1' }],
  );
  await post('/NetworkDriver.DeleteEndpoint', { NetworkID: NETWORK_ID, EndpointID: ENDPOINT_ID });
  await post('/NetworkDriver.DeleteNetwork', { NetworkID: NETWORK_ID });
});

test('errors: non-200 with a one-line Err; unknown methods, GET and bad JSON answered, never crash', async () => {
  const bad = await post('/NetworkDriver.CreateNetwork', {
    NetworkID: NETWORK_ID,
    Options: { 'com.docker.network.generic': { parent: 'eth0', macvlan_mode: 'x' } },
    IPv4Data: [],
    IPv6Data: [],
  });
  assert.equal(bad.status, 400);
  assert.match(String(bad.json['Err']), /^requested macvlan mode 'x' is not valid/);
  assert.equal((await post('/NetworkDriver.Nope', {})).status, 404);
  assert.equal((await post('/Plugin.Activate', '', 'GET')).status, 405);
  const garbled = await post('/NetworkDriver.CreateNetwork', '{"NetworkID":');
  assert.deepEqual(garbled, { status: 400, json: { Err: 'request body is not valid JSON' } });
  // dockerd's retry of a call whose connection broke (the daemon killed while answering) has no body.
  assert.deepEqual(await post('/NetworkDriver.CreateEndpoint', ''), {
    status: 400,
    json: {
      Err: 'dockerd sent /NetworkDriver.CreateEndpoint without its body, as it resends a call whose connection to lanplug broke while lanplug answered it (lanplug was stopped or restarted); lanplug did nothing with it: run the command again',
    },
  });
  const wrongType = await post('/NetworkDriver.CreateNetwork', { NetworkID: 42 });
  assert.deepEqual(wrongType.json, { Err: 'request field NetworkID must be a non-empty string' });
  const badId = await post('/NetworkDriver.CreateNetwork', {
    NetworkID: '../../etc',
    Options: {},
    IPv4Data: [],
    IPv6Data: [],
  });
  assert.match(String(badId.json['Err']), /^network id '..\/..\/etc' is not valid/);
  const unknownEndpoint = await post('/NetworkDriver.EndpointOperInfo', {
    NetworkID: NETWORK_ID,
    EndpointID: ENDPOINT_ID,
  });
  assert.deepEqual(unknownEndpoint, { status: 200, json: { Value: {} } }, "Docker's own drivers answer an empty map");
  const proto = await post(
    '/NetworkDriver.CreateNetwork',
    '{"NetworkID":"' + NETWORK_ID + '","Options":{"com.docker.network.generic":{"__proto__":"x"}}}',
  );
  assert.match(String(proto.json['Err']), /^unknown option '__proto__' for lanplug-macvlan/);
  const nonStringOption = await post('/NetworkDriver.CreateNetwork', {
    NetworkID: NETWORK_ID,
    Options: { 'com.docker.network.generic': { parent: 5 } },
  });
  assert.deepEqual(nonStringOption.json, { Err: 'option parent must be a string' });
  assert.equal(store.listNetworks().length, 0, 'no state written by refused requests');
});

test('a failure of the host (a namespace file gone, a read-only /proc) is the environment, told apart from a bug and from bad input', async () => {
  const { withContext, isEnvironmentFailure } = await import('../../src/errors');
  const { toCniError, CNI_ERROR } = await import('../../src/api/cni/errors');
  const gone = Object.assign(new Error("ENOENT: no such file or directory, open '/run/netns/x'"), { code: 'ENOENT' });
  const wrapped = withContext('join the container', gone);
  assert.equal(wrapped.code, 'Environment');
  assert.equal(isEnvironmentFailure(Object.assign(new Error('read-only'), { code: 'EROFS' })), true);
  assert.equal(withContext('decode', new TypeError('x is undefined')).code, 'Internal', 'a bug stays a bug');
  assert.equal(toCniError(wrapped).code, CNI_ERROR.invalidEnvironment);
});
