/**
 * A good citizen of the LAN, with a real dockerd and foreign devices as lab
 * namespaces: an address a LAN device already holds is never given to a
 * container (the lanplug IPAM skips it, an explicit --ip or Docker's own IPAM
 * is refused naming the device), unless the network says lanplug.conflict=off;
 * never this Docker host's own address, whatever the network says;
 * IPv6 likewise through duplicate address detection; and a re-created
 * container's new MAC reaches the LAN's caches at once through announcements.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LanHost } from '../lab/lan';
import { join } from 'node:path';
import { runOk } from '../lab/proc';
import { repoRoot } from '../support/repo';
import { containerNetwork, eventually, useLab } from './helpers';
import { SERVICE_CAPABILITIES } from '../../src/install/units';
import { capabilitiesOf, restrictLanplugTo } from '../lab/lanplug';
import { countFramesFrom } from '../lab/frame-count';
import { ONE_DEVICE_SAMPLES, ONE_DEVICE_STREAK } from '../../src/lan/conflicts';
import { QUICK } from '../../src/lan/probe';

/** The Docker host's own addresses on the LAN (its eth0, the parent): never a container's. */
const HOST_V4 = '172.16.86.4';
const HOST_V6 = '2001:db8:86::4';
// The daemon holds only what the service's unit gives it: this file proves that is enough.
restrictLanplugTo(SERVICE_CAPABILITIES);
const lab = useLab({
  addresses: ['172.16.86.1/24', '2001:db8:86::1/64'],
  hostAddresses: [`${HOST_V4}/24`, `${HOST_V6}/64`],
});
let foreign: LanHost;
let foreignMac: string;

before(() => {
  foreign = lab.lan.addLanHost('printer', ['172.16.86.2/24', '2001:db8:86::2/64']);
  foreignMac = /link\/ether ([0-9a-f:]{17})/.exec(foreign.execOk(['ip', 'link', 'show', 'eth0']))?.[1] ?? '?';
});

function network(name: string, extra: string[] = []): void {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    ...extra,
    name,
  ]);
}

function refused(args: string[]): string {
  const r = lab.host.docker(['run', '-d', ...args, 'alpine:latest', 'sleep', '3600']);
  assert.notEqual(r.status, 0, 'the run must be refused');
  return r.stderr.trim();
}

test('--ipam-driver lanplug skips the address a LAN device holds; an explicit --ip of it is refused naming the device [engine:lan-conflict]', () => {
  network('guarded', ['--ipam-driver', 'lanplug']);
  lab.host.dockerOk(['run', '-d', '--network', 'guarded', '--name', 'first', 'alpine:latest', 'sleep', '3600']);
  assert.equal(containerNetwork(lab.host, 'first', 'guarded').IPAddress, '172.16.86.3');
  assert.match(
    refused(['--network', 'guarded', '--ip', '172.16.86.2', '--name', 'pinned']),
    new RegExp(
      `address 172\\.16\\.86\\.2 is in use on the LAN by ${foreignMac} \\(it answered an ARP probe on eth0\\); choose another --ip, or free that device`,
    ),
  );
});

test("Docker's default IPAM: the same docker run is refused with the fix named; lanplug.conflict=off lets it through [engine:lan-conflict]", () => {
  network('plain');
  assert.match(
    refused(['--network', 'plain', '--name', 'taken']),
    new RegExp(
      `address 172\\.16\\.86\\.2 is in use on the LAN by ${foreignMac} \\(it answered an ARP probe on eth0\\); Docker's IPAM would offer it again: reserve it with --aux-address`,
    ),
  );
  lab.host.docker(['rm', '-f', 'taken']);
  lab.host.dockerOk(['network', 'rm', 'plain']);
  network('trusting', ['-o', 'lanplug.conflict=off']);
  lab.host.dockerOk(['run', '-d', '--network', 'trusting', '--name', 'anyway', 'alpine:latest', 'sleep', '3600']);
  assert.equal(containerNetwork(lab.host, 'anyway', 'trusting').IPAddress, '172.16.86.2');
});

test('IPv6: an address a LAN device holds fails duplicate address detection, and the same behaviours follow', () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '--ipv6',
    '--subnet=2001:db8:86::/64',
    '--gateway=2001:db8:86::1',
    '-o',
    'parent=eth0',
    'six',
  ]);
  lab.host.dockerOk(['run', '-d', '--network', 'six', '--name', 's1', 'alpine:latest', 'sleep', '3600']);
  assert.equal(containerNetwork(lab.host, 's1', 'six').GlobalIPv6Address, '2001:db8:86::3');
  assert.match(
    refused(['--network', 'six', '--ip6', '2001:db8:86::2', '--name', 's2']),
    new RegExp(
      `address 2001:db8:86::2 is in use on the LAN by ${foreignMac} \\(it answered duplicate address detection on eth0\\)`,
    ),
  );
});

