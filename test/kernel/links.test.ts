/**
 * Kernel lane: real links through src/netlink against the running kernel.
 * Needs root. Everything happens inside a throw-away network namespace
 * `lp-k-<random>` whose parents are veth pairs; the namespace is deleted in
 * after() whatever happens. `ip` is used here only to build and inspect the
 * lab (allowed in tests, never in src/).
 *
 * On this machine's kernel (macvlan, veth, bridge; no 8021q, ipvlan, dummy)
 * creating vlan/ipvlan/dummy links answers EOPNOTSUPP "Unknown device type";
 * on a kernel that has them (the VM lane) the same tests check the read-back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readlinkSync, statSync } from 'node:fs';
import { LanplugError } from '../../src/errors';
import { EEXIST, EINVAL, ENOENT, EOPNOTSUPP } from '../../src/netlink/errno';
import type { LinkInfo } from '../../src/link/link';
import { openRtnl, type Rtnl } from '../../src/link/rtnl';
import { NetlinkEvents, RTNLGRP_LINK } from '../../src/netlink/events';
import { formatPrefix, parseAddress, parsePrefix } from '../../src/net/address';
import { applyInContainer } from '../../src/dhcp/in-container';
import { leaseRoutes } from '../../src/driver/leased-attachments';
import { addSandboxRoutes } from '../../src/driver/sandbox';
import type { Lease, LeaseRecord } from '../../src/model/lease';

const NS = `lp-k-${randomBytes(4).toString('hex')}`;
const NS_PATH = `/run/netns/${NS}`;

let rtnl: Rtnl | undefined;
let parent: LinkInfo; // lp-p0, a veth in NS: parent of the shared-mode macvlans
let passthruParent: LinkInfo; // lp-q0, a veth in NS reserved for passthru

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `ip -d -j link show` inside NS: an independent reading of what the kernel holds. */
function ipShow(name: string): {
  ifindex: number;
  address: string;
  linkinfo?: { info_kind: string; info_data?: Record<string, unknown> };
} {
  const parsed: unknown = JSON.parse(ip('-n', NS, '-d', '-j', 'link', 'show', 'dev', name));
  assert.ok(Array.isArray(parsed) && parsed.length === 1, `ip link show ${name}`);
  return parsed[0] as ReturnType<typeof ipShow>;
}

function ns(): Rtnl {
  assert.ok(rtnl, 'the namespace socket is open');
  return rtnl;
}

/** A LanplugError with code Kernel and the given errno. */
function kernelError(errno: number, text?: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof LanplugError, `expected a LanplugError, got ${String(err)}`);
    assert.equal(err.code, 'Kernel', err.message);
    assert.equal(err.errno, errno, err.message);
    if (text !== undefined) assert.match(err.message, text);
    return true;
  };
}

before(() => {
  // A lane that cannot run must fail loudly, not pass silently.
  assert.equal(process.getuid?.(), 0, 'the kernel lane needs root');
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'add', 'lp-p0', 'type', 'veth', 'peer', 'name', 'lp-p1');
  ip('-n', NS, 'link', 'add', 'lp-q0', 'type', 'veth', 'peer', 'name', 'lp-q1');
  rtnl = openRtnl({ netns: NS_PATH });
  const p = rtnl.getLink('lp-p0');
  const q = rtnl.getLink('lp-q0');
  assert.ok(p && q);
  parent = p;
  passthruParent = q;
});

after(() => {
  rtnl?.close();
  try {
    ip('netns', 'del', NS);
  } catch (err) {
    // Say so, but do not hide the test's own failure behind this one.
    process.stderr.write(`could not delete namespace ${NS}: ${String(err)}\n`);
    throw err;
  }
});

test('opening a socket in another namespace leaves this thread where it was', () => {
  const before = readlinkSync('/proc/thread-self/ns/net');
  const beforeProcess = readlinkSync('/proc/self/ns/net');
  const other = openRtnl({ netns: NS_PATH });
  try {
    assert.equal(readlinkSync('/proc/thread-self/ns/net'), before);
    assert.equal(readlinkSync('/proc/self/ns/net'), beforeProcess);
    // ...and NS really is another namespace than this thread's.
    assert.notEqual(`net:[${statSync(NS_PATH).ino}]`, before);
    // The socket really is in NS: it sees the lab's veths, and only those plus lo.
    const names = other
      .listLinks()
      .map((l) => l.name)
      .sort();
    assert.deepEqual(names, ['lo', 'lp-p0', 'lp-p1', 'lp-q0', 'lp-q1']);
  } finally {
    other.close();
  }
});

