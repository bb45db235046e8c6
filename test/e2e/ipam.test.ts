/**
 * The `lanplug` IPAM driver with a real dockerd: the seed's commands with
 * `--ipam-driver lanplug` added give the same addresses as Docker's default
 * IPAM; 50 concurrent runs get 50 distinct addresses; a restarted daemon
 * keeps its pools and addresses; errors come in Docker's wording; a
 * `lanplug.identity` reservation keeps its address for its name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startLanplug } from '../lab/lanplug';
import { run as runProcess, sleep } from '../lab/proc';
import type { IdentityRow } from '../../src/observe/listing';
import { repoRoot } from '../support/repo';
import { assertNoLanplugLinks, containerNetwork, useLab } from './helpers';

const lab = useLab({ addresses: ['172.16.86.1/24', '192.168.32.254/24', '2001:db8:abc8::10/64'] });

function run(network: string, name: string, extra: string[] = []): void {
  lab.host.dockerOk(['run', '-d', '--network', network, ...extra, '--name', name, 'alpine:latest', 'sleep', '3600']);
}

test('the seed bridge tutorial with --ipam-driver lanplug: the same addresses, MAC and gateway [engine:lanplug-ipam]', () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    'my-macvlan-net',
  ]);
  const [inspected] = JSON.parse(lab.host.dockerOk(['network', 'inspect', 'my-macvlan-net'])) as {
    IPAM: { Driver: string; Config: unknown };
  }[];
  assert.equal(inspected?.IPAM.Driver, 'lanplug');
  assert.deepEqual(inspected?.IPAM.Config, [{ Subnet: '172.16.86.0/24', Gateway: '172.16.86.1' }]);
  lab.host.dockerOk([
    'run',
    '--rm',
    '-dit',
    '--network',
    'my-macvlan-net',
    '--name',
    'my-macvlan-alpine',
    'alpine:latest',
    'ash',
  ]);
  const net = containerNetwork(lab.host, 'my-macvlan-alpine', 'my-macvlan-net');
  assert.equal(net.IPAddress, '172.16.86.2');
  assert.equal(net.MacAddress, '02:42:ac:10:56:02');
  assert.equal(net.Gateway, '172.16.86.1');
  lab.host.dockerOk(['exec', 'my-macvlan-alpine', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
  lab.host.dockerOk(['rm', '-f', 'my-macvlan-alpine']);
  lab.host.dockerOk(['network', 'rm', 'my-macvlan-net']);
  assertNoLanplugLinks(lab.host);
});

test("the seed's macnet32 (--ip-range, --aux-address) and --ip with --ipam-driver lanplug; Docker's wording for an address in use [engine:lanplug-ipam]", () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=192.168.32.0/24',
    '--ip-range=192.168.32.128/25',
    '--gateway=192.168.32.254',
    '--aux-address=my-router=192.168.32.129',
    '-o',
    'parent=eth0',
    'macnet32',
  ]);
  run('macnet32', 'm1');
  run('macnet32', 'm2');
  assert.equal(containerNetwork(lab.host, 'm1', 'macnet32').IPAddress, '192.168.32.128');
  assert.equal(containerNetwork(lab.host, 'm2', 'macnet32').IPAddress, '192.168.32.130');
  run('macnet32', 'pinned', ['--ip', '192.168.32.200']);
  assert.equal(containerNetwork(lab.host, 'pinned', 'macnet32').IPAddress, '192.168.32.200');
  const taken = lab.host.docker([
    'run',
    '-d',
    '--network',
    'macnet32',
    '--ip',
    '192.168.32.200',
    '--name',
    'again',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  assert.notEqual(taken.status, 0);
  assert.match(taken.stderr, /Address already in use/);
  lab.host.dockerOk(['exec', 'm2', 'ping', '-c', '1', '-W', '2', '192.168.32.254']);
});

test('dual stack with --ipam-driver lanplug: IPv4 and IPv6 addresses and gateways as with the default IPAM', () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--ipv6',
    '--subnet=192.168.216.0/24',
    '--gateway=192.168.216.1',
    '--subnet=2001:db8:abc8::/64',
    '--gateway=2001:db8:abc8::10',
    '-o',
    'parent=eth0',
    'dual',
  ]);
  run('dual', 'd1');
  const net = containerNetwork(lab.host, 'd1', 'dual');
  assert.equal(net.IPAddress, '192.168.216.2');
  assert.equal(net.GlobalIPv6Address, '2001:db8:abc8::1');
  assert.equal(net.IPv6Gateway, '2001:db8:abc8::10');
});

test('50 concurrent docker run with the lanplug IPAM get 50 distinct addresses; a restarted daemon keeps them', async () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    'many',
  ]);
  const results = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      lab.host
        .dockerAsync(['run', '-d', '--network', 'many', '--name', `n${i}`, 'alpine:latest', 'sleep', '3600'])
        .then((r) => r.code),
    ),
  );
  assert.deepEqual(
    results.filter((c) => c !== 0),
    [],
  );
  const addresses = new Set(
    Array.from({ length: 50 }, (_, i) => containerNetwork(lab.host, `n${i}`, 'many').IPAddress),
  );
  assert.equal(addresses.size, 50);
  await lab.plugin.stop();
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  run('many', 'after');
  const after = containerNetwork(lab.host, 'after', 'many').IPAddress;
  assert.equal(addresses.has(after), false, `${after} was already given out`);
  assert.equal(after, '172.16.86.52');
});

test('--aux-address entries stay reserved through the periodic check: docker run --ip of one is refused after passes with no grace', async () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '--aux-address=my-router=172.16.86.129',
    '-o',
    'parent=eth0',
    'reserved',
  ]);
  run('reserved', 'pinned', ['--ip', '172.16.86.7']);
  // The check (orphan claims among it) every second, a claim counting from its first second.
  await lab.plugin.stop();
  lab.plugin = await startLanplug(lab.host, {
    stateDir: lab.plugin.stateDir,
    args: ['--recheck-interval', '1', '--grace-seconds', '0'],
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    assert.doesNotMatch(lab.plugin.stderr(), /freed an address no endpoint holds/);
    const r = lab.host.docker(['run', '-d', '--network', 'reserved', '--ip', '172.16.86.129', 'alpine:latest', 'true']);
    assert.notEqual(r.status, 0, 'the aux address must stay reserved');
    assert.match(r.stderr, /Address already in use/);
    assert.equal(containerNetwork(lab.host, 'pinned', 'reserved').IPAddress, '172.16.86.7');
  } finally {
    await lab.plugin.stop();
    lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  }
});

test("--ipam-driver lanplug with lanplug.identity: the name's MAC across docker rm -f + docker run; without --ip the IPAM, which hears no name on 20.10, gives another address (the reservation keeps the first from filler); --mac-address wins", () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=192.168.32.0/24',
    '--gateway=192.168.32.254',
    '-o',
    'parent=eth0',
    'named',
  ]);
  const identity = ['--network', 'name=named,driver-opt=lanplug.identity=web1'];
  lab.host.dockerOk(['run', '-d', ...identity, '--name', 'web', 'alpine:latest', 'sleep', '3600']);
  const first = containerNetwork(lab.host, 'web', 'named');
  assert.equal(first.MacAddress, '9a:ea:7f:c1:5d:5c');
  lab.host.dockerOk(['rm', '-f', 'web']);
  run('named', 'filler');
  assert.notEqual(containerNetwork(lab.host, 'filler', 'named').IPAddress, first.IPAddress, 'kept for web1');
  lab.host.dockerOk(['run', '-d', ...identity, '--name', 'web', 'alpine:latest', 'sleep', '3600']);
  const again = containerNetwork(lab.host, 'web', 'named');
  assert.equal(again.MacAddress, '9a:ea:7f:c1:5d:5c');
  assert.notEqual(again.IPAddress, first.IPAddress, 'no --ip: the IPAM cannot tell it is web1');
  lab.host.dockerOk(['exec', 'web', 'ping', '-c', '1', '-W', '2', '192.168.32.254']);
  lab.host.dockerOk(['rm', '-f', 'web']);
  lab.host.dockerOk([
    'run',
    '-d',
    ...identity,
    '--mac-address',
    '02:11:22:33:44:56',
    '--name',
    'web',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  assert.equal(containerNetwork(lab.host, 'web', 'named').MacAddress, '02:11:22:33:44:56');
});

/** The lanplug CLI against this lab's daemon, as an operator runs it. */
function lanplug(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  return runProcess([
    process.execPath,
    join(repoRoot(), 'bin', 'lanplug'),
    ...args,
    '--state-dir',
    lab.plugin.stateDir,
  ]);
}

