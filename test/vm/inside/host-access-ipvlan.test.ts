/**
 * Runs inside the full-kernel VM: host access on lanplug-ipvlan. An ipvlan
 * parent does not pass traffic to its own children either (the negative
 * control shows it), so the shim is an ipvlan of the network's own mode on
 * the same parent: in l2, l3 and l3s the Docker host then reaches its
 * containers and they reach it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertNoLanplugLinks, containerNetwork, eventually, resetDocker, useLab } from '../../e2e/helpers';

const lab = useLab({ addresses: ['192.168.210.254/24'] });

function hostPing(address: string): boolean {
  return lab.host.exec(['/bin/busybox', 'ping', '-c', '1', '-W', '2', address]).status === 0;
}

test('negative control: without host_access the Docker host does not reach an ipvlan l2 container', () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--subnet=192.168.210.0/24',
    '--gateway=192.168.210.254',
    '-o',
    'parent=eth0',
    'plain',
  ]);
  lab.host.dockerOk(['run', '-d', '--network', 'plain', '--name', 'p1', 'alpine:latest', 'sleep', '3600']);
  lab.host.execOk(['ip', 'addr', 'add', '192.168.210.5/24', 'dev', 'eth0']);
  try {
    assert.equal(hostPing(containerNetwork(lab.host, 'p1', 'plain').IPAddress), false);
  } finally {
    lab.host.execOk(['ip', 'addr', 'del', '192.168.210.5/24', 'dev', 'eth0']);
  }
});

for (const mode of ['l2', 'l3', 'l3s'] as const) {
  test(`ipvlan ${mode} with host access: the host pings its container and the container pings the host`, async () => {
    resetDocker(lab.host);
    lab.host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-ipvlan',
      '--subnet=192.168.210.0/24',
      '--gateway=192.168.210.254',
      '--aux-address',
      'host=192.168.210.250',
      '-o',
      `ipvlan_mode=${mode}`,
      '-o',
      'parent=eth0',
      '-o',
      'host_access=true',
      `reach-${mode}`,
    ]);
    const shim = lab.host
      .execOk(['ip', '-d', 'link', 'show'])
      .match(/^\d+: (lh-[0-9a-f]{12})@eth0:.*\n.*\n\s+ipvlan\s+mode (\S+)/m);
    assert.equal(shim?.[2], mode, "the shim is an ipvlan of the network's mode");
    lab.host.dockerOk([
      'run',
      '-d',
      '--network',
      `reach-${mode}`,
      '--name',
      `c-${mode}`,
      'alpine:latest',
      'sleep',
      '3600',
    ]);
    const address = containerNetwork(lab.host, `c-${mode}`, `reach-${mode}`).IPAddress;
    await eventually(() => assert.equal(hostPing(address), true), 15_000);
    lab.host.dockerOk(['exec', `c-${mode}`, 'ping', '-c', '1', '-W', '3', '192.168.210.250']);
    resetDocker(lab.host);
    assertNoLanplugLinks(lab.host);
    assert.doesNotMatch(lab.host.execOk(['ip', 'link', 'show']), /lh-/);
  });
}
