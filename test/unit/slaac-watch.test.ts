/**
 * The cost of the `-o ipv6=slaac` watch (slaac-watch.ts) on the daemon: what it leaves behind at Leave
 * and DeleteEndpoint, how often it enters containers' namespaces during a burst of Joins, and that every
 * watch still ends with something said. The namespace and the clock are fakes here; the e2e dualstack
 * test runs the watch against a real container on Docker 20.10.
 */
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LanplugError } from '../../src/errors';
import type { LinkInfo } from '../../src/link/link';
import { capturingLogger, type Line } from '../support/capturing-logger';
import { events } from '../../src/metrics/events';
import type { EndpointRecord, LearnedDns, NetworkSpec } from '../../src/model/network';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { NetworkDriver } from '../../src/driver/network-driver';
import type { LearnedAddress } from '../../src/driver/slaac';
import type { FailedAddress } from '../../src/driver/slaac-dad';
import type { ContainerNotesSource } from '../../src/driver/slaac-notes';
import { AdvertFlagsFollower, FLAGS_CHECK_MS, FLAGS_HOLD_MS, SWEEP_CHECKS } from '../../src/driver/slaac-flags';
import { REAL_CLOCK, SandboxSlaacWatcher, type SandboxAccess } from '../../src/driver/slaac-watch';
import { asksDhcp6 } from '../../src/endpoint/slaac-dhcp6';
import type { AdvertFlags, AdvertNotes, FlagChanges } from '../../src/netlink/router-adverts';
import { SqliteStore } from '../../src/state/sqlite';
import { FakeClock } from '../support/fake-clock';
import { FakeRtnl } from '../support/fake-rtnl';

const NET_A = 'a'.repeat(64);

/** When things happen in one container (fake ms): its sandbox file, its link up under Docker's name, its address. */
interface Timeline {
  fileAt: number;
  linkAt: number;
  addressAfterEnableMs: number;
}

/** Containers' namespaces as the watch enters them; every entry counted, with its time. */
class FakeSandboxes implements SandboxAccess {
  readonly entries: { netns: string; at: number }[] = [];
  /** Sandbox files Docker removed (the container stopped), whether lanplug heard a Leave or not. */
  readonly gone = new Set<string>();
  private readonly enabledAt = new Map<string, number>();

  constructor(
    private readonly clock: FakeClock,
    private readonly timeline: (netns: string) => Timeline,
  ) {}

  containerLink(netns: string, endpoint: EndpointRecord): LinkInfo | null {
    const t = this.enter(netns);
    if (this.clock.now() < t.fileAt) throw new LanplugError('NotFound', `no sandbox ${netns}`);
    if (this.clock.now() < t.linkAt) return null;
    return {
      index: 7,
      name: 'eth0',
      kind: 'macvlan',
      mtu: 1500,
      mac: endpoint.mac,
      up: true,
      group: 0,
      parentIndex: 2,
    };
  }

  ipv6Disabled(netns: string): boolean | null {
    this.enter(netns);
    return !this.enabledAt.has(netns);
  }

  enable(netns: string): void {
    this.enter(netns);
    this.enabledAt.set(netns, this.clock.now());
  }

  present(netns: string): boolean {
    return !this.gone.has(netns);
  }

  learnedAddresses(netns: string): LearnedAddress[] {
    const t = this.enter(netns);
    const enabled = this.enabledAt.get(netns);
    if (enabled === undefined || this.clock.now() < enabled + t.addressAfterEnableMs) return [];
    return [{ address: '2001:db8:abc8::42', prefixLength: 64, state: 'preferred' }];
  }

  /** Entries up to `until` (fake ms). */
  countUntil(until: number): number {
    return this.entries.filter((e) => e.at <= until).length;
  }

  /** The most namespaces watched at one time: each one's first to last entry (one ending as another starts: in turn). */
  mostAtOnce(): number {
    const spans = new Map<string, { first: number; last: number }>();
    for (const e of this.entries) {
      const span = spans.get(e.netns);
      if (span === undefined) spans.set(e.netns, { first: e.at, last: e.at });
      else span.last = e.at;
    }
    const all = [...spans.values()];
    return Math.max(
      0,
      ...all.map((s) => all.filter((o) => o === s || (o.first <= s.first && s.first < o.last)).length),
    );
  }

  private enter(netns: string): Timeline {
    this.entries.push({ netns, at: this.clock.now() });
    return this.timeline(netns);
  }
}

const SPEC = { networkId: NET_A, slaac: { rtInfoMaxPlen: 0 } } as unknown as NetworkSpec;

