/**
 * `lanplug install` with the daemon's flags, into a test root: every flag
 * `lanplug daemon` takes goes into the service's command line, quoted by
 * systemd's rules (test/e2e/service.test.ts has systemd-analyze read it back);
 * a value the daemon would refuse is refused in one line, and nothing is
 * written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { doctorCniSocket, serviceFilesCommand, systemctlExecStart } from '../../src/cli/doctor/cni-socket';
import { serviceArguments, unitFiles } from '../../src/install/units';
import { repoRoot } from '../support/repo';

function lanplug(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'lanplug'), ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function withRoot(fn: (root: string) => void): void {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-install-'));
  try {
    fn(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** Every file under a directory, relative, sorted. */
function files(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(dir, join(prefix, e.name)) : [join(prefix, e.name)]))
    .sort();
}

/**
 * Certificates where --cacert, --cert and --key name them, and the etcd user's file --user-file
 * names (root's, mode 0600), under the root being installed.
 */
function certificates(root: string): void {
  mkdirSync(join(root, 'etc/lanplug'), { recursive: true });
  for (const name of ['ca.pem', 'node.pem', 'node-key.pem']) {
    writeFileSync(join(root, 'etc/lanplug', name), 'PEM');
    chmodSync(join(root, 'etc/lanplug', name), 0o644);
  }
  writeFileSync(join(root, 'etc/lanplug', 'etcd user'), `${PASSWORD_LINE}\n`, { mode: 0o600 });
}

const PASSWORD_LINE = 'lanplug:p@ss "w$rd" 100%h \\x';
/** What certificates() writes. */
const INSTALL_INPUTS = [
  'etc/lanplug/ca.pem',
  'etc/lanplug/etcd user',
  'etc/lanplug/node-key.pem',
  'etc/lanplug/node.pem',
];

const EVERY_FLAG = [
  ['--state-dir', '/srv/lan plug'],
  ['--plugin-dir', '/run/docker/plugins'],
  ['--log-level', 'debug'],
  ['--docker-host', 'unix:///run/docker-2.sock'],
  ['--recheck-interval', '30'],
  ['--grace-seconds', '90'],
  ['--cni-socket', '/run/lanplug/cni.sock'],
  ['--cni-network-idle', '5'],
  ['--store', 'etcd://10.0.0.1:2379,10.0.0.2'],
  ['--host-id', 'node-1'],
  ['--cacert', '/etc/lanplug/ca.pem'],
  ['--cert', '/etc/lanplug/node.pem'],
  ['--key', '/etc/lanplug/node-key.pem'],
  ['--user-file', '/etc/lanplug/etcd user'],
  ['--reclaim-after', '900'],
] as const;

test("install writes every daemon flag into the service's command line, each word quoted for systemd", () => {
  withRoot((root) => {
    certificates(root);
    const out = lanplug('install', '--root', root, ...EVERY_FLAG.flat());
    assert.equal(out.code, 0, out.stderr);
    const path = join(root, 'etc/systemd/system/lanplug.service');
    const service = readFileSync(path, 'utf8');
    const exec = /^ExecStart=(.*) daemon (.*)$/m.exec(service);
    assert.ok(exec, service);
    assert.equal(
      exec[2],
      '--state-dir "/srv/lan plug" --plugin-dir /run/docker/plugins --log-level debug ' +
        '--docker-host unix:///run/docker-2.sock --recheck-interval 30 --grace-seconds 90 ' +
        '--cni-socket /run/lanplug/cni.sock --cni-network-idle 5 --store etcd://10.0.0.1:2379,10.0.0.2 ' +
        '--host-id node-1 --cacert /etc/lanplug/ca.pem --cert /etc/lanplug/node.pem --key /etc/lanplug/node-key.pem ' +
        '--user-file "/etc/lanplug/etcd user" --reclaim-after 900',
    );
    assert.ok(!service.includes('p@ss'), 'the etcd password is not in the unit');
    assert.equal(statSync(path).mode & 0o777, 0o644);
    assert.equal(statSync(join(root, 'etc/systemd/system/lanplug-macvlan.socket')).mode & 0o777, 0o644);
  });
});

