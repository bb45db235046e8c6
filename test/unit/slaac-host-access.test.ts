/**
 * Which host routes host access keeps for the addresses containers form on an `-o ipv6=slaac` network
 * (slaac-host-access.ts): exact ones, from the shim's link-local address, never to an address the host
 * holds, none while the shim has no link-local address. The kernel is a fake here; the e2e dualstack
 * test pings over the real routes, across a daemon restart and a prefix change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { learntRoutes, slaacRoutesOf, SlaacHostRoutes } from '../../src/driver/slaac-host-access';
import { shimLinkName } from '../../src/driver/names';
import { createLogger } from '../../src/log';
import type { EndpointRecord } from '../../src/model/network';
import { ENETDOWN } from '../../src/netlink/errno';
import { macvlanNetwork } from '../support/store-fixtures';
import type { LearnedAddress } from '../../src/driver/slaac';
import { formatPrefix, parsePrefix } from '../../src/net/address';
import { IFA_F_TENTATIVE, RT_SCOPE_LINK } from '../../src/netlink/codec';
import { FakeRtnl } from '../support/fake-rtnl';
import { until } from '../support/until';
import { RTPROT_LANPLUG } from '../../src/link/ip';
import { LanplugError } from '../../src/errors';
import { FakeClock } from '../support/fake-clock';

function kernel(): { rtnl: FakeRtnl; shim: { index: number; name: string } } {
  const rtnl = new FakeRtnl();
  const shim = rtnl.add({
    name: 'lh-aaaaaaaaaaaa',
    kind: 'macvlan',
    mtu: 1500,
    mac: '02:00:00:00:00:09',
    up: true,
    parentIndex: 2,
  });
  // The host's own LAN address, formed on its own interface from the same router.
  rtnl.addresses.push({ index: 2, prefix: parsePrefix('2001:db8:1::5/64'), scope: 0 });
  // And the on-link route of the router's prefix the host's kernel made from the advertisement.
  rtnl.routes.push({
    destination: parsePrefix('2001:db8:1::/64'),
    oifIndex: 2,
    gateway: null,
    preferredSource: null,
    protocol: RTPROT_RA,
    table: 254,
  });
  return { rtnl, shim };
}

const RTPROT_RA = 9;

const learnt = (address: string, state: LearnedAddress['state'] = 'preferred', nodad = false): LearnedAddress => ({
  address,
  prefixLength: 64,
  state,
  nodad,
});

test("routes to the learnt addresses: /128 each, from the link-local address of the shim, none to a tentative one or the host's own", () => {
  const { rtnl, shim } = kernel();
  rtnl.addresses.push({ index: shim.index, prefix: parsePrefix('fe80::9/64'), scope: RT_SCOPE_LINK });
  const found = learntRoutes(rtnl, shim, [
    learnt('2001:db8:1::c'),
    learnt('2001:db8:1::e'),
    learnt('2001:db8:1::d', 'tentative'),
    learnt('2001:db8:1::5'),
  ]);
  assert.ok('routes' in found);
  assert.deepEqual(
    found.routes.map((r) => `${formatPrefix(r.destination)} src ${r.source.text}`),
    ['2001:db8:1::c/128 src fe80::9', '2001:db8:1::e/128 src fe80::9'],
  );
});

test("a container with NET_ADMIN cannot take the host's traffic: no route to an address outside the router's advertised prefix (a public resolver's), nor to one added with nodad, nor to one another endpoint or a LAN neighbour holds", () => {
  const { rtnl, shim } = kernel();
  rtnl.addresses.push({ index: shim.index, prefix: parsePrefix('fe80::9/64'), scope: RT_SCOPE_LINK });
  // Only lanplug's own routes or a default route on the parent: neither says what the router advertised.
  rtnl.routes.push(
    {
      destination: parsePrefix('::/0'),
      oifIndex: 2,
      gateway: null,
      preferredSource: null,
      protocol: RTPROT_RA,
      table: 254,
    },
    {
      destination: parsePrefix('2001:db8:7::/64'),
      oifIndex: 2,
      gateway: null,
      preferredSource: null,
      protocol: RTPROT_LANPLUG,
      table: 254,
    },
  );
  const found = learntRoutes(
    rtnl,
    shim,
    [
      learnt('2001:db8:1::c'),
      learnt('2001:4860:4860::8888'),
      learnt('2001:db8:7::1'),
      learnt('2001:db8:1::1', 'preferred', true),
      learnt('2001:db8:1::f'),
      learnt('2001:db8:1::a'),
    ],
    { heldElsewhere: (a) => a === '2001:db8:1::f' || a === '2001:db8:1::a' },
  );
  assert.ok('routes' in found);
  assert.deepEqual(
    found.routes.map((r) => formatPrefix(r.destination)),
    ['2001:db8:1::c/128'],
  );
});

test('a shim whose link-local address is still tentative: no route yet, and why', () => {
  const { rtnl, shim } = kernel();
  rtnl.addresses.push({
    index: shim.index,
    prefix: parsePrefix('fe80::9/64'),
    scope: RT_SCOPE_LINK,
    flags: IFA_F_TENTATIVE,
  });
  assert.deepEqual(learntRoutes(rtnl, shim, [learnt('2001:db8:1::c')]), {
    whyNot: 'the shim lh-aaaaaaaaaaaa has no IPv6 link-local address (yet)',
  });
  // Nothing learnt: nothing to say.
  assert.deepEqual(learntRoutes(rtnl, shim, []), { routes: [] });
});

test('a route the kernel refuses (ENETDOWN) is a warning and a retry at the next read, never an exception out of the timer (it would end the daemon)', async () => {
  const rtnl = new FakeRtnl();
  const networkId = 'a'.repeat(64);
  const shim = rtnl.add({
    name: shimLinkName(networkId),
    kind: 'macvlan',
    mtu: 1500,
    mac: '02:00:00:00:00:09',
    up: true,
    parentIndex: 2,
  });
  rtnl.addresses.push({ index: shim.index, prefix: parsePrefix('fe80::9/64'), scope: RT_SCOPE_LINK });
  rtnl.routes.push({
    destination: parsePrefix('2001:db8:1::/64'),
    oifIndex: 2,
    gateway: null,
    preferredSource: null,
    protocol: RTPROT_RA,
    table: 254,
  });
  rtnl.fail('create', 'route 2001:db8:1::c/128', ENETDOWN);
  const spec = macvlanNetwork(networkId, { hostAccess: { ipv4: null, ipv6: null }, slaac: { rtInfoMaxPlen: 0 } }).spec;
  const endpoint: EndpointRecord = {
    networkId,
    endpointId: 'e'.repeat(64),
    linkName: 'dm-1',
    mac: null,
    ipv4: null,
    ipv6: null,
  };
  let reads = 0;
  const follower = new SlaacHostRoutes(
    rtnl,
    createLogger('error', () => undefined),
    {
      timing: { firstReadMs: 5, waitMaxMs: 5, followMs: 5, sandboxWaitMs: 1_000 },
      read: () => {
        reads++;
        return [learnt('2001:db8:1::c')];
      },
    },
  );
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => void uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  try {
    follower.watch(spec, endpoint, '/run/netns/none');
    // A second read after the refused route proves the timer lived through it.
    await until(() => reads >= 2, 'read twice');
    assert.deepEqual(uncaught, []);
    const lanplugs = (): string[] =>
      rtnl.routes.filter((r) => r.protocol === RTPROT_LANPLUG).map((r) => formatPrefix(r.destination));
    assert.deepEqual(lanplugs(), []);
    // The kernel takes it again: the next read adds the route.
    rtnl.heal();
    await until(() => lanplugs().length > 0, 'routed once the kernel takes it');
    assert.deepEqual(lanplugs(), ['2001:db8:1::c/128']);
  } finally {
    follower.close();
    process.off('uncaughtException', onUncaught);
  }
});

test("the M-flag DHCPv6 address (lanplug's own lease, a permanent /128 the container's read leaves out) gets its host route too, and reconcile wants it", async () => {
  const networkId = 'b'.repeat(64);
  const { rtnl, shim, spec } = followedNetwork(networkId);
  const endpoint: EndpointRecord = {
    networkId,
    endpointId: 'f'.repeat(64),
    linkName: 'dm-2',
    mac: null,
    ipv4: null,
    ipv6: null,
    dockerSandboxKey: '/run/netns/none',
  };
  const leased = (n: string, e: string): string[] =>
    n === networkId && e === endpoint.endpointId ? ['2001:db8:1::1234'] : [];
  const follower = new SlaacHostRoutes(
    rtnl,
    createLogger('error', () => undefined),
    {
      timing: { firstReadMs: 5, waitMaxMs: 5, followMs: 5, sandboxWaitMs: 1_000 },
      read: () => [],
      leased,
    },
  );
  try {
    follower.watch(spec, endpoint, '/run/netns/none');
    const routed = (): string[] =>
      rtnl.routes.filter((r) => r.protocol === RTPROT_LANPLUG).map((r) => formatPrefix(r.destination));
    await until(() => routed().length > 0, 'routed');
    assert.deepEqual(routed(), ['2001:db8:1::1234/128']);
  } finally {
    follower.close();
  }
  // Reconcile (no container to read here: the lease alone) wants the same route, so it does not take it away.
  const wanted = slaacRoutesOf(rtnl, spec, [endpoint], shim, () => undefined, leased);
  assert.deepEqual(
    wanted.map((r) => formatPrefix(r.destination)),
    ['2001:db8:1::1234/128'],
  );
});

test('an address a second container adds after another container has it routed: the route stays to the first, none to the second', async () => {
  const networkId = 'c'.repeat(64);
  const { rtnl, spec } = followedNetwork(networkId);
  const endpointOf = (c: string): EndpointRecord => ({
    networkId,
    endpointId: c.repeat(64),
    linkName: `dm-${c}`,
    mac: null,
    ipv4: null,
    ipv6: null,
  });
  const follower = new SlaacHostRoutes(
    rtnl,
    createLogger('error', () => undefined),
    {
      timing: { firstReadMs: 5, waitMaxMs: 5, followMs: 5, sandboxWaitMs: 1_000 },
      read: (_netns, endpoint) =>
        endpoint.endpointId.startsWith('1')
          ? [learnt('2001:db8:1::c')]
          : [learnt('2001:db8:1::c'), learnt('2001:db8:1::e')],
    },
  );
  try {
    const routed = (): number => rtnl.routes.filter((r) => r.protocol === RTPROT_LANPLUG).length;
    follower.watch(spec, endpointOf('1'), '/run/netns/one');
    await until(() => routed() === 1, "the first container's address routed");
    follower.watch(spec, endpointOf('2'), '/run/netns/two');
    await until(() => routed() >= 2, "the second container's own address routed");
    assert.deepEqual(
      rtnl.routes
        .filter((r) => r.protocol === RTPROT_LANPLUG)
        .map((r) => formatPrefix(r.destination))
        .sort(),
      ['2001:db8:1::c/128', '2001:db8:1::e/128'],
    );
    // The second container leaves: the first one's route stays.
    follower.cancel(endpointOf('2').endpointId);
    assert.deepEqual(
      rtnl.routes.filter((r) => r.protocol === RTPROT_LANPLUG).map((r) => formatPrefix(r.destination)),
      ['2001:db8:1::c/128'],
    );
  } finally {
    follower.close();
  }
});

/** A network with host access whose shim is past DAD and whose parent has the router's prefix on-link. */
function followedNetwork(networkId: string): {
  rtnl: FakeRtnl;
  shim: ReturnType<FakeRtnl['add']>;
  spec: ReturnType<typeof macvlanNetwork>['spec'];
} {
  const rtnl = new FakeRtnl();
  const shim = rtnl.add({
    name: shimLinkName(networkId),
    kind: 'macvlan',
    mtu: 1500,
    mac: '02:00:00:00:00:09',
    up: true,
    parentIndex: 2,
  });
  rtnl.addresses.push({ index: shim.index, prefix: parsePrefix('fe80::9/64'), scope: RT_SCOPE_LINK });
  rtnl.routes.push({
    destination: parsePrefix('2001:db8:1::/64'),
    oifIndex: 2,
    gateway: null,
    preferredSource: null,
    protocol: RTPROT_RA,
    table: 254,
  });
  const spec = macvlanNetwork(networkId, { hostAccess: { ipv4: null, ipv6: null }, slaac: { rtInfoMaxPlen: 0 } }).spec;
  return { rtnl, shim, spec };
}

