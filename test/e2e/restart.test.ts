/**
 * dockerd does not replay CreateNetwork to plugins: a restarted lanplug
 * daemon must serve the networks and endpoints it had from its own store.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createDockerHost, createLan, startLanplug, type DockerHost, type Lan, type Lanplug } from '../lab/lab';
import { assertNoLanplugLinks, containerNetwork } from './helpers';

let lan: Lan;
let host: DockerHost;
let plugin: Lanplug;

before(async () => {
  lan = createLan({ addresses: ['172.16.86.1/24'] });
  host = await createDockerHost(lan);
  plugin = await startLanplug(host);
});

after(async () => {
  await plugin?.stop();
  lan?.destroy();
});

test('SIGTERM removes the sockets and exits 0; a restarted daemon keeps serving its networks', async () => {
  host.dockerOk(['network', 'create', '-d', 'lanplug-macvlan', '--subnet=172.16.86.0/24', '--gateway=172.16.86.1', '-o', 'parent=eth0', 'kept']);
  host.dockerOk(['run', '-dit', '--network', 'kept', '--name', 'before', 'alpine:latest', 'ash']);

  assert.equal(await plugin.stop(), 0, 'daemon exit code after SIGTERM');
  assert.equal(existsSync(join(plugin.pluginDir, 'lanplug-macvlan.sock')), false, 'socket removed at shutdown');
  assert.equal(existsSync(join(plugin.pluginDir, 'lanplug-ipvlan.sock')), false, 'socket removed at shutdown');
  // The running container is untouched by the daemon's absence.
  host.dockerOk(['exec', 'before', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);

  plugin = await startLanplug(host, { stateDir: plugin.stateDir });
  host.dockerOk(['run', '-dit', '--network', 'kept', '--name', 'after', 'alpine:latest', 'ash']);
  assert.equal(containerNetwork(host, 'after', 'kept').MacAddress, '02:42:ac:10:56:03');
  host.dockerOk(['exec', 'after', 'ping', '-c', '1', '-W', '2', '172.16.86.2']);
  host.dockerOk(['rm', '-f', 'before', 'after']);
  host.dockerOk(['network', 'rm', 'kept']);
  assertNoLanplugLinks(host);
});
