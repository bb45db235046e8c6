/**
 * `lanplug install --cni`: the CNI plugins built with the host's compiler
 * and put where runtimes look, answering VERSION as installed; a file of
 * that name that is not lanplug's is never replaced; uninstall removes
 * exactly lanplug's. The same for `install --netavark`, with the containers.conf
 * line it needs, and doctor's netavark line. Into a test root: nothing on the
 * machine is touched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { netavarkChecks } from '../../src/cli/doctor/netavark';
import { repoRoot } from '../support/repo';

function lanplug(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'lanplug'), ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('install --cni builds the plugins into /opt/cni/bin and /usr/lib/cni; uninstall removes only them', () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-cni-root-'));
  try {
    mkdirSync(join(root, 'usr/lib/cni'), { recursive: true });
    writeFileSync(join(root, 'usr/lib/cni/macvlan'), 'the reference plugin');
    const out = lanplug('install', '--cni', '--root', root, '--state-dir', '/var/lib/lanplug');
    assert.equal(out.code, 0, out.stderr);
    for (const dir of ['opt/cni/bin', 'usr/lib/cni'])
      for (const name of ['lanplug-macvlan', 'lanplug-ipvlan', 'lanplug']) {
        const plugin = join(root, dir, name);
        const version = spawnSync(plugin, [], { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8' });
        assert.equal(version.status, 0, `${plugin}: ${version.stderr}`);
        assert.match(version.stdout, /"supportedVersions":\["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"\]/);
      }
    // Without a daemon the installed plugin says where it looked: the state directory's socket.
    const add = spawnSync(join(root, 'opt/cni/bin/lanplug-macvlan'), [], {
      env: { CNI_COMMAND: 'ADD' },
      input: '{}',
      encoding: 'utf8',
    });
    assert.match(add.stdout, /"code":11,.*connect \/var\/lib\/lanplug\/cni\.sock/);

    const removed = lanplug('uninstall', '--root', root);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(existsSync(join(root, 'opt/cni/bin/lanplug-macvlan')), false);
    assert.equal(existsSync(join(root, 'usr/lib/cni/lanplug-ipvlan')), false);
    assert.equal(readFileSync(join(root, 'usr/lib/cni/macvlan'), 'utf8'), 'the reference plugin');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("install --cni refuses to replace a file that is not lanplug's, and writes nothing", () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-cni-root-'));
  try {
    mkdirSync(join(root, 'opt/cni/bin'), { recursive: true });
    writeFileSync(join(root, 'opt/cni/bin/lanplug-ipvlan'), 'someone else');
    const out = lanplug('install', '--cni', '--root', root);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /lanplug-ipvlan exists and is not lanplug's CNI executable/);
    assert.equal(existsSync(join(root, 'opt/cni/bin/lanplug-macvlan')), false);
    assert.equal(existsSync(join(root, 'etc/systemd/system/lanplug.service')), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('install --cni with the daemon flags: the plugins reach the --cni-socket, and --store etcd warns that CNI pods keep to this node', () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-cni-root-'));
  try {
    const off = lanplug('install', '--cni', '--root', root, '--cni-socket', 'off');
    assert.equal(off.code, 2);
    assert.match(
      off.stderr,
      /^lanplug: --cni installs plugins that reach the daemon on its CNI socket; drop --cni-socket off\n/,
    );
    assert.equal(existsSync(join(root, 'opt')), false, 'nothing written');

    const out = lanplug(
      'install',
      '--cni',
      '--root',
      root,
      '--store',
      'etcd://127.0.0.1:2379',
      '--cni-socket',
      '/run/lanplug/cni.sock',
    );
    assert.equal(out.code, 0, out.stderr);
    assert.equal(
      out.stderr,
      'lanplug: warning: CNI pods get addresses from the shared etcd pools only where the ipam section says "shared": true; ' +
        "elsewhere from this node's own store: give each such CNI configuration a range of its own, outside the shared pools\n",
    );
    const add = spawnSync(join(root, 'opt/cni/bin/lanplug-macvlan'), [], {
      env: { CNI_COMMAND: 'ADD' },
      input: '{}',
      encoding: 'utf8',
    });
    assert.match(add.stdout, /"code":11,.*connect \/run\/lanplug\/cni\.sock/);
    assert.match(
      readFileSync(join(root, 'etc/systemd/system/lanplug.service'), 'utf8'),
      / daemon .* --cni-socket \/run\/lanplug\/cni\.sock --store etcd:\/\/127\.0\.0\.1:2379$/m,
    );
    const sqlite = lanplug('install', '--cni', '--root', root);
    assert.equal(sqlite.code, 0, sqlite.stderr);
    assert.equal(sqlite.stderr, '', 'no warning with the SQLite store');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('install --netavark puts the plugins where netavark looks by default; they answer info; uninstall removes only them', () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-netavark-root-'));
  try {
    mkdirSync(join(root, 'usr/lib/netavark'), { recursive: true });
    writeFileSync(join(root, 'usr/lib/netavark/someone-elses'), 'a plugin');
    const out = lanplug('install', '--netavark', '--root', root, '--state-dir', '/var/lib/lanplug');
    assert.equal(out.code, 0, out.stderr);
    assert.doesNotMatch(out.stdout, /netavark will not find them/, 'the default list holds the directory');
    const version = (JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string }).version;
    for (const name of ['lanplug-macvlan', 'lanplug-ipvlan']) {
      const plugin = join(root, 'usr/local/libexec/netavark', name);
      const info = spawnSync(plugin, ['info'], { encoding: 'utf8', input: '' });
      assert.equal(info.status, 0, info.stderr);
      assert.deepEqual(JSON.parse(info.stdout), { version, api_version: '1.0.0' });
    }
    // Without a daemon the plugin says so in netavark's error format, naming the socket it tried.
    const setup = spawnSync(join(root, 'usr/local/libexec/netavark/lanplug-macvlan'), ['setup', '/run/netns/x'], {
      input: '{}',
      encoding: 'utf8',
    });
    assert.equal(setup.status, 1);
    assert.match(
      setup.stdout,
      /^\{"error":"the lanplug daemon is not running: .*connect \/var\/lib\/lanplug\/cni\.sock/,
    );

    const removed = lanplug('uninstall', '--root', root);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /removed .*usr\/local\/libexec\/netavark\/lanplug-macvlan/);
    assert.equal(existsSync(join(root, 'usr/local/libexec/netavark/lanplug-ipvlan')), false);
    assert.equal(readFileSync(join(root, 'usr/lib/netavark/someone-elses'), 'utf8'), 'a plugin');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("install --netavark says which containers.conf line to add when the host's list leaves the directory out; refuses a foreign file", () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-netavark-root-'));
  try {
    mkdirSync(join(root, 'etc/containers'), { recursive: true });
    writeFileSync(
      join(root, 'etc/containers/containers.conf'),
      '[engine]\nnetavark_plugin_dirs = ["/not/this/one"]\n\n[network]\n# our own plugins\nnetavark_plugin_dirs = [\n  "/usr/lib/netavark",  # the vendor\'s\n]\n',
    );
    const out = lanplug('install', '--netavark', '--root', root);
    assert.equal(out.code, 0, out.stderr);
    assert.match(
      out.stdout,
      /netavark will not find them yet: \/etc\/containers\/containers\.conf sets netavark_plugin_dirs without \/usr\/local\/libexec\/netavark: add it there, under \[network\]: netavark_plugin_dirs = \["\/usr\/local\/libexec\/netavark", "\/usr\/lib\/netavark"\]/,
    );
    writeFileSync(join(root, 'usr/local/libexec/netavark/lanplug-ipvlan'), 'someone else');
    const refused = lanplug('install', '--netavark', '--root', root);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /lanplug-ipvlan exists and is not lanplug's plugin; remove or rename it first/);
    assert.equal(readFileSync(join(root, 'usr/local/libexec/netavark/lanplug-ipvlan'), 'utf8'), 'someone else');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("doctor's netavark line: the version netavark gives, the plugins it finds, and the daemon's socket", async () => {
  const root = mkdtempSync(join(tmpdir(), 'lanplug-netavark-root-'));
  try {
    const lines: { status: string; detail: string; fix?: string }[] = [];
    const add = (_check: string, status: string, detail: string, fix?: string): void => {
      lines.push({ status, detail, ...(fix === undefined ? {} : { fix }) });
    };
    const options = {
      stateDir: join(root, 'var/lib/lanplug'),
      pluginDir: '/run/docker/plugins',
      dockerSocket: '',
      cniSocket: join(root, 'var/lib/lanplug/cni.sock'),
    };
    await netavarkChecks(options, add, root);
    assert.match(lines[0]?.detail ?? '', /^netavark not found; lanplug's plugins not installed/);

    mkdirSync(join(root, 'usr/lib/podman'), { recursive: true });
    writeFileSync(join(root, 'usr/lib/podman/netavark'), '#!/bin/sh\necho netavark 1.17.1\n', { mode: 0o755 });
    assert.equal(lanplug('install', '--netavark', '--root', root).code, 0);
    lines.length = 0;
    await netavarkChecks(options, add, root);
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]?.status, 'fail');
    assert.match(
      lines[0]?.detail ?? '',
      /^netavark 1\.17\.1 at .*usr\/lib\/podman\/netavark finds .*lanplug-macvlan, .*lanplug-ipvlan, but .*cni\.sock does not answer/,
    );

    mkdirSync(join(root, 'etc/containers'), { recursive: true });
    writeFileSync(
      join(root, 'etc/containers/containers.conf'),
      '[network]\nnetavark_plugin_dirs = ["/usr/lib/netavark"]\n',
    );
    lines.length = 0;
    await netavarkChecks(options, add, root);
    assert.equal(lines[0]?.status, 'fail');
    assert.match(
      lines[0]?.detail ?? '',
      /lanplug's plugins are in .* but \/etc\/containers\/containers\.conf sets netavark_plugin_dirs without/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