function endpointNo(n: number): EndpointRecord {
  const endpointId = n.toString(16).padStart(12, '0') + 'e'.repeat(52);
  return {
    networkId: NET_A,
    endpointId,
    linkName: `lp-${endpointId.slice(0, 12)}`,
    mac: '02:42:ac:10:56:02',
    ipv4: null,
    ipv6: null,
  };
}

function sandboxOf(n: number): string {
  return `/var/run/docker/netns/c${n}`;
}

const NEVER = Number.POSITIVE_INFINITY;

function burst(count: number, timeline: (netns: string) => Timeline) {
  const clock = new FakeClock();
  const sandboxes = new FakeSandboxes(clock, timeline);
  const { log, lines } = capturingLogger();
  const watcher = new SandboxSlaacWatcher(log, () => true, { clock, sandbox: sandboxes });
  for (let n = 1; n <= count; n++) watcher.watch(SPEC, endpointNo(n), sandboxOf(n));
  return { clock, sandboxes, lines, watcher };
}

const ADDRESS_LINE = 'IPv6 address from the router advertisement';

let dir: string;
let store: SqliteStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-unit-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

test('Leave and DeleteEndpoint end the watch of their endpoint: nothing polls the container after', () => {
  const clock = new FakeClock();
  // A crash-looping container: its sandbox never holds the link long enough to be found.
  const sandboxes = new FakeSandboxes(clock, () => ({ fileAt: NEVER, linkAt: NEVER, addressAfterEnableMs: NEVER }));
  const watcher = new SandboxSlaacWatcher(capturingLogger().log, () => true, { clock, sandbox: sandboxes });
  const driver = new NetworkDriver(new FakeRtnl(), store, capturingLogger().log, { slaac: watcher });
  driver.createNetwork({
    networkId: NET_A,
    driver: 'macvlan',
    options: { parent: 'eth0', ipv6: 'slaac' },
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  });
  const ep = (n: number, address: string) => ({
    networkId: NET_A,
    endpointId: endpointNo(n).endpointId,
    ipv4: parsePrefix(address),
    ipv6: null,
    mac: null,
  });

  driver.createEndpoint('macvlan', ep(1, '172.16.86.2/24'));
  driver.join('macvlan', NET_A, endpointNo(1).endpointId, { sandboxKey: sandboxOf(1) });
  clock.advance(100);
  assert.ok(sandboxes.countUntil(100) > 0, 'the watch started');
  driver.leave(NET_A, endpointNo(1).endpointId);
  assert.equal(clock.pending, 0, 'a wait of the watch is left after Leave');
  driver.deleteEndpoint(NET_A, endpointNo(1).endpointId);

  // Docker's DeleteEndpoint without a Leave first (dockerd restarted meanwhile) ends it too.
  driver.createEndpoint('macvlan', ep(2, '172.16.86.3/24'));
  driver.join('macvlan', NET_A, endpointNo(2).endpointId, { sandboxKey: sandboxOf(2) });
  clock.advance(100);
  driver.deleteEndpoint(NET_A, endpointNo(2).endpointId);
  assert.equal(clock.pending, 0, 'a wait of the watch is left after DeleteEndpoint');

  const before = sandboxes.entries.length;
  clock.advance(60_000);
  assert.equal(sandboxes.entries.length, before, 'the namespace was entered after the endpoint left');
});

test('a burst of 1,000 Joins: at most 64 containers watched at once, at most 448 namespace entries in the first second', (t) => {
  // Docker 20.10 under load: the sandbox files appear only seconds later.
  const { clock, sandboxes, lines } = burst(1000, () => ({
    fileAt: 5_000,
    linkAt: 5_000,
    addressAfterEnableMs: 1_000,
  }));
  clock.advance(1_000);
  t.diagnostic(`${sandboxes.countUntil(1_000)} namespace entries in the first second`);
  // Polls at 0, 20, 60, 140, 300, 550, 800 ms (gaps doubling from 20 ms up to 250 ms): 7 per watch, 64 watches.
  assert.ok(
    sandboxes.countUntil(1_000) <= 64 * 7,
    `${sandboxes.countUntil(1_000)} namespace entries in the first second`,
  );
  assert.equal(new Set(sandboxes.entries.map((e) => e.netns)).size, 64);
  const queued = lines.filter((l) => l.level === 'debug' && /queued/.test(l.msg));
  assert.equal(queued.length, 1000 - 64, 'each queued watch is said at debug');
});