test("announcements: a LAN host's cache learns a re-created container's new MAC within 1 s; with advertise_addr_nmsgs=0 it stays stale [engine:announcements]", async () => {
  const watcher = lab.lan.addLanHost('watcher', ['172.16.86.9/24']);
  // Each case its own address and MACs: the first case's later announcements must not reach the second.
  for (const [name, last, options, expectFresh] of [
    ['loud', '70', [], true],
    ['quiet', '71', ['-o', 'com.docker.network.advertise_addr_nmsgs=0'], false],
  ] as const) {
    const ip = `172.16.86.${last}`;
    const mac = (n: number): string => `02:00:00:00:${last}:0${n}`;
    const run = (n: number): string =>
      lab.host.dockerOk([
        'run',
        '-d',
        '--network',
        name,
        '--ip',
        ip,
        '--mac-address',
        mac(n),
        '--name',
        `${name}${n}`,
        'alpine:latest',
        'sleep',
        '3600',
      ]);
    network(name, ['--ip-range=172.16.86.64/28', ...options]);
    run(1);
    watcher.execOk(['/bin/busybox', 'ping', '-c', '1', '-W', '2', ip]);
    assert.match(watcher.execOk(['ip', 'neigh', 'show', ip]), new RegExp(`lladdr ${mac(1)}`));
    lab.host.dockerOk(['rm', '-f', `${name}1`]);
    run(2);
    await new Promise((r) => setTimeout(r, 1000));
    const entry = watcher.execOk(['ip', 'neigh', 'show', ip]);
    if (expectFresh) assert.match(entry, new RegExp(`lladdr ${mac(2)}`), 'the new MAC, within 1 s');
    else assert.match(entry, new RegExp(`lladdr ${mac(1)}`), 'without announcements the old MAC stays');
    lab.host.dockerOk(['rm', '-f', `${name}2`]);
    lab.host.dockerOk(['network', 'rm', name]);
  }
  await eventually(() => undefined);
});

test("a device that starts using a container's address afterwards is noticed, defended once, and reported by doctor", async () => {
  network('watched', ['--ipam-driver', 'lanplug']);
  lab.host.dockerOk(['run', '-d', '--network', 'watched', '--name', 'victim', 'alpine:latest', 'sleep', '3600']);
  const address = containerNetwork(lab.host, 'victim', 'watched').IPAddress;
  await new Promise((r) => setTimeout(r, 3000)); // the watch takes new holdings every 2 s
  const rogue = lab.lan.addLanHost('rogue', [`${address}/24`]);
  const rogueMac = /link\/ether ([0-9a-f:]{17})/.exec(rogue.execOk(['ip', 'link', 'show', 'eth0']))?.[1] ?? '?';
  rogue.execOk(['/bin/busybox', 'arping', '-U', '-c', '1', '-I', 'eth0', address]);
  const doctor = (): string => {
    const r = lab.host.exec([
      process.execPath,
      join(repoRoot(), 'bin', 'lanplug'),
      'doctor',
      '--state-dir',
      lab.plugin.stateDir,
      '--docker-host',
      `unix://${lab.host.sock}`,
    ]);
    assert.equal(r.status, 1, 'doctor fails while a device claims a container address');
    return r.stdout;
  };
  const report = await eventually(doctor, 10_000);
  assert.match(
    report,
    new RegExp(
      `^✘ address conflict ${address.replace(/\./g, '\\.')}: a device with MAC ${rogueMac} claims the address of a container of network [0-9a-f]{12} \\(it sent an ARP request for it on eth0\\)`,
      'm',
    ),
  );
  assert.match(lab.plugin.stderr(), /a device on the LAN claims a container's address; defending it once/);
  assert.equal(
    lab.host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'victim']).trim(),
    'true',
    'the container is never torn down',
  );
});

/** "address X is this host's own address (on eth0)…", with `advice` after it. */
function hostsOwn(address: string, advice: RegExp): RegExp {
  return new RegExp(
    `address ${address.replace(/\./g, '\\.')} is this host's own address \\(on eth0\\): a container using it would take the host's traffic on the LAN; ${advice.source}`,
  );
}

