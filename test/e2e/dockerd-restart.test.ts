/**
 * dockerd restarts with lanplug running, with and without --live-restore:
 * containers with --restart=always come back with their addresses, and
 * dockerd never waits on lanplug at boot (no handler calls Docker's API).
 * A second Docker host in the same lab runs with --live-restore.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { createLan, type Lan } from '../lab/lan';
import { startLanplug, type Lanplug } from '../lab/lanplug';
import { assertNoLanplugLinks, containerNetwork } from './helpers';

let lan: Lan;
const hosts: { host: DockerHost; plugin: Lanplug }[] = [];

before(async () => {
  lan = createLan({ addresses: ['172.16.86.1/24'] });
  for (const dockerdArgs of [[], ['--live-restore']]) {
    const host = await createDockerHost(lan, { dockerdArgs });
    hosts.push({ host, plugin: await startLanplug(host) });
  }
});
after(async () => {
  for (const h of hosts) await h.plugin.stop();
  lan?.destroy();
});

for (const [index, mode] of ['without --live-restore', 'with --live-restore'].entries()) {
  test(`dockerd restarted ${mode}: --restart=always containers come back with their addresses; dockerd starts without waiting on lanplug`, async () => {
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
    host.dockerOk(['rm', '-f', 'r1', 'r2']);
    host.dockerOk(['network', 'rm', 'lan']);
    assertNoLanplugLinks(host);
  });
}