test('the queue drains: each of 1,000 containers of a burst gets its address reported, 64 at most watched at once', (t) => {
  const { clock, sandboxes, lines } = burst(1000, () => ({ fileAt: 500, linkAt: 600, addressAfterEnableMs: 1_000 }));
  clock.advance(120_000);
  const reported = new Set(lines.filter((l) => l.msg === ADDRESS_LINE).map((l) => l.fields['endpoint']));
  assert.equal(reported.size, 1000);
  assert.deepEqual(
    lines.filter((l) => l.level === 'warn'),
    [],
  );
  assert.equal(clock.pending, 0);
  assert.ok(sandboxes.mostAtOnce() <= 64, `${sandboxes.mostAtOnce()} containers watched at once`);
  t.diagnostic(`drained at ${Math.max(...sandboxes.entries.map((e) => e.at))} ms, ${sandboxes.entries.length} entries`);
});

test('a watch that waited in the queue longer than its 30 s is not dropped silently: a warning and an event', () => {
  // 64 containers whose link never comes hold every slot for their 30 s; the 65th waits longer than that.
  const { clock, sandboxes, lines } = burst(65, () => ({ fileAt: NEVER, linkAt: NEVER, addressAfterEnableMs: NEVER }));
  const from = Date.now();
  clock.advance(40_000);
  const last = endpointNo(65).endpointId.slice(0, 12);
  const warned = lines.filter((l) => l.level === 'warn' && l.fields['endpoint'] === last);
  assert.equal(warned.length, 1);
  assert.match(warned[0]?.msg ?? '', /IPv6 .*not turned on/);
  assert.ok(
    events.since(from).some((e) => e.kind === 'slaac.not-watched' && e.fields['endpoint'] === last),
    'no slaac.not-watched event',
  );
  assert.ok(!sandboxes.entries.some((e) => e.netns === sandboxOf(65)));
  assert.equal(clock.pending, 0);
});

test('one container on Docker 20.10 (sandbox after 850 ms): the address is reported within 500 ms of when it forms', (t) => {
  const { clock, lines } = burst(1, () => ({ fileAt: 850, linkAt: 850, addressAfterEnableMs: 1_000 }));
  clock.advance(10_000);
  const line = lines.find((l) => l.msg === ADDRESS_LINE);
  assert.ok(line !== undefined);
  t.diagnostic(`reported ${String(line.fields['afterJoinMs'])} ms after Join`);
  // Polled every 20 ms, it would be reported at ~1,870 ms (link at 850 ms, address 1 s after IPv6 is on).
  assert.ok(
    Number(line.fields['afterJoinMs']) <= 850 + 1_000 + 500,
    `reported at ${String(line.fields['afterJoinMs'])} ms`,
  );
});

/** The fake namespace with a router heard in it: its flags from `heardAt` after IPv6 is on, its notes once. */
class AdvertisingSandboxes extends FakeSandboxes {
  readonly closed: string[] = [];
  private readonly enabled = new Map<string, number>();

  constructor(
    private readonly fakeClock: FakeClock,
    timeline: (netns: string) => Timeline,
    private readonly advert: {
      heardAt: number;
      flags: AdvertFlags;
      notes: AdvertNotes;
      dadFailed?: FailedAddress[];
      /** Told again at each drain: the kernel re-forms the address at each advertisement, and DAD fails again. */
      again?: boolean;
    },
  ) {
    super(fakeClock, timeline);
  }

  override enable(netns: string): void {
    super.enable(netns);
    this.enabled.set(netns, this.fakeClock.now());
  }

  listen(netns: string): ContainerNotesSource {
    let told = false;
    return {
      drain: () => {
        const on = this.enabled.get(netns);
        if (told || on === undefined || this.fakeClock.now() < on + this.advert.heardAt)
          return { autoconf: false, prefixes: 0, servers: [], search: [], dadFailed: [] };
        told = this.advert.again !== true;
        return { ...this.advert.notes, dadFailed: this.advert.dadFailed ?? [] };
      },
      close: () => this.closed.push(netns),
    };
  }

  advertFlags(netns: string): AdvertFlags | null {
    const on = this.enabled.get(netns);
    const heard = on !== undefined && this.fakeClock.now() >= on + this.advert.heardAt;
    return heard ? this.advert.flags : { heard: false, managed: false, other: false };
  }
}

