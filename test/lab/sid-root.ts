// The Debian sid roots that Docker 28 and Podman run chrooted in. The sid root: `debootstrap
// --variant=minbase sid`, then sid's docker.io (dockerd 28.5, containerd 2.1, runc 1.3), docker-cli,
// docker-compose (compose v2, 2.40: compose.ts), podman 5.8 and netavark 1.17 installed inside with
// sid's own apt. The experimental root: a copy of it with experimental's podman 6.1 and netavark 2.0 installed over those. Built once into
// <repo>/.lab/docker28/{root,experimental} (gitignored) and reused while their stamps name the same
// recipe; each built in a directory of its own and renamed into place, so a crashed build is never
// mistaken for a root. Why a chroot: sid's dockerd, containerd, runc, podman and netavark need sid's
// libraries (its docker CLI needs only libc, so the tests run it directly). Needs root.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../support/repo';
import { isAlive, run, runOk } from './proc';

/** What the root holds besides minbase; a change of this list rebuilds the root. */
export const SID_PACKAGES = ['docker.io', 'docker-cli', 'docker-compose', 'podman', 'netavark'] as const;
/**
 * The directory in the root where the machine's tree stays mounted once a Docker host's mount
 * namespace has pivoted into the root (docker-host.ts).
 */
export const HOST_TREE = 'lab-host';
/** The first line of the stamp: the recipe the root was built from. */
const RECIPE = `debootstrap --variant=minbase sid; apt-get install --no-install-recommends ${SID_PACKAGES.join(' ')}; mkdir /${HOST_TREE}`;
/** Packages whose versions the stamp records (what a lane proves is said by these). */
const RECORDED = ['docker.io', 'docker-cli', 'docker-compose', 'containerd', 'runc', 'podman', 'netavark'] as const;
const STAMP = 'lanplug-lab.stamp';
/** What the experimental root installs over the sid root's (ensureExperimentalRoot). */
export const EXPERIMENTAL_PACKAGES = ['podman', 'netavark'] as const;
const EXPERIMENTAL_RECIPE = `then from experimental: apt-get install -t experimental ${EXPERIMENTAL_PACKAGES.join(' ')}`;
/** debootstrap and apt together take about 30 s here; room for a slow mirror. */
const BUILD_STEP_TIMEOUT_MS = 15 * 60_000;
const DEFAULT_MIRROR = 'http://deb.debian.org/debian';

export const sidCacheDir = (): string => path.join(repoRoot(), '.lab', 'docker28');

/** The package versions the root holds ("docker.io 28.5.2+dfsg4-5", …), read from its stamp. */
export function sidRootVersions(root: string): Map<string, string> {
  const lines = readStamp(root).split('\n').slice(1);
  return new Map(lines.filter((l) => l.includes(' ')).map((l) => l.split(' ', 2) as [string, string]));
}

function readStamp(root: string): string {
  try {
    return fs.readFileSync(path.join(root, STAMP), 'utf8');
  } catch {
    return '';
  }
}

/**
 * The Debian mirror this machine's apt uses (sources.list or deb822 .sources; the first archive
 * that is not debian-security), so the root comes from where the machine's own packages come from.
 */
export function debianMirror(): string {
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of fs.readdirSync('/etc/apt/sources.list.d').sort()) {
      // apt reads only these two (a disabled file keeps another suffix)
      if (f.endsWith('.list') || f.endsWith('.sources')) files.push(path.join('/etc/apt/sources.list.d', f));
    }
  } catch {
    // no sources.list.d
  }
  for (const f of files) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)/gm)) {
      const uri = (m[1] as string).replace(/\/+$/, '');
      if (/^https?:\/\//.test(uri) && uri.endsWith('/debian')) return uri;
    }
  }
  return DEFAULT_MIRROR;
}

/**
 * The sid root, built now if missing or made from another recipe (about 30 s, ~700 MB).
 * Needs root, debootstrap and the mirror; throws with what to do otherwise.
 */
