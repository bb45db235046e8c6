/**
 * A CNI DEL (SandboxAttachments.detach) whose steps fail, on the real kernel: a throw-away "host"
 * namespace with a veth parent, a container namespace per test, the real driver and store. The CNI
 * lane runs DEL through the daemon, where no step can be made to fail; here the network's idle
 * removal, the shared pools and the caller's `onRemoved` (which records `attachment.removed`) are
 * the ones made to fail. What is checked: `onRemoved` is told exactly once, when the attachment's
 * record went, whatever failed after; never while the record stays; and its own failure is reported
 * as a step's, the steps after it still run.
 */
import { after, afterEach, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AttachRequest } from '../../src/driver/attach-request';
import type { SharedClaims } from '../../src/driver/attachment-hooks';
import { attachmentId, cniNetworkId } from '../../src/driver/attachment-ids';
import { addressesInUse } from '../../src/driver/attachment-ranges';
import { CniNetworks } from '../../src/driver/cni-networks';
import { NetworkDriver } from '../../src/driver/network-driver';
import { SandboxAttachments } from '../../src/driver/sandbox-attachments';
import { LanplugError } from '../../src/errors';
import { RangeAllocator } from '../../src/ipam/ranges';
import { openRtnl, type Rtnl } from '../../src/link/rtnl';
import { silentLogger } from '../../src/log';
import { parseAddress, parsePrefix, type IpAddress } from '../../src/net/address';
import { SqliteStore } from '../../src/state/sqlite';

const HOST = `lp-k-${randomBytes(4).toString('hex')}`;
const IFNAME = 'eth0';
let rtnl: Rtnl;
let store: SqliteStore;
let dir: string;
let driver: NetworkDriver;
/** This test's container namespace, made in beforeEach and deleted in afterEach. */
let pod: string;
let podCount = 0;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The network's idle removal, failing the next `failures` times it is asked; every call counted. */
class FlakyNetworks extends CniNetworks {
  removals = 0;
  failures = 0;

  override removeWhenIdle(networkId: string, networkName: string): void {
    this.removals++;
    if (this.failures > 0) {
      this.failures--;
      throw new LanplugError('Kernel', 'the parent is busy');
    }
    super.removeWhenIdle(networkId, networkName);
  }
}

/** Shared pools that refuse what is given back the next `failures` times; what they took is recorded. */
class FlakySharedClaims implements SharedClaims {
  failures = 0;
  readonly freedAddresses: string[] = [];

  freed(_networkName: string, addresses: readonly IpAddress[]): void {
    if (this.failures > 0) {
      this.failures--;
      throw new LanplugError('Unavailable', 'etcd does not answer');
    }
    this.freedAddresses.push(...addresses.map((a) => a.text));
  }

  networkDropped(): void {}

  settled(): Promise<void> {
    return Promise.resolve();
  }
}

/** The CNI front end's parts as cni-services.ts wires them (no idle wait), with the flaky networks and pools. */
function attachmentsWith(): { attachments: SandboxAttachments; networks: FlakyNetworks; shared: FlakySharedClaims } {
  const allocator = new RangeAllocator(store, () => addressesInUse(store, null));
  const shared = new FlakySharedClaims();
  const networks = new FlakyNetworks(driver, rtnl, store, allocator, silentLogger, 0, shared);
  const attachments = new SandboxAttachments(driver, store, allocator, networks, silentLogger, null, shared);
  return { attachments, networks, shared };
}

function request(networkName: string, containerId: string): AttachRequest {
  return {
    networkName,
    driver: 'macvlan',
    options: { parent: 'lan0' },
    auxAddresses: new Map(),
    rangeSets: [
      [
        {
          subnet: parsePrefix('172.16.86.0/24'),
          start: parseAddress('172.16.86.10'),
          end: parseAddress('172.16.86.20'),
          gateway: parseAddress('172.16.86.1'),
        },
      ],
    ],
    dhcp: false,
    dhcp6: false,
    shared: false,
    routes: [],
    mac: null,
    requestedIps: [],
    sandbox: { containerId, netns: `/run/netns/${pod}`, ifname: IFNAME },
  };
}

/** An ADD, both halves: the link is in the container's namespace, the attachment recorded. */
function attach(attachments: SandboxAttachments, networkName: string, containerId: string): void {
  attachments.complete(attachments.prepare(request(networkName, containerId)));
  assert.ok(linkInPod(), 'the ADD put its link in the container');
  assert.ok(recorded(networkName, containerId));
}

function recorded(networkName: string, containerId: string): boolean {
  return store.getEndpoint(cniNetworkId(networkName), attachmentId(networkName, containerId, IFNAME)) !== null;
}

function linkInPod(): boolean {
  return ip('-n', pod, '-o', 'link', 'show').includes(`: ${IFNAME}@`);
}

/** The error a call throws (it must throw one). */
function failure(fn: () => void): Error {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail('expected the DEL to report a failure');
}

