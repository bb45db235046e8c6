/**
 * The LAN eye's names and making, on the in-memory link table (the kernel
 * lane and the Docker lane make real ones): a daemon's names fit Linux's 15
 * bytes whatever the parent's index, a second daemon whose tag is this one's
 * gets the next name rather than failing, and an eye is made without ARP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureEye, eyeNames, unusedEyes } from '../../src/lan/eye';
import { SAFETY_PERIODS, UnusedEyeSweep } from '../../src/lan/eye-sweep';
import { FakeRtnl } from '../support/fake-rtnl';

const GROUP = 0x2a3b4c5d;

test('eye names fit in 15 bytes for every parent index a kernel gives (up to 2^31)', () => {
  for (const index of [1, 99, 99_999_999, 100_000_000, 2 ** 31 - 1]) {
    const names = eyeNames({ ownGroup: GROUP }, index);
    assert.equal(names.length, 3);
    for (const name of names) assert.ok(Buffer.byteLength(name) <= 15, `${name} (${index})`);
    assert.equal(new Set(names).size, 3, 'three different names to try');
  }
  assert.match(eyeNames({ ownGroup: GROUP }, 7)[0] ?? '', /^lpe[0-9a-z]{3}-7$/);
  assert.match(eyeNames({ ownGroup: GROUP }, 2 ** 31 - 1)[0] ?? '', /^lpe[0-9a-z]{3}_zik0zj$/, 'base 36 past 8 digits');
  assert.deepEqual(eyeNames({ ownGroup: 0 }, 7), ['lpe-7']);
});

test("an eye name another daemon's link has is skipped: this daemon's eye takes the next, made without ARP, and is its own", () => {
  const rtnl = new FakeRtnl(undefined, GROUP);
  const eth0 = rtnl.getLink('eth0');
  assert.ok(eth0);
  const [first, second] = eyeNames(rtnl, eth0.index);
  assert.ok(first !== undefined && second !== undefined);
  rtnl.add({ name: first, kind: 'macvlan', mtu: 1500, mac: null, up: true, parentIndex: eth0.index, group: 777 });
  const eye = ensureEye(rtnl, eth0);
  assert.equal(eye.name, second);
  assert.equal(eye.noArp, true, 'no ARP: it would answer for every address of the host');
  assert.equal(eye.group, GROUP);
  assert.equal(ensureEye(rtnl, eth0).index, eye.index, 'found again, not made twice');
  const network = { spec: { parent: { kind: 'existing', name: 'eth0' } } } as Parameters<typeof unusedEyes>[1][number];
  assert.deepEqual(unusedEyes(rtnl, [network]), [], 'in use while a network of this daemon is on eth0');
  assert.deepEqual(
    unusedEyes(rtnl, []).map((l) => l.name),
    [second],
    "unused without one; the other daemon's is never this daemon's to remove",
  );
});

test("finding unused eyes reads each network's parent once, not once per link: 500 networks beside 5,000 links stalled the daemon's sync every 2 s", () => {
  const rtnl = new FakeRtnl(undefined, GROUP);
  const parents = Array.from({ length: 500 }, (_, k) =>
    rtnl.add({ name: `sp${k}`, kind: 'veth', mtu: 1500, mac: null, up: true, parentIndex: null }),
  );
  for (let i = 0; i < 5000; i++) {
    const parent = parents[i % parents.length];
    assert.ok(parent);
    rtnl.add({ name: `lp-${i}`, kind: 'macvlan', mtu: 1500, mac: null, up: true, parentIndex: parent.index });
  }
  const eye = ensureEye(rtnl, parents[0] as NonNullable<(typeof parents)[number]>);
  let parentReads = 0;
  const networks = parents.map((p) => {
    const parent = { kind: 'existing', name: p.name };
    return {
      spec: {
        get parent() {
          parentReads++;
          return parent;
        },
      },
    } as unknown as Parameters<typeof unusedEyes>[1][number];
  });
  assert.deepEqual(unusedEyes(rtnl, networks), [], 'the eye on sp0 is in use');
  assert.ok(
    parentReads <= 2 * networks.length,
    `${parentReads} reads of a network's parent for ${networks.length} networks`,
  );
  assert.deepEqual(
    unusedEyes(rtnl, networks.slice(1)).map((l) => l.name),
    [eye.name],
    'unused once no network is on sp0',
  );
});

test("the sync's look for unused eyes reads this daemon's eyes only: 10,000 container links and the host's own links beside them are not read", () => {
  const rtnl = new FakeRtnl(undefined, GROUP);
  const parent = rtnl.add({ name: 'sp0', kind: 'veth', mtu: 1500, mac: null, up: true, parentIndex: null });
  for (let i = 0; i < 10_000; i++)
    rtnl.add({
      name: `lp-${i}`,
      kind: 'macvlan',
      mtu: 1500,
      mac: null,
      up: true,
      parentIndex: parent.index,
      group: GROUP,
    });
  for (let i = 0; i < 100; i++)
    rtnl.add({ name: `veth${i}`, kind: 'veth', mtu: 1500, mac: null, up: true, parentIndex: null });
  // another daemon's eye on the same parent: never this one's to read or remove
  rtnl.add({ name: 'lpezzz-2', kind: 'macvlan', mtu: 1500, mac: null, up: true, parentIndex: parent.index, group: 7 });
  const eye = ensureEye(rtnl, parent);
  const network = { spec: { parent: { kind: 'existing', name: 'sp0' } } } as Parameters<typeof unusedEyes>[1][number];
  rtnl.linksRead = 0;
  assert.deepEqual(unusedEyes(rtnl, [network]), []);
  assert.deepEqual(
    unusedEyes(rtnl, []).map((l) => l.name),
    [eye.name],
  );
  assert.ok(rtnl.linksRead <= 2, `${rtnl.linksRead} links read by two looks for unused eyes (this daemon has one eye)`);
});

/** A ChangeSignal whose answers the test sets: what RTNLGRP_LINK would say (netlink/events.ts; the daemon lane's is real). */
class LinkNews {
  pending = false;
  changed(): boolean {
    const was = this.pending;
    this.pending = false;
    return was;
  }
}

