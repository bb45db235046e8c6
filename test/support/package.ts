// lanplug as a host without the source tree gets it: the `npm pack` tarball, installed with npm.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './repo';

export interface PackedInstall {
  tarball: string;
  /** The installed `lanplug` command (a symlink into the installed package). */
  bin: string;
  /** The installed package's directory. */
  packageDir: string;
}

/**
 * Packs this checkout as it is built (no prepack rebuild) into `dir` and installs the tarball with
 * `npm install -g --prefix dir/prefix`, offline and without install scripts: everything it runs
 * must be in the tarball (the native addons are bundled, built for this Node and libc).
 */
export function installPackedLanplug(dir: string): PackedInstall {
  const npm = (args: string[], cwd: string): string => {
    const r = spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`npm ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  fs.mkdirSync(dir, { recursive: true });
  const name = npm(['pack', '--ignore-scripts', '--pack-destination', dir], repoRoot()).trim().split('\n').pop() ?? '';
  const tarball = path.join(dir, name);
  const prefix = path.join(dir, 'prefix');
  npm(['install', '-g', '--prefix', prefix, '--offline', '--ignore-scripts', '--no-audit', '--no-fund', tarball], dir);
  return {
    tarball,
    bin: path.join(prefix, 'bin', 'lanplug'),
    packageDir: path.join(prefix, 'lib', 'node_modules', 'lanplug'),
  };
}