before(() => {
  // A lane that cannot run must fail loudly, not pass silently.
  assert.equal(process.getuid?.(), 0, 'the kernel lane needs root');
  ip('netns', 'add', HOST);
  ip('-n', HOST, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1');
  ip('-n', HOST, 'link', 'set', 'lan0', 'up');
  rtnl = openRtnl({ netns: `/run/netns/${HOST}` });
  dir = mkdtempSync(join(tmpdir(), 'lanplug-kernel-'));
  store = SqliteStore.open(dir);
  driver = new NetworkDriver(rtnl, store, silentLogger);
});

after(() => {
  rtnl?.close();
  store?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  execFileSync('ip', ['netns', 'del', HOST], { stdio: 'ignore' });
});

beforeEach(() => {
  pod = `${HOST}-c${podCount++}`;
  ip('netns', 'add', pod);
});

afterEach(() => {
  execFileSync('ip', ['netns', 'del', pod], { stdio: 'ignore' });
});

test("a DEL whose network's idle removal fails after the record went: the removal is told once and the DEL fails; the retried DEL succeeds and tells nothing", () => {
  const { attachments, networks } = attachmentsWith();
  const container = 'a1'.repeat(32);
  attach(attachments, 'idle-fails', container);
  let told = 0;
  networks.failures = 1;
  const err = failure(() => attachments.detach('idle-fails', container, IFNAME, `/run/netns/${pod}`, () => told++));
  assert.match(err.message, /remove the network when idle: the parent is busy/);
  assert.equal(told, 1);
  assert.equal(recorded('idle-fails', container), false);
  assert.equal(linkInPod(), false);
  assert.notEqual(driver.network(cniNetworkId('idle-fails')), null, 'the failed removal left the network');

  attachments.detach('idle-fails', container, IFNAME, `/run/netns/${pod}`, () => told++);
  assert.equal(told, 1, 'a repeated DEL finds nothing to tell');
  assert.equal(driver.network(cniNetworkId('idle-fails')), null, 'the retry removed the idle network');
});

test('a DEL whose shared-pool give-back fails: the record still goes, the removal is told once and the DEL fails; the retried DEL succeeds and tells nothing', () => {
  const { attachments, shared } = attachmentsWith();
  const container = 'a2'.repeat(32);
  attach(attachments, 'pool-fails', container);
  let told = 0;
  shared.failures = 1;
  const err = failure(() => attachments.detach('pool-fails', container, IFNAME, `/run/netns/${pod}`, () => told++));
  assert.match(err.message, /give back shared-pool addresses: etcd does not answer/);
  assert.equal(told, 1);
  assert.equal(recorded('pool-fails', container), false);
  assert.deepEqual(shared.freedAddresses, []);

  attachments.detach('pool-fails', container, IFNAME, `/run/netns/${pod}`, () => told++);
  assert.equal(told, 1, 'a repeated DEL finds nothing to tell');
  assert.equal(driver.network(cniNetworkId('pool-fails')), null);
});

test('a DEL that cannot remove the link from the container keeps the record and tells nothing; the DEL that can tells it once', () => {
  const { attachments } = attachmentsWith();
  const container = 'a3'.repeat(32);
  attach(attachments, 'link-stays', container);
  // A runtime naming something that is no network namespace: the link cannot be reached, so it stays.
  const notNamespace = join(dir, 'not-a-namespace');
  writeFileSync(notNamespace, '');
  let told = 0;
  const err = failure(() => attachments.detach('link-stays', container, IFNAME, notNamespace, () => told++));
  assert.match(err.message, /remove eth0 from .*not-a-namespace: setns/);
  assert.equal(told, 0, 'the record stays: nothing was removed');
  assert.equal(recorded('link-stays', container), true);
  assert.equal(linkInPod(), true);
  assert.notEqual(driver.network(cniNetworkId('link-stays')), null, 'the network is still in use');

  attachments.detach('link-stays', container, IFNAME, `/run/netns/${pod}`, () => told++);
  assert.equal(told, 1);
  assert.equal(recorded('link-stays', container), false);
  assert.equal(linkInPod(), false);
  assert.equal(driver.network(cniNetworkId('link-stays')), null);
});

test("a DEL whose removal's telling fails: the removal is whole, the network's idle removal runs, and the DEL succeeds (telling is no part of it)", () => {
  const { attachments, networks } = attachmentsWith();
  const container = 'a4'.repeat(32);
  attach(attachments, 'telling-fails', container);
  let told = 0;
  attachments.detach('telling-fails', container, IFNAME, `/run/netns/${pod}`, () => {
    told++;
    throw new Error('the event log is full');
  });
  assert.equal(told, 1);
  assert.equal(recorded('telling-fails', container), false);
  assert.equal(networks.removals, 1, "the network's idle removal ran after the failed telling");
  assert.equal(driver.network(cniNetworkId('telling-fails')), null, 'the idle network went');

  attachments.detach('telling-fails', container, IFNAME, `/run/netns/${pod}`, () => told++);
  assert.equal(told, 1, 'a repeated DEL finds nothing to tell');
});
