/**
 * Which request of the endpoint service waits for which (endpoint/queue.ts):
 * one endpoint's requests run in the order they came; a request on a network
 * as a whole (create, delete) runs alone, after the network's requests
 * already started and before later ones, so a DeleteNetwork never lands
 * halfway through a CreateEndpoint waiting for the LAN; requests of other
 * endpoints and other networks go on side by side. And what a wait could let
 * two endpoints both pass (one DHCP client id for two containers) is refused
 * for the second. On the in-memory link table, with the DHCP exchange itself
 * replaced by a delay (the Docker lane's DHCP files run the real one against
 * dnsmasq). And a CNI ADD's hold on the LAN defence of its addresses ending
 * whatever its undo does (stand-ins for the attachments; the CNI lane runs them).
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeaseKeeper, NO_LEASE_NETWORKS } from '../../src/dhcp/keeper';
import { NetworkDriver } from '../../src/driver/network-driver';
import type { CreateNetworkRequest } from '../../src/driver/requests';
import { DhcpEndpoints } from '../../src/endpoint/dhcp-endpoints';
import { NetworkQueue } from '../../src/endpoint/queue';
import { EndpointService } from '../../src/endpoint/service';
import { LanplugError, NO_ROOM_ERRNO } from '../../src/errors';
import { createLogger, silentLogger } from '../../src/log';
import type { Lease } from '../../src/model/lease';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { SqliteStore } from '../../src/state/sqlite';
import { cniNetworkId } from '../../src/driver/attachment-ids';
import type { AttachRequest } from '../../src/driver/attach-request';
import type { SandboxAttachments } from '../../src/driver/sandbox-attachments';
import { LanConflicts } from '../../src/lan/conflicts';
import { LanGuard } from '../../src/lan/guard';
import { FakeRtnl } from '../support/fake-rtnl';

const NET_A = 'a'.repeat(64);
const NET_B = 'b'.repeat(64);
const EP_1 = '1'.repeat(64);
const EP_2 = '2'.repeat(64);

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-endpoints-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const tick = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test("one endpoint's requests run in the order they came; a whole-network request runs alone; other endpoints and networks go on side by side", async () => {
  const queue = new NetworkQueue();
  const events: string[] = [];
  const slow =
    (name: string, ms: number, fail = false) =>
    async (): Promise<string> => {
      events.push(`${name} start`);
      await tick(ms);
      events.push(`${name} end`);
      if (fail) throw new Error(`${name} failed`);
      return name;
    };
  const create1 = queue.forEndpoint(NET_A, EP_1, slow('create 1', 30, true));
  const join1 = queue.forEndpoint(NET_A, EP_1, slow('join 1', 5));
  const create2 = queue.forEndpoint(NET_A, EP_2, slow('create 2', 10));
  const other = queue.forEndpoint(NET_B, EP_1, slow('other network', 5));
  const remove = queue.forNetwork(NET_A, slow('delete network', 5));
  const late = queue.forEndpoint(NET_A, EP_2, () => {
    events.push('after the delete');
    return 'late';
  });
  await assert.rejects(create1, /create 1 failed/);
  assert.deepEqual(await Promise.all([join1, create2, other, remove, late]), [
    'join 1',
    'create 2',
    'other network',
    'delete network',
    'late',
  ]);
  assert.deepEqual(events, [
    'create 1 start',
    'create 2 start',
    'other network start',
    'other network end',
    'create 2 end',
    'create 1 end',
    'join 1 start',
    'join 1 end',
    'delete network start',
    'delete network end',
    'after the delete',
  ]);
  assert.equal(queue.busy, 0, 'idle networks keep nothing');
  // Nothing pending: a request starts in the same turn, nothing is added to the fast path.
  let ran = false;
  void queue.forEndpoint(NET_A, EP_1, () => (ran = true));
  assert.equal(ran, true);
});

/** The DHCP exchange replaced by a pause and the server's answer (the keeper keeps the lease as it would). */
class PausingKeeper extends LeaseKeeper {
  next = 120;
  override async acquire(): Promise<Lease[]> {
    await tick(20);
    return [
      {
        family: 4,
        address: parsePrefix(`172.16.86.${this.next++}/24`),
        router: parseAddress('172.16.86.1'),
        dns: [],
        serverId: parseAddress('172.16.86.1'),
        serverMac: '02:00:00:00:00:01',
        serverDuid: null,
        leaseSeconds: 3600,
        renewSeconds: 1800,
        rebindSeconds: 3150,
        boundAt: Date.now(),
        state: 'bound',
      },
    ];
  }
}

