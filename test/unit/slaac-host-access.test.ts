/**
 * Which host routes host access keeps for the addresses containers form on an `-o ipv6=slaac` network
 * (slaac-host-access.ts): exact ones, from the shim's link-local address, never to an address the host
 * holds, none while the shim has no link-local address. The kernel is a fake here; the e2e dualstack
 * test pings over the real routes, across a daemon restart and a prefix change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { learntRoutes } from '../../src/driver/slaac-host-access';
import type { LearnedAddress } from '../../src/driver/slaac';
import { formatPrefix, parsePrefix } from '../../src/net/address';
import { IFA_F_TENTATIVE, RT_SCOPE_LINK } from '../../src/netlink/codec';
import { FakeRtnl } from '../support/fake-rtnl';

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
  return { rtnl, shim };
}

const learnt = (address: string, state: LearnedAddress['state'] = 'preferred'): LearnedAddress => ({
  address,
  prefixLength: 64,
  state,
});

test("routes to the learnt addresses: /128 each, from the link-local address of the shim, none to a tentative one or the host's own", () => {
  const { rtnl, shim } = kernel();
  rtnl.addresses.push({ index: shim.index, prefix: parsePrefix('fe80::9/64'), scope: RT_SCOPE_LINK });
  const found = learntRoutes(rtnl, shim, [
    learnt('2001:db8:1::c'),
    learnt('2001:db8:2::c'),
    learnt('2001:db8:1::d', 'tentative'),
    learnt('2001:db8:1::5'),
  ]);
  assert.ok('routes' in found);
  assert.deepEqual(
    found.routes.map((r) => `${formatPrefix(r.destination)} src ${r.source.text}`),
    ['2001:db8:1::c/128 src fe80::9', '2001:db8:2::c/128 src fe80::9'],
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
