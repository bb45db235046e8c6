/**
 * What a Podman user sees of lanplug's netavark plugins, as one table of cases that
 * test/docker28/podman5.test.ts (Podman 5.8, netavark 1.17) and podman6.test.ts (Podman 6.1,
 * netavark 2.0) both run on their own Podman host, so the two engines are held to the same
 * behaviour and cannot drift: `podman network create -d lanplug-macvlan` with lanplug's IPAM,
 * `podman run` on the LAN reaching the gateway, `--ip`/`--mac-address`, `podman run -d` with
 * `restart` and `rm -f`, a LAN conflict refused naming the device's MAC, host access both ways,
 * DHCPv4 and DHCPv6 from the lab's dnsmasq, a bad option refused at create, `--route` of each
 * type, and `podman network rm` leaving no link.
 *
 * One lab for each file (startPodmanLane): a CNI lab (LAN, gateway, the real daemon), dnsmasq
 * serving DHCPv4 and DHCPv6 on it, and the Podman host chrooted in the file's root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import { BUSYBOX } from '../lab/image';
import { PodmanHost, type PodmanOutcome } from '../lab/podman-host';
import { sidRootVersions } from '../lab/sid-root';
import { CNI_LAB_GATEWAY, startCniLab, type CniLab } from '../support/cni';

export const GATEWAY = CNI_LAB_GATEWAY;
export const IMAGE = 'localhost/lanplug-busybox:latest';
/** Podman's default rlimits are refused in this sandbox; its default capabilities leave out NET_RAW (ping). */
export const LIMITS = ['--cap-add', 'NET_RAW', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
export const RUN = ['run', '--rm', ...LIMITS];
export const DETACHED = ['run', '--detach', ...LIMITS];

export interface PodmanLane {
  lab: CniLab;
  dhcpServer: DhcpServer;
  podmanHost: PodmanHost;
  /** "podman 5.8.6+ds1-3, netavark 1.17.2-3": the root's versions. */
  versions: string;
  podman: (...args: string[]) => PodmanOutcome;
  /** The same, asserting success. */
  podmanOk: (...args: string[]) => PodmanOutcome;
  /** The macvlan links of the lab host (where lanplug's endpoint links are made). */
  macvlanLinksOfHost: () => string;
  /** Every container removed, the host, dnsmasq and the lab closed; throws if a Podman mount leaked. */
  close(): void;
}

/**
 * The lab of a Podman lane: the CNI lab, dnsmasq on the LAN (DHCPv6 too: on fd86::/64, a prefix
 * the LAN's bridge holds), and the Podman host in `root`, its directory `dirName` under the lab's.
 */
export async function startPodmanLane(opts: {
  root: string;
  dirName: string;
  cgroupV2?: boolean;
}): Promise<PodmanLane> {
  const lab = await startCniLab();
  let dhcpServer: DhcpServer | undefined;
  try {
    lab.lan.addAddress('fd86::1/64');
    dhcpServer = await startDhcpServer(lab.lan, {
      range: ['172.16.86.200', '172.16.86.239'],
      range6: ['fd86::200', 'fd86::23f'],
      router: GATEWAY,
      dns: '172.16.86.53',
      renewSeconds: 60,
      rebindSeconds: 100,
    });
    const podmanHost = PodmanHost.startWithLanplug({
      root: opts.root,
      labId: lab.lan.id,
      dir: join(lab.lan.dir, opts.dirName),
      netns: lab.host.ns,
      plugin: lab.plugin,
      socket: lab.socket,
      cgroupV2: opts.cgroupV2 === true,
      image: IMAGE,
    });
    const versions = sidRootVersions(opts.root);
    const server = dhcpServer;
    const podman = (...args: string[]): PodmanOutcome => podmanHost.podman(...args);
    return {
      lab,
      dhcpServer: server,
      podmanHost,
      versions: `podman ${versions.get('podman') ?? '?'}, netavark ${versions.get('netavark') ?? '?'}`,
      podman,
      podmanOk: (...args: string[]): PodmanOutcome => {
        const out = podman(...args);
        assert.equal(out.code, 0, `podman ${args.join(' ')}: ${out.stderr}`);
        return out;
      },
      macvlanLinksOfHost: () => lab.host.execOk(['ip', '-o', 'link', 'show', 'type', 'macvlan']),
      close(): void {
        try {
          // throws if a mount of the Podman host reached this mount namespace
          podmanHost.close();
        } finally {
          server.stop();
          lab.close();
        }
      },
    };
  } catch (err) {
    dhcpServer?.stop();
    lab.close();
    throw err;
  }
}

/** An attachment as `lanplug ls --json` lists it (observe/listing.ts EndpointRow, the fields used here). */
interface AttachmentRow {
  containerId: string | null;
  ipv4: string | null;
}

const ENDPOINT_LINK = /: lp-[0-9a-f]{12}[@:]/;

/**
 * The user-visible cases, registered in this order with node:test on the lane `lane()` gives once
 * the file's before hook has started it. They share the network `lan` (created by the first case,
 * removed by the last).
 */
export function podmanUserCases(lane: () => PodmanLane): void {
  const podman = (...args: string[]): PodmanOutcome => lane().podman(...args);
  const podmanOk = (...args: string[]): PodmanOutcome => lane().podmanOk(...args);

  /** `lanplug ls --json`: what the daemon's store holds, as an operator sees it. */
  async function lanplugAttachments(): Promise<AttachmentRow[]> {
    const { daemon } = lane().lab;
    const out = await daemon.cli(['ls', '--json', '--state-dir', daemon.stateDir]);
    assert.equal(out.code, 0, out.stderr);
    return JSON.parse(out.stdout) as AttachmentRow[];
  }

  test('podman network create -d lanplug-macvlan: podman run gets its address on the LAN and reaches the gateway; --ip and --mac-address are honoured; --rm leaves no link', () => {
    podmanOk(
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '-o',
      'parent=eth0',
      '--subnet',
      '172.16.86.0/24',
      '--gateway',
      GATEWAY,
      '--ip-range',
      '172.16.86.96/28',
      'lan',
    );
    const inspect = JSON.parse(podmanOk('network', 'inspect', 'lan').stdout) as { ipam_options: { driver: string } }[];
    assert.equal(inspect[0]?.ipam_options.driver, 'lanplug', 'lanplug chooses the addresses, Podman does not');

    const out = podmanOk(
      ...RUN,
      '--network',
      'lan',
      IMAGE,
      'sh',
      '-c',
      `ip -o -4 addr show eth0 && ip route && ping -c 1 -W 2 ${GATEWAY}`,
    );
    assert.match(out.stdout, /eth0\s+inet 172\.16\.86\.(9[7-9]|10\d|11[01])\/24/, out.stdout);
    assert.match(out.stdout, new RegExp(`default via ${GATEWAY} dev eth0`));
    assert.match(out.stdout, /1 packets received/);

    const fixed = podmanOk(
      ...RUN,
      '--network',
      'lan',
      '--ip',
      '172.16.86.105',
      '--mac-address',
      '02:00:ac:10:56:69',
      IMAGE,
      'sh',
      '-c',
      `ip -o link show eth0 && ip -o -4 addr show eth0 && ping -c 1 -W 2 ${GATEWAY}`,
    );
    assert.match(fixed.stdout, /link\/ether 02:00:ac:10:56:69/);
    assert.match(fixed.stdout, /inet 172\.16\.86\.105\/24/);
    assert.match(fixed.stdout, /1 packets received/);
    assert.doesNotMatch(lane().macvlanLinksOfHost(), ENDPOINT_LINK, 'no endpoint link left by --rm');
  });

  test('podman run -d keeps running with its address on the LAN; podman restart keeps the --ip and --mac-address; podman rm -f leaves no link and no row in the store', async () => {
    const peer = lane().lab.lan.addLanHost('ppeer', '172.16.86.120/24');
    try {
      const id = podmanOk(
        ...DETACHED,
        '--network',
        'lan',
        '--ip',
        '172.16.86.108',
        '--mac-address',
        '02:00:ac:10:56:6c',
        IMAGE,
        'sleep',
        '600',
      ).stdout.trim();
      // Later commands find it running, with its address, and the LAN reaches it.
      const addressed = (): string => podmanOk('exec', id, 'ip', '-o', 'addr', 'show', 'eth0').stdout;
      assert.equal(podmanOk('inspect', '--format', '{{.State.Running}}', id).stdout.trim(), 'true');
      assert.match(addressed(), /inet 172\.16\.86\.108\/24/);
      assert.match(peer.execOk([BUSYBOX, 'ping', '-c', '1', '-W', '2', '172.16.86.108']), /1 packets received/);
      const row = (await lanplugAttachments()).filter((e) => e.containerId === id);
      assert.equal(row.length, 1, 'one attachment in the store');
      assert.match(row[0]?.ipv4 ?? '', /^172\.16\.86\.108\b/);

      // A restart is a teardown and a setup: the same address and MAC come back.
      podmanOk('restart', '--time', '0', id);
      assert.match(addressed(), /inet 172\.16\.86\.108\/24/);
      assert.match(podmanOk('exec', id, 'ip', '-o', 'link', 'show', 'eth0').stdout, /link\/ether 02:00:ac:10:56:6c/);
      assert.match(peer.execOk([BUSYBOX, 'ping', '-c', '1', '-W', '2', '172.16.86.108']), /1 packets received/);
      assert.equal((await lanplugAttachments()).filter((e) => e.containerId === id).length, 1);

      podmanOk('rm', '--force', '--time', '0', id);
      assert.doesNotMatch(lane().macvlanLinksOfHost(), ENDPOINT_LINK, 'no endpoint link left');
      assert.deepEqual(
        (await lanplugAttachments()).filter((e) => e.containerId === id),
        [],
        'no attachment left in the store',
      );
    } finally {
      peer.destroy();
    }
  });

  test('podman run --ip of an address a LAN device answers for is refused in one line naming its MAC; nothing is left', async () => {
    const { lab } = lane();
    const squatter = lab.lan.addLanHost('psq', '172.16.86.110/24');
    try {
      const mac = /link\/ether ([0-9a-f:]{17})/.exec(squatter.execOk(['ip', 'link', 'show', 'eth0']))?.[1] ?? '?';
      const out = podman(...RUN, '--network', 'lan', '--ip', '172.16.86.110', IMAGE, 'true');
      assert.notEqual(out.code, 0);
      assert.match(out.stderr, new RegExp(`address 172\\.16\\.86\\.110 is in use on the LAN by ${mac}`));
      // Podman calls no teardown after a failed setup: lanplug undid its own (no attachment holds the address).
      const status = await lab.daemon.cli(['status', '--state-dir', lab.daemon.stateDir]);
      assert.doesNotMatch(status.stdout, /172\.16\.86\.110/);
      assert.doesNotMatch(lane().macvlanLinksOfHost(), ENDPOINT_LINK, 'no endpoint link left');
    } finally {
      squatter.destroy();
    }
  });

  test('-o host_access=true: the host reaches its container and the container the host, both ways', () => {
    podmanOk(
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '-o',
      'parent=eth0',
      '-o',
      'host_access=true',
      '-o',
      'host_address=172.16.86.250',
      '--subnet',
      '172.16.86.0/24',
      '--gateway',
      GATEWAY,
      '--ip-range',
      '172.16.86.160/28',
      'lanhost',
    );
    // The container pings the host and the host the container (macvlan alone forbids both).
    const id = podmanOk(
      ...DETACHED,
      '--network',
      'lanhost',
      '--ip',
      '172.16.86.161',
      IMAGE,
      'sleep',
      '600',
    ).stdout.trim();
    try {
      // busybox by its path: Podman 5's exec finds no ping on the imported image's PATH (it sets none)
      const toHost = podman('exec', id, '/bin/busybox', 'ping', '-c', '1', '-W', '2', '172.16.86.250');
      assert.match(toHost.stdout, /1 packets received/, `container to host: ${toHost.stderr}`);
      const fromHost = lane().lab.host.exec([BUSYBOX, 'ping', '-c', '1', '-W', '2', '172.16.86.161']);
      assert.match(fromHost.stdout, /1 packets received/, 'host to container');
    } finally {
      podmanOk('rm', '--force', '--time', '0', id);
    }
    podmanOk('network', 'rm', 'lanhost');
  });

  test("-o dhcp=true --ipv6: podman run gets its addresses, router and resolver from the LAN's DHCP and DHCPv6 servers (no netavark DHCP proxy)", () => {
    podmanOk('network', 'create', '-d', 'lanplug-macvlan', '-o', 'parent=eth0', '-o', 'dhcp=true', '--ipv6', 'landhcp');
    const inspect = JSON.parse(podmanOk('network', 'inspect', 'landhcp').stdout) as {
      ipam_options: { driver: string };
    }[];
    assert.equal(inspect[0]?.ipam_options.driver, 'lanplug-dhcp');
    const out = podmanOk(
      ...RUN,
      '--network',
      'landhcp',
      IMAGE,
      'sh',
      '-c',
      `ip -o addr show eth0 && ip route && cat /etc/resolv.conf && ping -c 1 -W 2 ${GATEWAY} && ping -c 1 -W 2 fd86::1`,
    );
    assert.match(out.stdout, /inet 172\.16\.86\.2[0-3]\d\/24/, out.stdout);
    assert.match(out.stdout, /inet6 fd86::2[0-3][0-9a-f]\/64/, 'IPv6 from the LAN’s DHCPv6 server (--ipv6)');
    assert.match(out.stdout, new RegExp(`default via ${GATEWAY} dev eth0`));
    assert.match(out.stdout, /nameserver 172\.16\.86\.53/);
    assert.equal(out.stdout.match(/1 packets received/g)?.length, 2, 'the IPv4 and the IPv6 gateway answer');
    podmanOk('network', 'rm', 'landhcp');
  });

  test('a bad option fails at podman network create with lanplug’s one line, and no network is made', () => {
    const out = podman(
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '-o',
      'parent=eth0',
      '-o',
      'macvlan_mod=private',
      '--subnet',
      '172.16.87.0/24',
      'bad',
    );
    assert.notEqual(out.code, 0);
    assert.match(
      out.stderr,
      /unknown option 'macvlan_mod' for lanplug-macvlan; accepted options: parent, macvlan_mode/,
    );
    console.log(`# ${lane().versions}: ${out.stderr.trim().split('\n')[0]?.slice(0, 160) ?? ''}`);
    assert.equal(podman('network', 'exists', 'bad').code, 1);
  });

  test('podman network rm leaves no link: lanplug removes the network with its last attachment', async () => {
    podmanOk('network', 'rm', 'lan');
    // The lab daemon removes a network idle for 1 s (CNI networks' --cni-network-idle): asked until 5 s.
    const { daemon } = lane().lab;
    let links = lane().macvlanLinksOfHost();
    let status = '';
    for (let waited = 0; waited < 5000; waited += 200) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      links = lane().macvlanLinksOfHost();
      status = (await daemon.cli(['status', '--state-dir', daemon.stateDir])).stdout;
      if (links === '' && !/podman:lan/.test(status)) break;
    }
    assert.equal(links, '');
    assert.doesNotMatch(status, /podman:lan/);
  });
}