test('a link created through the namespace socket is invisible from the host socket', () => {
  const name = `lp-v${randomBytes(3).toString('hex')}`;
  const host = openRtnl();
  try {
    assert.equal(host.getLink(name), null, 'no such link on the host before');
    const link = ns().createMacvlan({ name, parentIndex: parent.index, mode: 'bridge' });
    try {
      assert.equal(host.getLink(name), null, 'still none on the host after');
      assert.equal(ns().getLink(name)?.index, link.index);
    } finally {
      ns().deleteLink(link);
    }
  } finally {
    host.close();
  }
});

test('opening a socket in a namespace that does not exist is NotFound', () => {
  assert.throws(
    () => openRtnl({ netns: `/run/netns/${NS}-missing` }),
    (err: unknown) => err instanceof LanplugError && err.code === 'NotFound' && err.errno === ENOENT,
  );
});

for (const [mode, mac] of [
  ['bridge', '02:42:ac:10:56:02'],
  ['vepa', '02:42:ac:10:56:03'],
  ['private', '02:42:ac:10:56:04'],
] as const) {
  test(`macvlan in ${mode} mode with a given MAC is created and read back`, () => {
    const name = `lp-m-${mode}`;
    const link = ns().createMacvlan({ name, parentIndex: parent.index, mode, mac, mtu: 1400 });
    try {
      assert.equal(link.name, name);
      assert.equal(link.kind, 'macvlan');
      assert.equal(link.macvlanMode, mode);
      assert.equal(link.mac, mac);
      assert.equal(link.mtu, 1400);
      assert.equal(link.parentIndex, parent.index);
      assert.equal(link.up, false);
      // Cross-check with iproute2's own reading of the kernel.
      const shown = ipShow(name);
      assert.equal(shown.ifindex, link.index);
      assert.equal(shown.address, mac);
      assert.equal(shown.linkinfo?.info_kind, 'macvlan');
      assert.equal(shown.linkinfo?.info_data?.['mode'], mode);
    } finally {
      assert.equal(ns().deleteLink(link), true);
    }
  });
}

test('passthru works as the sole macvlan on its parent; a second macvlan there is refused', () => {
  const pt = ns().createMacvlan({ name: 'lp-m-pt', parentIndex: passthruParent.index, mode: 'passthru' });
  try {
    assert.equal(pt.macvlanMode, 'passthru');
    assert.equal(pt.parentIndex, passthruParent.index);
    // Observed on this kernel: EINVAL, without extended-ACK text.
    for (const mode of ['bridge', 'passthru'] as const) {
      assert.throws(
        () => ns().createMacvlan({ name: 'lp-m-pt2', parentIndex: passthruParent.index, mode }),
        kernelError(EINVAL, /^create macvlan link lp-m-pt2: EINVAL \(Invalid argument\)$/),
      );
    }
    assert.equal(ns().getLink('lp-m-pt2'), null, 'nothing left behind');
  } finally {
    ns().deleteLink(pt);
  }
});

test('a link whose IPv6 address generation is stopped comes up without a link-local address (a plugin eye)', () => {
  const quiet = ns().createMacvlan({ name: 'lp-m-quiet', parentIndex: parent.index, mode: 'bridge' });
  const loud = ns().createMacvlan({ name: 'lp-m-loud', parentIndex: parent.index, mode: 'bridge' });
  // With carrier (the veth pair up): the kernel makes link-local addresses only on a link that has it.
  ip('-n', NS, 'link', 'set', 'lp-p1', 'up');
  ip('-n', NS, 'link', 'set', 'lp-p0', 'up');
  try {
    assert.equal(ns().stopIpv6AddressGeneration(quiet), true);
    ns().setUp(quiet);
    ns().setUp(loud);
    // The other one is the control: the kernel gives an up link its fe80:: address once it sees the
    // carrier (at once here; up to a second later on Debian's 6.1, whose link watch batches carrier events).
    const deadline = Date.now() + 5_000;
    while (!/inet6 fe80::/.test(ip('-n', NS, '-6', 'addr', 'show', 'dev', 'lp-m-loud')) && Date.now() < deadline)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    assert.match(ip('-n', NS, '-6', 'addr', 'show', 'dev', 'lp-m-loud'), /inet6 fe80::/);
    assert.doesNotMatch(ip('-n', NS, '-6', 'addr', 'show', 'dev', 'lp-m-quiet'), /inet6/);
    assert.match(ip('-n', NS, '-d', 'link', 'show', 'dev', 'lp-m-quiet'), /addrgenmode none/);
  } finally {
    ns().deleteLink(quiet);
    ns().deleteLink(loud);
    ip('-n', NS, 'link', 'set', 'lp-p0', 'down');
    ip('-n', NS, 'link', 'set', 'lp-p1', 'down');
  }
});

