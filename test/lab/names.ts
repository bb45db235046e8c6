// What the lab calls the things it makes — network namespaces, temp directories, cgroups — and
// how a name is recognised as the lab's. Made and read in this one file, so that the code that
// creates a lab and the sweep that removes a crashed one can never disagree about a name.

import { randomBytes } from 'node:crypto';
import * as path from 'node:path';

/** Every lab keeps its files in <TMP_ROOT>/<DIR_PREFIX><id>. */
export const TMP_ROOT = '/tmp';
export const DIR_PREFIX = 'lp-lab-';

/**
 * Namespace names the lab creates: lp-lan-<id>, lp-dh-<id>-<n>, lp-lh-<id>-<name>; and the benches'
 * (test/bench): lp-bn-<id>-<name>.
 */
export const NS_RE = /^lp-(?:lan|dh|lh|bn)-([0-9a-f]{6})(?:-[a-z0-9]+)?$/;
/**
 * cgroup directories the lab's engines put their containers in: lp-lab-<id>-<n> (a Docker host's
 * --cgroup-parent), lp-lab-<id>-podman (a Podman host's, its conmons too).
 */
export const CGROUP_RE = /^lp-lab-([0-9a-f]{6})(?:-\d+|-podman)?$/;
const ID_RE = /^[0-9a-f]{6}$/;

const issued = new Set<string>();

/** A fresh lab id: 6 hex digits. */
export function newLabId(): string {
  const id = randomBytes(3).toString('hex');
  issued.add(id);
  return id;
}

/** Every lab id this process has made: what a test asserts its own teardown on (other labs may be running). */
export function issuedLabIds(): ReadonlySet<string> {
  return issued;
}

export const labDir = (id: string): string => path.join(TMP_ROOT, `${DIR_PREFIX}${id}`);
export const lanNs = (id: string): string => `lp-lan-${id}`;
export const lanHostNs = (id: string, name: string): string => `lp-lh-${id}-${name}`;
export const dockerHostNs = (id: string, index: number): string => `lp-dh-${id}-${index}`;
export const dockerHostCgroup = (id: string, index: number): string => `lp-lab-${id}-${index}`;
/** A bench's namespace (a scale run's, a runtime's container in a DHCP bench): lp-bn-<id>-<name>. */
export const benchNs = (id: string, name: string): string => `lp-bn-${id}-${name}`;
export const podmanHostCgroup = (id: string): string => `lp-lab-${id}-podman`;

/** The lab id of a directory name in TMP_ROOT (lp-lab-<id>), or undefined if it is not a lab's. */
export function labIdOfDir(name: string): string | undefined {
  const id = name.startsWith(DIR_PREFIX) ? name.slice(DIR_PREFIX.length) : '';
  return ID_RE.test(id) ? id : undefined;
}
