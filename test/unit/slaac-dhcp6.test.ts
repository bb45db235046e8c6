/**
 * The DHCPv6 exchange an `-o ipv6=slaac` container's router advertisement asks for (endpoint/slaac-dhcp6.ts),
 * as far as time goes: the wait for the link's link-local address and the time an exchange took run on the
 * monotonic clock, so that a wall clock set back or forward (NTP, an operator's `date -s`) changes neither.
 * The keeper, the container's kernel and the clock are fakes here; the e2e dualstack test runs the real ones.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { LeaseKeeper } from '../../src/dhcp/keeper';
import type { NetworkDriver } from '../../src/driver/network-driver';
import { SlaacDhcp6 } from '../../src/endpoint/slaac-dhcp6';
import { capturingLogger } from '../support/capturing-logger';
import type { Lease } from '../../src/model/lease';
import type { EndpointRecord, NetworkSpec } from '../../src/model/network';
import { parseAddress, parsePrefix, type IpAddress } from '../../src/net/address';
import { FakeClock } from '../support/fake-clock';
import { FakeRtnl } from '../support/fake-rtnl';

const NET = 'a'.repeat(64);
const SPEC = { networkId: NET, slaac: { rtInfoMaxPlen: 0 }, dhcp: null } as unknown as NetworkSpec;
const ENDPOINT: EndpointRecord = {
  networkId: NET,
  endpointId: 'e'.repeat(64),
  linkName: 'dm-1',
  mac: '02:00:00:00:00:01',
  ipv4: null,
  ipv6: null,
};
const MANAGED = { heard: true, managed: true, other: false };

/** A keeper that holds nothing yet; `acquire` is the test's. */
function fakeKeeper(acquire: () => Promise<Lease[]>): { keeper: LeaseKeeper; asked: () => number } {
  let asked = 0;
  const keeper = {
    get: () => null,
    acquire: () => {
      asked++;
      return acquire();
    },
    giveBack: () => undefined,
    hold: () => undefined,
    joined: () => null,
  } as unknown as LeaseKeeper;
  return { keeper, asked: () => asked };
}

const NO_DRIVER = { noteLearnedDns: () => undefined } as unknown as NetworkDriver;

function containerLink(rtnl: FakeRtnl): ReturnType<FakeRtnl['add']> {
  return rtnl.add({ name: 'dm-1', kind: 'macvlan', mtu: 1500, mac: '02:00:00:00:00:01', up: true, parentIndex: null });
}

/** The wall clock, as the test sets it (Date.now). */
function wallClock(t: TestContext): { step: (ms: number) => void } {
  let wall = Date.UTC(2026, 11, 6);
  t.mock.method(Date, 'now', () => wall);
  return { step: (ms) => void (wall += ms) };
}

test('the wait for the link-local address runs on the monotonic clock: a wall clock set forward a day does not end it, one set back an hour does not stretch it', async (t) => {
  const wall = wallClock(t);
  const linkLocal = parseAddress('fe80::1');

  // Set forward a day while the kernel still checks the link-local address (past DAD 2 s after the advertisement).
  {
    const clock = new FakeClock();
    const rtnl = new FakeRtnl();
    const link = containerLink(rtnl);
    const { log, lines } = capturingLogger();
    const { keeper, asked } = fakeKeeper(() => Promise.resolve([]));
    const dhcp6 = new SlaacDhcp6(NO_DRIVER, keeper, log, {
      clock,
      linkLocal: (): IpAddress | null => (clock.now() >= 2_000 ? linkLocal : null),
      openRtnl: () => rtnl,
    });
    dhcp6.flags(SPEC, ENDPOINT, '/run/netns/c1', link, MANAGED, null);
    await clock.advanceAsync(500);
    wall.step(24 * 3_600_000);
    await clock.advanceAsync(3_000);
    assert.deepEqual(
      lines.filter((l) => l.level === 'warn').map((l) => l.fields.error),
      [],
      'gave up on the link-local address at once',
    );
    assert.equal(asked(), 1, 'the DHCPv6 server was asked once the address was past DAD');
  }

  // Set back an hour while the link-local address never comes (its DAD failed): given up 5 s after all the same.
  {
    const clock = new FakeClock();
    const rtnl = new FakeRtnl();
    const link = containerLink(rtnl);
    const { log, lines } = capturingLogger();
    const { keeper, asked } = fakeKeeper(() => Promise.resolve([]));
    const dhcp6 = new SlaacDhcp6(NO_DRIVER, keeper, log, { clock, linkLocal: () => null, openRtnl: () => rtnl });
    dhcp6.flags(SPEC, ENDPOINT, '/run/netns/c2', link, MANAGED, null);
    await clock.advanceAsync(500);
    wall.step(-3_600_000);
    await clock.advanceAsync(5_000);
    assert.deepEqual(
      lines.filter((l) => l.level === 'warn').map((l) => l.fields.error),
      ['dm-1 has no usable link-local address to ask from'],
      'still waiting for the link-local address 5.5 s after the advertisement',
    );
    assert.equal(clock.pending, 0, 'still polling');
    assert.equal(asked(), 0);
  }
});

test('the time a DHCPv6 address took, as logged, is measured on the monotonic clock: a wall clock set back an hour meanwhile does not make it negative', async (t) => {
  const wall = wallClock(t);
  const clock = new FakeClock();
  const rtnl = new FakeRtnl();
  const link = containerLink(rtnl);
  const { log, lines } = capturingLogger();
  const lease: Lease = {
    family: 6,
    address: parsePrefix('2001:db8:1::1234/128'),
    router: null,
    dns: [],
    serverId: parseAddress('fe80::53'),
    serverMac: '02:00:00:00:00:53',
    serverDuid: '00030001020000000053',
    leaseSeconds: 3_600,
    renewSeconds: 1_800,
    rebindSeconds: 2_880,
    boundAt: Date.now(),
    state: 'bound',
  };
  // The server answers 300 ms after the Solicit; the wall clock is set back an hour in between.
  const { keeper } = fakeKeeper(
    () =>
      new Promise((resolve) =>
        clock.after(300, () => {
          wall.step(-3_600_000);
          resolve([lease]);
        }),
      ),
  );
  const dhcp6 = new SlaacDhcp6(NO_DRIVER, keeper, log, {
    clock,
    linkLocal: () => parseAddress('fe80::1'),
    openRtnl: () => rtnl,
  });
  dhcp6.flags(SPEC, ENDPOINT, '/run/netns/c3', link, MANAGED, null);
  await clock.advanceAsync(1_000);
  const put = lines.find((l) => l.msg.startsWith('IPv6 address from DHCPv6'));
  assert.ok(put !== undefined, JSON.stringify(lines));
  assert.equal(put.fields.afterAdvertMs, 300);
  assert.deepEqual(
    rtnl.addresses.filter((a) => a.index === link.index).map((a) => a.prefix.address.text),
    ['2001:db8:1::1234'],
  );
});
