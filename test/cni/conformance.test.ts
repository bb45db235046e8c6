/**
 * lanplug's CNI plugin against the spec, as a runtime drives it (env +
 * stdin, exactly as libcni does): a lab LAN with a gateway, a host whose
 * eth0 is on it running the real daemon, and container namespaces made the
 * way runtimes make them. Every assertion is something a runtime or its user
 * sees: the answer and exit code, the link and addresses in the namespace,
 * the ping to the gateway.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Lan, LanHost } from '../lab/lan';
import { BUSYBOX } from '../lab/image';
import { countFramesFrom } from '../lab/frame-count';
import { addNetns, delNetns } from '../lab/ns';
import { lanHostNs } from '../lab/names';
import { startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import { repoRoot } from '../support/repo';
import { attachmentId } from '../../src/driver/attachment-ids';
import { macFromKey } from '../../src/ipam/mac';
import { QUICK } from '../../src/lan/probe';
import type { DaemonLab } from '../support/daemon';
import {
  CNI_DAEMON_ARGS,
  CNI_LAB_GATEWAY,
  runPlugin,
  startCniLab,
  type CniCall,
  type CniLab,
  type CniOutcome,
} from '../support/cni';

const GATEWAY = CNI_LAB_GATEWAY;
let lab: CniLab;
let lan: Lan;
let host: LanHost;
let daemon: DaemonLab;
let plugin: string;
let socket: string;
const made = new Set<string>();
let nextNs = 0;
/** The LAN's DHCP server (dnsmasq), for the lanplug-dhcp tests; T1 = 3 s, so that a renewal is seen. */
let dhcpServer: DhcpServer;
const DHCP_DNS = '172.16.86.53';

function conf(version = '1.0.0', extra: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): string {
  return JSON.stringify({
    cniVersion: version,
    name: 'labnet',
    type: 'lanplug-macvlan',
    master: 'eth0',
    mode: 'bridge',
    ipam: {
      type: 'lanplug',
      subnet: '172.16.86.0/24',
      rangeStart: '172.16.86.100',
      rangeEnd: '172.16.86.149',
      gateway: GATEWAY,
      routes: [{ dst: '0.0.0.0/0' }],
      ...ipam,
    },
    ...extra,
  });
}

/** A container namespace as a runtime makes one: its path is what CNI_NETNS carries. */
function newSandbox(): { ns: string; path: string; id: string } {
  const ns = lanHostNs(lan.id, `c${++nextNs}`);
  addNetns(ns);
  made.add(ns);
  return { ns, path: `/run/netns/${ns}`, id: `ctr${nextNs}${'0'.repeat(12)}` };
}

function dropSandbox(ns: string): void {
  delNetns(ns);
  made.delete(ns);
}

function cni(call: CniCall, stdin = conf()): Promise<CniOutcome> {
  return runPlugin(plugin, { ...call, env: { LANPLUG_CNI_SOCKET: socket, ...call.env } }, stdin);
}

function add(sb: { path: string; id: string }, stdin = conf(), ifname = 'eth0'): Promise<CniOutcome> {
  return cni({ command: 'ADD', containerId: sb.id, netns: sb.path, ifname }, stdin);
}

function del(sb: { path: string; id: string }, stdin = conf(), ifname = 'eth0'): Promise<CniOutcome> {
  return cni({ command: 'DEL', containerId: sb.id, netns: sb.path, ifname }, stdin);
}

function inNs(ns: string, ...argv: string[]): string {
  return execFileSync('ip', ['-n', ns, ...argv], { encoding: 'utf8' });
}

interface IpAddr {
  ifname: string;
  address: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

function linkIn(ns: string, ifname: string): IpAddr | null {
  const all = JSON.parse(inNs(ns, '-j', 'addr', 'show')) as IpAddr[];
  return all.find((l) => l.ifname === ifname) ?? null;
}

function resultAddress(result: CniOutcome): string {
  const ips = result.json?.['ips'] as { address: string }[] | undefined;
  const first = ips?.[0]?.address;
  assert.ok(first !== undefined, `no ips in ${result.stdout}`);
  return first;
}

/** The kinds of the daemon's events (`lanplug events --json`) since `from` (ms) that name this container, oldest first. */
async function eventsOf(containerId: string, from: number): Promise<string[]> {
  const out = await daemon.cli(['events', '--json', '--since', '10m', '--state-dir', daemon.stateDir]);
  assert.equal(out.code, 0, out.stderr);
  return out.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { at: number; kind: string; fields: Record<string, unknown> })
    .filter((e) => e.at >= from)
    .filter((e) => Object.values(e.fields).some((v) => String(v).includes(containerId.slice(0, 12))))
    .map((e) => e.kind);
}

/** The daemon's log lines that defended `address` on the LAN (a gratuitous ARP each). */
function defences(address: string): number {
  return lab.daemonProcess
    .stderr()
    .split('\n')
    .filter((l) => l.includes('defending it once') && l.includes(`"${address}"`)).length;
}

before(async () => {
  lab = await startCniLab();
  ({ lan, host, daemon, socket, plugin } = lab);
  dhcpServer = await startDhcpServer(lan, {
    range: ['172.16.86.200', '172.16.86.239'],
    router: GATEWAY,
    dns: DHCP_DNS,
    renewSeconds: 3,
    rebindSeconds: 100,
  });
});

