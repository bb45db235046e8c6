/**
 * lanplug as a service: `lanplug install` writes and enables units that
 * `systemd-analyze verify` accepts and `lanplug uninstall` removes exactly,
 * with every daemon flag on the service's command line, each word read back
 * by systemd itself exactly as given;
 * and the daemon under `systemd-socket-activate` (systemd's socket passing,
 * no systemd as PID 1 needed) serves a real dockerd from the sockets it was
 * handed, started by dockerd's first call.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DAEMON_NODE_FLAGS } from '../../src/daemon';
import { nsExecArgv } from '../lab/ns';
import { run } from '../lab/proc';
import { repoRoot } from '../support/repo';
import { assertNoLanplugLinks, containerNetwork, useLab } from './helpers';

const LANPLUG = join(repoRoot(), 'bin', 'lanplug');
const lab = useLab({ addresses: ['172.16.86.1/24'] });

function lanplug(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return run([process.execPath, LANPLUG, ...args]);
}

/** Every file and symlink under a directory, relative, sorted. */
function tree(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? tree(dir, join(prefix, e.name)) : [join(prefix, e.name)]))
    .sort();
}

test('install writes and enables five units that systemd-analyze verify accepts; uninstall removes exactly them', () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-root-'));
  try {
    const units = join(root, 'etc/systemd/system');
    mkdirSync(units, { recursive: true });
    writeFileSync(join(units, 'someone-else.service'), '[Service]\nExecStart=/bin/true\n');
    const dry = lanplug(['install', '--root', root, '--dry-run']);
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(
      dry.stdout,
      /^ExecStart=.* daemon --state-dir \/var\/lib\/lanplug --plugin-dir \/run\/docker\/plugins --log-level info$/m,
    );
    assert.match(dry.stdout, /^ListenStream=\/run\/docker\/plugins\/lanplug-macvlan\.sock$/m);
    assert.deepEqual(tree(root), ['etc/systemd/system/someone-else.service'], 'a dry run writes nothing');

    const installed = lanplug(['install', '--root', root]);
    assert.equal(installed.status, 0, installed.stderr);
    assert.deepEqual(tree(root), [
      'etc/systemd/system/lanplug-dhcp.socket',
      'etc/systemd/system/lanplug-ipam.socket',
      'etc/systemd/system/lanplug-ipvlan.socket',
      'etc/systemd/system/lanplug-macvlan.socket',
      'etc/systemd/system/lanplug.service',
      'etc/systemd/system/multi-user.target.wants/lanplug.service',
      'etc/systemd/system/sockets.target.wants/lanplug-dhcp.socket',
      'etc/systemd/system/sockets.target.wants/lanplug-ipam.socket',
      'etc/systemd/system/sockets.target.wants/lanplug-ipvlan.socket',
      'etc/systemd/system/sockets.target.wants/lanplug-macvlan.socket',
      'etc/systemd/system/someone-else.service',
    ]);
    assert.equal(
      readlinkSync(join(units, 'sockets.target.wants/lanplug-macvlan.socket')),
      '/etc/systemd/system/lanplug-macvlan.socket',
    );
    const service = readFileSync(join(units, 'lanplug.service'), 'utf8');
    assert.match(service, /^Before=docker\.service$/m);
    assert.match(service, /^Restart=on-failure$/m);
    assert.match(readFileSync(join(units, 'lanplug-ipvlan.socket'), 'utf8'), /^FileDescriptorName=lanplug-ipvlan$/m);
    assert.match(
      readFileSync(join(units, 'lanplug-ipam.socket'), 'utf8'),
      /^ListenStream=\/run\/docker\/plugins\/lanplug\.sock$/m,
    );

    const verify = run([
      'systemd-analyze',
      'verify',
      '--man=no',
      ...[
        'lanplug.service',
        'lanplug-macvlan.socket',
        'lanplug-ipvlan.socket',
        'lanplug-ipam.socket',
        'lanplug-dhcp.socket',
      ].map((u) => join(units, u)),
    ]);
    const complaints = (verify.stdout + verify.stderr).split('\n').filter((l) => /lanplug/.test(l));
    assert.deepEqual(complaints, [], 'systemd-analyze verify has nothing to say about the units');
    assert.equal(verify.status, 0, verify.stderr);

    const removed = lanplug(['uninstall', '--root', root]);
    assert.equal(removed.status, 0, removed.stderr);
    assert.deepEqual(
      tree(root).filter((f) => !lstatSync(join(root, f)).isDirectory()),
      ['etc/systemd/system/someone-else.service'],
      'only what install wrote is gone',
    );
    assert.equal(lanplug(['uninstall', '--root', root]).stdout, 'nothing to remove\n');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

const UNITS = [
  'lanplug.service',
  'lanplug-macvlan.socket',
  'lanplug-ipvlan.socket',
  'lanplug-ipam.socket',
  'lanplug-dhcp.socket',
];

/** `systemd-analyze verify`'s complaints about lanplug's units in `dir`. */
function verifyComplaints(dir: string): string[] {
  const verify = run(['systemd-analyze', 'verify', '--man=no', ...UNITS.map((u) => join(dir, u))]);
  return (verify.stdout + verify.stderr).split('\n').filter((l) => /lanplug/.test(l));
}

/**
 * A unit as systemd itself loads it: `systemd --test` dumps every unit it
 * loaded, with its command lines and sockets, and runs nothing (it refuses
 * root: it runs as nobody, on a world-readable copy of the units).
 */
function systemdReads(units: string, unit: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-units-'));
  try {
    chmodSync(dir, 0o755);
    for (const u of UNITS) {
      copyFileSync(join(units, u), join(dir, u));
      chmodSync(join(dir, u), 0o644);
    }
    const test = run(
      [
        'setpriv',
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '/lib/systemd/systemd',
        '--test',
        '--system',
      ].concat([`--unit=${unit}`, '--log-target=console', '--log-level=err']),
      // The trailing colon: the system's own unit directories too (the targets a service needs).
      { env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } },
    );
    const start = test.stdout.indexOf(`-> Unit ${unit}:`);
    assert.ok(start >= 0, `systemd --test did not load ${unit}: ${test.stderr}`);
    const end = test.stdout.indexOf('-> Unit ', start + 1);
    return test.stdout.slice(start, end < 0 ? undefined : end);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The words of a command line as systemd's dump prints it: plain, or in double quotes with C escapes. */
function commandWords(line: string): string[] {
  const words: string[] = [];
  for (let i = 0; i < line.length;) {
    if (line[i] === ' ') {
      i++;
      continue;
    }
    let word = '';
    if (line[i] !== '"') {
      for (; i < line.length && line[i] !== ' '; i++) word += line[i];
    } else {
      for (i++; i < line.length && line[i] !== '"';) {
        if (line[i] !== '\\') {
          word += line[i++];
        } else if (line[i + 1] === 'x') {
          word += String.fromCharCode(parseInt(line.slice(i + 2, i + 4), 16));
          i += 4;
        } else {
          const next = line[i + 1] ?? '';
          word += ({ n: '\n', t: '\t', r: '\r' } as Record<string, string>)[next] ?? next;
          i += 2;
        }
      }
      i++;
    }
    words.push(word);
  }
  return words;
}

test("install with every daemon flag: systemd reads the service's command line back word for word, and its sockets", () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-root-'));
  try {
    mkdirSync(join(root, 'etc/lanplug'), { recursive: true });
    for (const pem of ['ca.pem', 'node.pem', 'node-key.pem']) writeFileSync(join(root, 'etc/lanplug', pem), 'PEM');
    const userFile = "/etc/lanplug/etcd user's ${HOME} 100%h";
    writeFileSync(join(root, userFile), 'lanplug:p@ss "w$rd"\n', { mode: 0o600 });
    const flags = [
      ['--state-dir', '/srv/lan plug/$HOME/%h'],
      ['--plugin-dir', '/run/plug ins/100%'],
      ['--log-level', 'warn'],
      ['--docker-host', 'unix:///run/dock$er.sock'],
      ['--recheck-interval', '30'],
      ['--grace-seconds', '90'],
      ['--cni-socket', '/run/lanplug/cni.sock'],
      ['--cni-network-idle', '5'],
      ['--store', 'etcd://127.0.0.1:2379,[::1]:2379'],
      ['--host-id', 'node-1'],
      ['--cacert', '/etc/lanplug/ca.pem'],
      ['--cert', '/etc/lanplug/node.pem'],
      ['--key', '/etc/lanplug/node-key.pem'],
      ['--user-file', userFile],
      ['--reclaim-after', '900'],
    ].flat();
    const installed = lanplug(['install', '--root', root, ...flags]);
    assert.equal(installed.status, 0, installed.stderr);
    const units = join(root, 'etc/systemd/system');
    assert.deepEqual(verifyComplaints(units), [], 'systemd-analyze verify has nothing to say about the units');

    const service = systemdReads(units, 'lanplug.service');
    const command = /-> ExecStart:\n\s+Command Line: (.*)$/m.exec(service)?.[1];
    assert.ok(command !== undefined, service);
    // The dump shows each argument before variables are substituted at the start, where `$$` is one `$`.
    const held = (word: string): string => word.replace(/\$/g, '$$$$');
    assert.deepEqual(commandWords(command), [
      process.execPath,
      ...[...DAEMON_NODE_FLAGS, LANPLUG, 'daemon', ...flags].map(held),
    ]);
    const socket = systemdReads(units, 'lanplug-macvlan.socket');
    assert.match(socket, /^\s+ListenStream: \/run\/plug ins\/100%\/lanplug-macvlan\.sock$/m);
    // The sandbox: what it may write (the state and plugin directories, the CNI socket's), its capabilities.
    assert.match(service, /^\s+ReadWritePaths: -\/srv\/lan plug\/\$HOME\/%h -\/run\/plug ins\/100% -\/run\/lanplug$/m);
    assert.match(service, /^\s+CapabilityBoundingSet: cap_net_admin cap_net_raw cap_sys_admin$/m);
    // One socket per running SLAAC container (docs/operations.md): soft and hard alike.
    assert.match(service, /^\s+LimitNOFILE: 65536\n\s+LimitNOFILESoft: 65536$/m);
    assert.doesNotMatch(service, /IPAddressDeny/, 'a daemon that talks to etcd keeps its IP traffic');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('socket activation: dockerd talks to sockets systemd-socket-activate holds; the daemon started by the first call serves them', async () => {
  // The useLab daemon steps aside: this test's lanplug comes from socket activation.
  const stateDir = lab.plugin.stateDir;
  await lab.plugin.stop();
  const sockets = ['lanplug-macvlan', 'lanplug-ipvlan'].map((n) => `/run/docker/plugins/${n}.sock`);
  const mnt = lab.host.mntNs;
  assert.ok(mnt);
  const argv = nsExecArgv(
    lab.host.ns,
    [
      'systemd-socket-activate',
      ...sockets.flatMap((s) => ['-l', s]),
      '--fdname=lanplug-macvlan:lanplug-ipvlan',
      process.execPath,
      LANPLUG,
      'daemon',
      '--state-dir',
      stateDir,
      '--plugin-dir',
      '/run/docker/plugins',
      '--docker-host',
      `unix://${lab.host.sock}`,
    ],
    mnt,
  );
  const log = join(lab.host.dir, 'socket-activated.log');
  const fd = openSync(log, 'a');
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const daemonLog = (): string => readFileSync(log, 'utf8');
  try {
    const deadline = Date.now() + 30_000;
    while (
      !sockets.every((s) => existsSync(join(lab.host.pluginDir, s.split('/').pop() ?? ''))) &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 100));
    assert.doesNotMatch(daemonLog(), /lanplug daemon started/, 'no daemon before the first connection');
    lab.host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      'activated',
    ]);
    lab.host.dockerOk(['run', '-d', '--network', 'activated', '--name', 'a1', 'alpine:latest', 'sleep', '3600']);
    assert.equal(containerNetwork(lab.host, 'a1', 'activated').MacAddress, '02:42:ac:10:56:02');
    lab.host.dockerOk(['exec', 'a1', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
    assert.match(daemonLog(), /"msg":"serving socket passed by systemd","plugin":"lanplug-macvlan"/);
    assert.match(daemonLog(), /"msg":"serving socket passed by systemd","plugin":"lanplug-ipvlan"/);
    lab.host.dockerOk(['rm', '-f', 'a1']);
    lab.host.dockerOk(['network', 'rm', 'activated']);
    assertNoLanplugLinks(lab.host);
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('close', resolve));
  }
  assert.match(daemonLog(), /"msg":"lanplug daemon stopped"/);
});

test("the service runs in a sandbox that systemd-analyze security scores below 3.0 ('OK'), with only the capabilities the daemon uses", () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-root-'));
  try {
    const installed = lanplug(['install', '--root', root]);
    assert.equal(installed.status, 0, installed.stderr);
    assert.equal(statSync(join(root, 'var/lib/lanplug')).mode & 0o777, 0o700, 'the state directory is made, root-only');
    const review = run(['systemd-analyze', 'security', '--offline=yes', `--root=${root}`, 'lanplug.service']);
    const score = /Overall exposure level for lanplug\.service: (\d+\.\d+) (\w+)/.exec(review.stdout);
    assert.ok(score !== null, review.stdout + review.stderr);
    process.stdout.write(`# systemd-analyze security lanplug.service: ${score[1]} ${score[2]}\n`);
    assert.ok(Number(score[1]) < 3.0, `exposure ${score[1]} ${score[2]}`);
    const unit = readFileSync(join(root, 'etc/systemd/system/lanplug.service'), 'utf8');
    assert.match(unit, /^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN$/m);
    assert.match(unit, /^IPAddressDeny=any$/m, 'no IP traffic without etcd');
    // A metrics address is IP traffic too: the unit must not drop the scraper's packets.
    const withMetrics = lanplug(['install', '--root', root, '--metrics-listen', '127.0.0.1:9464']);
    assert.equal(withMetrics.status, 0, withMetrics.stderr);
    const metricsUnit = readFileSync(join(root, 'etc/systemd/system/lanplug.service'), 'utf8');
    assert.match(metricsUnit, /--metrics-listen 127\.0\.0\.1:9464/);
    assert.doesNotMatch(metricsUnit, /IPAddressDeny/, 'a daemon serving metrics over TCP keeps its IP traffic');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