function reservations(): IdentityRow[] {
  const r = lanplug(['ls', '--identities', '--json']);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as IdentityRow[];
}

test('--ipam-driver lanplug with lanplug.identity on 20.10: a reservation listed by lanplug ls, kept across a daemon restart and from automatic allocation, taken again with --ip under its name only; lanplug forget and --identity-expire free it', async () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=192.168.32.0/24',
    '--gateway=192.168.32.254',
    '-o',
    'parent=eth0',
    'resv',
  ]);
  const as = (identity: string): string[] => ['--network', `name=resv,driver-opt=lanplug.identity=${identity}`];
  lab.host.dockerOk(['run', '-d', ...as('web'), '--name', 'web', 'alpine:latest', 'sleep', '3600']);
  const first = containerNetwork(lab.host, 'web', 'resv');
  assert.equal(first.IPAddress, '192.168.32.1');
  const [held] = reservations();
  assert.equal(held?.name, 'web');
  assert.equal(held?.network, 'resv');
  assert.equal(held?.ipv4, first.IPAddress);
  assert.equal(held?.mac, first.MacAddress);
  assert.equal(held?.heldBy?.containerName?.replace(/^\//, ''), 'web');
  assert.match(lanplug(['ls', '--identities']).stdout, /^resv +web +[0-9a-f:]{17} +192\.168\.32\.1 +web +held$/m);
  lab.host.dockerOk(['rm', '-f', 'web']);

  // Kept across a restart of the daemon, idle; another container's automatic allocation passes it by.
  await lab.plugin.stop();
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  const [idle] = reservations();
  assert.equal(idle?.ipv4, '192.168.32.1');
  assert.equal(idle?.heldBy, null);
  assert.notEqual(idle?.expires, null);
  run('resv', 'other');
  assert.equal(containerNetwork(lab.host, 'other', 'resv').IPAddress, '192.168.32.2');

  // 20.10 names nobody in its IPAM request: --ip of the reserved address, refused under another name...
  const ip = ['--ip', '192.168.32.1'];
  const intruder = lab.host.docker([
    'run',
    '-d',
    ...as('intruder'),
    ...ip,
    '--name',
    'intruder',
    'alpine:latest',
    'true',
  ]);
  assert.notEqual(intruder.status, 0);
  assert.match(
    intruder.stderr,
    /address 192\.168\.32\.1 is reserved for lanplug\.identity=web on network [0-9a-f]{12} \(no container has held it since [^)]+\): run that container with --driver-opt lanplug\.identity=web, or free the address with lanplug forget [0-9a-f]{12} web/,
  );
  lab.host.docker(['rm', '-f', 'intruder']);
  // ...and taken under its own: the same address and MAC as before.
  lab.host.dockerOk(['run', '-d', ...as('web'), ...ip, '--name', 'web', 'alpine:latest', 'sleep', '3600']);
  const again = containerNetwork(lab.host, 'web', 'resv');
  assert.deepEqual([again.IPAddress, again.MacAddress], [first.IPAddress, first.MacAddress]);

  // lanplug forget: refused while web holds it; once web is gone, the address is anyone's.
  const refused = lanplug(['forget', 'resv', 'web']);
  assert.notEqual(refused.status, 0);
  assert.match(
    refused.stderr,
    /lanplug\.identity=web on network [0-9a-f]{12} is held by endpoint [0-9a-f]{12}: remove its container first/,
  );
  lab.host.dockerOk(['rm', '-f', 'web']);
  const forgot = lanplug(['forget', 'resv', 'web']);
  assert.equal(forgot.status, 0, forgot.stderr);
  assert.equal(forgot.stdout, 'forgot lanplug.identity=web on resv: 192.168.32.1 free again\n');
  assert.deepEqual(reservations(), []);
  run('resv', 'third');
  assert.equal(containerNetwork(lab.host, 'third', 'resv').IPAddress, '192.168.32.1');

  // Expiry: idle for --identity-expire, the periodic check drops it and frees its address.
  await lab.plugin.stop();
  lab.plugin = await startLanplug(lab.host, {
    stateDir: lab.plugin.stateDir,
    args: ['--identity-expire', '2s', '--recheck-interval', '1'],
  });
  try {
    lab.host.dockerOk(['run', '-d', ...as('short'), '--name', 'short', 'alpine:latest', 'sleep', '3600']);
    const address = containerNetwork(lab.host, 'short', 'resv').IPAddress;
    assert.equal(address, '192.168.32.3');
    lab.host.dockerOk(['rm', '-f', 'short']);
    assert.equal(reservations()[0]?.ipv4, address);
    const deadline = Date.now() + 10_000;
    while (reservations().length > 0 && Date.now() < deadline) await sleep(500);
    assert.deepEqual(reservations(), [], 'expired after 2 s idle');
    run('resv', 'fourth');
    assert.equal(containerNetwork(lab.host, 'fourth', 'resv').IPAddress, address);
  } finally {
    await lab.plugin.stop();
    lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  }
});
