/**
 * The reaper on the real kernel, in a throw-away namespace: parked links are
 * down and in lanplug's group at once, gone after one batch, and a parked
 * macvlan does not stop a new one with the same MAC from coming up.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { silentLogger } from '../../src/log';
import { LinkReaper, PARKED_LINK_GROUP } from '../../src/link/reaper';
import { openRtnl, type Rtnl } from '../../src/link/rtnl';
import type { LinkInfo } from '../../src/link/link';

const NS = `lp-r-${randomBytes(4).toString('hex')}`;
let rtnl: Rtnl;
let reaper: LinkReaper;
let parent: LinkInfo;

function ip(...args: string[]): string {
  return execFileSync('ip', ['-n', NS, ...args], { encoding: 'utf8' });
}

async function until(what: string, done: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

before(() => {
  execFileSync('ip', ['netns', 'add', NS]);
  ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0');
  ip('link', 'set', 'eth0', 'up');
  rtnl = openRtnl({ netns: `/run/netns/${NS}` });
  reaper = new LinkReaper(rtnl, silentLogger, { netns: `/run/netns/${NS}` });
  const eth0 = rtnl.getLink('eth0');
  assert.ok(eth0);
  parent = eth0;
});

after(async () => {
  await reaper?.close();
  rtnl?.close();
  execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
});

function macvlan(name: string, mac: string): LinkInfo {
  const link = rtnl.createMacvlan({ name, parentIndex: parent.index, mode: 'bridge', mac });
  rtnl.setUp(link);
  return link;
}

test('a removed link is down and in the parked group when remove() returns, and gone with its batch', async () => {
  const links = Array.from({ length: 20 }, (_, i) =>
    macvlan(`lp-reap${i}`, `02:42:0a:00:00:${(i + 2).toString(16).padStart(2, '0')}`),
  );
  const gone: string[] = [];
  for (const link of links) reaper.remove(link, () => gone.push(link.name));
  const parked = rtnl.getLink('lp-reap19');
  // Either still parked (down, in the group) or already gone: never up and in use.
  if (parked !== null) {
    assert.equal(parked.up, false);
    assert.equal(parked.group, PARKED_LINK_GROUP);
  }
  await until('every link is gone', () => gone.length === 20);
  assert.deepEqual([...gone].sort(), links.map((l) => l.name).sort(), 'each `gone` ran once');
  assert.equal(ip('link', 'show', 'group', String(PARKED_LINK_GROUP)).trim(), '');
  for (const link of links) assert.equal(rtnl.getLink(link.name), null);
  assert.equal(reaper.pending, 0);
});

test('a new macvlan with the MAC of a parked one comes up beside it', () => {
  const old = macvlan('lp-old', '02:42:0a:00:01:02');
  let gone = 0;
  reaper.remove(old, () => gone++);
  // Synchronously, before the batch could run: the parked link is still there.
  assert.notEqual(rtnl.getLink('lp-old'), null);
  const fresh = macvlan('lp-new', '02:42:0a:00:01:02');
  assert.equal(rtnl.getLink(fresh.name)?.up, true);
  reaper.settle();
  assert.equal(gone, 1);
  assert.equal(rtnl.getLink('lp-old'), null, 'settle() removes parked links before it returns');
  rtnl.deleteLink(fresh);
});

test('removing a link that is already gone runs `gone` at once', () => {
  const link = macvlan('lp-gone', '02:42:0a:00:02:02');
  rtnl.deleteLink(link);
  let gone = 0;
  reaper.remove(link, () => gone++);
  assert.equal(gone, 1);
  assert.equal(reaper.pending, 0);
});

test('a link the kernel cannot delete in the group: the others still go, one by one, and it stays', async () => {
  // lo has no rtnl_link_ops: with it in the group the kernel refuses the group delete as a whole.
  ip('link', 'set', 'lo', 'group', String(PARKED_LINK_GROUP));
  try {
    const link = macvlan('lp-stuck', '02:42:0a:00:03:02');
    let gone = 0;
    reaper.remove(link, () => gone++);
    await until('the macvlan is gone', () => gone === 1);
    assert.equal(rtnl.getLink('lp-stuck'), null);
    assert.notEqual(rtnl.getLink('lo'), null, 'lo stays');
  } finally {
    ip('link', 'set', 'lo', 'group', 'default');
  }
});
