/**
 * A CNI CHECK on a `lanplug-dhcp` attachment (endpoint/dhcp-attachments.ts
 * requireHeld): it passes only while the pod's lease is one the server still
 * counts as the pod's. The driver and keeper are stand-ins here: the CNI lane
 * (test/cni/conformance.test.ts) runs the real ones against dnsmasq.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LeasedAttachments } from '../../src/driver/leased-attachments';
import type { NetworkDriver } from '../../src/driver/network-driver';
import type { LeaseKeeper } from '../../src/dhcp/keeper';
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