test('an advertisement with M and without a prefix to autoconfigure: the flags go to the follow-up once, its DNS is recorded, and the watch ends without waiting for a SLAAC address; its socket is closed', () => {
  const clock = new FakeClock();
  const sandboxes = new AdvertisingSandboxes(clock, () => ({ fileAt: 0, linkAt: 100, addressAfterEnableMs: NEVER }), {
    heardAt: 500,
    flags: { heard: true, managed: true, other: true },
    notes: { autoconf: false, prefixes: 1, servers: ['2001:db8::53'], search: ['lan.example'] },
  });
  const { log, lines } = capturingLogger();
  const watcher = new SandboxSlaacWatcher(log, () => true, { clock, sandbox: sandboxes });
  const followed: AdvertFlags[] = [];
  const dns: LearnedDns[] = [];
  watcher.followWith({
    flags: (_spec, _endpoint, _netns, _link, flags) => followed.push(flags),
    dns: (_endpoint, learnt) => dns.push(learnt),
    cancel: () => undefined,
  });
  watcher.watch(SPEC, endpointNo(1), sandboxOf(1));
  clock.advance(5_000);
  assert.deepEqual(followed, [{ heard: true, managed: true, other: true }]);
  assert.deepEqual(dns, [{ servers: ['2001:db8::53'], search: ['lan.example'], from: ['ra'] }]);
  assert.equal(clock.pending, 0, 'the watch ended');
  assert.deepEqual(sandboxes.closed, [sandboxOf(1)]);
  assert.ok(!lines.some((l) => l.msg.startsWith('no IPv6 address')), 'no wait for an address that is not coming');
});

test('an advertisement with a prefix to autoconfigure: the watch waits for its address, and Leave closes the socket of a watch still waiting', () => {
  const clock = new FakeClock();
  const sandboxes = new AdvertisingSandboxes(clock, () => ({ fileAt: 0, linkAt: 100, addressAfterEnableMs: NEVER }), {
    heardAt: 500,
    flags: { heard: true, managed: false, other: false },
    notes: { autoconf: true, prefixes: 1, servers: [], search: [] },
  });
  const watcher = new SandboxSlaacWatcher(capturingLogger().log, () => true, { clock, sandbox: sandboxes });
  const cancelled: string[] = [];
  watcher.followWith({ flags: () => undefined, dns: () => undefined, cancel: (id) => cancelled.push(id) });
  watcher.watch(SPEC, endpointNo(1), sandboxOf(1));
  clock.advance(5_000);
  assert.ok(clock.pending > 0, 'still waiting for the address');
  watcher.cancel(endpointNo(1).endpointId);
  assert.equal(clock.pending, 0);
  assert.deepEqual(sandboxes.closed, [sandboxOf(1)]);
  assert.ok(cancelled.includes(endpointNo(1).endpointId), 'what the follow-up runs for it stops too');
});

test("a DAD failure the container's kernel tells: warned and an event naming the address, and the watch waits for the next address, even with the prefix's note lost", () => {
  const clock = new FakeClock();
  const sandboxes = new AdvertisingSandboxes(clock, () => ({ fileAt: 0, linkAt: 100, addressAfterEnableMs: 2_000 }), {
    heardAt: 500,
    flags: { heard: true, managed: false, other: false },
    // The prefix's RTM_NEWPREFIX lost (a queue that overflowed): only the deletion of the address is heard.
    notes: { autoconf: false, prefixes: 0, servers: [], search: [] },
    dadFailed: [{ address: '2001:db8:abc8::66', prefixLength: 64 }],
  });
  const { log, lines } = capturingLogger();
  const watcher = new SandboxSlaacWatcher(log, () => true, { clock, sandbox: sandboxes });
  watcher.followWith({ flags: () => undefined, dns: () => undefined, cancel: () => undefined });
  const from = Date.now();
  watcher.watch(SPEC, endpointNo(1), sandboxOf(1));
  clock.advance(10_000);
  const warned = lines.filter((l) => l.level === 'warn' && /DAD failed/.test(l.msg));
  assert.deepEqual(
    warned.map((l) => l.fields['address']),
    ['2001:db8:abc8::66/64'],
  );
  assert.ok(
    events.since(from).some((e) => e.kind === 'slaac.dad-failed' && e.fields['address'] === '2001:db8:abc8::66/64'),
    'no slaac.dad-failed event',
  );
  const reported = lines.find((l) => l.msg === ADDRESS_LINE);
  assert.ok(reported !== undefined, 'the next address was not reported: the watch ended before it');
  assert.equal(reported.fields['address'], '2001:db8:abc8::42/64');
  assert.equal(clock.pending, 0, 'the watch ended');
  assert.deepEqual(sandboxes.closed, [sandboxOf(1)]);
});