test('deleting twice: the second delete answers false; getLink of a missing name is null', () => {
  const link = ns().createMacvlan({ name: 'lp-m-del', parentIndex: parent.index, mode: 'bridge' });
  assert.equal(ns().deleteLink(link), true);
  assert.equal(ns().deleteLink(link), false);
  assert.equal(ns().getLink('lp-m-del'), null);
  assert.equal(ns().getLinkByIndex(link.index), null);
  assert.equal(ns().getLink('lp-nothing-here'), null);
});

test('a duplicate name throws EEXIST', () => {
  const link = ns().createMacvlan({ name: 'lp-m-dup', parentIndex: parent.index, mode: 'bridge' });
  try {
    assert.throws(
      () => ns().createMacvlan({ name: 'lp-m-dup', parentIndex: parent.index, mode: 'vepa' }),
      kernelError(EEXIST, /EEXIST \(File exists\)/),
    );
    // The same for a name held by a device of another kind.
    assert.throws(() => ns().createBridge({ name: 'lp-p0' }), kernelError(EEXIST));
    assert.equal(ns().getLink('lp-m-dup')?.macvlanMode, 'bridge', 'the original is untouched');
  } finally {
    ns().deleteLink(link);
  }
});

/** Each kind this kernel may lack: created and read back where supported, else EOPNOTSUPP "Unknown device type". */
const optionalKinds: { kind: string; create: () => LinkInfo; check: (l: LinkInfo) => void }[] = [
  {
    kind: 'vlan',
    create: () => ns().createVlan({ name: 'lp-vl', parentIndex: parent.index, vlanId: 50 }),
    check: (l) => assert.equal(l.vlanId, 50),
  },
  {
    kind: 'ipvlan',
    create: () => ns().createIpvlan({ name: 'lp-iv', parentIndex: parent.index, mode: 'l3', flag: 'private' }),
    check: (l) => {
      assert.equal(l.ipvlanMode, 'l3');
      assert.equal(l.ipvlanFlag, 'private');
    },
  },
  {
    kind: 'dummy',
    create: () => ns().createDummy({ name: 'lp-dm', mtu: 1400 }),
    check: (l) => assert.equal(l.mtu, 1400),
  },
];

for (const { kind, create, check } of optionalKinds) {
  test(`${kind}: created where the kernel supports it, else EOPNOTSUPP with the kernel's reason`, (t) => {
    let link: LinkInfo;
    try {
      link = create();
    } catch (err) {
      kernelError(EOPNOTSUPP, /EOPNOTSUPP \(Operation not supported\): Unknown device type/)(err);
      t.diagnostic(`${kind}: ${(err as Error).message}`);
      return;
    }
    try {
      t.diagnostic(`${kind}: supported by this kernel`);
      assert.equal(link.kind, kind);
      check(link);
    } finally {
      ns().deleteLink(link);
    }
  });
}

test('bridge creation with an MTU, setUp, listLinks', () => {
  const br = ns().createBridge({ name: 'lp-br', mtu: 1450 });
  try {
    assert.equal(br.kind, 'bridge');
    assert.equal(br.mtu, 1450);
    assert.equal(br.up, false);
    ns().setUp(br);
    const now = ns().getLinkByIndex(br.index);
    assert.equal(now?.up, true);
    assert.equal(now?.mtu, 1450);
    const listed = ns()
      .listLinks()
      .find((l) => l.index === br.index);
    assert.deepEqual(listed, now);
  } finally {
    ns().deleteLink(br);
  }
});

