/**
 * The CNI front end's edge, without a kernel: the CNI_* environment and the
 * configuration decoded (or refused with the spec's code), results in each
 * version's shape, the executable's wire, and host-local-style allocation on
 * the real SQLite store. The kernel side (links in namespaces) is proven by
 * test/cni/ against the real daemon.
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  parseEnvironment,
  parseIpamConfig,
  parseNetworkConfig,
  parseVersion,
  type CniEnvironment,
  type CniNetworkConfig,
} from '../../src/api/cni/config';
import { attachmentIdentity } from '../../src/endpoint/dhcp-attachments';
import { checkLeaseRoutes, leaseRoutes } from '../../src/driver/leased-attachments';
import type { SandboxRoute } from '../../src/driver/sandbox';
import { CniError } from '../../src/api/cni/errors';
import { decodeAnswer, decodeInvocation, encodeAnswer, encodeInvocation } from '../../src/api/cni/protocol';
import { encodeResult } from '../../src/api/cni/result';
import { CniIpam } from '../../src/ipam/cni-ipam';
import { checkRequestedUsed, RangeAllocator, sharedPoolOf } from '../../src/ipam/ranges';
import { silentLogger } from '../../src/log';
import { parseAddress, parsePrefix, type IpAddress } from '../../src/net/address';
import { SqliteStore } from '../../src/state/sqlite';

const ADD_ENV: CniEnvironment = parseEnvironment(
  new Map([
    ['CNI_COMMAND', 'ADD'],
    ['CNI_CONTAINERID', 'abc123'],
    ['CNI_NETNS', '/run/netns/x'],
    ['CNI_IFNAME', 'eth0'],
  ]),
);

function codeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err.code;
    throw err;
  }
  assert.fail('expected a CniError');
}

function config(
  extra: Record<string, unknown> = {},
  ipam: Record<string, unknown> | null = {},
): ReturnType<typeof parseNetworkConfig> {
  return parseNetworkConfig(
    {
      cniVersion: '1.0.0',
      name: 'lan',
      type: 'lanplug-macvlan',
      master: 'eth0',
      ...(ipam === null ? {} : { ipam: { type: 'lanplug', subnet: '10.1.0.0/24', ...ipam } }),
      ...extra,
    },
    ADD_ENV,
  );
}

test('environment: each command requires what the spec says, and names what is missing', () => {
  assert.equal(
    codeOf(() => parseEnvironment(new Map())),
    4,
  );
  assert.equal(
    codeOf(() => parseEnvironment(new Map([['CNI_COMMAND', 'FROB']]))),
    4,
  );
  const del = parseEnvironment(
    new Map([
      ['CNI_COMMAND', 'DEL'],
      ['CNI_CONTAINERID', 'abc'],
      ['CNI_IFNAME', 'eth0'],
    ]),
  );
  assert.equal(del.netns, null, 'DEL needs no namespace');
  assert.equal(
    codeOf(() =>
      parseEnvironment(
        new Map([
          ['CNI_COMMAND', 'ADD'],
          ['CNI_CONTAINERID', 'abc'],
          ['CNI_IFNAME', 'eth0'],
        ]),
      ),
    ),
    4,
  );
  assert.equal(
    codeOf(() =>
      parseEnvironment(
        new Map([
          ['CNI_COMMAND', 'DEL'],
          ['CNI_CONTAINERID', 'a/b'],
          ['CNI_IFNAME', 'eth0'],
        ]),
      ),
    ),
    4,
  );
  const gc = parseEnvironment(new Map([['CNI_COMMAND', 'GC']]));
  assert.equal(gc.containerId, null);
  const args = parseEnvironment(
    new Map([
      ['CNI_COMMAND', 'GC'],
      ['CNI_ARGS', 'IgnoreUnknown=1;IP=10.1.0.9'],
    ]),
  );
  assert.equal(args.args.get('IP'), '10.1.0.9');
});

test("configuration: the reference plugins' keys become the Docker driver's options", () => {
  const c = config({ mode: 'private', mtu: 1400 });
  assert.equal(c.driver, 'macvlan');
  assert.equal(c.options['parent'], 'eth0');
  assert.equal(c.options['macvlan_mode'], 'private');
  assert.equal(c.options['com.docker.network.driver.mtu'], '1400');
  const ipvlan = parseNetworkConfig(
    { cniVersion: '0.4.0', name: 'l', type: 'lanplug-ipvlan', master: 'eth0', mode: 'l3', flag: 'private' },
    ADD_ENV,
  );
  assert.equal(ipvlan.options['ipvlan_mode'], 'l3');
  assert.equal(ipvlan.options['ipvlan_flag'], 'private');
  assert.equal(ipvlan.ipam, null);
});

test("configuration: host-local's defaults — the whole subnet but the ends, gateway the first address", () => {
  const [range] = config().ipam?.rangeSets[0] ?? [];
  assert.equal(range?.start.text, '10.1.0.1');
  assert.equal(range?.end.text, '10.1.0.254');
  assert.equal(range?.gateway.text, '10.1.0.1');
  const sets = config({}, null);
  assert.equal(sets.ipam, null);
  const dual = parseNetworkConfig(
    {
      cniVersion: '1.0.0',
      name: 'lan',
      type: 'lanplug-macvlan',
      ipam: {
        type: 'lanplug',
        ranges: [
          [{ subnet: '10.2.0.0/24', rangeStart: '10.2.0.10', rangeEnd: '10.2.0.20' }],
          [{ subnet: 'fd00::/64' }],
        ],
        routes: [{ dst: '0.0.0.0/0' }, { dst: '10.9.0.0/16', gw: '10.2.0.254' }],
      },
    },
    ADD_ENV,
  );
  assert.equal(dual.ipam?.rangeSets.length, 2);
  assert.equal(dual.ipam?.rangeSets[1]?.[0]?.end.text, 'fd00::ffff:ffff:ffff:ffff');
  assert.equal(dual.ipam?.routes[1]?.gateway?.text, '10.2.0.254');
  assert.equal(dual.options['parent'], undefined, 'no master: the daemon takes the default-route link');
});

test('configuration: typos, foreign IPAM types, bad ranges and unknown versions are refused with their codes', () => {
  assert.equal(
    codeOf(() => config({ mastr: 'eth0' })),
    7,
  );
  assert.equal(
    codeOf(() => config({}, { type: 'host-local' })),
    7,
  );
  assert.equal(
    codeOf(() => config({}, { rangeStart: '10.9.0.1' })),
    7,
  );
  assert.equal(
    codeOf(() => config({}, { rangeStart: '10.1.0.50', rangeEnd: '10.1.0.40' })),
    7,
  );
  assert.equal(
    codeOf(() => config({ type: 'macvlan' })),
    7,
  );
  assert.equal(
    codeOf(() => config({ cniVersion: '2.0.0' })),
    1,
  );
  assert.equal(
    codeOf(() => config({ linkInContainer: true })),
    2,
  );
  assert.equal(
    codeOf(() => parseVersion({ cniVersion: 1 })),
    7,
  );
  assert.throws(
    () =>
      parseNetworkConfig(
        { cniVersion: '1.0.0', name: 'l', type: 'lanplug-ipvlan', master: 'eth0' },
        parseEnvironment(
          new Map([
            ['CNI_COMMAND', 'ADD'],
            ['CNI_CONTAINERID', 'abc'],
            ['CNI_NETNS', '/x'],
            ['CNI_IFNAME', 'eth0'],
            ['CNI_ARGS', 'MAC=02:00:00:00:00:01'],
          ]),
        ),
      ),
    /ipvlan interfaces do not support custom mac/,
  );
  const gcEnv = parseEnvironment(new Map([['CNI_COMMAND', 'GC']]));
  assert.equal(
    codeOf(() => parseNetworkConfig({ cniVersion: '1.1.0', name: 'l', type: 'lanplug-macvlan' }, gcEnv)),
    7,
    'GC without cni.dev/valid-attachments would remove everything: refused',
  );
  const requested = config({ runtimeConfig: { ips: ['10.1.0.7/24'], mac: '02:11:22:33:44:55' } });
  assert.deepEqual(
    requested.requestedIps.map((a) => a.text),
    ['10.1.0.7'],
  );
  assert.equal(requested.mac, '02:11:22:33:44:55');
});

test('configuration: ipam lanplug-dhcp is `-o dhcp=true` (with its timeout); what it cannot do is refused in one line', () => {
  const dhcp = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): CniNetworkConfig =>
    config({ ipam: { type: 'lanplug-dhcp', ...ipam }, ...extra }, null);
  const plain = dhcp({});
  assert.equal(plain.dhcp, true);
  assert.equal(plain.ipam, null);
  assert.equal(plain.options['dhcp'], 'true');
  assert.equal(plain.options['dhcp.timeout'], undefined);
  assert.equal(dhcp({ timeout: '3s' }).options['dhcp.timeout'], '3s');
  assert.equal(config().dhcp, false);
  const message = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      if (err instanceof CniError && err.code === 7) return err.message;
      throw err;
    }
    assert.fail('expected an invalid configuration');
  };
  assert.match(
    message(() => dhcp({ subnet: '10.1.0.0/24' })),
    /ipam: unknown key 'subnet'; known keys: type, timeout/,
  );
  assert.match(
    message(() => dhcp({}, { runtimeConfig: { ips: ['10.1.0.7'] } })),
    /the DHCP server chooses the address/,
  );
  assert.match(
    message(() => dhcp({}, { host_access: true })),
    /host_access is not available with ipam type lanplug-dhcp/,
  );
  assert.match(
    message(() => config({}, { type: 'dhcp', subnet: undefined })),
    /ipam type 'dhcp' is the reference plugin's, which needs its own DHCP daemon; use "lanplug-dhcp"/,
  );
});

test("lanplug-dhcp identity: client id 00+'<container id>/<ifname>', hostname the id's first 12 characters; ipvlan asks for broadcast answers", () => {
  const sandbox = { containerId: '3f2a9c1be07d44aa', netns: '/run/netns/x', ifname: 'eth1' };
  const id = attachmentIdentity(sandbox, '02:00:00:00:00:07', false);
  assert.equal(id.clientId, '00' + Buffer.from('3f2a9c1be07d44aa/eth1').toString('hex'));
  assert.equal(id.hostname, '3f2a9c1be07d');
  assert.equal(id.mac, '02:00:00:00:00:07');
  assert.equal(id.stable, true, 'its last address is asked for again');
  assert.equal(id.broadcast, false);
  assert.deepEqual(
    attachmentIdentity(sandbox, '02:00:00:00:00:99', false).clientId,
    id.clientId,
    'the MAC is not the identity',
  );
  const ipvlan = attachmentIdentity({ ...sandbox, containerId: 'other' }, '02:00:00:00:00:07', true);
  assert.notEqual(ipvlan.clientId, id.clientId, 'pods sharing the parent MAC are told apart');
  assert.equal(ipvlan.broadcast, true);
  assert.equal(attachmentIdentity({ ...sandbox, containerId: 'a_b.c' }, 'x', false).hostname, 'a-b-c');
  const long = attachmentIdentity({ ...sandbox, containerId: 'a'.repeat(255) }, 'x', false);
  assert.ok(long.clientId.length / 2 <= 255, 'option 61 holds it');
});

test('results: 0.x carries ips[].version, 1.x does not; gateway and dns as given', () => {
  const result = {
    interface: { name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/run/netns/x' },
    addresses: [{ address: parsePrefix('10.1.0.5/24'), gateway: parseAddress('10.1.0.1') }],
    routes: [{ destination: parsePrefix('0.0.0.0/0'), gateway: parseAddress('10.1.0.1') }],
    dns: { nameservers: ['10.1.0.1'] },
  };
  assert.deepEqual(encodeResult(result, '0.4.0')['ips'], [
    { version: '4', address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 0 },
  ]);
  const current = encodeResult(result, '1.0.0');
  assert.deepEqual(current['ips'], [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 0 }]);
  assert.deepEqual(current['routes'], [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }]);
  assert.deepEqual(current['dns'], { nameservers: ['10.1.0.1'] });
});

test("the executable's wire: only CNI_* variables cross, stdin as given, the answer's exit code first", () => {
  const bytes = encodeInvocation({
    env: new Map([
      ['CNI_COMMAND', 'ADD'],
      ['HOME', '/root'],
    ]),
    stdin: '{"a":"b=c\\u0000"}',
  });
  const back = decodeInvocation(bytes);
  assert.deepEqual([...(back?.env ?? [])], [['CNI_COMMAND', 'ADD']]);
  assert.equal(back?.stdin, '{"a":"b=c\\u0000"}');
  assert.equal(decodeInvocation(Buffer.from('CNI_COMMAND=ADD')), null, 'no end of the variables');
  assert.deepEqual(decodeAnswer(encodeAnswer({ exitCode: 1, stdout: '{"code":7}\n' })), {
    exitCode: 1,
    stdout: '{"code":7}\n',
  });
  assert.equal(decodeAnswer(Buffer.from('x\n')), null);
});

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-cni-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

test('allocation: rangeStart to rangeEnd, never the gateway, nothing claimed elsewhere or taken, the asked-for one', () => {
  const taken = new Set(['10.1.0.3']);
  const allocator = new RangeAllocator(store, () => (a: IpAddress) => (taken.has(a.text) ? 'in use' : null));
  const [range] =
    config({}, { rangeStart: '10.1.0.1', rangeEnd: '10.1.0.6', gateway: '10.1.0.1' }).ipam?.rangeSets[0] ?? [];
  assert.ok(range !== undefined);
  // A Docker network's pool on the same subnet holds .2: not handed out twice.
  store.insertPool({
    poolId: 'LocalDefault/10.1.0.0/24',
    addressSpace: 'LocalDefault',
    pool: range.subnet,
    range: null,
  });
  store.claimAddress('LocalDefault/10.1.0.0/24', parseAddress('10.1.0.2'), 'allocated');
  const got = [1, 2, 3].map(() => allocator.allocate('lan', [range], []).address.address.text);
  assert.deepEqual(got, ['10.1.0.4', '10.1.0.5', '10.1.0.6']);
  assert.throws(() => allocator.allocate('lan', [range], []), /No available addresses in 10.1.0.1-10.1.0.6/);
  allocator.release('cni:lan/10.1.0.0/24', parseAddress('10.1.0.5'));
  assert.equal(allocator.allocate('lan', [range], []).address.address.text, '10.1.0.5');
  assert.throws(() => allocator.allocate('lan', [range], [parseAddress('10.1.0.4')]), /Address already in use/);
  assert.throws(() => allocator.allocate('lan', [range], [parseAddress('10.1.0.1')]), /is the gateway/);
  allocator.dropPools('lan');
  assert.equal(store.getPool('cni:lan/10.1.0.0/24'), null);
  assert.throws(
    () =>
      checkRequestedUsed([parseAddress('10.1.0.9')], [allocator.allocate('lan', [range], [parseAddress('10.1.0.9')])]),
    /requested address 10.1.0.9 is in none of the network's ranges/,
    'outside rangeStart..rangeEnd: not handed out, refused',
  );
  assert.equal(allocator.allocate('lan', [range], [parseAddress('10.1.0.6')]).address.address.text, '10.1.0.6');
});

test('the IPAM plugin on its own: claims by owner, one ADD per attachment, DEL and GC release by owner', () => {
  const allocator = new RangeAllocator(store, () => () => null);
  const ipam = new CniIpam(store, allocator, silentLogger);
  const sets = config({}, { rangeStart: '10.1.0.10', rangeEnd: '10.1.0.12' }).ipam?.rangeSets ?? [];
  const first = ipam.add('lan', 'c1', 'eth0', sets, []);
  assert.deepEqual(
    first.map((c) => c.address.address.text),
    ['10.1.0.10'],
  );
  assert.throws(() => ipam.add('lan', 'c1', 'eth0', sets, []), /already has addresses for eth0/);
  ipam.add('lan', 'c2', 'eth0', sets, []);
  ipam.add('lan', 'c3', 'net1', sets, []);
  assert.throws(() => ipam.add('lan', 'c4', 'eth0', sets, []), /No available addresses/);
  ipam.check('lan', 'c2', 'eth0');
  ipam.del('lan', 'c2', 'eth0');
  ipam.del('lan', 'c2', 'eth0');
  assert.throws(() => ipam.check('lan', 'c2', 'eth0'), /holds no address/);
  assert.equal(ipam.collect('lan', [{ containerId: 'c1', ifname: 'eth0' }]), 1, 'c3/net1 goes');
  assert.deepEqual(
    ipam.add('lan', 'c5', 'eth0', sets, []).map((c) => c.address.address.text),
    ['10.1.0.11'],
  );
});

test("the IPAM plugin on its own: an owner is matched whole, so eth1's DEL leaves eth10's address held", () => {
  const allocator = new RangeAllocator(store, () => () => null);
  const ipam = new CniIpam(store, allocator, silentLogger);
  const sets = config({}, { rangeStart: '10.1.0.10', rangeEnd: '10.1.0.12' }).ipam?.rangeSets ?? [];
  const tenth = ipam.add('lan', 'c1', 'eth10', sets, []);
  assert.deepEqual(
    tenth.map((c) => c.address.address.text),
    ['10.1.0.10'],
  );
  // The same container's eth1 is another attachment: neither "already has addresses" nor told it holds eth10's.
  assert.throws(() => ipam.check('lan', 'c1', 'eth1'), /holds no address for eth1/);
  const first = ipam.add('lan', 'c1', 'eth1', sets, []);
  assert.deepEqual(
    first.map((c) => c.address.address.text),
    ['10.1.0.11'],
  );
  ipam.del('lan', 'c1', 'eth1');
  ipam.check('lan', 'c1', 'eth10');
  // 10.1.0.10 is still eth10's: the next container gets .11 (freed by the DEL), then .12, then nothing.
  assert.deepEqual(
    ['c2', 'c3'].map((c) => ipam.add('lan', c, 'eth0', sets, [])[0]?.address.address.text),
    ['10.1.0.11', '10.1.0.12'],
  );
  assert.throws(() => ipam.add('lan', 'c4', 'eth0', sets, []), /No available addresses/);
  // A network whose name starts like another's is another network too.
  assert.equal(ipam.collect('la', []), 0, "GC of network 'la' releases nothing of network 'lan'");
  ipam.check('lan', 'c1', 'eth10');
});

test("lanplug-dhcp and -o dhcp=true routes: host-local's routes are read; one without gw takes the DHCPv4 server's router, beside its default route; drop routes pass; without a router to take, refused in one line", () => {
  const dhcp = config(
    { ipam: { type: 'lanplug-dhcp', routes: [{ dst: '10.96.0.0/16' }, { dst: '10.97.0.0/16', gw: '172.16.86.9' }] } },
    null,
  );
  assert.deepEqual(
    dhcp.routes.map((r) => `${r.destination.address.text}/${r.destination.prefixLength} ${r.gateway?.text ?? '-'}`),
    ['10.96.0.0/16 -', '10.97.0.0/16 172.16.86.9'],
  );
  assert.equal(config().routes.length, 0);
  const router = parseAddress('172.16.86.1');
  const shown = (routes: SandboxRoute[]): string[] =>
    routes.map(
      (r) => `${r.destination.address.text}/${r.destination.prefixLength} ${r.drop ?? r.gateway?.text ?? '-'}`,
    );
  const asked: SandboxRoute[] = [
    ...dhcp.routes,
    { destination: parsePrefix('10.99.0.0/16'), gateway: null, drop: 'blackhole' },
  ];
  assert.deepEqual(shown(leaseRoutes(asked, router)), [
    '0.0.0.0/0 172.16.86.1',
    '10.96.0.0/16 172.16.86.1',
    '10.97.0.0/16 172.16.86.9',
    '10.99.0.0/16 blackhole',
  ]);
  assert.deepEqual(shown(leaseRoutes(asked.slice(1), null)), ['10.97.0.0/16 172.16.86.9', '10.99.0.0/16 blackhole']);
  assert.throws(
    () => leaseRoutes(asked, null),
    /^LanplugError: route 10\.96\.0\.0\/16 has no gateway, and the DHCP server named no router to take for it; give it a gateway$/,
  );
  const six: SandboxRoute[] = [{ destination: parsePrefix('fd99::/48'), gateway: null }];
  assert.throws(() => checkLeaseRoutes(six), /route fd99::\/48 has no gateway.*DHCPv6 names none.*give it a gateway$/);
  checkLeaseRoutes([{ destination: parsePrefix('fd99::/48'), gateway: parseAddress('fd86::1') }]);
  // A default route of the configuration's own is the one made and the one the runtime is told of.
  const ownDefault: SandboxRoute[] = [
    { destination: parsePrefix('0.0.0.0/0'), gateway: parseAddress('172.16.86.254') },
  ];
  assert.deepEqual(shown(leaseRoutes([...ownDefault, ...asked.slice(1)], router)), [
    '0.0.0.0/0 172.16.86.254',
    '10.97.0.0/16 172.16.86.9',
    '10.99.0.0/16 blackhole',
  ]);
});

test('configuration: lanplug-dhcp "ipv6": true asks DHCPv6 too; not a boolean, refused', () => {
  const dhcp = (ipam: Record<string, unknown>): CniNetworkConfig =>
    config({ ipam: { type: 'lanplug-dhcp', ...ipam } }, null);
  assert.equal(dhcp({}).dhcp6, false);
  assert.equal(dhcp({ ipv6: true }).dhcp6, true);
  assert.equal(dhcp({ ipv6: false }).dhcp6, false);
  assert.equal(
    codeOf(() => dhcp({ ipv6: 'yes' })),
    7,
  );
  assert.equal(config().dhcp6, false);
});

test('configuration: ipam "shared": true names the shared pool of its subnet and range, as --subnet and --ip-range do; a range that is not a prefix is refused', () => {
  const shared = config({}, { rangeStart: '10.1.0.64', rangeEnd: '10.1.0.127', shared: true });
  assert.equal(shared.ipam?.shared, true);
  assert.equal(config().ipam?.shared, false);
  assert.equal(
    codeOf(() => config({}, { shared: 'yes' })),
    7,
  );
  const pool = (start: string, end: string): string => {
    const { pool: p, range } = sharedPoolOf({
      subnet: parsePrefix('10.1.0.0/24'),
      start: parseAddress(start),
      end: parseAddress(end),
      gateway: parseAddress('10.1.0.1'),
    });
    return `${p.address.text}/${p.prefixLength} ${range === null ? '-' : `${range.address.text}/${range.prefixLength}`}`;
  };
  assert.equal(pool('10.1.0.64', '10.1.0.127'), '10.1.0.0/24 10.1.0.64/26');
  assert.equal(pool('10.1.0.1', '10.1.0.254'), '10.1.0.0/24 -', "host-local's default: the whole subnet");
  assert.equal(pool('10.1.0.200', '10.1.0.200'), '10.1.0.0/24 10.1.0.200/32');
  assert.throws(
    () => pool('10.1.0.64', '10.1.0.100'),
    /a shared pool's range is a prefix, as --ip-range is on every host: 10\.1\.0\.64-10\.1\.0\.100 is not one/,
  );
  // The lanplug IPAM plugin behind another main plugin keeps this node's addresses.
  assert.equal(
    codeOf(() =>
      parseIpamConfig(
        {
          cniVersion: '1.0.0',
          name: 'lan',
          type: 'macvlan',
          ipam: { type: 'lanplug', subnet: '10.1.0.0/24', shared: true },
        },
        ADD_ENV,
      ),
    ),
    7,
  );
});
