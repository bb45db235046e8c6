/**
 * dockerd restarts with lanplug running, with and without --live-restore:
 * containers with --restart=always come back with their addresses, and
 * dockerd never waits on lanplug at boot (no handler calls Docker's API).
 * A second Docker host in the same lab runs with --live-restore. A DHCP
 * network's container gets the same lease back (dnsmasq on the LAN), and so
 * does a dual-stack lanplug-dhcp network's (DHCPv4 and DHCPv6).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { dhcpNetworkArgs, dualStackDhcpNetworkArgs, startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import { createLan, type Lan } from '../lab/lan';
import { startLanplug, type Lanplug } from '../lab/lanplug';
import { reportEngineOfTaggedTests } from '../support/engine-proof';
import { assertNoLanplugLinks, containerNetwork } from './helpers';

// Its tagged tests name the engine they ran on, as those of a useLab file do.
reportEngineOfTaggedTests();

let lan: Lan;
let server: DhcpServer;
const hosts: { host: DockerHost; plugin: Lanplug }[] = [];

before(async () => {
  lan = createLan({ addresses: ['172.16.86.1/24', 'fd77::1/64'] });
  server = await startDhcpServer(lan, {
    range: ['172.16.86.200', '172.16.86.250'],
    range6: ['fd77::200', 'fd77::2ff'],
  });
  for (const dockerdArgs of [[], ['--live-restore']]) {
    const host = await createDockerHost(lan, { dockerdArgs });
    hosts.push({ host, plugin: await startLanplug(host) });
  }
});
after(async () => {
  server?.stop();
  for (const h of hosts) await h.plugin.stop();
  lan?.destroy();
});

for (const [index, mode] of ['without --live-restore', 'with --live-restore'].entries()) {
  test(`dockerd restarted ${mode}: --restart=always containers come back with their addresses; dockerd starts without waiting on lanplug [engine:dockerd-restart]`, async () => {
    const entry = hosts[index];
    assert.ok(entry);
    const { host } = entry;
    const base = 32 * (index + 1);
    host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      `--ip-range=172.16.86.${base}/27`,
      '-o',
      'parent=eth0',
      'lan',
    ]);
    // Pinned addresses: Docker's default IPAM hands unpinned ones out afresh when it restarts containers.
    for (const [i, name] of ['r1', 'r2'].entries()) {
      host.dockerOk([
        'run',
        '-d',
        '--restart=always',
        '--network',
        'lan',
        '--ip',
        `172.16.86.${base + 5 + i}`,
        '--name',
        name,
        'alpine:latest',
        'sleep',
        '3600',
      ]);
    }
    host.dockerOk(dhcpNetworkArgs('dhcp'));
    const mac = `02:00:00:00:01:0${index}`;
    // Seen once in a full CI run (host 2, never alone): no answer from dnsmasq within 10 s. Say what both ends saw.
    const explain = (err: unknown): Error =>
      new Error(
        `${err instanceof Error ? err.message : String(err)}\n--- dnsmasq:\n${tail(server.log(), 30)}\n--- lanplug:\n${tail(entry.plugin.stderr(), 30)}`,
      );
    runOrExplain(explain, () =>
      host.dockerOk([
        'run',
        '-d',
        '--restart=always',
        '--network',
        'dhcp',
        '--mac-address',
        mac,
        '--name',
        'd1',
        'alpine:latest',
        'sleep',
        '3600',
      ]),
    );
    const leased = containerNetwork(host, 'd1', 'dhcp').IPAddress;
    host.dockerOk(dualStackDhcpNetworkArgs('dhcp6'));
    host.dockerOk([
      'run',
      '-d',
      '--restart=always',
      '--network',
      'dhcp6',
      '--mac-address',
      `02:00:00:00:06:1${index}`,
      '--name',
      'd6',
      'alpine:latest',
      'sleep',
      '3600',
    ]);
    const leased6 = containerNetwork(host, 'd6', 'dhcp6');
    const before = ['r1', 'r2'].map((n) => containerNetwork(host, n, 'lan'));
    const startedAt = ['r1', 'r2'].map((n) => host.dockerOk(['inspect', '-f', '{{.State.StartedAt}}', n]).trim());
    host.stopDockerd();
    const readyMs = await host.startDockerdAgain();
    process.stderr.write(`# dockerd ${mode} answered ${readyMs} ms after its restart\n`);
    assert.ok(readyMs < 60_000, `dockerd took ${readyMs} ms to answer`);
    for (const [i, name] of ['r1', 'r2'].entries()) {
      const deadline = Date.now() + 60_000;
      while (host.dockerOk(['inspect', '-f', '{{.State.Running}}', name]).trim() !== 'true' && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 250));
      const after = containerNetwork(host, name, 'lan');
      assert.equal(after.IPAddress, before[i]?.IPAddress, `${name} has its address again`);
      assert.equal(after.MacAddress, before[i]?.MacAddress);
      host.dockerOk(['exec', name, 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
      const restarted = host.dockerOk(['inspect', '-f', '{{.State.StartedAt}}', name]).trim() !== startedAt[i];
      assert.equal(
        restarted,
        index === 0,
        index === 0 ? 'restarted by its policy' : 'kept running through the restart',
      );
    }
    const deadline = Date.now() + 60_000;
    while (host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'd1']).trim() !== 'true' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    assert.equal(containerNetwork(host, 'd1', 'dhcp').IPAddress, leased, 'the same lease after the restart');
    host.dockerOk(['exec', 'd1', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
    while (host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'd6']).trim() !== 'true' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    const again6 = containerNetwork(host, 'd6', 'dhcp6');
    assert.deepEqual(
      [again6.IPAddress, again6.GlobalIPv6Address],
      [leased6.IPAddress, leased6.GlobalIPv6Address],
      'the same IPv4 and IPv6 leases after the restart',
    );
    assert.match(
      host.dockerOk(['exec', 'd6', 'ip', '-6', 'addr', 'show', 'eth0']),
      new RegExp(`inet6 ${leased6.GlobalIPv6Address}/64`),
    );
    // Without live-restore dockerd stopped the container (a release) and started it again (a new exchange).
    assert.equal(server.count('DHCPRELEASE', mac), index === 0 ? 1 : 0);
    host.dockerOk(['rm', '-f', 'r1', 'r2', 'd1', 'd6']);
    for (const name of ['lan', 'dhcp', 'dhcp6']) {
      const until = Date.now() + 10_000;
      while (host.docker(['network', 'rm', name]).status !== 0 && Date.now() < until)
        await new Promise((r) => setTimeout(r, 100));
    }
    assertNoLanplugLinks(host);
  });
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}

function runOrExplain<T>(explain: (err: unknown) => Error, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw explain(err);
  }
}