after(() => {
  dhcpServer?.stop();
  for (const ns of made) delNetns(ns);
  lab?.close();
});

test('VERSION lists every supported version, from the executable alone (no daemon needed)', async () => {
  const out = await runPlugin(
    plugin,
    { command: 'VERSION', env: { LANPLUG_CNI_SOCKET: '/nonexistent.sock' } },
    '{"cniVersion":"1.0.0"}',
  );
  assert.equal(out.code, 0, out.stdout);
  assert.deepEqual(out.json?.['supportedVersions'], ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
});

for (const version of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
  test(`ADD in ${version}: the result is ${version}'s, and the link, MAC, address and default route are in the namespace`, async () => {
    const sb = newSandbox();
    const out = await add(sb, conf(version));
    assert.equal(out.code, 0, out.stdout);
    const result = out.json ?? {};
    assert.equal(result['cniVersion'], version);
    const [iface] = result['interfaces'] as { name: string; mac: string; sandbox: string }[];
    assert.equal(iface?.name, 'eth0');
    assert.equal(iface?.sandbox, sb.path);
    const [ip] = result['ips'] as { address: string; gateway: string; interface: number; version?: string }[];
    assert.match(ip?.address ?? '', /^172\.16\.86\.1[0-4]\d\/24$/);
    assert.equal(ip?.gateway, GATEWAY);
    assert.equal(ip?.interface, 0);
    assert.equal(ip?.version, version.startsWith('0.') ? '4' : undefined, 'ips[].version only before 1.0.0');
    const link = linkIn(sb.ns, 'eth0');
    assert.ok(link !== null, 'eth0 exists in the namespace');
    assert.equal(link.address, iface?.mac);
    assert.ok(link.addr_info.some((a) => `${a.local}/${a.prefixlen}` === ip?.address));
    assert.match(inNs(sb.ns, 'route', 'show', 'default'), new RegExp(`default via ${GATEWAY} dev eth0`));
    execFileSync('nsenter', [`--net=${sb.path}`, BUSYBOX, 'ping', '-c', '1', '-W', '2', GATEWAY], { stdio: 'ignore' });
    execFileSync('nsenter', [`--net=${sb.path}`, BUSYBOX, 'ping', '-c', '1', '-W', '2', GATEWAY], { stdio: 'ignore' });
    assert.equal((await del(sb, conf(version))).code, 0);
    assert.equal(linkIn(sb.ns, 'eth0'), null, 'DEL removes the link');
    dropSandbox(sb.ns);
  });
}

test('ADD asks the LAN first, as a Docker endpoint does: an address a LAN device holds is skipped for the next; asked for by IP, it is refused naming the device', async () => {
  const stdin = (extra: Record<string, unknown> = {}): string =>
    conf('1.0.0', { name: 'probed', ...extra }, { rangeStart: '172.16.86.160', rangeEnd: '172.16.86.169' });
  const squatter = lan.addLanHost('squat', '172.16.86.160/24');
  const squatterMac = /link\/ether ([0-9a-f:]{17})/.exec(squatter.execOk(['ip', 'link', 'show', 'eth0']))?.[1];
  const sb = newSandbox();
  const other = newSandbox();
  try {
    const out = await add(sb, stdin());
    assert.equal(out.code, 0, out.stdout);
    assert.equal(resultAddress(out), '172.16.86.161/24', "the range's first address answered: skipped");
    // The network's LAN watch is on once it defends the running pod's address against a device that claims it.
    const rogue = lan.addLanHost('rogue', '172.16.86.161/24');
    try {
      await eventually('the watch defends the pod', () => {
        rogue.execOk(['/bin/busybox', 'arping', '-U', '-c', '1', '-I', 'eth0', '172.16.86.161']);
        return Promise.resolve(defences('172.16.86.161') > 0);
      });
    } finally {
      rogue.destroy();
    }
    // An ADD asking for an address a device took a moment ago (not known yet) records it, then asks the LAN:
    // the device's answer is the refusal, never a claim to defend against (a gratuitous ARP would point the
    // LAN at a pod that never runs).
    const newcomer = lan.addLanHost('newcomer', '172.16.86.169/24');
    try {
      const late = await add(newSandbox(), stdin({ runtimeConfig: { ips: ['172.16.86.169/24'] } }));
      assert.notEqual(late.code, 0, 'the newcomer answered');
      assert.match(String(late.json?.['msg']), /address 172\.16\.86\.169 is in use on the LAN/);
      assert.equal(defences('172.16.86.169'), 0, "the newcomer's address was never defended against it");
    } finally {
      newcomer.destroy();
    }
    const refused = await add(other, stdin({ runtimeConfig: { ips: ['172.16.86.160/24'] } }));
    assert.notEqual(refused.code, 0);
    assert.match(
      String(refused.json?.['msg']),
      new RegExp(
        `address 172\\.16\\.86\\.160 is in use on the LAN by ${squatterMac ?? '?'} \\(it answered an ARP probe on eth0\\)`,
      ),
    );
    assert.equal(linkIn(other.ns, 'eth0'), null, 'nothing was made in the refused one');
    assert.equal(defences('172.16.86.160'), 0, "the squatter's own address was never defended against it");
    assert.equal((await del(sb, stdin())).code, 0);
  } finally {
    squatter.destroy();
    dropSandbox(sb.ns);
    dropSandbox(other.ns);
  }
});

test('a LAN device answering every ARP probe (proxy ARP for the subnet): an ADD gives up after four addresses, in one line naming that one device answered for each; nothing made', async () => {
  // Every address of 172.20.0.0/16 is this LAN host's own (a local route): its kernel answers every probe.
  const anyone = lan.addLanHost('anyone', []);
  const sb = newSandbox();
  try {
    anyone.execOk(['ip', 'route', 'add', 'local', '172.20.0.0/16', 'dev', 'lo']);
    const mac = /link\/ether ([0-9a-f:]{17})/.exec(anyone.execOk(['ip', 'link', 'show', 'eth0']))?.[1] ?? '?';
    const tried = ['172.20.0.2', '172.20.0.3', '172.20.0.4', '172.20.0.5'];
    const heard = countFramesFrom(lan, mac, 4, { ns: anyone.ns, link: 'eth0' }, { arpSenders: tried });
    await heard.ready;
    const started = Date.now();
    const out = await add(
      sb,
      conf(
        '1.0.0',
        { name: 'everyone' },
        { subnet: '172.20.0.0/16', rangeStart: '172.20.0.2', rangeEnd: '172.20.255.254', gateway: '172.20.0.1' },
      ),
    );
    const tookMs = Date.now() - started;
    assert.notEqual(out.code, 0);
    assert.match(
      String(out.json?.['msg']),
      new RegExp(
        `^address 172\\.20\\.0\\.5 is in use on the LAN by ${mac} \\(it answered an ARP probe on eth0\\); .*; one device, ${mac}, answered for each of the 4 addresses tried \\(172\\.20\\.0\\.2, 172\\.20\\.0\\.3, 172\\.20\\.0\\.4, 172\\.20\\.0\\.5\\): if it answers for every address \\(a router with proxy ARP for the subnet\\), turn that off; if it does hold them, give a rangeStart past them$`,
      ),
    );
    assert.ok(tookMs < 3_000, `refused after ${tookMs} ms`);
    // Its answers about the four addresses: one per address, or one per probe that left before lanplug read
    // the first answer (under load all QUICK.probes can). The warmer asks about other addresses meanwhile
    // (the gateway, the next candidates): those answers are not the ADD's, and are not counted.
    const { arp } = await heard.result;
    assert.ok(
      arp >= tried.length && arp <= tried.length * QUICK.probes,
      `${arp} answers about the ${tried.length} addresses tried: one each, at most one per probe`,
    );
    assert.equal(linkIn(sb.ns, 'eth0'), null, 'nothing was made in the namespace');
  } finally {
    anyone.destroy();
    dropSandbox(sb.ns);
  }
});

test('a second ADD with the same interface name fails and leaves the first attachment working', async () => {
  const sb = newSandbox();
  const first = await add(sb);
  assert.equal(first.code, 0, first.stdout);
  const second = await add(sb);
  assert.notEqual(second.code, 0);
  assert.match(String(second.json?.['msg']), /eth0 already exists/);
  assert.ok(typeof second.json?.['code'] === 'number');
  const check = await cni({ command: 'CHECK', containerId: sb.id, netns: sb.path, ifname: 'eth0' }, withPrev(first));
  assert.equal(check.code, 0, check.stdout);
  assert.equal((await del(sb)).code, 0);
  assert.equal((await del(sb)).code, 0, 'DEL twice succeeds');
  dropSandbox(sb.ns);
});

/** Polls `check` for up to 10 s. */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`not within 10 s: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function withPrev(result: CniOutcome, version = '1.0.0'): string {
  return JSON.stringify({ ...(JSON.parse(conf(version)) as object), prevResult: result.json });
}

test('CHECK succeeds after ADD and fails once the link was deleted by hand', async () => {
  const sb = newSandbox();
  const added = await add(sb);
  assert.equal(added.code, 0, added.stdout);
  const call = { command: 'CHECK', containerId: sb.id, netns: sb.path, ifname: 'eth0' } as const;
  assert.equal((await cni(call, withPrev(added))).code, 0);
  inNs(sb.ns, 'link', 'del', 'eth0');
  const broken = await cni(call, withPrev(added));
  assert.notEqual(broken.code, 0);
  assert.match(String(broken.json?.['msg']), /eth0 is gone/);
  assert.equal((await del(sb)).code, 0);
  dropSandbox(sb.ns);
});

test('DEL after the namespace is gone succeeds and frees the address', async () => {
  const from = Date.now();
  const sb = newSandbox();
  const added = await add(sb);
  const address = resultAddress(added);
  dropSandbox(sb.ns);
  const out = await cni({ command: 'DEL', containerId: sb.id, netns: sb.path, ifname: 'eth0' });
  assert.equal(out.code, 0, out.stdout);
  const again = newSandbox();
  const next = await add(again);
  assert.equal(resultAddress(next), address, 'the freed address is handed out again');
  assert.equal((await del(again)).code, 0);
  dropSandbox(again.ns);
  // lanplug events: each ADD and each DEL that succeeded, by container.
  assert.deepEqual(await eventsOf(sb.id, from), ['attachment.added', 'attachment.removed']);
  assert.deepEqual(await eventsOf(again.id, from), ['attachment.added', 'attachment.removed']);
});

test('DEL after the parent is gone succeeds (the kernel took the link with it)', async () => {
  inNs(host.ns, 'link', 'add', 'vp0', 'type', 'veth', 'peer', 'name', 'vp1');
  inNs(host.ns, 'link', 'set', 'vp0', 'up');
  const onVeth = conf(
    '1.0.0',
    { name: 'vethnet', master: 'vp0' },
    { subnet: '10.88.0.0/24', gateway: '10.88.0.1', rangeStart: undefined, rangeEnd: undefined },
  );
  const sb = newSandbox();
  const added = await add(sb, onVeth);
  assert.equal(added.code, 0, added.stdout);
  inNs(host.ns, 'link', 'del', 'vp0');
  assert.equal(linkIn(sb.ns, 'eth0'), null, 'the pod lost its link with the parent');
  assert.equal((await del(sb, onVeth)).code, 0);
  assert.equal((await del(sb, onVeth)).code, 0);
  dropSandbox(sb.ns);
});

test('an attachment whose namespace vanished without a DEL is removed by lanplug gc, its address freed', async () => {
  const from = Date.now();
  const sb = newSandbox();
  const address = resultAddress(await add(sb));
  dropSandbox(sb.ns); // the runtime died: no DEL ever comes
  const gc = await daemon.cli(['gc', '--state-dir', daemon.stateDir, '--docker-host', 'unix:///nonexistent.sock']);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(gc.stdout, new RegExp(`removed cni:labnet container ${sb.id.slice(0, 12)} eth0: ${sb.path} is gone`));
  assert.deepEqual(
    await eventsOf(sb.id, from),
    ['attachment.added', 'gc.attachment-vanished'],
    'lanplug events tells the gc',
  );
  const status = await daemon.cli(['status', '--state-dir', daemon.stateDir]);
  assert.doesNotMatch(status.stdout, /cni:labnet/);
  const again = newSandbox();
  assert.equal(resultAddress(await add(again)), address);
  assert.equal((await del(again)).code, 0);
  dropSandbox(again.ns);
});

test('host_access: the host reaches its pod through the shim (without it, the kernel keeps parent and child apart)', async () => {
  const sb = newSandbox();
  const plain = await add(sb);
  const plainAddress = resultAddress(plain).split('/')[0] ?? '';
  const fromHost = (address: string): number | null =>
    spawnSync('nsenter', [`--net=/run/netns/${host.ns}`, BUSYBOX, 'ping', '-c', '1', '-W', '1', address]).status;
  assert.notEqual(fromHost(plainAddress), 0, 'a macvlan parent cannot reach its child');
  assert.equal((await del(sb)).code, 0);

  const withAccess = conf(
    '1.0.0',
    { name: 'hostnet', host_access: true, aux_addresses: { host: '172.16.86.250' } },
    { rangeStart: '172.16.86.160', rangeEnd: '172.16.86.169' },
  );
  const added = await add(sb, withAccess);
  assert.equal(added.code, 0, added.stdout);
  const address = resultAddress(added).split('/')[0] ?? '';
  assert.equal(fromHost(address), 0, 'the host reaches the pod through the shim');
  assert.match(inNs(host.ns, 'route', 'show', address), /dev lh-/);
  assert.equal((await del(sb, withAccess)).code, 0);
  await eventually('the shim goes with the idle network', () =>
    Promise.resolve(!/lh-/.test(inNs(host.ns, 'link', 'show'))),
  );
  dropSandbox(sb.ns);
});

test("the lanplug IPAM plugin behind the reference macvlan: lanplug's range, and the address back at DEL", async () => {
  const dir = dirname(plugin);
  copyFileSync(plugin, join(dir, 'lanplug'));
  const refConf = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'refnet',
    type: 'macvlan',
    master: 'eth0',
    ipam: {
      type: 'lanplug',
      subnet: '172.16.86.0/24',
      rangeStart: '172.16.86.170',
      rangeEnd: '172.16.86.179',
      gateway: GATEWAY,
      routes: [{ dst: '0.0.0.0/0' }],
    },
  });
  const sb = newSandbox();
  const call = (command: 'ADD' | 'DEL'): Promise<CniOutcome> =>
    runPlugin(
      '/usr/lib/cni/macvlan',
      {
        command,
        containerId: sb.id,
        netns: sb.path,
        ifname: 'eth0',
        env: { CNI_PATH: `${dir}:/usr/lib/cni` },
        // The reference plugin makes its link where it runs: in the lab host, never the machine's own namespace.
        hostNamespace: host.ns,
      },
      refConf,
    );
  const added = await call('ADD');
  assert.equal(added.code, 0, added.stdout);
  assert.equal(resultAddress(added), '172.16.86.170/24');
  assert.ok(linkIn(sb.ns, 'eth0')?.addr_info.some((a) => a.local === '172.16.86.170'));
  assert.match(inNs(sb.ns, 'route', 'show', 'default'), new RegExp(`default via ${GATEWAY} dev eth0`));
  // Taken for lanplug's own plugins too: a lanplug ADD whose range holds only .170 finds nothing free.
  const other = newSandbox();
  const narrow = conf('1.0.0', { name: 'narrow' }, { rangeStart: '172.16.86.170', rangeEnd: '172.16.86.170' });
  const refused = await add(other, narrow);
  assert.match(String(refused.json?.['msg']), /No available addresses in 172\.16\.86\.170-172\.16\.86\.170/);
  assert.equal((await call('DEL')).code, 0);
  assert.equal((await call('DEL')).code, 0, 'DEL twice');
  const now = await add(other, narrow);
  assert.equal(resultAddress(now), '172.16.86.170/24', 'released by the IPAM DEL');
  assert.equal((await del(other, narrow)).code, 0);
  dropSandbox(sb.ns);
  dropSandbox(other.ns);
});

test("two attachments eth10 and eth1 in one container: each is its own owner, eth1's DEL leaves eth10's address", async () => {
  const dir = dirname(plugin);
  copyFileSync(plugin, join(dir, 'lanplug'));
  const refConf = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'refnet2',
    type: 'macvlan',
    master: 'eth0',
    ipam: { type: 'lanplug', subnet: '172.16.86.0/24', rangeStart: '172.16.86.180', rangeEnd: '172.16.86.181' },
  });
  const sb = newSandbox();
  const call = (command: 'ADD' | 'DEL' | 'CHECK', ifname: string): Promise<CniOutcome> =>
    runPlugin(
      '/usr/lib/cni/macvlan',
      {
        command,
        containerId: sb.id,
        netns: sb.path,
        ifname,
        env: { CNI_PATH: `${dir}:/usr/lib/cni` },
        hostNamespace: host.ns,
      },
      refConf,
    );
  const tenth = await call('ADD', 'eth10');
  assert.equal(tenth.code, 0, tenth.stdout);
  assert.equal(resultAddress(tenth), '172.16.86.180/24');
  const first = await call('ADD', 'eth1');
  assert.equal(first.code, 0, `eth1 is not eth10: ${first.stdout}`);
  assert.equal(resultAddress(first), '172.16.86.181/24');
  assert.equal((await call('DEL', 'eth1')).code, 0);
  // .180 is eth10's still: a lanplug ADD whose range holds only .180 finds nothing free.
  const other = newSandbox();
  const narrow = conf('1.0.0', { name: 'narrow2' }, { rangeStart: '172.16.86.180', rangeEnd: '172.16.86.180' });
  const refused = await add(other, narrow);
  assert.match(String(refused.json?.['msg']), /No available addresses in 172\.16\.86\.180-172\.16\.86\.180/);
  assert.ok(linkIn(sb.ns, 'eth10')?.addr_info.some((a) => a.local === '172.16.86.180'));
  assert.equal((await call('DEL', 'eth10')).code, 0);
  assert.equal(resultAddress(await add(other, narrow)), '172.16.86.180/24', 'released by its own DEL');
  assert.equal((await del(other, narrow)).code, 0);
  dropSandbox(sb.ns);
  dropSandbox(other.ns);
});

test('errors carry the spec codes: bad JSON 6, missing CNI_IFNAME 4, unknown version 1, bad master 7', async () => {
  const sb = newSandbox();
  const badJson = await add(sb, '{"cniVersion": ');
  assert.equal(badJson.code, 1);
  assert.equal(badJson.json?.['code'], 6);
  const noIfname = await cni({ command: 'ADD', containerId: sb.id, netns: sb.path }, conf());
  assert.equal(noIfname.json?.['code'], 4);
  assert.match(String(noIfname.json?.['msg']), /CNI_IFNAME/);
  const future = await add(sb, conf('9.9.9'));
  assert.equal(future.json?.['code'], 1);
  const badMaster = await add(sb, conf('1.0.0', { master: 'nope0' }));
  assert.equal(badMaster.json?.['code'], 7);
  assert.match(String(badMaster.json?.['msg']), /nope0/);
  const typo = await add(sb, conf('1.0.0', { mastr: 'eth0' }));
  assert.equal(typo.json?.['code'], 7);
  assert.match(String(typo.json?.['msg']), /unknown key 'mastr'/);
  assert.equal(linkIn(sb.ns, 'eth0'), null, 'nothing was attached by a refused ADD');
  dropSandbox(sb.ns);
});

test('GC removes the attachments not in cni.dev/valid-attachments and keeps the others', async () => {
  const keep = newSandbox();
  const drop = newSandbox();
  assert.equal((await add(keep, conf('1.1.0'))).code, 0);
  const dropped = await add(drop, conf('1.1.0'));
  assert.equal(dropped.code, 0);
  const gcConf = JSON.stringify({
    ...(JSON.parse(conf('1.1.0')) as object),
    'cni.dev/valid-attachments': [{ containerID: keep.id, ifname: 'eth0' }],
  });
  const out = await cni({ command: 'GC' }, gcConf);
  assert.equal(out.code, 0, out.stdout);
  assert.equal(linkIn(drop.ns, 'eth0'), null, 'the stale attachment is gone');
  assert.ok(linkIn(keep.ns, 'eth0') !== null, 'the valid one stays');
  const status = await cni({ command: 'STATUS' }, conf('1.1.0'));
  assert.equal(status.code, 0, status.stdout);
  assert.equal((await del(keep, conf('1.1.0'))).code, 0);
  dropSandbox(keep.ns);
  dropSandbox(drop.ns);
});

test('20 parallel ADDs get 20 different addresses, and 20 DELs free them all', async () => {
  const sandboxes = Array.from({ length: 20 }, () => newSandbox());
  const results = await Promise.all(sandboxes.map((sb) => add(sb)));
  for (const r of results) assert.equal(r.code, 0, r.stdout);
  const addresses = results.map(resultAddress);
  assert.equal(new Set(addresses).size, 20, addresses.join(' '));
  const macs = results.map((r) => (r.json?.['interfaces'] as { mac: string }[])[0]?.mac);
  assert.equal(new Set(macs).size, 20);
  const dels = await Promise.all(sandboxes.map((sb) => del(sb)));
  for (const d of dels) assert.equal(d.code, 0, d.stdout);
  for (const sb of sandboxes) dropSandbox(sb.ns);
  await eventually(
    'the CNI network goes once idle',
    async () => !/labnet/.test((await daemon.cli(['status', '--state-dir', daemon.stateDir])).stdout),
  );
});

test('with the daemon stopped: ADD answers 11 (try again later), STATUS 50, VERSION still works', async () => {
  const down = { LANPLUG_CNI_SOCKET: join(daemon.dir, 'stopped.sock') };
  const sb = newSandbox();
  const addOut = await runPlugin(
    plugin,
    { command: 'ADD', containerId: sb.id, netns: sb.path, ifname: 'eth0', env: down },
    conf(),
  );
  assert.equal(addOut.code, 1);
  assert.equal(addOut.json?.['code'], 11);
  assert.match(String(addOut.json?.['msg']), /lanplug daemon is not running/);
  const status = await runPlugin(plugin, { command: 'STATUS', env: down }, conf('1.1.0'));
  assert.equal(status.json?.['code'], 50);
  const version = await runPlugin(plugin, { command: 'VERSION', env: down }, '{}');
  assert.equal(version.code, 0);
  dropSandbox(sb.ns);
  assert.equal(spawnSync('true').status, 0);
});

// ---- lanplug-dhcp: addresses from the LAN's DHCP server ----

/**
 * The plugin configuration a runtime hands the plugin for the conflist of docs/cni.md's DHCP section
 * (libcni gives each plugin the list's name and cniVersion), so that the documented example is the one run.
 */
function documentedDhcpConf(overrides: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): string {
  const doc = readFileSync(join(repoRoot(), 'docs', 'cni.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## DHCP from the LAN'));
  const block = /```json\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block !== undefined, "docs/cni.md has a ```json block under '## DHCP from the LAN'");
  const list = JSON.parse(block) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  const [first] = list.plugins;
  assert.ok(first !== undefined);
  return JSON.stringify({
    cniVersion: list.cniVersion,
    name: list.name,
    ...first,
    ...overrides,
    ipam: { ...(first['ipam'] as object), ...ipam },
  });
}