test('bad input is refused before the kernel sees it', () => {
  for (const name of ['', 'x'.repeat(16), 'a/b', 'a b', '.', '..']) {
    assert.throws(
      () => ns().createMacvlan({ name, parentIndex: parent.index, mode: 'bridge' }),
      (err: unknown) => err instanceof LanplugError && err.code === 'InvalidArgument',
      JSON.stringify(name),
    );
  }
  assert.throws(
    () => ns().createMacvlan({ name: 'lp-m-bad', parentIndex: parent.index, mode: 'bridge', mac: '01:00:5e:00:00:01' }),
    (err: unknown) => err instanceof LanplugError && err.code === 'InvalidArgument' && /unicast/.test(err.message),
  );
  assert.throws(
    () => ns().createVlan({ name: 'lp-vl', parentIndex: parent.index, vlanId: 5000 }),
    /vlan id must be between 1-4094, received: 5000/,
  );
  assert.equal(ns().getLink('lp-m-bad'), null);
});

test('addresses and lanplug routes on a real link: added once however often asked, listed, removed, removing twice answers false', () => {
  const shim = ns().createMacvlan({ name: 'lp-shim-t', parentIndex: parent.index, mode: 'bridge' });
  try {
    ns().setUp(shim);
    const host = parsePrefix('172.16.86.254/32');
    const host6 = parsePrefix('2001:db8:86::fe/128');
    for (let i = 0; i < 2; i++) {
      ns().addAddress(shim, host);
      ns().addAddress(shim, host6);
    }
    const mine = (family: 4 | 6): string[] =>
      ns()
        .listAddresses(family)
        .filter((a) => a.index === shim.index)
        .map((a) => formatPrefix(a.prefix));
    assert.deepEqual(mine(4), ['172.16.86.254/32']);
    assert.deepEqual(
      mine(6).filter((a) => !a.startsWith('fe80')),
      ['2001:db8:86::fe/128'],
    );
    for (let i = 0; i < 2; i++) {
      ns().replaceRoute(parsePrefix('172.16.86.2/32'), shim, host.address);
      ns().replaceRoute(parsePrefix('2001:db8:86::2/128'), shim, host6.address);
    }
    // An independent reading: iproute2 shows each route once, with lanplug's protocol and the host's address as source.
    const shown = JSON.parse(ip('-n', NS, '-j', 'route', 'show', 'proto', '76')) as {
      dst: string;
      dev: string;
      prefsrc?: string;
      scope: string;
    }[];
    assert.deepEqual(
      shown.map((r) => [r.dst, r.dev, r.prefsrc, r.scope]),
      [['172.16.86.2', 'lp-shim-t', '172.16.86.254', 'link']],
    );
    const shown6 = JSON.parse(ip('-n', NS, '-6', '-j', 'route', 'show', 'proto', '76')) as { dst: string }[];
    assert.deepEqual(
      shown6.map((r) => r.dst),
      ['2001:db8:86::2'],
    );
    const routes = ns()
      .listRoutes(4)
      .filter((r) => r.protocol === 76);
    assert.deepEqual(
      routes.map((r) => [formatPrefix(r.destination), r.oifIndex, r.preferredSource?.text]),
      [['172.16.86.2/32', shim.index, '172.16.86.254']],
    );
    assert.equal(ns().deleteRoute(parsePrefix('172.16.86.2/32'), shim), true);
    assert.equal(ns().deleteRoute(parsePrefix('172.16.86.2/32'), shim), false);
    assert.equal(ns().deleteAddress(shim, host), true);
    assert.equal(ns().deleteAddress(shim, host), false);
  } finally {
    ns().deleteLink(shim);
  }
  assert.equal(ip('-n', NS, '-6', 'route', 'show', 'proto', '76'), '', 'the v6 route went with its link');
});