test("the sync looks for unused eyes only after a link or the networks' parents changed, a failed look is made again, and one look every 15 periods whatever", () => {
  const news = new LinkNews();
  let looks = 0;
  let failing = false;
  const sweep = new UnusedEyeSweep(() => {
    looks++;
    if (failing) throw new Error('delete link lpe-3: EBUSY');
  }, news);
  const eth0 = new Set(['eth0']);
  const period = (parents: ReadonlySet<string> = eth0): boolean => sweep.run(parents);

  assert.equal(period(), true, 'the first period looks');
  assert.deepEqual([period(), period(), period()], [false, false, false], 'no change: no look');
  news.pending = true;
  assert.equal(period(), true, 'a link changed (or the queue overflowed): a look');
  assert.equal(period(), false);
  assert.equal(period(new Set(['eth0', 'eth1'])), true, 'a network on another parent: a look');
  assert.equal(period(new Set(['eth1', 'eth0'])), false, 'the same parents in another order: none');
  assert.equal(period(eth0), true, 'a parent no network uses any more: a look');

  failing = true;
  news.pending = true;
  assert.throws(() => period(), /EBUSY/);
  failing = false;
  assert.equal(period(), true, 'the look failed: the next period looks again, with no news');
  assert.equal(period(), false);

  looks = 0;
  const runs = Array.from({ length: 2 * SAFETY_PERIODS }, () => period());
  assert.equal(looks, 2, `a lost notification costs at most ${SAFETY_PERIODS} periods: ${runs.join(' ')}`);
  // One period went by since the last look before these: the 15th after it is the 14th of these.
  assert.equal(runs.indexOf(true), SAFETY_PERIODS - 2, 'the 15th period after the last look');

  const always = new UnusedEyeSweep(() => looks++, null);
  assert.deepEqual(
    [always.run(eth0), always.run(eth0)],
    [true, true],
    'without notifications: every period, as before',
  );
});
