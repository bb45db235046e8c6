/**
 * Host access with a real dockerd: the kernel keeps a macvlan parent from
 * talking to its own children, so without `-o host_access=true` the Docker
 * host cannot reach its containers (the negative control proves the lab is
 * honest); with it, the host pings them and fetches a page from them, they
 * reach the host and the LAN, over IPv4 and IPv6, on two networks at once,
 * across daemon restarts and kill -9 — and `docker network rm` leaves the
 * host's addresses and routes exactly as they were.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { createLan, type Lan } from '../lab/lan';
import { startLanplug, type Lanplug } from '../lab/lanplug';
import { repoRoot } from '../support/repo';
import { reportEngineOfTaggedTests } from '../support/engine-proof';
import { assertNoLanplugLinks, containerNetwork, eventually, resetDocker } from './helpers';

// Its tagged tests name the engine they ran on, as those of a useLab file do.
reportEngineOfTaggedTests();

let lan: Lan;
let host: DockerHost;
let plugin: Lanplug;

before(async () => {
  lan = createLan({ addresses: ['172.16.86.1/24', '192.168.32.1/24', '2001:db8:86::1/64'] });
  // The host's own LAN addresses, as a real host has them: host access must leave them alone.
  host = await createDockerHost(lan, { addresses: ['172.16.86.5/24', '2001:db8:86::5/64'] });
  plugin = await startLanplug(host);
});
after(async () => {
  await plugin?.stop();
  lan?.destroy();
});

const HTTPD = ['sh', '-c', 'mkdir -p /www && echo hello from $(hostname) > /www/index.html && httpd -f -p 80 -h /www'];

function hostPing(address: string): boolean {
  const v6 = address.includes(':');
  return host.exec(['/bin/busybox', v6 ? 'ping6' : 'ping', '-c', '1', '-W', '2', address]).status === 0;
}

function snapshot(): string {
  const show = (args: string[]): string => host.execOk(['ip', ...args]).replace(/^\s+valid_lft.*$/gm, '');
  return [show(['-o', 'addr']), show(['route']), show(['-6', 'route'])].join('\n---\n');
}

function lanplugRoutes(): string[] {
  return [
    ...host.execOk(['ip', 'route', 'show', 'proto', '76']).split('\n'),
    ...host.execOk(['ip', '-6', 'route', 'show', 'proto', '76']).split('\n'),
  ]
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .sort();
}

function lanplug(args: string[]): string {
  const r = host.exec([process.execPath, join(repoRoot(), 'bin', 'lanplug'), ...args]);
  return r.stdout + r.stderr;
}

function shims(): string[] {
  return host
    .execOk(['ip', '-o', 'link', 'show'])
    .split('\n')
    .flatMap((l) => /^\d+: (lh-[^@:]+)/.exec(l)?.[1] ?? []);
}

test('negative control: without host_access the Docker host cannot reach its own container (the kernel restriction)', () => {
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    'plain',
  ]);
  host.dockerOk(['run', '-d', '--network', 'plain', '--name', 'c0', 'alpine:latest', 'sleep', '3600']);
  assert.equal(hostPing('172.16.86.1'), true, 'the host itself is on the LAN');
  assert.equal(
    hostPing(containerNetwork(host, 'c0', 'plain').IPAddress),
    false,
    'the parent does not talk to its children',
  );
  resetDocker(host);
});

test('host access: the host reaches the containers (ping, http, IPv6), they reach it and the LAN, on two networks at once; the host is as before after network rm [engine:host-access]', async () => {
  const before = snapshot();
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '--ip-range=172.16.86.32/27',
    '--aux-address',
    'host=172.16.86.254',
    '--ipv6',
    '--subnet=2001:db8:86::/64',
    '--gateway=2001:db8:86::1',
    '--aux-address',
    'host6=2001:db8:86::fe',
    '-o',
    'parent=eth0',
    '-o',
    'host_access=true',
    'reach',
  ]);
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=192.168.32.0/24',
    '--gateway=192.168.32.1',
    '--aux-address',
    'host=192.168.32.254',
    '-o',
    'parent=eth0',
    '-o',
    'host_access=true',
    'reach2',
  ]);
  host.dockerOk(['run', '-d', '--network', 'reach', '--name', 'web', 'alpine:latest', ...HTTPD]);
  const web = containerNetwork(host, 'web', 'reach');
  assert.equal(web.IPAddress, '172.16.86.32');
  await eventually(() => assert.equal(hostPing(web.IPAddress), true), 10_000);
  await eventually(
    () =>
      assert.match(host.execOk(['/bin/busybox', 'wget', '-q', '-O', '-', `http://${web.IPAddress}/`]), /^hello from /),
    10_000,
  );
  await eventually(() => assert.equal(hostPing(web.GlobalIPv6Address), true, 'IPv6'), 10_000);
  host.dockerOk(['exec', 'web', 'ping', '-c', '1', '-W', '2', '172.16.86.254']);
  host.dockerOk(['exec', 'web', 'ping6', '-c', '1', '-W', '2', '2001:db8:86::fe']);
  host.dockerOk(['exec', 'web', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
  assert.equal(hostPing('172.16.86.1'), true, 'the host still reaches the LAN');
  assert.equal(hostPing('2001:db8:86::1'), true, 'over IPv6 too');
  // A container started later, and one on the second network, at the same time.
  host.dockerOk(['run', '-d', '--network', 'reach', '--name', 'later', 'alpine:latest', 'sleep', '3600']);
  host.dockerOk(['run', '-d', '--network', 'reach2', '--name', 'other', 'alpine:latest', 'sleep', '3600']);
  await eventually(() => assert.equal(hostPing(containerNetwork(host, 'later', 'reach').IPAddress), true), 10_000);
  await eventually(() => assert.equal(hostPing(containerNetwork(host, 'other', 'reach2').IPAddress), true), 10_000);
  assert.deepEqual(shims().length, 2);
  const routes = lanplugRoutes();
  assert.equal(routes.length, 5, routes.join('\n')); // web and later: v4 and v6; other: v4
  const doctor = lanplug([
    'doctor',
    '--state-dir',
    plugin.stateDir,
    '--plugin-dir',
    '/run/docker/plugins',
    '--docker-host',
    `unix://${host.sock}`,
  ]);
  assert.match(
    doctor,
    /^✔ host access [0-9a-f]{12}: shim lh-[0-9a-f]{12} on eth0 holds 172\.16\.86\.254\/32, 2001:db8:86::fe\/128; routes to 4 of 4 container addresses \(/m,
  );
  assert.match(
    doctor,
    /^✔ host access [0-9a-f]{12}: shim lh-[0-9a-f]{12} on eth0 holds 192\.168\.32\.254\/32; routes to 1 of 1 container addresses/m,
  );
  // Restarts: a clean one, then kill -9; nothing doubled, everything still reachable.
  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    process.kill(plugin.pid, how);
    await plugin.stop();
    plugin = await startLanplug(host, { stateDir: plugin.stateDir });
    assert.deepEqual(lanplugRoutes(), routes, `routes after ${how}`);
    assert.equal(shims().length, 2);
    assert.equal(hostPing(web.IPAddress), true);
    assert.equal(hostPing(containerNetwork(host, 'other', 'reach2').IPAddress), true);
  }
  const gc = host.exec([
    process.execPath,
    join(repoRoot(), 'bin', 'lanplug'),
    'gc',
    '--state-dir',
    plugin.stateDir,
    '--docker-host',
    `unix://${host.sock}`,
  ]);
  const daemonState = (): string =>
    `the daemon is ${plugin.running ? 'running' : `gone (${String(plugin.exitCode)}, ${String(plugin.exitSignal)})`}; the daemons' stderr:\n${readdirSync(
      host.dir,
    )
      .filter((f) => /^lanplug-\d+\.stderr\.log$/.test(f))
      .map((f) => `${f}:\n${readFileSync(join(host.dir, f), 'utf8').split('\n').slice(-8).join('\n')}`)
      .join('\n')}`;
  assert.match(
    gc.stdout,
    /0 actions, 0 failed$/m,
    `nothing for gc to do; it said: ${gc.stdout}${gc.stderr}; ${daemonState()}`,
  );
  host.dockerOk(['rm', '-f', 'web', 'later', 'other']);
  assert.deepEqual(lanplugRoutes(), [], `the routes go with the endpoints; ${daemonState()}`);
  host.dockerOk(['network', 'rm', 'reach', 'reach2']);
  assertNoLanplugLinks(host);
  assert.deepEqual(shims(), []);
  assert.equal(snapshot(), before, 'addresses and routes exactly as before');
});

test('the parent deleted and made again: the shim is made again, and the host reaches new containers', async () => {
  resetDocker(host);
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '--aux-address',
    'host=172.16.86.254',
    '-o',
    'parent=eth0',
    '-o',
    'host_access=true',
    'back',
  ]);
  host.dockerOk(['run', '-d', '--network', 'back', '--name', 'b1', 'alpine:latest', 'sleep', '3600']);
  host.execOk(['ip', 'link', 'del', 'eth0']); // the shim and b1's link go with it
  assert.deepEqual(shims(), []);
  lan.plug(host.port, host.ns);
  for (const address of ['172.16.86.5/24', '2001:db8:86::5/64'])
    host.execOk(['ip', 'addr', 'add', address, 'dev', 'eth0', ...(address.includes(':') ? ['nodad'] : [])]);
  assert.match(
    lanplug(['gc', '--state-dir', plugin.stateDir, '--docker-host', `unix://${host.sock}`]),
    /^create-shim lh-[0-9a-f]{12}: .* — done$/m,
  );
  host.dockerOk(['run', '-d', '--network', 'back', '--name', 'b2', 'alpine:latest', 'sleep', '3600']);
  await eventually(() => assert.equal(hostPing(containerNetwork(host, 'b2', 'back').IPAddress), true), 10_000);
  resetDocker(host);
  assertNoLanplugLinks(host);
  assert.deepEqual(shims(), []);
});

test('bad host access input: one line each, nothing created', () => {
  resetDocker(host);
  const create = (extra: string[]): string => {
    const r = host.docker([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      '-o',
      'host_access=true',
      ...extra,
      'bad',
    ]);
    assert.notEqual(r.status, 0);
    return r.stderr.trim();
  };
  assert.equal(
    create([]),
    "Error response from daemon: NetworkDriver.CreateNetwork: -o host_access=true needs the host's own IPv4 address on this network: add --aux-address host=<an unused address in 172.16.86.0/24>",
  );
  assert.equal(
    create(['--aux-address', 'host=172.16.86.254', '-o', 'macvlan_mode=vepa']),
    'Error response from daemon: NetworkDriver.CreateNetwork: -o host_access=true needs macvlan_mode=bridge: in vepa mode siblings reach each other only through an external switch that hairpins, so the shim would not reach the containers',
  );
  // Docker itself refuses an aux address outside the subnet, before lanplug is asked.
  assert.match(create(['--aux-address', 'host=10.0.0.5']), /no matching subnet for aux-address 10\.0\.0\.5/);
  assert.doesNotMatch(host.dockerOk(['network', 'ls']), /\bbad\b/);
  assert.deepEqual(shims(), []);
  assertNoLanplugLinks(host);
});
