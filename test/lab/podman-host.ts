// A Podman host of the lab: Podman 5.8 (the sid root's) chrooted in that root, in one mount
// namespace that lives as long as the host, held by a process that does nothing else (as a Docker
// host's mount namespace is dockerd's). Every podman command enters it with nsenter, so what one
// command leaves (a detached container's conmon and runc state under /run, its netns mount)
// is there for the next: `podman run -d`, `podman restart`, `podman rm -f`.
//
// The namespace: the root bound onto itself (runc refuses to remount `/` otherwise), /proc, a
// fresh /sys, the host's cgroups and /dev, a tmpfs /run whose netns directory is the host's
// /run/netns bound in (made under `--propagation unchanged`, it stays a peer of the host's: the
// namespaces Podman makes there are seen by lanplug's daemon, which runs outside the root), and
// the host's directory and the daemon's socket directory at their own paths. Everything of
// Podman's (containers.conf, networks, storage, run root, plugins) is in the host's directory.

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isAlive, sleepSync, terminateSync } from './proc';

/** Sets the namespace up, says so, then holds it: $1 root, $2 the host's directory, $3 socket dir. */
const HOLDER = `#!/bin/sh
set -e
root=$1; dir=$2; sockets=$3
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -p "$root/run/netns"
mount --bind /run/netns "$root/run/netns"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mkdir -p "$root$dir" "$root$sockets"
mount --bind "$dir" "$root$dir"
mount --bind "$sockets" "$root$sockets"
: > "$dir/holder.ready"
exec sleep infinity
`;
const READY_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 120_000;

export interface PodmanOutcome {
  code: number;
  stdout: string;
  stderr: string;
  /** The whole command's wall time. */
  ms: number;
}

export class PodmanHost {
  private holderPid = 0;

  private constructor(
    /** The sid root Podman runs chrooted in. */
    readonly root: string,
    /** Podman's everything: containers.conf, networks, storage, run root, plugins. */
    readonly dir: string,
    /** The lab host's network namespace every command runs in. */
    readonly netns: string,
  ) {}

  /** Starts the holder and waits until its namespace is set up. */
  static start(root: string, dir: string, netns: string, socketDir: string): PodmanHost {
    const host = new PodmanHost(root, dir, netns);
    const script = path.join(dir, 'holder.sh');
    fs.writeFileSync(script, HOLDER, { mode: 0o755 });
    const log = fs.openSync(path.join(dir, 'holder.log'), 'a');
    // In the lab host's network namespace: the lab's sweep (every process of a lab namespace) ends a
    // holder a crashed test left. nsenter and unshare exec without forking: the child is the holder.
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${netns}`,
        '--',
        'unshare',
        '--mount',
        '--propagation',
        'unchanged',
        '--',
        script,
        root,
        dir,
        socketDir,
      ],
      { detached: true, stdio: ['ignore', log, log] },
    );
    fs.closeSync(log);
    child.unref();
    host.holderPid = child.pid ?? 0;
    const ready = path.join(dir, 'holder.ready');
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!fs.existsSync(ready)) {
      if (!isAlive(host.holderPid) || Date.now() > deadline)
        throw new Error(
          `lab: the Podman host's namespace holder failed: ${fs.readFileSync(path.join(dir, 'holder.log'), 'utf8')}`,
        );
      sleepSync(20);
    }
    return host;
  }

  /** nsenter's arguments for one Podman command: the lab host's network namespace, the held mount namespace, the root. */
  argv(args: readonly string[]): string[] {
    return [
      `--net=/run/netns/${this.netns}`,
      `--mount=/proc/${this.holderPid}/ns/mnt`,
      '--',
      'env',
      `CONTAINERS_CONF=${path.join(this.dir, 'containers.conf')}`,
      'PODMAN_IGNORE_CGROUPSV1_WARNING=1',
      'chroot',
      this.root,
      'podman',
      '--root',
      path.join(this.dir, 'storage'),
      '--runroot',
      path.join(this.dir, 'run'),
      '--storage-driver',
      'vfs',
      ...args,
    ];
  }

  podman(...args: string[]): PodmanOutcome {
    if (!isAlive(this.holderPid)) throw new Error("lab: the Podman host's namespace holder is gone");
    const started = process.hrtime.bigint();
    const r = spawnSync('nsenter', this.argv(args), { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
    return {
      code: r.status ?? -1,
      stdout: r.stdout,
      stderr: r.stderr + (r.error === undefined ? '' : String(r.error)),
      ms: Number(process.hrtime.bigint() - started) / 1e6,
    };
  }

  /** The same, without waiting: for a container that must be running while the test does something. */
  podmanAsync(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn('nsenter', this.argv(args), { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  /** Every container removed (their teardowns run), then the holder ended; the namespace goes with its last process. */
  close(): void {
    if (this.holderPid === 0 || !isAlive(this.holderPid)) return;
    this.podman('rm', '--all', '--force', '--time', '0');
    terminateSync(this.holderPid, 5_000);
  }
}