test('install writes the flags it was given, and the three a service always names', () => {
  withRoot((root) => {
    const out = lanplug('install', '--root', root, '--grace-seconds', '120');
    assert.equal(out.code, 0, out.stderr);
    const service = readFileSync(join(root, 'etc/systemd/system/lanplug.service'), 'utf8');
    assert.match(
      service,
      / daemon --state-dir \/var\/lib\/lanplug --plugin-dir \/run\/docker\/plugins --log-level info --grace-seconds 120$/m,
    );
    assert.equal(statSync(join(root, 'etc/systemd/system/lanplug.service')).mode & 0o777, 0o644);
  });
});

test('a daemon flag the daemon would refuse is refused by install in one line, and nothing is written', () => {
  const cases: [string[], RegExp][] = [
    [['--recheck-interval', '5m'], /^lanplug: --recheck-interval must be a whole number of seconds; got '5m'$/],
    [['--reclaim-after', '-1'], /^lanplug: --reclaim-after must be a whole number of seconds; got '-1'$/],
    [['--log-level', 'loud'], /^lanplug: --log-level must be one of debug, info, warn, error; got 'loud'$/],
    [
      ['--store', 'postgres'],
      /^lanplug: --store must be sqlite or etcd:\/\/HOST:PORT\[,HOST:PORT\.\.\.\]; got 'postgres'$/,
    ],
    [['--store', 'etcd://a b:2379'], /^lanplug: --store: 'a b:2379' is not HOST:PORT$/],
    [['--store', 'etcd://10.0.0.1', '--host-id', 'a/b'], /^lanplug: --host-id must be 1-63 letters/],
    [['--host-id', 'node-1'], /^lanplug: --host-id is for --store etcd:\/\/\.\.\.; the SQLite store takes none$/],
    [['--store', 'etcd://10.0.0.1', '--cert', '/etc/lanplug/node.pem'], /^lanplug: --cert and --key go together$/],
    [
      ['--store', 'etcd://10.0.0.1', '--cacert', '/etc/lanplug/missing.pem'],
      /^lanplug: --cacert \S+missing\.pem: ENOENT/,
    ],
    [['--store', 'etcd://10.0.0.1', '--user', 'nopassword'], /^lanplug: --user must be NAME:PASSWORD$/],
    [
      ['--store', 'etcd://10.0.0.1', '--user', 'lanplug:secret'],
      /^lanplug: --user would put the etcd password on the service's command line, which every local user can read \(ps, systemctl show\): write NAME:PASSWORD to a file only root reads and give --user-file FILE$/,
    ],
    [
      ['--store', 'etcd://10.0.0.1', '--user-file', '/etc/lanplug/ca.pem'],
      /^lanplug: --user-file \S+ca\.pem has mode 0644: other users can read the etcd password; chmod 600 it$/,
    ],
    [['--cni-socket', 'cni.sock'], /^lanplug: --cni-socket must be an absolute path or off; got 'cni\.sock'$/],
    [
      ['--state-dir', 'var/lib/lanplug'],
      /^lanplug: --state-dir must be an absolute path for the service \(it runs from \/\)/,
    ],
    [['--plugin-dir', `/run/${'p'.repeat(90)}`], /^lanplug: --plugin-dir is too long for a unix socket/],
    [['--plugin-dir', '/run/a\nb'], /^lanplug: --plugin-dir must not hold control characters; got "\/run\/a\\nb"$/],
    [['--recheck', '30'], /^lanplug: unknown option '--recheck' for lanplug install$/],
  ];
  for (const [flags, message] of cases) {
    withRoot((root) => {
      certificates(root);
      const out = lanplug('install', '--root', root, ...flags);
      assert.notEqual(out.code, 0, `${flags.join(' ')}: ${out.stdout}`);
      assert.match(out.stderr.split('\n')[0] ?? '', message, flags.join(' '));
      assert.deepEqual(files(root), INSTALL_INPUTS);
    });
  }
});