export function ensureSidRoot(cacheDir = sidCacheDir()): string {
  const root = path.join(cacheDir, 'root');
  if (readStamp(root).split('\n')[0] === RECIPE) return root;
  if (run(['debootstrap', '--version']).status !== 0) {
    throw new Error(
      'lab: debootstrap not found; the Docker 28 lane builds a Debian sid root with it. ' +
        'Run `sudo npm test docker28` (it installs debootstrap) or: sudo apt-get install -y debootstrap',
    );
  }
  buildRoot(cacheDir, root, (build) => {
    runOk(['debootstrap', '--variant=minbase', 'sid', build, debianMirror()], { timeoutMs: BUILD_STEP_TIMEOUT_MS });
    aptInRoot(build, [`${APT} update`, `${APT} install -y --no-install-recommends ${SID_PACKAGES.join(' ')}`]);
    fs.mkdirSync(path.join(build, HOST_TREE));
    return `${RECIPE}\n${installedVersions(build, RECORDED)}`;
  });
  return root;
}

/**
 * The experimental root: a copy of the sid root with Podman 6 and netavark 2.0 from Debian
 * experimental in place of Podman 5.8 and netavark 1.17 (the sid root keeps those for the Podman 5
 * lane). Built once beside the sid root, in about 15 s (a copy, then apt), ~700 MB.
 */
export function ensureExperimentalRoot(cacheDir = sidCacheDir()): string {
  const sid = ensureSidRoot(cacheDir);
  const root = path.join(cacheDir, 'experimental');
  const recipe = `${readStamp(sid).split('\n')[0]}; ${EXPERIMENTAL_RECIPE}`;
  if (readStamp(root).split('\n')[0] === recipe) return root;
  buildRoot(cacheDir, root, (build) => {
    fs.rmdirSync(build);
    runOk(['cp', '-a', '--reflink=auto', sid, build], { timeoutMs: BUILD_STEP_TIMEOUT_MS });
    fs.rmSync(path.join(build, STAMP));
    const list = path.join(build, 'etc/apt/sources.list.d/experimental.list');
    fs.writeFileSync(list, `deb ${debianMirror()} experimental main\n`);
    aptInRoot(build, [
      `${APT} update`,
      `${APT} install -y --no-install-recommends -t experimental ${EXPERIMENTAL_PACKAGES.join(' ')}`,
    ]);
    return `${recipe}\n${installedVersions(build, RECORDED)}`;
  });
  return root;
}

/** sid's Release files outlive their Valid-Until on a machine whose clock is ahead of the mirror's. */
const APT = 'apt-get -qq -o Acquire::Check-Valid-Until=false';

/** Runs apt commands chrooted in a root being built (with /proc), then empties apt's cache. */
function aptInRoot(build: string, commands: string[]): void {
  runOk(
    [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      'mount -t proc proc "$1/proc" && chroot "$1" sh -c "$2"',
      'sh',
      build,
      [...commands, `${APT} clean`].join(' && '),
    ],
    { timeoutMs: BUILD_STEP_TIMEOUT_MS, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
  );
}

function installedVersions(root: string, packages: readonly string[]): string {
  return runOk(['chroot', root, 'dpkg-query', '-W', '-f', '${Package} ${Version}\\n', ...packages]);
}

/**
 * Builds a root in a directory of its own (build-<pid>, made empty for `make`, which returns the
 * stamp) and renames it into place, so a crashed build is never mistaken for a root.
 */
function buildRoot(cacheDir: string, root: string, make: (build: string) => string): void {
  fs.mkdirSync(cacheDir, { recursive: true });
  // what a build killed half-way left
  for (const d of fs.readdirSync(cacheDir)) {
    const pid = /^build-(\d+)$/.exec(d)?.[1];
    if (pid !== undefined && !isAlive(Number(pid))) fs.rmSync(path.join(cacheDir, d), { recursive: true, force: true });
  }
  const build = path.join(cacheDir, `build-${process.pid}`);
  fs.mkdirSync(build);
  try {
    const stamp = make(build);
    fs.writeFileSync(path.join(build, STAMP), stamp);
    // a root of another recipe goes; the new one takes its place in one rename
    if (fs.existsSync(root)) fs.renameSync(root, path.join(cacheDir, `old-${process.pid}`));
    fs.renameSync(build, root);
  } finally {
    fs.rmSync(build, { recursive: true, force: true });
    for (const old of fs.readdirSync(cacheDir)) {
      if (old.startsWith('old-')) fs.rmSync(path.join(cacheDir, old), { recursive: true, force: true });
    }
  }
}