test('the same address failing DAD at each advertisement (the kernel re-forms it) is warned once per watch', () => {
  const clock = new FakeClock();
  const sandboxes = new AdvertisingSandboxes(clock, () => ({ fileAt: 0, linkAt: 100, addressAfterEnableMs: NEVER }), {
    heardAt: 500,
    flags: { heard: true, managed: false, other: false },
    notes: { autoconf: true, prefixes: 1, servers: [], search: [] },
    dadFailed: [{ address: '2001:db8:abc8::66', prefixLength: 64 }],
    again: true,
  });
  const { log, lines } = capturingLogger();
  const watcher = new SandboxSlaacWatcher(log, () => true, { clock, sandbox: sandboxes });
  watcher.followWith({ flags: () => undefined, dns: () => undefined, cancel: () => undefined });
  const from = Date.now();
  watcher.watch(SPEC, endpointNo(2), sandboxOf(2));
  clock.advance(10_000);
  const warned = lines.filter((l) => l.level === 'warn' && /DAD failed/.test(l.msg));
  assert.deepEqual(
    warned.map((l) => l.fields['address']),
    ['2001:db8:abc8::66/64'],
  );
  assert.equal(events.since(from).filter((e) => e.kind === 'slaac.dad-failed').length, 1, 'one slaac.dad-failed event');
  watcher.close();
});

/** A router whose flags change while the container runs: what the kernel keeps, and its notifications. */
class ChangingRouterSandboxes extends AdvertisingSandboxes {
  current: AdvertFlags = { heard: true, managed: false, other: false };
  readonly flagSockets: { netns: string; queued: boolean; closed: boolean }[] = [];
  flagReads = 0;

  /** An advertisement with other flags: the kernel keeps them and notifies each socket. */
  advertise(flags: Omit<AdvertFlags, 'heard'>): void {
    const changed = flags.managed !== this.current.managed || flags.other !== this.current.other;
    this.current = { heard: true, ...flags };
    if (changed) for (const s of this.flagSockets) s.queued = true;
  }

  override advertFlags(netns: string): AdvertFlags | null {
    const first = super.advertFlags(netns);
    this.flagReads += 1;
    return first?.heard === true ? this.current : first;
  }

  listenFlags(netns: string): FlagChanges {
    const socket = { netns, queued: false, closed: false };
    this.flagSockets.push(socket);
    return {
      changed: () => {
        const was = socket.queued;
        socket.queued = false;
        return was;
      },
      close: () => {
        socket.closed = true;
      },
    };
  }
}

test("a router that turns M on, then off, while the container runs: each change goes to the follow-up once with the flags before it, logged once and an event; the check enters the container only after a notification; Leave closes the flags' socket", () => {
  const clock = new FakeClock();
  const sandboxes = new ChangingRouterSandboxes(
    clock,
    () => ({ fileAt: 0, linkAt: 100, addressAfterEnableMs: 1_000 }),
    {
      heardAt: 500,
      flags: { heard: true, managed: false, other: false },
      notes: { autoconf: true, prefixes: 1, servers: [], search: [] },
    },
  );
  const { log, lines } = capturingLogger();
  const watcher = new SandboxSlaacWatcher(log, () => true, { clock, sandbox: sandboxes });
  const followed: { flags: AdvertFlags; before: AdvertFlags | null }[] = [];
  watcher.followWith({
    flags: (_spec, _endpoint, _netns, _link, flags, before) => followed.push({ flags, before }),
    dns: () => undefined,
    cancel: () => undefined,
  });
  const from = Date.now();
  watcher.watch(SPEC, endpointNo(1), sandboxOf(1));
  clock.advance(10_000);
  const off = { heard: true, managed: false, other: false };
  assert.deepEqual(followed, [{ flags: off, before: null }], 'the first advertisement, followed by the watch');
  assert.equal(sandboxes.flagSockets.length, 1);
  // Quiet router: the follower's checks enter no namespace.
  const reads = sandboxes.flagReads;
  clock.advance(60_000);
  assert.equal(sandboxes.flagReads, reads, 'the flags were read again without a notification');

  sandboxes.advertise({ managed: true, other: true });
  clock.advance(FLAGS_CHECK_MS);
  const on = { heard: true, managed: true, other: true };
  assert.deepEqual(followed.slice(1), [{ flags: on, before: off }]);
  // The same flags again (the router's next advertisements): nothing more.
  sandboxes.advertise({ managed: true, other: true });
  clock.advance(30_000);
  sandboxes.advertise({ managed: false, other: false });
  clock.advance(FLAGS_CHECK_MS);
  assert.deepEqual(followed.slice(1), [
    { flags: on, before: off },
    { flags: off, before: on },
  ]);
  const changed = lines.filter((l) => /flags changed/.test(l.msg));
  assert.deepEqual(
    changed.map((l) => [l.fields['managed'], l.fields['wasManaged']]),
    [
      ['true', 'false'],
      ['false', 'true'],
    ],
  );
  assert.equal(events.since(from).filter((e) => e.kind === 'slaac.flags').length, 2);

  watcher.cancel(endpointNo(1).endpointId);
  assert.ok(sandboxes.flagSockets[0]?.closed, "Leave closes the flags' socket");
  assert.equal(clock.pending, 0, 'nothing polls after Leave');
});