test("doctor asks the CNI socket the installed service's command line names (--cni-socket PATH or off), else STATE-DIR/cni.sock; doctor's own --cni-socket first", () => {
  withRoot((root) => {
    const unit = (): string[] | null => serviceFilesCommand(join(root, 'etc/systemd/system'));
    assert.equal(lanplug('install', '--root', root, '--cni-socket', '/run/lanplug cni/cni.sock').code, 0);
    assert.equal(doctorCniSocket(null, '/var/lib/lanplug', unit()), '/run/lanplug cni/cni.sock');
    assert.equal(doctorCniSocket('/run/other.sock', '/var/lib/lanplug', unit()), '/run/other.sock');
    assert.equal(lanplug('install', '--root', root, '--cni-socket', 'off').code, 0);
    assert.equal(doctorCniSocket(null, '/var/lib/lanplug', unit()), null);
    assert.equal(lanplug('install', '--root', root).code, 0);
    assert.equal(doctorCniSocket(null, '/srv/lanplug', unit()), '/srv/lanplug/cni.sock');
  });
  assert.equal(doctorCniSocket(null, '/var/lib/lanplug', null), '/var/lib/lanplug/cni.sock', 'no service installed');
});

test("doctor reads the service's --cni-socket as the daemon does: the = form, the last one, a drop-in's ExecStart", () => {
  const daemon = ['/usr/bin/node', '/opt/lanplug/bin/lanplug', 'daemon'];
  assert.equal(doctorCniSocket(null, '/var/lib/lanplug', [...daemon, '--cni-socket=/run/x.sock']), '/run/x.sock');
  assert.equal(doctorCniSocket(null, '/var/lib/lanplug', [...daemon, '--cni-socket=off']), null);
  assert.equal(
    doctorCniSocket(null, '/var/lib/lanplug', [...daemon, '--cni-socket', '/run/a.sock', '--cni-socket=/run/b.sock']),
    '/run/b.sock',
  );
  withRoot((root) => {
    const unitDir = join(root, 'etc/systemd/system');
    assert.equal(lanplug('install', '--root', root, '--cni-socket', '/run/lanplug/cni.sock').code, 0);
    // An operator's override: ExecStart= clears the unit's command, the next line replaces it.
    mkdirSync(join(unitDir, 'lanplug.service.d'));
    writeFileSync(
      join(unitDir, 'lanplug.service.d', 'override.conf'),
      '[Service]\nExecStart=\nExecStart=/usr/bin/node /opt/lanplug/bin/lanplug daemon --cni-socket=/run/over.sock\n',
    );
    assert.equal(doctorCniSocket(null, '/var/lib/lanplug', serviceFilesCommand(unitDir)), '/run/over.sock');
  });
  assert.equal(serviceFilesCommand('/nonexistent'), null, 'no service installed');
  // What systemd runs, as `systemctl show -p ExecStart --value` prints it (systemd 252).
  assert.deepEqual(
    systemctlExecStart(
      '{ path=/usr/bin/node ; argv[]=/usr/bin/node /opt/lanplug/bin/lanplug daemon --cni-socket=/run/s.sock ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n',
    ),
    [...daemon, '--cni-socket=/run/s.sock'],
  );
  assert.equal(systemctlExecStart('\n'), null, 'the unit is not loaded');
});

test("the service's command line reads back word for word as systemd reads it: quotes, escapes, % and $", () => {
  const args = ['--state-dir', '/var/lib/lanplug', '--host-id', 'a b$c%d"e\\f', '--grace-seconds', '60'];
  const [service] = unitFiles({
    program: ['/usr/bin/node', '/opt/lanplug/bin/lanplug'],
    daemonArguments: args,
    pluginDir: '/run/docker/plugins',
    stateDir: '/var/lib/lanplug',
    cniSocket: null,
    usesIp: false,
  });
  assert.deepEqual(serviceArguments(service?.text ?? ''), [
    '/usr/bin/node',
    '/opt/lanplug/bin/lanplug',
    'daemon',
    ...args,
  ]);
  assert.equal(serviceArguments('[Service]\nType=simple\n'), null);
  // One socket per running SLAAC container, with room for the 10,000 endpoints docs/performance.md measures.
  assert.match(service?.text ?? '', /^\[Service\]\n(?:.+\n)*LimitNOFILE=65536\n/m);
});