test("this host's own address is never a container's: the lanplug IPAM skips it, a request for it is refused naming the link, whatever the network's policy or mode [engine:own-address]", () => {
  network('hostguard', ['--ipam-driver', 'lanplug', `--ip-range=172.16.86.4/30`]);
  lab.host.dockerOk(['run', '-d', '--network', 'hostguard', '--name', 'h1', 'alpine:latest', 'sleep', '3600']);
  assert.equal(containerNetwork(lab.host, 'h1', 'hostguard').IPAddress, '172.16.86.5', 'the host holds .4');
  assert.match(
    refused(['--network', 'hostguard', '--ip', HOST_V4, '--name', 'h2']),
    hostsOwn(HOST_V4, /choose another --ip/),
  );
  lab.host.dockerOk(['rm', '-f', 'h1']);
  lab.host.dockerOk(['network', 'rm', 'hostguard']);
  // Docker's IPAM hands .4 out first in this range: lanplug refuses it, whatever the conflict policy.
  for (const [name, extra] of [
    ['hostplain', []],
    ['hostoff', ['-o', 'lanplug.conflict=off']],
    ['hostpass', ['-o', 'macvlan_mode=passthru']],
  ] as const) {
    network(name, [`--ip-range=172.16.86.4/30`, ...extra]);
    assert.match(
      refused(['--network', name, '--name', `${name}1`]),
      hostsOwn(HOST_V4, /Docker's IPAM would offer it again: reserve it with --aux-address host=172\.16\.86\.4/),
      name,
    );
    lab.host.docker(['rm', '-f', `${name}1`]);
    lab.host.dockerOk(['network', 'rm', name]);
  }
});

test("this host's IPv6 address, and an address the host gains after the network was made, are refused too [engine:own-address]", () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '--ipv6',
    '--subnet=2001:db8:86::/64',
    '--gateway=2001:db8:86::1',
    '-o',
    'parent=eth0',
    'hostsix',
  ]);
  assert.match(
    refused(['--network', 'hostsix', '--ip6', HOST_V6, '--name', 'v6']),
    hostsOwn(HOST_V6, /choose another/),
  );
  network('later');
  runOk(['ip', '-n', lab.host.ns, 'addr', 'add', '172.16.86.6/24', 'dev', 'eth0']);
  try {
    assert.match(
      refused(['--network', 'later', '--ip', '172.16.86.6', '--name', 'late']),
      hostsOwn('172.16.86.6', /Docker's IPAM would offer it again/),
    );
  } finally {
    runOk(['ip', '-n', lab.host.ns, 'addr', 'del', '172.16.86.6/24', 'dev', 'eth0']);
  }
  lab.host.docker(['rm', '-f', 'late']);
  lab.host.dockerOk([
    'run',
    '-d',
    '--network',
    'later',
    '--ip',
    '172.16.86.6',
    '--name',
    'late2',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
});

test("the LAN hears this host's address only from the host's own interface: neither lanplug's LAN eye nor a host-access shim answers ARP for it", () => {
  network('quietlinks', ['--ipam-driver', 'lanplug', '--aux-address=host=172.16.86.250', '-o', 'host_access=true']);
  lab.host.dockerOk(['run', '-d', '--network', 'quietlinks', '--name', 'q1', 'alpine:latest', 'sleep', '3600']);
  const links = lab.host.execOk(['ip', '-o', 'link', 'show']);
  assert.match(links, /: lpe\S+@eth0: <[^>]*NOARP/, 'the eye is there (the conflict check made it), without ARP');
  assert.match(links, /: lh-[0-9a-f]{12}@eth0: /, 'the shim is there');
  const eth0 = /link\/ether ([0-9a-f:]{17})/.exec(lab.host.execOk(['ip', 'link', 'show', 'eth0']))?.[1];
  const replies = foreign.execOk(['/bin/busybox', 'arping', '-c', '3', '-w', '4', '-I', 'eth0', HOST_V4]);
  const macs = [...replies.matchAll(/reply from \S+ \[([0-9a-f:]{17})\]/g)].map((m) => m[1]);
  assert.ok(macs.length >= 3, replies);
  assert.deepEqual([...new Set(macs)], [eth0], `every answer for ${HOST_V4} comes from the host's eth0: ${replies}`);
});

test('a device answering every ARP probe (a router with proxy ARP for the subnet): --ipam-driver lanplug gives up after 16 probes in one line naming it instead of walking the /16, the next run after one probe, and the warmer stops asking', async () => {
  // Every address of 172.20.0.0/16 is this LAN host's own (a local route), so its kernel answers every
  // probe for any of them (RFC 5227 probes from 0.0.0.0 are answered for local addresses only).
  const anyone = lab.lan.addLanHost('anyone', []);
  try {
    anyone.execOk(['ip', 'route', 'add', 'local', '172.20.0.0/16', 'dev', 'lo']);
    const mac = /link\/ether ([0-9a-f:]{17})/.exec(anyone.execOk(['ip', 'link', 'show', 'eth0']))?.[1] ?? '?';
    // Its answers are ARP frames from its MAC, each speaking for the address asked about. Counted until the
    // second run is refused (60 s is only the counter's own limit).
    const during = countFramesFrom(lab.lan, mac, 60, { ns: anyone.ns, link: 'eth0' });
    await during.ready;
    lab.host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--ipam-driver',
      'lanplug',
      '--subnet=172.20.0.0/16',
      '--gateway=172.20.0.1',
      '-o',
      'parent=eth0',
      'everyone',
    ]);
    const run = (name: string): Promise<{ code: number | null; stderr: string }> =>
      lab.host.dockerAsync(['run', '-d', '--network', 'everyone', '--name', name, 'alpine:latest', 'sleep', '3600']);
    const oneDevice = new RegExp(
      `one device answers for every address on the LAN: ${mac} answered ARP probes for 16 addresses in a row on eth0 \\(172\\.20\\.0\\.\\d+ to 172\\.20\\.0\\.\\d+\\), so no address there can be told free; if it is a router answering for the whole subnet \\(proxy ARP\\), turn that off, or create the network with -o lanplug\\.conflict=off; if it does hold them, give --ip-range where it does not`,
    );
    let started = Date.now();
    const first = await run('nowhere1');
    const firstMs = Date.now() - started;
    assert.notEqual(first.code, 0);
    assert.match(first.stderr, oneDevice);
    started = Date.now();
    const second = await run('nowhere2');
    const secondMs = Date.now() - started;
    assert.notEqual(second.code, 0);
    assert.match(second.stderr, oneDevice);
    during.stop();
    const { arp, arpBySender } = await during.result;
    // What lanplug asked the LAN, told by what the device answered for: the first run, the pool's first
    // ONE_DEVICE_STREAK addresses after the gateway (the warmer's first 4 among them) and ONE_DEVICE_SAMPLES drawn
    // elsewhere, which its warning names; the second run, one more address; nothing else (no walk of the /16).
    const row = Array.from({ length: ONE_DEVICE_STREAK }, (_, i) => `172.20.0.${i + 2}`);
    // One warning per confirmation (the warmer may confirm too, if its round was still going), each naming
    // the ONE_DEVICE_SAMPLES addresses it asked about.
    const samples = [
      ...lab.plugin
        .stderr()
        .matchAll(
          new RegExp(`"one device answers for every address[^\\n]*"mac":"${mac}"[^\\n]*"elsewhere":"([^"]*)"`, 'g'),
        ),
    ].map((m) => (m[1] ?? '').split(' '));
    assert.ok(samples.length > 0, 'the device was confirmed');
    for (const s of samples)
      assert.equal(s.length, ONE_DEVICE_SAMPLES, `addresses asked about elsewhere: ${s.join(' ')}`);
    const elsewhere = samples.flat();
    const heard = [...arpBySender.keys()];
    const next = heard.filter((a) => !row.includes(a) && !elsewhere.includes(a));
    const answers = [...arpBySender].map(([a, n]) => `${a}:${n}`).join(' ');
    assert.deepEqual(
      [...row, ...elsewhere].filter((a) => !arpBySender.has(a)),
      [],
      `every address of the first run answered: ${answers}`,
    );
    assert.equal(next.length, 1, `the second run asked about one address: ${answers}`);
    // Each answered once, or once per probe that left before lanplug read the first answer (under load all
    // QUICK.probes can).
    assert.deepEqual(
      [...arpBySender].filter(([, n]) => n > QUICK.probes),
      [],
      `at most ${QUICK.probes} answers per address: ${answers}`,
    );
    // The warmer asks about a network's next 4 addresses every 5 s: it must not walk the pool either, even
    // while another network on the same parent finds its addresses free (the device answers for one subnet).
    const after = countFramesFrom(lab.lan, mac, 6, { ns: anyone.ns, link: 'eth0' });
    await after.ready;
    network('beside', ['--ipam-driver', 'lanplug', '--ip-range=172.16.86.192/27']);
    lab.host.dockerOk(['run', '-d', '--network', 'beside', '--name', 'beside1', 'alpine:latest', 'sleep', '3600']);
    assert.equal((await after.result).arp, 0, 'nothing asked through the next warmer round (every 5 s)');
    assert.match(
      lab.plugin.stderr(),
      new RegExp(
        `"one device answers for every address on the LAN[^"]*",[^\\n]*"link":"eth0","mac":"${mac}","answered":16`,
      ),
    );
    process.stdout.write(
      `# refused after ${firstMs} ms, then ${secondMs} ms; ${arp} ARP answers about ${heard.length} addresses: ${answers}\n`,
    );
  } finally {
    anyone.destroy();
  }
});

test("the daemon runs with the service unit's capabilities and no more (NET_ADMIN, NET_RAW, SYS_ADMIN), and everything in this file works so", () => {
  const bits = (caps: readonly string[]): bigint =>
    caps.reduce(
      (mask, cap) => mask | (1n << BigInt({ CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_SYS_ADMIN: 21 }[cap] ?? 63)),
      0n,
    );
  const held = capabilitiesOf(lab.plugin.pid);
  assert.equal(held.bounding, bits(SERVICE_CAPABILITIES));
  assert.equal(held.effective, bits(SERVICE_CAPABILITIES));
});
