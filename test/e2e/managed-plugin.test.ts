/**
 * lanplug as managed Docker plugins, built offline by a lanplug installed
 * from the `npm pack` tarball (no source tree), created in a real dockerd on
 * a lab LAN: `docker plugin ls` shows them, the
 * seed tutorial works with `-d lanplug/macvlan:latest`, the ipvlan plugin
 * relays to the one that holds the state directory, settings change while
 * disabled, a dockerd restart brings plugins, networks and a
 * `--restart=always` container back, an upgrade keeps the network and the
 * container's address, and removal leaves only the state directory.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { createLan, type Lan, type LanHost } from '../lab/lan';
import { startLanplug } from '../lab/lanplug';
import { run, runOk } from '../lab/proc';
import { installPackedLanplug, type PackedInstall } from '../support/package';
import { repoRoot } from '../support/repo';
import { reportEngineOfTaggedTests } from '../support/engine-proof';
import { assertNoLanplugLinks, containerNetwork, eventually, lines } from './helpers';

// Its tagged tests name the engine they ran on, as those of a useLab file do.
reportEngineOfTaggedTests();

const MACVLAN = 'lanplug/macvlan:latest';
const IPVLAN = 'lanplug/ipvlan:latest';

let lan: Lan;
let host: DockerHost;
let peer: LanHost;
let stateDir: string;
let installed: PackedInstall;

/** `lanplug <args>` as installed from the tarball, talking to the lab host's dockerd. */
function lanplug(args: readonly string[]): ReturnType<typeof run> {
  return run([process.execPath, installed.bin, ...args, '--docker-host', `unix://${host.sock}`], {
    timeoutMs: 600_000,
  });
}

function lanplugOk(args: readonly string[]): string {
  const result = lanplug(args);
  assert.equal(result.status, 0, `lanplug ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

interface PluginLs {
  Name: string;
  Enabled: boolean;
  Id: string;
}

/** `docker network create -d DRIVER OPTIONS… -o parent=eth0 NAME`: every network here is on the lab's eth0. */
function networkCreate(driver: string, name: string, options: readonly string[]): string[] {
  return ['network', 'create', '-d', driver, ...options, '-o', 'parent=eth0', name];
}

function plugins(): PluginLs[] {
  return JSON.parse(
    host.dockerOk(['plugin', 'inspect', ...lines(host.dockerOk(['plugin', 'ls', '-q']))]),
  ) as PluginLs[];
}

before(async () => {
  lan = createLan({ addresses: ['172.16.86.1/24'] });
  host = await createDockerHost(lan);
  peer = lan.addLanHost('peer', ['172.16.86.10/24']);
  stateDir = join(lan.dir, 'managed-state');
  installed = installPackedLanplug(join(lan.dir, 'pack'));
});

after(() => {
  if (host !== undefined) lanplug(['plugin', 'remove']);
  lan?.destroy();
});

test('plugin build: both plugins are made offline, created and enabled; docker plugin ls shows them', () => {
  const out = lanplugOk(['plugin', 'build', '--state-dir', stateDir]);
  process.stdout.write(`# ${out.trim().split('\n').join('\n# ')}\n`);
  assert.match(out, /^created lanplug\/macvlan:latest$/m);
  assert.match(out, /^enabled lanplug\/ipvlan:latest in \d+\.\d+ s$/m);
  const ls = host.dockerOk(['plugin', 'ls', '--format', '{{.Name}} {{.Enabled}} {{.Description}}']);
  assert.match(ls, /^lanplug\/macvlan:latest true lanplug \d+\.\d+\.\d+: macvlan networks/m);
  assert.match(ls, /^lanplug\/ipvlan:latest true lanplug \d+\.\d+\.\d+: ipvlan networks/m);
  // The state directory was made root-only, and one of the two plugins holds it.
  assert.equal(fs.statSync(stateDir).mode & 0o777, 0o700);
  assert.match(
    fs.readFileSync(join(stateDir, 'lanplug.lock'), 'utf8'),
    /^\d+\nplugin lanplug\/(macvlan|ipvlan):latest\n$/,
  );
  // A second build of the same tag is refused: an upgrade is what replaces a plugin.
  const again = lanplug(['plugin', 'build', '--state-dir', stateDir]);
  assert.equal(again.status, 1);
  assert.match(
    again.stderr,
    /plugin lanplug\/macvlan:latest exists already; to replace it with this build: lanplug plugin upgrade/,
  );
});

