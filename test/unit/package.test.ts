/**
 * What a host gets without the source tree: `npm pack` carries the built
 * daemon, the CLI, the CNI executable's source, the native addons (bundled)
 * and nothing of the tests; the tarball installs offline and `lanplug install`
 * from it writes a service that runs the installed copy; `lanplug --version`
 * says which lanplug and which state and protocol versions it is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installPackedLanplug } from '../support/package';
import { repoRoot } from '../support/repo';

test('npm pack: the built daemon and CLI, the CNI executable source, no tests', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: repoRoot(),
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const [pack] = JSON.parse(r.stdout) as { files: { path: string }[] }[];
  const files = new Set((pack?.files ?? []).map((f) => f.path));
  for (const needed of [
    'bin/lanplug',
    'dist/src/cli/main.js',
    'dist/src/daemon.js',
    'native/cni-shim.c',
    'package.json',
  ])
    assert.ok(files.has(needed), `${needed} is in the tarball`);
  assert.deepEqual(
    [...files].filter((f) => f.startsWith('test/') || f.startsWith('dist/test/') || f.startsWith('src/')),
    [],
  );
});

test('lanplug --version names the package version and the state and CNI versions', () => {
  const r = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'lanplug'), '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const version = (JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  assert.match(
    r.stdout,
    new RegExp(
      `^lanplug ${version.replace(/\./g, '\\.')} \\(state schema \\d+, records \\d+, CNI 0\\.3\\.0-1\\.1\\.0\\)\\n$`,
    ),
  );
});

test('the tarball installs offline without the source tree; lanplug install from it runs the installed copy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-pack-'));
  try {
    const installed = installPackedLanplug(dir);
    const version = spawnSync(process.execPath, [installed.bin, '--version'], { encoding: 'utf8', cwd: dir });
    assert.equal(version.status, 0, version.stderr);
    assert.match(version.stdout, /^lanplug \d+\.\d+\.\d+ \(state schema/);
    // The native addons came in the tarball, built: nothing was compiled or fetched at install, and both load.
    assert.ok(existsSync(join(installed.packageDir, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node')));
    const load = spawnSync(
      process.execPath,
      ['-e', "new (require('better-sqlite3'))(':memory:').close(); require('./dist/src/sys/libc').libc().errno();"],
      { cwd: installed.packageDir, encoding: 'utf8' },
    );
    assert.equal(load.status, 0, load.stderr);
    const root = join(dir, 'root');
    const install = spawnSync(process.execPath, [installed.bin, 'install', '--root', root], { encoding: 'utf8' });
    assert.equal(install.status, 0, install.stderr);
    const unit = readFileSync(join(root, 'etc/systemd/system/lanplug.service'), 'utf8');
    assert.match(
      unit,
      new RegExp(`^ExecStart=\\S+ --max-semi-space-size=2 ${installed.packageDir}/bin/lanplug daemon `, 'm'),
    );
    assert.doesNotMatch(unit, new RegExp(repoRoot()));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
