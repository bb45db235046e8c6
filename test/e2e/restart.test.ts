/**
 * dockerd does not replay CreateNetwork to plugins: a restarted lanplug
 * daemon must serve the networks and endpoints it had from its own store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startLanplug } from '../lab/lanplug';
import { assertNoLanplugLinks, containerNetwork, useLab } from './helpers';

const lab = useLab({ addresses: ['172.16.86.1/24'], resetEachTest: false });

test('SIGTERM removes the sockets and exits 0; a restarted daemon keeps serving its networks', async () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    'kept',
  ]);
  lab.host.dockerOk(['run', '-dit', '--network', 'kept', '--name', 'before', 'alpine:latest', 'ash']);

  assert.equal(await lab.plugin.stop(), 0, 'daemon exit code after SIGTERM');
  assert.equal(existsSync(join(lab.plugin.pluginDir, 'lanplug-macvlan.sock')), false, 'socket removed at shutdown');
  assert.equal(existsSync(join(lab.plugin.pluginDir, 'lanplug-ipvlan.sock')), false, 'socket removed at shutdown');
  // The running container is untouched by the daemon's absence.
  lab.host.dockerOk(['exec', 'before', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);

  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  lab.host.dockerOk(['run', '-dit', '--network', 'kept', '--name', 'after', 'alpine:latest', 'ash']);
  assert.equal(containerNetwork(lab.host, 'after', 'kept').MacAddress, '02:42:ac:10:56:03');
  lab.host.dockerOk(['exec', 'after', 'ping', '-c', '1', '-W', '2', '172.16.86.2']);
  lab.host.dockerOk(['rm', '-f', 'before', 'after']);
  lab.host.dockerOk(['network', 'rm', 'kept']);
  assertNoLanplugLinks(lab.host);
});
