/**
 * What a host gets without the source tree: `npm pack` carries the built
 * daemon, the CLI, the CNI executable's source and nothing of the tests, and
 * `lanplug --version` says which lanplug and which state and protocol
 * versions it is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
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