function dhcpNetwork(networkId: string): CreateNetworkRequest {
  return {
    networkId,
    driver: 'ipvlan',
    options: { parent: 'eth0', dhcp: 'true' },
    ipv4: [{ pool: parsePrefix('0.0.0.0/0'), gateway: null }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  };
}

test('two CreateEndpoints at once with one lanplug.dhcp.id on ipvlan (both would have the parent’s MAC): one is refused, in one network or two', async () => {
  const rtnl = new FakeRtnl({ vlan: false, ipvlan: true, dummy: false });
  const driver = new NetworkDriver(rtnl, store, silentLogger);
  const keeper = new PausingKeeper(store, silentLogger, NO_LEASE_NETWORKS);
  const endpoints = new EndpointService(driver, silentLogger, null, new DhcpEndpoints(driver, keeper, silentLogger));
  try {
    await endpoints.createNetwork(dhcpNetwork(NET_A));
    await endpoints.createNetwork(dhcpNetwork(NET_B));
    const create = (networkId: string, endpointId: string): Promise<unknown> =>
      endpoints.createEndpoint('ipvlan', {
        networkId,
        endpointId,
        ipv4: null,
        ipv6: null,
        mac: null,
        endpointOptions: { 'lanplug.dhcp.id': 'printer' },
      });
    for (const [one, two] of [
      [NET_A, NET_A],
      [NET_A, NET_B],
    ] as const) {
      const outcomes = await Promise.allSettled([create(one, EP_1), create(two, EP_2)]);
      const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      assert.equal(refused.length, 1, `exactly one of the two is refused (${one === two ? 'one network' : 'two'})`);
      assert.ok(refused[0]?.reason instanceof LanplugError);
      // Whichever asked first holds it: in one network the first to come, in two the first to start.
      const holder = one === two ? '111111111111 of network aaaaaaaaaaaa' : '\\S+ of network \\S+';
      assert.match(
        String(refused[0]?.reason),
        new RegExp(
          `--driver-opt lanplug\\.dhcp\\.id=printer is already used by endpoint ${holder}; give each container its own id`,
        ),
      );
      await endpoints.deleteEndpoint({ networkId: one, endpointId: EP_1 });
      await endpoints.deleteEndpoint({ networkId: two, endpointId: EP_2 });
    }
    assert.deepEqual(store.listAllEndpoints(), [], 'the refused one left no row');
  } finally {
    await keeper.stop();
  }
});

test('a DeleteNetwork that comes while a CreateEndpoint of its network waits runs after it, never halfway through', async () => {
  const rtnl = new FakeRtnl({ vlan: false, ipvlan: true, dummy: false });
  const driver = new NetworkDriver(rtnl, store, silentLogger);
  const keeper = new PausingKeeper(store, silentLogger, NO_LEASE_NETWORKS);
  const endpoints = new EndpointService(driver, silentLogger, null, new DhcpEndpoints(driver, keeper, silentLogger));
  try {
    await endpoints.createNetwork(dhcpNetwork(NET_A));
    const created = endpoints.createEndpoint('ipvlan', {
      networkId: NET_A,
      endpointId: EP_1,
      ipv4: null,
      ipv6: null,
      mac: null,
    });
    const removed = endpoints.deleteNetwork(NET_A);
    assert.equal((await created).assignedIpv4?.address.text, '172.16.86.120', 'the endpoint got its address');
    await removed;
    assert.equal(store.getNetwork(NET_A), null);
    assert.deepEqual(store.listAllEndpoints(), []);
    assert.deepEqual(
      rtnl.names().filter((n) => n.startsWith('lp-')),
      [],
      'the endpoint link went with its network',
    );
  } finally {
    await keeper.stop();
  }
});

test('a removal the state directory had no room to record is logged when owed and again when made, as structured lines naming it', async () => {
  const rtnl = new FakeRtnl({ vlan: false, ipvlan: true, dummy: false });
  const driver = new NetworkDriver(rtnl, store, silentLogger);
  const lines: string[] = [];
  const endpoints = new EndpointService(
    driver,
    createLogger('info', (line) => lines.push(line)),
    null,
    null,
  );
  const network: CreateNetworkRequest = {
    networkId: NET_A,
    driver: 'macvlan',
    options: { parent: 'eth0' },
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  };
  const endpoint = (endpointId: string, address: string) => ({
    networkId: NET_A,
    endpointId,
    ipv4: parsePrefix(address),
    ipv6: null,
    mac: null,
  });
  await endpoints.createNetwork(network);
  await endpoints.createEndpoint('macvlan', endpoint(EP_1, '172.16.86.2/24'));
  // The file system full at the removal (the chaos e2e fills a real tmpfs): the store's ENOSPC, as the driver throws it.
  const deleteEndpoint = driver.deleteEndpoint.bind(driver);
  driver.deleteEndpoint = () => {
    throw new LanplugError('Environment', 'the state directory has no room: database or disk is full', {
      errno: NO_ROOM_ERRNO,
    });
  };
  await assert.rejects(endpoints.deleteEndpoint({ networkId: NET_A, endpointId: EP_1 }), /no room/);
  const owed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    owed.map((l) => [l['level'], l['msg'], l['removal']]),
    [
      [
        'warn',
        'removal owed: the state directory had no room to record it; made at the next request',
        `endpoint ${NET_A}/${EP_1}`,
      ],
    ],
  );
  assert.match(String(owed[0]?.['error']), /no room/);
  // Room again: the next request makes it first, and says so.
  driver.deleteEndpoint = deleteEndpoint;
  lines.length = 0;
  await endpoints.createEndpoint('macvlan', endpoint(EP_2, '172.16.86.3/24'));
  assert.deepEqual(
    lines.map((l) => JSON.parse(l) as Record<string, unknown>).map((l) => [l['level'], l['msg'], l['removal']]),
    [['info', 'owed removal made', `endpoint ${NET_A}/${EP_1}`]],
  );
  assert.equal(store.getEndpoint(NET_A, EP_1), null);
});

