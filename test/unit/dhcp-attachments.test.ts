/**
 * A CNI CHECK on a `lanplug-dhcp` attachment (endpoint/dhcp-attachments.ts
 * requireHeld): it passes only while the pod's lease is one the server still
 * counts as the pod's. Which gateway each route of a DHCP attachment takes when
 * a renewal moves the lease (dhcp/in-container.ts gatewayAfterRenewal; the
 * kernel lane's links.test.ts puts them in a namespace). The driver and keeper are stand-ins here: the CNI lane
 * (test/cni/conformance.test.ts) runs the real ones against dnsmasq.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LeasedAttachments } from '../../src/driver/leased-attachments';
import type { NetworkDriver } from '../../src/driver/network-driver';
import type { LeaseKeeper } from '../../src/dhcp/keeper';
import { gatewayAfterRenewal } from '../../src/dhcp/in-container';
import { DhcpAttachments } from '../../src/endpoint/dhcp-attachments';
import { silentLogger } from '../../src/log';
import type { Lease, LeaseRecord, LeaseState } from '../../src/model/lease';
import { parseAddress, parsePrefix } from '../../src/net/address';

function record(state: LeaseState, boundAt: number): LeaseRecord {
  const lease: Lease = {
    family: 4,
    address: parsePrefix('172.16.86.200/24'),
    router: parseAddress('172.16.86.1'),
    dns: [],
    serverId: parseAddress('172.16.86.1'),
    serverMac: '02:00:00:00:00:01',
    serverDuid: null,
    leaseSeconds: 120,
    renewSeconds: 60,
    rebindSeconds: 105,
    boundAt,
    state,
  };
  return { networkId: 'n1', endpointId: 'e1', leases: [lease] } as unknown as LeaseRecord;
}

function attachmentsWith(held: LeaseRecord | null): DhcpAttachments {
  const driver = { network: () => ({ spec: { dhcp: { timeoutMs: 10_000 } } }) } as unknown as NetworkDriver;
  const keeper = { get: () => held } as unknown as LeaseKeeper;
  return new DhcpAttachments({} as LeasedAttachments, driver, keeper, silentLogger);
}

test('CNI CHECK on a lanplug-dhcp attachment: passes while the lease is bound or renewing, fails once it expired, was refused by the server, or is gone', () => {
  const now = Date.now();
  const check = (held: LeaseRecord | null): void => attachmentsWith(held).requireHeld('n1', 'e1', 'pod1 eth0');
  check(record('bound', now));
  check(record('renewing', now - 70_000));
  assert.throws(() => check(record('bound', now - 200_000)), /expired without an answer/);
  assert.throws(() => check(record('refused', now)), /the DHCP server refused the lease of 172\.16\.86\.200/);
  assert.throws(() => check(null), /holds no DHCP lease any more/);
});

test("a renewal naming a new router moves the routes that went via the old one, and leaves a default route the network's configuration set via a gateway of its own (`routes: [{dst: 0.0.0.0/0, gw}]`) where it was", () => {
  const old = record('bound', 0).leases[0];
  assert.ok(old !== undefined);
  // A server answering the REBIND (broadcast: any server on the LAN may) names another router.
  const next: Lease = { ...old, router: parseAddress('172.16.86.66') };
  const via = (dst: string, gw: string | null): string =>
    gatewayAfterRenewal({ destination: parsePrefix(dst), gateway: gw === null ? null : parseAddress(gw) }, old, next)
      ?.text ?? 'none';
  assert.equal(via('0.0.0.0/0', '172.16.86.1'), '172.16.86.66', 'the default route via the old router follows it');
  assert.equal(via('10.96.0.0/16', '172.16.86.1'), '172.16.86.66', 'so does a route the server router took');
  assert.equal(via('10.97.0.0/16', '172.16.86.254'), '172.16.86.254', 'a route via a gateway of its own stays');
  assert.equal(
    via('0.0.0.0/0', '172.16.86.254'),
    '172.16.86.254',
    "the configuration's default route via its own gateway stays: the server's word does not take the pod's traffic",
  );
  assert.equal(via('0.0.0.0/0', null), '172.16.86.66', 'a default route without a gateway takes the router');
});
