/**
 * Runs inside the full-kernel VM: conflict checks on an ipvlan parent, where
 * lanplug probes from the parent itself (every frame, ETH_P_ALL: the ipvlan
 * rx handler takes frames before a protocol's packet socket would see them).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LanHost } from '../../lab/lan';
import { containerNetwork, useLab } from '../../e2e/helpers';

const lab = useLab({ addresses: ['192.168.210.254/24'] });
let foreign: LanHost;

before(() => {
  foreign = lab.lan.addLanHost('nas', ['192.168.210.2/24']);
});

test('ipvlan l2 with --ipam-driver lanplug skips an address a LAN device holds; an explicit --ip of it is refused', () => {
  const mac = /link\/ether ([0-9a-f:]{17})/.exec(foreign.execOk(['ip', 'link', 'show', 'eth0']))?.[1] ?? '?';
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=192.168.210.0/24',
    '--gateway=192.168.210.254',
    '-o',
    'parent=eth0',
    'iv',
  ]);
  lab.host.dockerOk(['run', '-d', '--network', 'iv', '--name', 'first', 'alpine:latest', 'sleep', '3600']);
  assert.equal(containerNetwork(lab.host, 'first', 'iv').IPAddress, '192.168.210.1');
  lab.host.dockerOk(['run', '-d', '--network', 'iv', '--name', 'second', 'alpine:latest', 'sleep', '3600']);
  assert.equal(containerNetwork(lab.host, 'second', 'iv').IPAddress, '192.168.210.3', '.2 is the NAS');
  const refused = lab.host.docker([
    'run',
    '-d',
    '--network',
    'iv',
    '--ip',
    '192.168.210.2',
    '--name',
    'pinned',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  assert.notEqual(refused.status, 0);
  assert.match(
    refused.stderr,
    new RegExp(`address 192\\.168\\.210\\.2 is in use on the LAN by ${mac} \\(it answered an ARP probe on eth0\\)`),
  );
});