test("a CNI ADD refused because a LAN device answers for its address, whose undo then fails: the address is a container's to defend again once the ADD is over (not left undefended until a restart)", async () => {
  const address = parseAddress('172.16.86.50');
  const link = { index: 7, name: 'eth0', mac: '02:00:00:00:00:aa', listenAll: false };
  const lan = new LanConflicts(
    new LanGuard(silentLogger, () =>
      Promise.resolve({ inUse: true, mac: '02:00:00:00:00:66', how: 'it answered an ARP probe on eth0' }),
    ),
    { recordSighting: () => undefined, listSightings: () => [] },
    silentLogger,
    null,
  );
  const networkId = cniNetworkId('office');
  // The driver and attachments stand in for the CNI lane's real ones (test/cni/conformance.test.ts).
  const driver = {
    addressCheckOf: () => ({ addresses: [address], lan: { link, policy: 'refuse', networkId } }),
    explainLanCheckFailure: (_network: string, err: unknown) => err,
  } as unknown as NetworkDriver;
  const attachments = {
    prepare: () => ({}),
    claimedAddresses: () => [address],
    abandon: () => {
      throw new Error('database or disk is full');
    },
  } as unknown as SandboxAttachments;
  const endpoints = new EndpointService(driver, silentLogger, lan, null, attachments);
  const request = {
    networkName: 'office',
    driver: 'macvlan',
    shared: false,
    dhcp: false,
    mac: null,
    requestedIps: [address],
    routes: [],
    sandbox: { containerId: 'c1', netns: '/run/netns/c1', ifname: 'eth0' },
  } as unknown as AttachRequest;
  await assert.rejects(endpoints.attach(request), /database or disk is full/);
  assert.notEqual(
    lan.defensible({ address, mac: '02:42:ac:10:56:32', networkId }),
    null,
    'a later container with the address is defended again',
  );
});