test('asksDhcp6: the first flags heard ask when M or O is set; a later change asks only for a flag turned on, and a flag turned off stops nothing', () => {
  const f = (managed: boolean, other: boolean): AdvertFlags => ({ heard: true, managed, other });
  assert.equal(asksDhcp6(f(false, false), null), false);
  assert.equal(asksDhcp6(f(false, true), null), true);
  assert.equal(asksDhcp6(f(true, true), null), true);
  // M turned on (after nothing, after O alone): an address.
  assert.equal(asksDhcp6(f(true, false), f(false, false)), true);
  assert.equal(asksDhcp6(f(true, true), f(false, true)), true);
  // O turned on without M: other configuration.
  assert.equal(asksDhcp6(f(false, true), f(false, false)), true);
  // Turned off, or M dropped with O kept: the exchange under way (a lease) goes on; nothing new.
  assert.equal(asksDhcp6(f(false, false), f(true, true)), false);
  assert.equal(asksDhcp6(f(false, true), f(true, true)), false);
  assert.equal(asksDhcp6(f(false, false), f(false, true)), false);
});

test('a router (or a container sending advertisements) flapping M and O at every check: a change is followed at most once per FLAGS_HOLD_MS per container, and the flags the router settles on are followed after the hold', () => {
  const clock = new FakeClock();
  const sandboxes = new ChangingRouterSandboxes(
    clock,
    () => ({ fileAt: 0, linkAt: 100, addressAfterEnableMs: 1_000 }),
    {
      heardAt: 500,
      flags: { heard: true, managed: false, other: false },
      notes: { autoconf: true, prefixes: 1, servers: [], search: [] },
    },
  );
  const { log, lines } = capturingLogger();
  const watcher = new SandboxSlaacWatcher(log, () => true, { clock, sandbox: sandboxes });
  const followed: { flags: AdvertFlags; before: AdvertFlags | null }[] = [];
  watcher.followWith({
    flags: (_spec, _endpoint, _netns, _link, flags, before) => followed.push({ flags, before }),
    dns: () => undefined,
    cancel: () => undefined,
  });
  watcher.watch(SPEC, endpointNo(1), sandboxOf(1));
  clock.advance(10_000);
  assert.equal(followed.length, 1, 'the first advertisement, followed by the watch');
  // Two minutes of O turned on and off at every check: each turn on would be a DHCPv6 exchange.
  const flaps = (2 * 60_000) / FLAGS_CHECK_MS;
  for (let i = 0; i < flaps; i++) {
    sandboxes.advertise({ managed: false, other: i % 2 === 0 });
    clock.advance(FLAGS_CHECK_MS);
  }
  const later = followed.length - 1;
  assert.ok(later <= Math.ceil((2 * 60_000) / FLAGS_HOLD_MS) + 1, `${later} changes followed in two minutes`);
  assert.ok(lines.filter((l) => /flags changed/.test(l.msg)).length <= later, 'no more lines than changes followed');
  // The router settles on O: followed once the hold ends.
  sandboxes.advertise({ managed: false, other: true });
  clock.advance(FLAGS_HOLD_MS + FLAGS_CHECK_MS);
  assert.deepEqual(followed[followed.length - 1]?.flags, { heard: true, managed: false, other: true });
  watcher.close();
});

/** A SLAAC network in the test's store, its endpoints joined through the driver (their sandbox keys recorded). */
function slaacDriver(watcher: SandboxSlaacWatcher): { driver: NetworkDriver; join: (n: number) => EndpointRecord } {
  const driver = new NetworkDriver(new FakeRtnl(), store, capturingLogger().log, { slaac: watcher });
  driver.createNetwork({
    networkId: NET_A,
    driver: 'macvlan',
    options: { parent: 'eth0', ipv6: 'slaac' },
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  });
  return {
    driver,
    join: (n) => {
      const endpointId = endpointNo(n).endpointId;
      driver.createEndpoint('macvlan', {
        networkId: NET_A,
        endpointId,
        ipv4: parsePrefix(`172.16.86.${n + 1}/24`),
        ipv6: null,
        mac: null,
      });
      driver.join('macvlan', NET_A, endpointId, { sandboxKey: sandboxOf(n) });
      const recorded = store.getEndpoint(NET_A, endpointId);
      assert.ok(recorded !== null);
      return recorded;
    },
  };
}