test("a DHCP lease moved at a renewal: the routes a network's configuration added follow the container onto its new address, via the new router where they went via the old one; the drop routes stay", () => {
  const mac = '02:00:0a:05:00:0a';
  const link = ns().createMacvlan({ name: 'lp-dhcp-t', parentIndex: parent.index, mode: 'bridge', mac });
  const lease = (address: string, router: string): Lease => ({
    family: 4,
    address: parsePrefix(address),
    router: parseAddress(router),
    dns: [],
    serverId: parseAddress('10.5.0.1'),
    serverMac: '02:00:00:00:00:01',
    serverDuid: null,
    leaseSeconds: 120,
    renewSeconds: 60,
    rebindSeconds: 105,
    boundAt: 0,
    state: 'bound',
  });
  const record = { networkId: 'n', endpointId: 'e', identity: { mac } } as unknown as LeaseRecord;
  const routes = (): string[] =>
    ip('-n', NS, '-4', 'route', 'show')
      .split('\n')
      .filter((line) => line.includes('lp-dhcp-t') || line.startsWith('blackhole'))
      .map((line) => line.replace(/ proto \S+| scope \S+| src \S+| linkdown/g, '').trim());
  try {
    ns().setUp(link);
    const first = lease('10.5.0.10/24', '10.5.0.1');
    ns().addAddress(link, first.address);
    // As a DHCP ADD makes them (driver/leased-attachments.ts): the router's default route, a route that
    // took the router (no gateway configured), one via a gateway of its own, one that drops.
    addSandboxRoutes(
      ns(),
      link,
      leaseRoutes(
        [
          { destination: parsePrefix('10.96.0.0/16'), gateway: null },
          { destination: parsePrefix('10.97.0.0/16'), gateway: parseAddress('10.5.0.9') },
          { destination: parsePrefix('10.99.0.0/16'), gateway: null, drop: 'blackhole' },
        ],
        first.router,
      ),
    );
    const moved = lease('10.5.0.20/24', '10.5.0.2');
    applyInContainer(NS_PATH, record, first, moved);
    assert.deepEqual(routes().sort(), [
      '10.5.0.0/24 dev lp-dhcp-t',
      '10.96.0.0/16 via 10.5.0.2 dev lp-dhcp-t',
      '10.97.0.0/16 via 10.5.0.9 dev lp-dhcp-t',
      'blackhole 10.99.0.0/16',
      'default via 10.5.0.2 dev lp-dhcp-t',
    ]);
    // The same address, another router: the routes that took the router follow it.
    applyInContainer(NS_PATH, record, moved, lease('10.5.0.20/24', '10.5.0.3'));
    assert.deepEqual(routes().sort(), [
      '10.5.0.0/24 dev lp-dhcp-t',
      '10.96.0.0/16 via 10.5.0.3 dev lp-dhcp-t',
      '10.97.0.0/16 via 10.5.0.9 dev lp-dhcp-t',
      'blackhole 10.99.0.0/16',
      'default via 10.5.0.3 dev lp-dhcp-t',
    ]);
  } finally {
    ns().deleteLink(link);
    ip('-n', NS, 'route', 'del', 'blackhole', '10.99.0.0/16');
  }
});

test("a DHCPv6 lease moved at a renewal, within its prefix and to another: the IPv6 routes through the link (a configured one via a gateway, the default via the router's link-local address) stay, the kernel's prefix route follows the address", () => {
  const mac = '02:00:0a:05:00:0b';
  const link = ns().createMacvlan({ name: 'lp-dhcp6-t', parentIndex: parent.index, mode: 'bridge', mac });
  const lease = (address: string): Lease => ({
    family: 6,
    address: parsePrefix(address),
    router: null, // DHCPv6 names no router: routers advertise themselves
    dns: [],
    serverId: parseAddress('fd77::1'),
    serverMac: '02:00:00:00:00:01',
    serverDuid: '00030001020000000001',
    leaseSeconds: 120,
    renewSeconds: 60,
    rebindSeconds: 105,
    boundAt: 0,
    state: 'bound',
  });
  const record = { networkId: 'n', endpointId: 'e', identity: { mac } } as unknown as LeaseRecord;
  const routes = (): string[] =>
    ip('-n', NS, '-6', 'route', 'show', 'dev', 'lp-dhcp6-t')
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('fe80::/64'))
      .map((line) => line.replace(/ proto \S+| metric \S+| pref \S+| linkdown/g, '').trim());
  try {
    ns().setUp(link);
    const first = lease('fd77::100/64');
    ns().addAddress(link, first.address);
    ip('-n', NS, 'route', 'add', '2001:db8:96::/48', 'via', 'fd77::9', 'dev', 'lp-dhcp6-t');
    ip('-n', NS, 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'lp-dhcp6-t');
    const moved = lease('fd77::300/64');
    applyInContainer(NS_PATH, record, first, moved);
    assert.deepEqual(routes().sort(), ['2001:db8:96::/48 via fd77::9', 'default via fe80::1', 'fd77::/64']);
    const elsewhere = lease('fd78::300/64');
    applyInContainer(NS_PATH, record, moved, elsewhere);
    assert.deepEqual(routes().sort(), ['2001:db8:96::/48 via fd77::9', 'default via fe80::1', 'fd78::/64']);
    assert.deepEqual(
      ns()
        .listAddresses(6)
        .filter((a) => a.index === link.index && !a.prefix.address.text.startsWith('fe80'))
        .map((a) => formatPrefix(a.prefix)),
      ['fd78::300/64'],
    );
  } finally {
    ns().deleteLink(link);
  }
});

