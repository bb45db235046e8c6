/**
 * `lanplug ls` (observe/listing.ts, cli/ls.ts): the rows built from the
 * store's records and Docker's view of each network (the address source, the
 * container, the lease and its expiry, host access, the last conflict), the
 * table and the filters. The e2e DHCP lab checks the same listing against
 * `docker inspect` with a real dockerd (test/e2e/dhcp.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { filterListing, formatEndpoints, formatLanDevices } from '../../src/cli/ls';
import type { LearnedAddress } from '../../src/driver/slaac';
import type { LeaseRecord } from '../../src/model/lease';
import type { EndpointRecord } from '../../src/model/network';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { buildListing, type DockerView, type Listing, type ListingInput } from '../../src/observe/listing';
import { macvlanNetwork } from '../support/store-fixtures';

const NOW = Date.parse('2026-12-05T02:00:00Z');
const id = (c: string): string => c.repeat(64);

function endpoint(networkId: string, endpointId: string, mac: string, ipv4: string): EndpointRecord {
  return { networkId, endpointId, linkName: `dm-${endpointId.slice(0, 8)}`, mac, ipv4: parsePrefix(ipv4), ipv6: null };
}

function view(name: string, ipamDriver: string, containers: [string, string, string][]): DockerView {
  return {
    name,
    ipamDriver,
    containers: new Map(containers.map(([endpointId, containerId, n]) => [endpointId, { containerId, name: n }])),
  };
}

const DHCP_LEASE: LeaseRecord = {
  networkId: id('c'),
  endpointId: id('3'),
  identity: {
    mac: '02:00:00:00:00:03',
    clientId: '0102000000000003',
    duid: '00030001020000000003',
    iaid: 1,
    stable: false,
    hostname: null,
    broadcast: false,
  },
  leases: [
    {
      family: 4,
      address: parsePrefix('172.16.86.120/24'),
      router: parseAddress('172.16.86.1'),
      dns: [],
      serverId: parseAddress('172.16.86.1'),
      serverMac: '02:00:00:00:00:01',
      serverDuid: null,
      leaseSeconds: 3600,
      renewSeconds: 1800,
      rebindSeconds: 3150,
      boundAt: NOW - 2000 * 1000,
      state: 'bound',
    },
  ],
  dockerAddresses: [parseAddress('172.16.86.120')],
  sandboxKey: null,
  renewedAt: null,
  failures: 2,
  lastError: 'no answer',
};

function lab(overrides: Partial<ListingInput> = {}): Listing {
  return buildListing({
    networks: [
      macvlanNetwork(id('a')),
      macvlanNetwork(id('b'), {
        ipv4: [{ pool: parsePrefix('192.168.32.0/24'), gateway: parseAddress('192.168.32.1') }],
        hostAccess: { ipv4: parseAddress('192.168.32.254'), ipv6: null },
        mode: { kind: 'ipvlan', mode: 'l2', flag: 'bridge' },
      }),
      macvlanNetwork(id('c'), { dhcp: { ipv4: true, ipv6: false, timeoutMs: 10_000, askedBy: 'driver' } }),
      macvlanNetwork(id('d'), {}, 'cni-lan'),
    ],
    endpoints: [
      { ...endpoint(id('a'), id('1'), '02:00:00:00:00:01', '172.16.86.10/24'), identity: 'web1' },
      endpoint(id('b'), id('2'), '02:00:00:00:00:02', '192.168.32.2/24'),
      endpoint(id('c'), id('3'), '02:00:00:00:00:03', '172.16.86.120/24'),
      {
        ...endpoint(id('d'), id('4'), '02:00:00:00:00:04', '172.16.86.200/24'),
        sandbox: { containerId: id('f'), netns: '/run/netns/x', ifname: 'eth1' },
      },
    ],
    leases: [DHCP_LEASE],
    sightings: [
      {
        address: '172.16.86.10',
        mac: '02:aa:00:00:00:01',
        how: 'it sent an ARP reply for it on eth0',
        networkId: id('a'),
        firstSeen: NOW - 60_000,
        lastSeen: NOW - 1000,
      },
      {
        address: '172.16.86.99',
        mac: '02:aa:00:00:00:02',
        how: 'it answered an ARP probe on eth0',
        networkId: null,
        firstSeen: NOW - 120_000,
        lastSeen: NOW - 120_000,
      },
    ],
    views: new Map([
      [id('a'), view('plain', 'default', [[id('1'), id('9'), 'web']])],
      [id('b'), view('pooled', 'lanplug', [[id('2'), id('8'), 'db']])],
      [id('c'), view('lan', 'null', [[id('3'), id('7'), 'dhcp-one']])],
    ]),
    sharedPools: false,
    inLocalPool: () => false,
    dockerError: null,
    now: NOW,
    ...overrides,
  });
}

test('each endpoint names its network, container, MAC, address and where the address came from', () => {
  const rows = lab().endpoints;
  assert.deepEqual(
    rows.map((r) => [r.network, r.containerName, r.containerId?.slice(0, 3), r.mac, r.ipv4, r.source]),
    [
      ['plain', 'web', '999', '02:00:00:00:00:01', '172.16.86.10/24', 'docker-ipam'],
      ['pooled', 'db', '888', '02:00:00:00:00:02', '192.168.32.2/24', 'lanplug-ipam'],
      ['lan', 'dhcp-one', '777', '02:00:00:00:00:03', '172.16.86.120/24', 'dhcp'],
      ['cni-lan', null, 'fff', '02:00:00:00:00:04', '172.16.86.200/24', 'cni'],
    ],
  );
  const [plain, pooled, dhcp] = rows;
  assert.equal(pooled?.driver, 'lanplug-ipvlan');
  assert.equal(pooled?.mode, 'l2/bridge');
  assert.deepEqual(pooled?.hostAccess, { ipv4: '192.168.32.254', ipv6: null });
  assert.equal(plain?.hostAccess, null);
  // 2000 s into a 3600 s lease with T1 at 1800 s: renewing, ending at bound + 3600 s.
  assert.deepEqual(dhcp?.leases, [
    { family: 4, address: '172.16.86.120/24', state: 'renewing', expires: '2026-12-05T02:26:40Z' },
  ]);
  assert.equal(dhcp?.renewalFailures, 2);
  assert.deepEqual(plain?.lastConflict, {
    address: '172.16.86.10',
    mac: '02:aa:00:00:00:01',
    how: 'it sent an ARP reply for it on eth0',
    at: '2026-12-05T01:59:59Z',
  });
  assert.equal(pooled?.lastConflict, null);
});

test("the LAN devices heard: the one that claimed a container's address is marked with the container", () => {
  const listing = lab();
  assert.deepEqual(
    listing.lan.map((d) => [d.address, d.mac, d.claimed?.containerName ?? null]),
    [
      ['172.16.86.10', '02:aa:00:00:00:01', 'web'],
      ['172.16.86.99', '02:aa:00:00:00:02', null],
    ],
  );
  const text = formatLanDevices(listing);
  assert.match(text, /^ADDRESS +MAC +FIRST SEEN +LAST SEEN +CONTAINER'S ADDRESS$/m);
  assert.match(text, /^172\.16\.86\.10 +02:aa:00:00:00:01 +2026-12-05T01:59:00Z +2026-12-05T01:59:59Z +CLAIMED web$/m);
  assert.match(text, /^172\.16\.86\.99 +02:aa:00:00:00:02 +\S+ +\S+ +-$/m);
});

test('the address source without dockerd: DHCP and CNI from the record, a local pool claim is lanplug IPAM, else unknown; shared pools named so', () => {
  const claimed = new Set(['192.168.32.2']);
  const alone = lab({
    views: new Map(),
    dockerError: 'dockerd at /x did not answer',
    inLocalPool: (a) => claimed.has(a.text),
  });
  assert.deepEqual(
    alone.endpoints.map((r) => [r.source, r.containerName]),
    [
      ['unknown', null],
      ['lanplug-ipam', null],
      ['dhcp', null],
      ['cni', null],
    ],
  );
  assert.match(
    formatEndpoints(alone),
    /^note: dockerd at \/x did not answer: container names and sources are missing$/m,
  );
  assert.equal(lab({ sharedPools: true }).endpoints[1]?.source, 'shared-pool');
});

test('the table: one line per endpoint under a header, its identity (lanplug.identity), leases with their expiry, host access, the last conflict', () => {
  const text = formatEndpoints(lab());
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, 5);
  assert.match(
    lines[0] ?? '',
    /^NETWORK +DRIVER +PARENT +CONTAINER +IDENTITY +MAC +ADDRESSES +SOURCE +LEASE +HOST ACCESS +LAST CONFLICT$/,
  );
  assert.match(
    text,
    /^plain +macvlan\/bridge +eth0 +web +web1 +02:00:00:00:00:01 +172\.16\.86\.10\/24 +docker-ipam +- +- +02:aa:00:00:00:01 2026-12-05T01:59:59Z$/m,
  );
  assert.match(
    text,
    /^pooled +ipvlan\/l2\/bridge +eth0 +db +- +02:00:00:00:00:02 .* lanplug-ipam +- +192\.168\.32\.254 +-$/m,
  );
  assert.match(text, /^lan .* dhcp +renewing until 2026-12-05T02:26:40Z \(2 renewals failed\) +- +-$/m);
  assert.match(text, /^cni-lan .* ffffffffffff .* cni /m);
  assert.equal(
    formatEndpoints({ endpoints: [], lan: [], identities: [], dockerError: null }),
    'no lanplug endpoints\n',
  );
  // `ls --json` has it too, null for an endpoint without one.
  assert.deepEqual(
    lab().endpoints.map((e) => e.identity),
    ['web1', null, null, null],
  );
});

test('filters: a network by name or id start, a container by name or id start; the LAN rows follow', () => {
  const listing = lab();
  const names = (l: Listing): (string | null)[] => l.endpoints.map((e) => e.containerName);
  assert.deepEqual(names(filterListing(listing, { network: 'plain', container: null })), ['web']);
  assert.deepEqual(names(filterListing(listing, { network: 'bbbbbb', container: null })), ['db']);
  assert.deepEqual(names(filterListing(listing, { network: null, container: '/dhcp-one' })), ['dhcp-one']);
  assert.deepEqual(names(filterListing(listing, { network: null, container: '8888' })), ['db']);
  assert.deepEqual(names(filterListing(listing, { network: 'nope', container: null })), []);
  assert.deepEqual(
    filterListing(listing, { network: null, container: 'web' }).lan.map((d) => d.address),
    ['172.16.86.10'],
  );
  assert.deepEqual(filterListing(listing, { network: 'pooled', container: null }).lan, []);
});

test('-o ipv6=slaac: the addresses the container learned are its row’s (null elsewhere, or when unread); the table marks the usable ones (ra)', () => {
  const slaac = macvlanNetwork(id('a'), { slaac: { rtInfoMaxPlen: 0 } });
  const ep = endpoint(id('a'), id('1'), '02:00:00:00:00:01', '172.16.86.10/24');
  const listing = (learned: LearnedAddress[] | null): Listing =>
    buildListing({
      networks: [slaac, macvlanNetwork(id('b'))],
      endpoints: [ep, endpoint(id('b'), id('2'), '02:00:00:00:00:02', '172.16.86.11/24')],
      leases: [],
      sightings: [],
      views: new Map(),
      sharedPools: false,
      inLocalPool: () => false,
      dockerError: null,
      now: 0,
      learnedIpv6: () => learned,
    });
  const both = listing([
    { address: '2001:db8:1::5', prefixLength: 64, state: 'preferred' },
    { address: '2001:db8:2::5', prefixLength: 64, state: 'tentative' },
  ]);
  assert.deepEqual(both.endpoints[0]?.slaac, [
    { address: '2001:db8:1::5/64', state: 'preferred' },
    { address: '2001:db8:2::5/64', state: 'tentative' },
  ]);
  assert.equal(both.endpoints[1]?.slaac, null);
  assert.match(formatEndpoints(both), / 172\.16\.86\.10\/24,2001:db8:1::5\/64\(ra\) /);
  assert.equal(listing(null).endpoints[0]?.slaac, null);
});

test('-o ipv6=slaac: the DNS the LAN offered is the row’s (slaacDns) and a line under the table; a DHCPv6 address taken for the M flag is marked (dhcp6)', () => {
  const slaac = macvlanNetwork(id('a'), { slaac: { rtInfoMaxPlen: 0 } });
  const ep: EndpointRecord = {
    ...endpoint(id('a'), id('1'), '02:00:00:00:00:01', '172.16.86.10/24'),
    learnedDns: { servers: ['2001:db8::53'], search: ['lan.example'], from: ['ra', 'dhcpv6'] },
  };
  const v4 = DHCP_LEASE.leases[0];
  assert.ok(v4 !== undefined);
  const lease: LeaseRecord = {
    ...DHCP_LEASE,
    networkId: id('a'),
    endpointId: id('1'),
    leases: [{ ...v4, family: 6, address: parsePrefix('2001:db8::1017/128'), router: null }],
  };
  const listing = buildListing({
    networks: [slaac],
    endpoints: [ep],
    leases: [lease],
    sightings: [],
    views: new Map([[id('a'), view('lan', 'default', [[id('1'), id('9'), 'mo']])]]),
    sharedPools: false,
    inLocalPool: () => false,
    dockerError: null,
    now: NOW,
    learnedIpv6: () => [{ address: '2001:db8::5', prefixLength: 64, state: 'preferred' }],
  });
  assert.deepEqual(listing.endpoints[0]?.slaacDns, ep.learnedDns);
  const shown = formatEndpoints(listing);
  assert.match(shown, / 172\.16\.86\.10\/24,2001:db8::5\/64\(ra\),2001:db8::1017\/128\(dhcp6\) /);
  assert.match(shown, /^dns offered to mo \(ra, dhcpv6; not in its resolv\.conf\): 2001:db8::53 search lan\.example$/m);
});
