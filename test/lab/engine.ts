// The Docker engines a lab Docker host can run, and which one this test process's labs use.
//   docker20: Debian 12's docker.io (dockerd 20.10, containerd 1.6) on the machine itself, driven
//             by Debian's own client (/usr/bin/docker, API 1.41).
//   docker28: Debian sid's docker.io (dockerd 28.5, containerd 2.1, runc 1.3) in the sid root of
//             sid-root.ts (the root of its mount namespace), driven by sid's docker-cli 28.5 (API 1.51) run on the machine
//             (it needs only libc), as users of Docker 28 drive it.
// A test file of the Docker 28 lane (test/docker28/) calls setLabEngine('docker28') and imports
// the e2e file it runs again: every lab that file makes then runs dockerd 28.

import { HOST_TREE, ensureSidRoot } from './sid-root';

export const ENGINE_NAMES = ['docker20', 'docker28'] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

export interface Engine {
  readonly name: EngineName;
  /** The root dockerd and containerd run in (their mount namespace pivots into it); undefined: the machine's own. */
  readonly root: string | undefined;
  /** The docker client (run on the machine, outside any root). */
  readonly client: string;
  /** What dockerd's version must look like. */
  readonly version: RegExp;
}

/** Where the machine's tree stays mounted in an engine root once dockerd's mount namespace has pivoted into it. */
export const ENGINE_HOST_TREE = HOST_TREE;

/** Debian's client, matching the 20.10 daemon (/usr/local/bin/docker may be a newer client). */
export const DEBIAN_DOCKER_CLIENT = '/usr/bin/docker';

let current: EngineName = 'docker20';

/** Makes every lab of this test process (from now on) run `name`. */
export function setLabEngine(name: EngineName): void {
  current = name;
}

/** The engines this process's Docker hosts ran, with the version each dockerd reported. */
const answered = new Map<EngineName, string>();

/** Notes that a Docker host of `name` answered as dockerd `version` (test output names it; engine-proof.ts). */
export function engineAnswered(name: EngineName, version: string): void {
  answered.set(name, version);
}

export function enginesAnswered(): ReadonlyMap<EngineName, string> {
  return answered;
}

/** The engine this process's labs run unless told otherwise. */
export function labEngine(): EngineName {
  return current;
}

/** The engine's binaries; for docker28 the sid root is built first if it is missing (about 30 s). */
export function resolveEngine(name: EngineName): Engine {
  if (name === 'docker20') return { name, root: undefined, client: DEBIAN_DOCKER_CLIENT, version: /^20\.10\./ };
  const root = ensureSidRoot();
  return { name, root, client: `${root}/usr/bin/docker`, version: /^28\./ };
}