function changingRouter(clock: FakeClock): ChangingRouterSandboxes {
  return new ChangingRouterSandboxes(clock, () => ({ fileAt: 0, linkAt: 100, addressAfterEnableMs: 1_000 }), {
    heardAt: 500,
    flags: { heard: true, managed: false, other: false },
    notes: { autoconf: true, prefixes: 1, servers: [], search: [] },
  });
}

function followingInto(
  watcher: SandboxSlaacWatcher,
): { endpoint: string; flags: AdvertFlags; before: AdvertFlags | null }[] {
  const followed: { endpoint: string; flags: AdvertFlags; before: AdvertFlags | null }[] = [];
  watcher.followWith({
    flags: (_spec, endpoint, _netns, _link, flags, before) =>
      followed.push({ endpoint: endpoint.endpointId, flags, before }),
    dns: () => undefined,
    cancel: () => undefined,
  });
  return followed;
}

test('a restarted daemon follows the flags of the containers that run, from what its store shows was followed (a DHCPv6 lease: M): a change while no daemon ran is followed at the first check, a later one as before; a container whose sandbox is gone is skipped', () => {
  const clock = new FakeClock();
  const sandboxes = changingRouter(clock);
  const recorded = (e: EndpointRecord): boolean => store.getEndpoint(e.networkId, e.endpointId) !== null;
  const first = new SandboxSlaacWatcher(capturingLogger().log, () => true, { clock, sandbox: sandboxes, recorded });
  followingInto(first);
  const { join } = slaacDriver(first);
  const endpoints = [1, 2, 3].map(join);
  clock.advance(10_000);
  assert.equal(sandboxes.flagSockets.length, 3, 'each container followed by the first daemon');
  // Container 2 took a DHCPv6 address when the router said M before (its lease is in the store).
  const two = endpoints[1];
  assert.ok(two !== undefined);
  store.putLease(
    {
      networkId: NET_A,
      endpointId: two.endpointId,
      identity: {
        mac: '02:42:ac:10:56:02',
        duid: '00030001',
        iaid: 1,
        stable: false,
        clientId: '01',
        hostname: null,
        broadcast: false,
      },
      leases: [
        {
          family: 6,
          address: parsePrefix('2001:db8:abc8::1234/128'),
          router: null,
          dns: [],
          serverId: parseAddress('fe80::1'),
          serverMac: '02:42:ac:10:56:01',
          serverDuid: '00030001020000000001',
          leaseSeconds: 3600,
          renewSeconds: 1800,
          rebindSeconds: 2880,
          boundAt: 0,
          state: 'bound',
        },
      ],
      dockerAddresses: [],
      sandboxKey: sandboxOf(2),
      renewedAt: null,
      failures: 0,
      lastError: null,
    },
    true,
  );
  first.close();
  assert.ok(
    sandboxes.flagSockets.every((s) => s.closed),
    'the stopped daemon holds no socket',
  );

  // Container 3 stopped while no daemon ran (its sandbox file went; no Leave reached lanplug).
  sandboxes.gone.add(sandboxOf(3));
  const { log, lines } = capturingLogger();
  const second = new SandboxSlaacWatcher(log, () => true, { clock, sandbox: sandboxes, recorded });
  const followed = followingInto(second);
  second.resume(store);
  const open = sandboxes.flagSockets.filter((s) => !s.closed).map((s) => s.netns);
  assert.deepEqual(open.sort(), [sandboxOf(1), sandboxOf(2)]);
  const off = { heard: true, managed: false, other: false };
  const on = { heard: true, managed: true, other: true };
  const [one] = endpoints;
  assert.ok(one !== undefined);
  // The router dropped M while no daemon ran: container 2's lease says M was followed; the change is followed
  // at the first check (it asks nothing), container 1's flags did not change.
  clock.advance(FLAGS_CHECK_MS);
  assert.deepEqual(followed, [{ endpoint: two.endpointId, flags: off, before: on }]);
  const said = (): Line[] => lines.filter((l) => /flags changed/.test(l.msg));
  assert.equal(said().at(-1)?.fields['sinceDaemonStart'], 'true');
  clock.advance(FLAGS_HOLD_MS);

  // The router turns M on while the restarted daemon runs: followed for both.
  sandboxes.advertise({ managed: true, other: true });
  clock.advance(FLAGS_CHECK_MS);
  assert.deepEqual(followed.slice(1), [
    { endpoint: one.endpointId, flags: on, before: off },
    { endpoint: two.endpointId, flags: on, before: off },
  ]);
  assert.equal(said().length, 3);
  assert.equal(said().at(-1)?.fields['sinceDaemonStart'], undefined);
  second.close();

  // Restarted again with M still on: container 1 took no lease (the fake follow-up asks nothing), so M is
  // followed for it at the first check; container 2's lease says M was followed: nothing.
  const third = new SandboxSlaacWatcher(log, () => true, { clock, sandbox: sandboxes, recorded });
  const followedThird = followingInto(third);
  third.resume(store);
  clock.advance(FLAGS_CHECK_MS);
  assert.deepEqual(followedThird, [{ endpoint: one.endpointId, flags: on, before: off }]);
  third.close();
});

