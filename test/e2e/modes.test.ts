/**
 * macvlan modes as a user sees them: who can reach whom.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertNoLanplugLinks, containerNetwork, useLab } from './helpers';

const lab = useLab({ addresses: ['172.16.86.1/24'] });

function network(mode: string): void {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    '-o',
    `macvlan_mode=${mode}`,
    'net',
  ]);
  lab.host.dockerOk(['run', '-dit', '--network', 'net', '--name', 'ca', 'alpine:latest', 'ash']);
  lab.host.dockerOk(['run', '-dit', '--network', 'net', '--name', 'cb', 'alpine:latest', 'ash']);
  assert.equal(containerNetwork(lab.host, 'cb', 'net').IPAddress, '172.16.86.3');
}

function ping(from: string, to: string): boolean {
  return lab.host.docker(['exec', from, 'ping', '-c', '1', '-W', '1', to]).status === 0;
}

function teardown(): void {
  lab.host.dockerOk(['rm', '-f', 'ca', 'cb']);
  lab.host.dockerOk(['network', 'rm', 'net']);
  assertNoLanplugLinks(lab.host);
}

test('bridge mode: two containers reach each other and the LAN [engine:macvlan-modes]', () => {
  network('bridge');
  assert.ok(ping('ca', '172.16.86.3'), 'a -> b');
  assert.ok(ping('cb', '172.16.86.2'), 'b -> a');
  assert.ok(ping('ca', '172.16.86.1'), 'a -> gateway');
  teardown();
});

test('private mode: containers are kept apart but reach the LAN [engine:macvlan-modes]', () => {
  network('private');
  assert.ok(ping('ca', '172.16.86.1'), 'a -> gateway');
  assert.ok(ping('cb', '172.16.86.1'), 'b -> gateway');
  assert.ok(!ping('ca', '172.16.86.3'), 'a must not reach b in private mode');
  teardown();
});

test('vepa mode: container to container only through the LAN switch, with hairpin on [engine:macvlan-modes]', () => {
  network('vepa');
  lab.host.setHairpin(false);
  assert.ok(ping('ca', '172.16.86.1'), 'a -> gateway');
  assert.ok(!ping('ca', '172.16.86.3'), 'without hairpin the switch does not send the frame back');
  lab.host.setHairpin(true);
  try {
    assert.ok(ping('ca', '172.16.86.3'), 'a -> b through the hairpin port');
  } finally {
    lab.host.setHairpin(false);
  }
  teardown();
});

test('passthru mode: the sole container owns the parent and reaches the LAN; a second one is refused [engine:macvlan-modes]', () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    '-o',
    'macvlan_mode=passthru',
    'net',
  ]);
  lab.host.dockerOk(['run', '-dit', '--network', 'net', '--name', 'ca', 'alpine:latest', 'ash']);
  assert.ok(ping('ca', '172.16.86.1'), 'a -> gateway');
  const second = lab.host.docker(['run', '-dit', '--network', 'net', '--name', 'cb', 'alpine:latest', 'ash']);
  assert.notEqual(second.status, 0);
  assert.match(
    second.stderr,
    /is in mode passthru and parent eth0 is already given to endpoint [0-9a-f]{12}; passthru allows one container per parent/,
  );
  lab.host.docker(['rm', '-f', 'cb']);
  lab.host.dockerOk(['rm', '-f', 'ca']);
  lab.host.dockerOk(['network', 'rm', 'net']);
  assertNoLanplugLinks(lab.host);
});
