/**
 * The stable-privacy secret of an `-o ipv6=slaac` endpoint (the kernel's use of it is the e2e
 * dualstack test's): one per (network, identity), never one per network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { endpointSlaacSecret, slaacSecret } from '../../src/driver/slaac';

const NET_A = 'a'.repeat(64);
const NET_B = 'b'.repeat(64);

test('slaacSecret: an IPv6-formed 128-bit secret per network and identity; the MAC where there is no identity', () => {
  const web = slaacSecret(NET_A, 'web', '02:42:c0:a8:d8:02');
  assert.match(web, /^([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}$/);
  // The identity holds it, whatever the MAC; another identity, another network: another secret.
  assert.equal(slaacSecret(NET_A, 'web', '02:42:c0:a8:d8:4d'), web);
  assert.notEqual(slaacSecret(NET_A, 'db', '02:42:c0:a8:d8:02'), web);
  assert.notEqual(slaacSecret(NET_B, 'web', '02:42:c0:a8:d8:02'), web);
  // Without an identity, the MAC (however it is written); two containers never share one.
  const byMac = slaacSecret(NET_A, null, '02:42:C0:A8:D8:99');
  assert.equal(slaacSecret(NET_A, null, '02:42:c0:a8:d8:99'), byMac);
  assert.notEqual(slaacSecret(NET_A, null, '02:42:c0:a8:d8:98'), byMac);
  assert.notEqual(byMac, web);
});

test('an endpoint’s secret: its identity, else its MAC, else (ipvlan, the parent’s MAC) its endpoint id', () => {
  const base = { networkId: NET_A, linkName: 'lp-1', ipv4: null, ipv6: null };
  const a = { ...base, endpointId: '1'.repeat(64), mac: null };
  const b = { ...base, endpointId: '2'.repeat(64), mac: null };
  assert.notEqual(endpointSlaacSecret(a), endpointSlaacSecret(b));
  assert.equal(
    endpointSlaacSecret({ ...a, mac: '02:00:00:00:00:01', identity: 'web' }),
    endpointSlaacSecret({ ...b, mac: '02:00:00:00:00:02', identity: 'web' }),
  );
});