test('a follow whose container went without a Leave or DeleteEndpoint reaching lanplug (its sandbox file gone, or its row dropped with its network) ends within a sweep: its socket is closed', () => {
  const clock = new FakeClock();
  const sandboxes = changingRouter(clock);
  const { log, lines } = capturingLogger();
  const watcher = new SandboxSlaacWatcher(log, () => true, {
    clock,
    sandbox: sandboxes,
    recorded: (e) => store.getEndpoint(e.networkId, e.endpointId) !== null,
  });
  followingInto(watcher);
  const { driver, join } = slaacDriver(watcher);
  join(1);
  join(2);
  clock.advance(10_000);
  assert.equal(sandboxes.flagSockets.filter((s) => !s.closed).length, 2);

  // Docker removed container 1's sandbox; its Leave and DeleteEndpoint never came.
  sandboxes.gone.add(sandboxOf(1));
  clock.advance(SWEEP_CHECKS * FLAGS_CHECK_MS);
  assert.deepEqual(
    sandboxes.flagSockets.filter((s) => !s.closed).map((s) => s.netns),
    [sandboxOf(2)],
  );
  assert.ok(lines.some((l) => /gone without a Leave/.test(l.msg) && l.fields['sandbox'] === sandboxOf(1)));

  // The network's row went (a forgotten network dropped) without a DeleteEndpoint: container 2's follow ends too.
  driver.deleteNetwork(NET_A);
  clock.advance(SWEEP_CHECKS * FLAGS_CHECK_MS);
  assert.ok(
    sandboxes.flagSockets.every((s) => s.closed),
    'a socket outlived its endpoint',
  );
  assert.equal(clock.pending, 0, 'nothing checks once nothing is followed');
  watcher.close();
});

test("the hold of a change of the flags lasts FLAGS_HOLD_MS on the daemon's own clock whatever the wall clock does: a step of an hour forward neither ends it, nor one back stretches it", () => {
  // Both clocks under the test's hand: the wall clock (NTP, `date -s`) and the monotonic one.
  let wall = Date.UTC(2026, 11, 5, 12);
  let mono = 1_000_000;
  mock.method(Date, 'now', () => wall);
  mock.method(performance, 'now', () => mono);
  try {
    let router: AdvertFlags = { heard: true, managed: false, other: false };
    let next: (() => void) | null = null;
    const check = (): void => {
      const run = next;
      next = null;
      assert.ok(run !== null, 'no check scheduled');
      run();
    };
    const followed: AdvertFlags[] = [];
    const follower = new AdvertFlagsFollower(
      capturingLogger().log,
      {
        listenFlags: () => ({ changed: () => true, close: () => undefined }),
        advertFlags: () => router,
        stillThere: () => true,
        // What the watch gives its follower by default (SandboxSlaacWatcher without a clock seam).
        now: () => REAL_CLOCK.now(),
        after: (_ms, run) => {
          next = run;
          return () => (next = null);
        },
      },
      () => ({ flags: (_s, _e, _n, _l, flags) => followed.push(flags), dns: () => undefined, cancel: () => undefined }),
    );
    const link = { index: 2, name: 'eth0' } as LinkInfo;
    follower.follow(SPEC, endpointNo(1), sandboxOf(1), link, { ...router }, {});
    check();
    assert.equal(followed.length, 0, 'nothing changed yet');

    router = { heard: true, managed: false, other: true };
    mono += FLAGS_CHECK_MS;
    wall += FLAGS_CHECK_MS;
    check();
    assert.equal(followed.length, 1, 'the change is followed');

    // The wall clock steps an hour forward; two seconds pass on the monotonic clock: still held.
    router = { heard: true, managed: false, other: false };
    mono += FLAGS_CHECK_MS;
    wall += 3_600_000;
    check();
    assert.equal(followed.length, 1, 'a wall-clock step ended the hold');

    // It steps two hours back (an hour before the change); the hold's time passes: followed now.
    mono += FLAGS_HOLD_MS;
    wall -= 7_200_000;
    check();
    assert.equal(followed.length, 2, 'a wall-clock step stretched the hold');
    assert.deepEqual(followed[1], router);
    follower.close();
  } finally {
    mock.restoreAll();
  }
});