test('the seed tutorial with -d lanplug/macvlan:latest; the ipvlan plugin serves through the one holding the state [engine:managed-plugin]', () => {
  host.dockerOk(networkCreate(MACVLAN, 'my-macvlan-net', ['--subnet=172.16.86.0/24', '--gateway=172.16.86.1']));
  assert.match(
    host.dockerOk(['network', 'ls']),
    /^[0-9a-f]{12}\s+my-macvlan-net\s+lanplug\/macvlan:latest\s+local\s*$/m,
  );
  host.dockerOk([
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
  const net = containerNetwork(host, 'my-macvlan-alpine', 'my-macvlan-net');
  assert.equal(net.IPAddress, '172.16.86.2');
  assert.equal(net.Gateway, '172.16.86.1');
  assert.equal(net.MacAddress, '02:42:ac:10:56:02');
  assert.match(host.dockerOk(['exec', 'my-macvlan-alpine', 'ip', 'addr', 'show', 'eth0']), /inet 172\.16\.86\.2\/24/);
  host.dockerOk(['exec', 'my-macvlan-alpine', 'ping', '-c', '1', '-W', '2', '172.16.86.10']);
  peer.execOk(['/bin/busybox', 'ping', '-c', '1', '-W', '2', '172.16.86.2']);
  assert.match(
    runOk([process.execPath, join(repoRoot(), 'bin', 'lanplug'), 'status', '--state-dir', stateDir]),
    /my-macvlan-net|172\.16\.86\.2/,
  );

  // doctor, from the host, finds the daemon in the plugin and asks its sockets.
  const doctor = host.exec([
    process.execPath,
    join(repoRoot(), 'bin', 'lanplug'),
    'doctor',
    '--state-dir',
    stateDir,
    '--docker-host',
    `unix://${host.sock}`,
  ]).stdout;
  process.stdout.write(`# ${doctor.trim().split('\n').join('\n# ')}\n`);
  assert.match(doctor, /✔ daemon: running: the managed Docker plugin lanplug\/(macvlan|ipvlan):latest/);
  assert.match(doctor, /✔ socket lanplug\/macvlan \(managed\): \S+\/managed\/lanplug-macvlan\.sock answers/);
  assert.match(doctor, /✔ socket lanplug\/ipvlan \(managed\): \S+ answers/);

  // The other plugin's IPAM driver: its calls are relayed to the daemon that holds the state directory.
  host.dockerOk(networkCreate(MACVLAN, 'via-ipam', ['--ipam-driver', IPVLAN, '--subnet=192.168.40.0/24']));
  host.dockerOk(['run', '--rm', '-d', '--network', 'via-ipam', '--name', 'ipam-user', 'alpine:latest', 'sleep', '600']);
  assert.match(containerNetwork(host, 'ipam-user', 'via-ipam').IPAddress, /^192\.168\.40\.\d+$/);
  // ...and its network driver calls too: the daemon's own answer, from the state it keeps (eth0 carries macvlan links).
  const ipvlan = host.docker(networkCreate(IPVLAN, 'ipv', ['--subnet=192.168.41.0/24']));
  assert.notEqual(ipvlan.status, 0);
  assert.match(
    ipvlan.stderr,
    /NetworkDriver\.CreateNetwork: macvlan network [0-9a-f]{12} is already using parent interface eth0; the kernel cannot hold macvlan and ipvlan links on one parent/,
  );

  // A DHCP network needs the host install: refused in one line, nothing made.
  const dhcp = host.docker(networkCreate(MACVLAN, 'dh', ['--ipam-driver', 'null', '-o', 'dhcp=true']));
  assert.notEqual(dhcp.status, 0);
  assert.match(
    dhcp.stderr,
    /DHCP networks \(-o dhcp=true, --ipam-driver lanplug-dhcp\) need lanplug installed on the host \(lanplug install\), not the managed plugin lanplug\/macvlan:latest/,
  );

  host.dockerOk(['rm', '-f', 'ipam-user']);
  host.dockerOk(['container', 'stop', 'my-macvlan-alpine']);
  host.dockerOk(['network', 'rm', 'my-macvlan-net', 'via-ipam']);
  assertNoLanplugLinks(host);
});

test('a legacy daemon refuses the state directory a managed plugin holds, naming the plugin', () => {
  const mnt = host.mntNs;
  assert.ok(mnt);
  const result = host.exec([
    process.execPath,
    join(repoRoot(), 'bin', 'lanplug'),
    'daemon',
    '--state-dir',
    stateDir,
    '--plugin-dir',
    join(lan.dir, 'legacy-plugins'),
  ]);
  assert.equal(result.status, 1);
  assert.match(
    result.stderr,
    /^lanplug: the managed Docker plugin lanplug\/(macvlan|ipvlan):latest holds \S+lanplug\.lock: a managed and a legacy lanplug never share a state directory; disable the managed plugins first \(docker plugin disable lanplug\/macvlan:latest lanplug\/ipvlan:latest\)/m,
  );
});

test('a managed plugin enabled while a legacy daemon holds the directory: every command says so, also after that daemon stops, until the plugin is enabled again', async () => {
  host.dockerOk(['plugin', 'disable', IPVLAN]);
  host.dockerOk(['plugin', 'disable', MACVLAN]);
  const legacy = await startLanplug(host, { stateDir, pluginDir: join(lan.dir, 'legacy-plugins') });
  try {
    host.dockerOk(['plugin', 'enable', MACVLAN]);
    const refused = host.docker(networkCreate(MACVLAN, 'refused', ['--subnet=172.16.86.0/24']));
    assert.notEqual(refused.status, 0);
    assert.match(
      refused.stderr,
      /NetworkDriver\.CreateNetwork: a lanplug daemon \(pid \d+\) outside Docker holds \S+lanplug\.lock: a managed and a legacy lanplug never share a state directory; stop it \(systemctl stop lanplug\.service .*lanplug-ipam\.socket lanplug-dhcp\.socket\), then disable and enable lanplug\/macvlan:latest; or give the plugin another directory \(docker plugin disable lanplug\/macvlan:latest, then docker plugin set lanplug\/macvlan:latest state\.source=DIR\)/,
    );
    assert.doesNotMatch(host.dockerOk(['network', 'ls']), /refused/);
  } finally {
    await legacy.stop();
  }
  // The plugin does not take the directory by itself (a service restarting must find it free).
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  const still = host.docker(networkCreate(MACVLAN, 'x', ['--subnet=172.16.86.0/24']));
  assert.match(still.stderr, /outside Docker holds/);
  host.dockerOk(['plugin', 'disable', MACVLAN]);
  host.dockerOk(['plugin', 'enable', MACVLAN]);
  host.dockerOk(['plugin', 'enable', IPVLAN]);
  host.dockerOk(networkCreate(MACVLAN, 'taken-over', ['--subnet=172.16.86.0/24']));
  host.dockerOk(['network', 'rm', 'taken-over']);
});

test('docker plugin set changes the log level while the plugins are disabled', async () => {
  const before = host.dockerdLog().length;
  host.dockerOk(['plugin', 'disable', MACVLAN]);
  host.dockerOk(['plugin', 'disable', IPVLAN]);
  host.dockerOk(['plugin', 'set', MACVLAN, 'LANPLUG_LOG=debug']);
  host.dockerOk(['plugin', 'set', IPVLAN, 'LANPLUG_LOG=debug']);
  host.dockerOk(['plugin', 'enable', MACVLAN]);
  host.dockerOk(['plugin', 'enable', IPVLAN]);
  host.dockerOk(networkCreate(MACVLAN, 'logged', ['--subnet=172.16.86.0/24', '--gateway=172.16.86.1']));
  // Debug logs one line per request; the plugin's stderr goes to dockerd's log.
  await eventually(() => assert.match(host.dockerdLog().slice(before), /NetworkDriver\.CreateNetwork/));
  host.dockerOk(['network', 'rm', 'logged']);
  const settings = JSON.parse(
    host.dockerOk(['plugin', 'inspect', MACVLAN, '--format', '{{json .Settings.Env}}']),
  ) as string[];
  assert.ok(settings.includes('LANPLUG_LOG=debug'), settings.join(' '));
});

test('dockerd restart: plugins enabled again, the network listed, a --restart=always container back with its address [engine:managed-plugin]', async () => {
  host.dockerOk(networkCreate(MACVLAN, 'lan', ['--subnet=172.16.86.0/24', '--gateway=172.16.86.1']));
  host.dockerOk([
    'run',
    '-d',
    '--restart=always',
    '--network',
    'lan',
    '--ip',
    '172.16.86.50',
    '--name',
    'always',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  host.stopDockerd();
  await host.startDockerdAgain();
  assert.deepEqual(
    plugins()
      .map((p) => `${p.Name} ${String(p.Enabled)}`)
      .sort(),
    [`${IPVLAN} true`, `${MACVLAN} true`],
  );
  assert.match(host.dockerOk(['network', 'ls']), /\slan\s+lanplug\/macvlan:latest\s/);
  await eventually(
    () => assert.equal(host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'always']).trim(), 'true'),
    60_000,
  );
  assert.equal(containerNetwork(host, 'always', 'lan').IPAddress, '172.16.86.50');
  await eventually(() => host.dockerOk(['exec', 'always', 'ping', '-c', '1', '-W', '2', '172.16.86.10']), 20_000);
});

test('upgrade to a new build from this checkout: new plugins under the same names, the network and the running container keep their address', () => {
  const before = new Map(plugins().map((p) => [p.Name, p.Id]));
  // The checkout's lanplug builds it: an upgrade replaces whatever build the plugins run.
  const upgrade = run(
    [process.execPath, join(repoRoot(), 'bin', 'lanplug'), 'plugin', 'upgrade', '--docker-host', `unix://${host.sock}`],
    { timeoutMs: 600_000 },
  );
  assert.equal(upgrade.status, 0, upgrade.stderr);
  const out = upgrade.stdout;
  process.stdout.write(`# ${out.trim().split('\n').join('\n# ')}\n`);
  assert.match(out, /^replaced lanplug\/macvlan:latest$/m);
  const now = plugins();
  for (const plugin of now) {
    assert.equal(plugin.Enabled, true, `${plugin.Name} enabled after the upgrade`);
    assert.notEqual(plugin.Id, before.get(plugin.Name), `${plugin.Name} is a new plugin`);
  }
  // Settings carried over.
  for (const name of [MACVLAN, IPVLAN]) {
    const settings = JSON.parse(host.dockerOk(['plugin', 'inspect', name, '--format', '{{json .Settings}}'])) as {
      Env: string[];
      Mounts: { Name: string; Source: string }[];
    };
    assert.ok(settings.Env.includes('LANPLUG_LOG=debug'), `${name}: ${settings.Env.join(' ')}`);
    assert.equal(settings.Mounts.find((m) => m.Name === 'state')?.Source, stateDir, name);
    assert.equal(settings.Mounts.find((m) => m.Name === 'docker')?.Source, host.sock, name);
  }
  assert.equal(containerNetwork(host, 'always', 'lan').IPAddress, '172.16.86.50');
  host.dockerOk(['exec', 'always', 'ping', '-c', '1', '-W', '2', '172.16.86.10']);
  // The new daemon knows the network: a new container joins it.
  host.dockerOk([
    'run',
    '--rm',
    '--network',
    'lan',
    '--ip',
    '172.16.86.51',
    'alpine:latest',
    'ping',
    '-c',
    '1',
    '-W',
    '2',
    '172.16.86.10',
  ]);
  assertNoEndpointLinkOnHost();
});

test('a state database newer than the plugin (a downgrade): every command says so in one line, the file is left as it is', () => {
  const database = join(stateDir, 'lanplug.db');
  host.dockerOk(['plugin', 'disable', '-f', IPVLAN]);
  host.dockerOk(['plugin', 'disable', '-f', MACVLAN]);
  const written = userVersion(database);
  userVersion(database, 99);
  try {
    host.dockerOk(['plugin', 'enable', MACVLAN]);
    const refused = host.docker(networkCreate(MACVLAN, 'newer', ['--subnet=10.9.0.0/24']));
    assert.notEqual(refused.status, 0);
    assert.match(
      refused.stderr,
      /NetworkDriver\.CreateNetwork: lanplug could not start: \/var\/lib\/lanplug\/lanplug\.db has schema version 99, newer than this lanplug understands \(\d+\); lanplug leaves it as it is/,
    );
    assert.equal(userVersion(database), 99);
    host.dockerOk(['plugin', 'disable', '-f', MACVLAN]);
  } finally {
    userVersion(database, written);
  }
  host.dockerOk(['plugin', 'enable', MACVLAN]);
  host.dockerOk(['plugin', 'enable', IPVLAN]);
  assert.equal(containerNetwork(host, 'always', 'lan').IPAddress, '172.16.86.50');
  host.dockerOk(['run', '--rm', '--network', 'lan', 'alpine:latest', 'ping', '-c', '1', '-W', '2', '172.16.86.10']);
});

test('removal: plugins gone, no link left; only the state directory stays', async () => {
  host.dockerOk(['rm', '-f', 'always']);
  host.dockerOk(['network', 'rm', 'lan']);
  // The network's LAN eye goes with it, after the dockerd restart and the upgrade too, before any plugin goes.
  await eventually(() => assertNoLanplugLinks(host), 5_000);
  const out = lanplugOk(['plugin', 'remove']);
  assert.match(out, /^removed lanplug\/macvlan:latest$/m);
  assert.match(out, /^removed lanplug\/ipvlan:latest$/m);
  assert.equal(host.dockerOk(['plugin', 'ls', '-q']).trim(), '');
  assertNoLanplugLinks(host);
  assert.ok(fs.existsSync(join(stateDir, 'lanplug.db')), 'the state directory stays');
  // dockerd keeps nothing of them: no plugin directory in its exec root or data root.
  const runtime = join(host.execRoot, 'plugins');
  assert.deepEqual(fs.existsSync(runtime) ? fs.readdirSync(runtime) : [], []);
  assert.equal(lanplug(['plugin', 'remove']).stdout.trim(), 'no lanplug plugin to remove');
});

/** An endpoint link is in its container, never on the host: the upgrade left nothing half-made. */
function assertNoEndpointLinkOnHost(): void {
  const links = host.execOk(['ip', '-o', 'link', 'show']);
  assert.deepEqual(
    links.split('\n').filter((l) => /^\d+: (lp-|lpp-)/.test(l)),
    [],
    'endpoint links left on the host',
  );
}

/** Reads (and with `set`, writes) the database's schema version, as the plugin's daemon sees it. */
function userVersion(path: string, set?: number): number {
  const db = new Database(path);
  try {
    if (set !== undefined) db.pragma(`user_version = ${set}`);
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}