test("listOwnLinks gives only this group's links of the kind and name asked, whatever else the namespace holds", () => {
  const own = 0x51a7e;
  const mine = openRtnl({ netns: NS_PATH, group: own });
  const made = ['lpeab-1', 'lp-c1', 'lpe-other', 'lpe-br'];
  try {
    const eye = mine.createMacvlan({ name: 'lpeab-1', parentIndex: parent.index, mode: 'bridge' });
    mine.createMacvlan({ name: 'lp-c1', parentIndex: parent.index, mode: 'bridge' }); // a container's, not an eye
    ns().createMacvlan({ name: 'lpe-other', parentIndex: parent.index, mode: 'bridge' }); // the default group
    mine.createBridge({ name: 'lpe-br' }); // this group, another kind
    assert.deepEqual(
      mine.listOwnLinks('macvlan', 'lpe').map((l) => [l.name, l.index, l.kind, l.group, l.parentIndex]),
      [['lpeab-1', eye.index, 'macvlan', own, parent.index]],
    );
    assert.deepEqual(
      mine.listOwnLinks('bridge', 'lpe').map((l) => l.name),
      ['lpe-br'],
    );
  } finally {
    for (const name of made) {
      const link = ns().getLink(name);
      if (link !== null) ns().deleteLink(link);
    }
    mine.close();
  }
});

/** Notifications the kernel could not queue for the socket on `fd` (Drops in NS's /proc/net/netlink, found by inode). */
function netlinkDrops(fd: number): number {
  const inode = /socket:\[(\d+)\]/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
  const row = ip('netns', 'exec', NS, 'cat', '/proc/net/netlink')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((cols) => cols[9] === inode);
  assert.ok(row !== undefined, `no netlink socket with inode ${inode} in ${NS}`);
  return Number(row[8]);
}

test("the LAN sync's link notifications: a link made reads as one change, nothing changed as none, and a queue that overflowed (notifications lost, ENOBUFS) as a change", () => {
  const events = NetlinkEvents.open([RTNLGRP_LINK], { netns: NS_PATH });
  const fd = (events as unknown as { fd: number }).fd;
  let link: LinkInfo | null = null;
  try {
    assert.equal(events.changed(), false, 'nothing changed yet');
    link = ns().createMacvlan({ name: 'lp-note', parentIndex: parent.index, mode: 'bridge' });
    assert.equal(events.changed(), true, 'a link made');
    assert.equal(events.changed(), false, 'told once');
    // Changes nobody reads until the kernel drops some: the socket's queue overflowed. (Up and down:
    // the kernel tells every flag change, where a down link's new group, say, it tells no one.)
    for (let i = 1; netlinkDrops(fd) === 0; i++) {
      assert.ok(i <= 100, 'the queue never overflowed');
      for (let j = 0; j < 25; j++) {
        ns().setUp(link);
        ns().parkLink(link, 0x5ee);
      }
    }
    assert.equal(events.changed(), true, 'notifications lost read as a change');
    // What is left of the full queue is read MAX_DRAINED a call (a sender keeping it full must not hold
    // the daemon in one call): it reads as changed until read, then as unchanged.
    let calls = 1;
    while (events.changed()) assert.ok(++calls <= 100, 'the queue never emptied');
    assert.equal(events.changed(), false);
    ns().setUp(link);
    assert.equal(events.changed(), true, 'the socket still tells after an overflow');
  } finally {
    if (link !== null) ns().deleteLink(link);
    events.close();
  }
});
