// Where the repository is: the one answer for the lab, the VM harness and the tests.

import * as fs from 'node:fs';
import * as path from 'node:path';

/** The repository root: the nearest ancestor of this file holding lanplug's package.json. */
export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'lanplug') return dir;
      } catch {
        // an unreadable package.json is not ours: keep looking
      }
    }
    if (path.dirname(dir) === dir) throw new Error(`no lanplug package.json above ${__dirname}`);
  }
}