test("the sandbox's wait runs on the monotonic clock: a wall clock set forward a day does not end it (the late container still gets its route), one set back an hour does not stretch it", (t) => {
  let wall = Date.UTC(2026, 11, 6);
  t.mock.method(Date, 'now', () => wall);
  const timing = { firstReadMs: 250, waitMaxMs: 1_000, followMs: 4_000, sandboxWaitMs: 30_000 };
  const routed = (rtnl: FakeRtnl): string[] =>
    rtnl.routes.filter((r) => r.protocol === RTPROT_LANPLUG).map((r) => formatPrefix(r.destination));
  const endpoint = (networkId: string): EndpointRecord => ({
    networkId,
    endpointId: 'e'.repeat(64),
    linkName: 'dm-1',
    mac: null,
    ipv4: null,
    ipv6: null,
  });

  // Set forward a day while Docker still makes the sandbox, which comes 5 s after Join.
  {
    const clock = new FakeClock();
    const { rtnl, spec } = followedNetwork('d'.repeat(64));
    const follower = new SlaacHostRoutes(
      rtnl,
      createLogger('error', () => undefined),
      {
        timing,
        clock,
        read: () => {
          if (clock.now() < 5_000) throw new LanplugError('NotFound', 'no sandbox /run/netns/late');
          return [learnt('2001:db8:1::c')];
        },
      },
    );
    try {
      follower.watch(spec, endpoint(spec.networkId), '/run/netns/late');
      clock.advance(1_000);
      wall += 24 * 3_600_000;
      clock.advance(9_000);
      assert.deepEqual(routed(rtnl), ['2001:db8:1::c/128'], 'the container whose sandbox came late was left unrouted');
      assert.equal(clock.pending, 1, 'still followed');
    } finally {
      follower.close();
    }
  }

  // Set back an hour while waiting for a sandbox that never comes (the container failed to start).
  {
    const clock = new FakeClock();
    const { rtnl, spec } = followedNetwork('f'.repeat(64));
    let reads = 0;
    const follower = new SlaacHostRoutes(
      rtnl,
      createLogger('error', () => undefined),
      {
        timing,
        clock,
        read: () => {
          reads++;
          throw new LanplugError('NotFound', 'no sandbox /run/netns/never');
        },
      },
    );
    try {
      follower.watch(spec, endpoint(spec.networkId), '/run/netns/never');
      clock.advance(1_000);
      wall -= 3_600_000;
      clock.advance(30_000);
      assert.equal(clock.pending, 0, 'still reading a sandbox that never came, 31 s after Join');
      const after = reads;
      clock.advance(3_600_000);
      assert.equal(reads, after, 'read again after the wait ended');
    } finally {
      follower.close();
    }
  }
});