interface DhcpResult {
  ips: { address: string; gateway?: string }[];
  routes: { dst: string; gw?: string }[];
  dns: { nameservers?: string[] };
  interfaces: { name: string; mac: string }[];
}

function hexOf(text: string): string {
  return [...Buffer.from(text)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

test('lanplug-dhcp (the docs/cni.md example): the server leases the pod its address, router and DNS, renewed by the daemon; CHECK sees it held; DEL releases it and removes the link; the same container gets the same address back', async () => {
  const stdin = documentedDhcpConf();
  const sb = newSandbox();
  try {
    const out = await add(sb, stdin);
    assert.equal(out.code, 0, out.stdout);
    const result = out.json as unknown as DhcpResult;
    const address = result.ips[0]?.address ?? '';
    assert.match(address, /^172\.16\.86\.2[0-3]\d\/24$/, "an address of the server's range, with its mask");
    assert.equal(result.ips[0]?.gateway, GATEWAY, "the server's router");
    assert.deepEqual(result.routes, [{ dst: '0.0.0.0/0', gw: GATEWAY }]);
    assert.deepEqual(result.dns.nameservers, [DHCP_DNS], "the server's DNS");
    const mac = result.interfaces[0]?.mac ?? '';
    const ip = address.split('/')[0] ?? '';
    const link = linkIn(sb.ns, 'eth0');
    assert.equal(link?.address, mac);
    assert.ok(
      link?.addr_info.some((a) => `${a.local}/${a.prefixlen}` === address),
      JSON.stringify(link),
    );
    assert.match(inNs(sb.ns, 'route', 'show', 'default'), new RegExp(`default via ${GATEWAY} dev eth0`));
    execFileSync('nsenter', [`--net=${sb.path}`, BUSYBOX, 'ping', '-c', '1', '-W', '2', GATEWAY], { stdio: 'ignore' });

    // The server knows the pod by a client id of its container and interface, and a hostname of its container.
    const lease = dhcpServer.leases().find((l) => l.address === ip);
    assert.ok(lease !== undefined, `the server's lease file has ${ip}`);
    assert.equal(lease.mac, mac);
    assert.equal(lease.clientId, `00:${hexOf(`${sb.id}/eth0`)}`, 'client id 00+"<container id>/<ifname>"');
    assert.equal(lease.hostname, sb.id.slice(0, 12));
    const status = (await daemon.cli(['status', '--state-dir', daemon.stateDir])).stdout;
    assert.match(status, new RegExp(`cni:office .*subnets=dhcp[\\s\\S]*dhcp lease ${ip.replace(/\./g, '\\.')}/24`));

    // Renewed from inside the pod at T1 (3 s): a second REQUEST of the pod's MAC, acknowledged.
    await eventually('the daemon renews the lease', () => Promise.resolve(dhcpServer.count('DHCPREQUEST', mac) >= 2));
    const check = await cni(
      { command: 'CHECK', containerId: sb.id, netns: sb.path, ifname: 'eth0' },
      JSON.stringify({ ...(JSON.parse(stdin) as object), prevResult: out.json }),
    );
    assert.equal(check.code, 0, check.stdout);

    assert.equal((await del(sb, stdin)).code, 0);
    assert.equal(linkIn(sb.ns, 'eth0'), null, 'DEL removes the link');
    await eventually('the server logs the release', () => Promise.resolve(dhcpServer.count('DHCPRELEASE', mac) === 1));
    await eventually('the server drops the lease', () => Promise.resolve(dhcpServer.stillLeased([ip]).length === 0));
    assert.equal((await del(sb, stdin)).code, 0, 'DEL twice');

    const again = await add(sb, stdin);
    assert.equal(again.code, 0, again.stdout);
    assert.equal(resultAddress(again), address, 'the same container and interface get the same address back');
    assert.equal(macOf(again), mac, 'and the same MAC: the LAN sees the same machine');
    assert.equal((await del(sb, stdin)).code, 0);

    // A restarted Podman container: the same container id in a namespace made anew.
    const restarted = { ...newSandbox(), id: sb.id };
    const other = newSandbox();
    try {
      const back = await add(restarted, stdin);
      assert.equal(back.code, 0, back.stdout);
      assert.equal(macOf(back), mac, 'the same MAC in a new namespace');
      assert.equal(resultAddress(back), address, 'the same address in a new namespace');
      assert.equal(linkIn(restarted.ns, 'eth0')?.address, mac);
      const second = await add(other, stdin);
      assert.equal(second.code, 0, second.stdout);
      assert.notEqual(macOf(second), mac, 'another container never gets its MAC');
      assert.notEqual(resultAddress(second), address, 'nor its address');
      assert.equal((await del(other, stdin)).code, 0);
      assert.equal((await del(restarted, stdin)).code, 0);
    } finally {
      dropSandbox(other.ns);
      dropSandbox(restarted.ns);
    }
  } finally {
    dropSandbox(sb.ns);
  }
});

test('lanplug-dhcp: a container whose own MAC is still held on the parent (its last namespace deleted without a DEL, the kernel not done with the link) starts with a random MAC for once, and its address', async () => {
  const stdin = documentedDhcpConf();
  const network = (JSON.parse(stdin) as { name: string }).name;
  const sb = newSandbox();
  const own = macFromKey(attachmentId(network, sb.id, 'eth0'));
  execFileSync('ip', ['-n', host.ns, 'link', 'add', 'lp-held', 'link', 'eth0', 'type', 'macvlan', 'mode', 'bridge']);
  execFileSync('ip', ['-n', host.ns, 'link', 'set', 'lp-held', 'address', own, 'up']);
  try {
    const out = await add(sb, stdin);
    assert.equal(out.code, 0, out.stdout);
    assert.notEqual(macOf(out), own, 'not the MAC another link holds');
    assert.equal(linkIn(sb.ns, 'eth0')?.address, macOf(out));
    assert.match(resultAddress(out), /^172\.16\.86\.2[0-3]\d\/24$/, "an address of the server's range");
    assert.equal((await del(sb, stdin)).code, 0);
  } finally {
    execFileSync('ip', ['-n', host.ns, 'link', 'del', 'lp-held']);
    dropSandbox(sb.ns);
  }
});

function macOf(result: CniOutcome): string {
  const interfaces = result.json?.['interfaces'] as { mac?: string }[] | undefined;
  return interfaces?.[0]?.mac ?? '';
}

test('lanplug-dhcp with no server answering: ADD fails within the timeout (code 11, one line), leaving no link, attachment or lease', async () => {
  const stdin = documentedDhcpConf({ name: 'quiet' }, { timeout: '2s' });
  const sb = newSandbox();
  dhcpServer.stop();
  try {
    const started = Date.now();
    const out = await add(sb, stdin);
    const took = Date.now() - started;
    assert.equal(out.code, 1, out.stdout);
    assert.equal(out.json?.['code'], 11, 'try again later');
    assert.match(
      String(out.json?.['msg']),
      /^network cni:quiet on parent eth0: no DHCP server answered on eth0 within 2 s$/,
    );
    assert.ok(took < 4_000, `answered in ${took} ms`);
    assert.equal(linkIn(sb.ns, 'eth0'), null, 'no link left in the pod');
    assert.deepEqual(
      inNs(sb.ns, '-o', 'link', 'show')
        .split('\n')
        .filter((l) => l !== '' && !/: lo:/.test(l)),
      [],
      'nothing else either',
    );
    const status = (await daemon.cli(['status', '--state-dir', daemon.stateDir])).stdout;
    assert.doesNotMatch(status, /cni:quiet[\s\S]*endpoint|dhcp lease/, status);
    assert.equal((await del(sb, stdin)).code, 0, 'the runtime cleaning up after the failed ADD succeeds');
  } finally {
    await dhcpServer.start();
    dropSandbox(sb.ns);
  }
});

test('lanplug-dhcp GC: the lease of an attachment not in cni.dev/valid-attachments goes back to the server, the other is kept', async () => {
  const stdin = documentedDhcpConf({ cniVersion: '1.1.0', name: 'dhcpgc' });
  const keep = newSandbox();
  const drop = newSandbox();
  try {
    const kept = await add(keep, stdin);
    const dropped = await add(drop, stdin);
    assert.equal(kept.code, 0, kept.stdout);
    assert.equal(dropped.code, 0, dropped.stdout);
    const droppedMac = (dropped.json as unknown as DhcpResult).interfaces[0]?.mac ?? '';
    const keptIp = resultAddress(kept).split('/')[0] ?? '';
    const gc = await cni(
      { command: 'GC' },
      JSON.stringify({
        ...(JSON.parse(stdin) as object),
        'cni.dev/valid-attachments': [{ containerID: keep.id, ifname: 'eth0' }],
      }),
    );
    assert.equal(gc.code, 0, gc.stdout);
    assert.equal(linkIn(drop.ns, 'eth0'), null);
    await eventually('the server logs the release', () =>
      Promise.resolve(dhcpServer.count('DHCPRELEASE', droppedMac) === 1),
    );
    assert.deepEqual(dhcpServer.stillLeased([keptIp]), [keptIp], 'the kept one is still leased');
    assert.equal((await del(keep, stdin)).code, 0);
  } finally {
    dropSandbox(keep.ns);
    dropSandbox(drop.ns);
  }
});

test('lanplug-dhcp: the lease of a pod whose namespace vanished without a DEL goes back to the server at lanplug gc', async () => {
  const stdin = documentedDhcpConf({ name: 'dhcpgone' });
  const sb = newSandbox();
  const added = await add(sb, stdin);
  assert.equal(added.code, 0, added.stdout);
  const mac = (added.json as unknown as DhcpResult).interfaces[0]?.mac ?? '';
  dropSandbox(sb.ns); // the runtime died: no DEL ever comes
  const gc = await daemon.cli(['gc', '--state-dir', daemon.stateDir, '--docker-host', 'unix:///nonexistent.sock']);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(gc.stdout, new RegExp(`removed cni:dhcpgone container ${sb.id.slice(0, 12)} eth0`));
  await eventually('the server logs the release', () => Promise.resolve(dhcpServer.count('DHCPRELEASE', mac) === 1));
});

test('lanplug-dhcp: a daemon killed (kill -9) between recording the lease and answering ADD: restarted, it renews the lease from the pod again, and the DEL the runtime sends after the failed ADD releases it', async () => {
  const stdin = documentedDhcpConf({ name: 'dhcpcrash' });
  const sb = newSandbox();
  try {
    lab.daemonProcess.child.kill('SIGTERM');
    await lab.daemonProcess.exited;
    const dying = await daemon.start({ LANPLUG_CRASH_AT: 'cni-add:lease-recorded' }, CNI_DAEMON_ARGS);
    const out = await add(sb, stdin);
    assert.equal(out.code, 1, 'the ADD got no answer');
    assert.equal((await dying.exited).signal, 'SIGKILL');
    const mac = linkIn(sb.ns, 'eth0')?.address ?? '';
    assert.match(mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, 'the crash left the link in the pod');
    const requests = dhcpServer.count('DHCPREQUEST', mac);
    assert.equal(requests, 1, 'the lease was taken');
    lab.daemonProcess = await daemon.start({}, CNI_DAEMON_ARGS);
    // Not a lease held unrenewed (and given back a minute later as never joined, under a pod that may use it).
    await eventually('the restarted daemon renews the lease from the pod (T1 is 3 s)', () =>
      Promise.resolve(dhcpServer.count('DHCPREQUEST', mac) > requests),
    );
    assert.equal(dhcpServer.count('DHCPRELEASE', mac), 0);
    assert.equal((await del(sb, stdin)).code, 0);
    // Once, or twice when a renewal was under way at the DEL (sent again once it ended: keeper.release).
    await eventually('the DEL after the failed ADD releases the lease', () =>
      Promise.resolve(dhcpServer.count('DHCPRELEASE', mac) >= 1 && !dhcpServer.leases().some((l) => l.mac === mac)),
    );
    assert.equal(linkIn(sb.ns, 'eth0'), null, 'and removes the link');
  } finally {
    dropSandbox(sb.ns);
  }
});
