// How a Docker host's dockerd and containerd are started: in the host's network namespace and
// a private mount namespace of their own, where the host's plugin directory is bind-mounted over
// /run/docker/plugins and its containerd run directory over /run/containerd, or, with an engine
// root (Docker 28's), pivoted into that root. containerd's configuration and dockerd's command
// line are made here too; docker-host.ts owns the processes' life. Why it is built this way:
// README.md here.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEBIAN_DOCKER_CLIENT, ENGINE_HOST_TREE } from './engine';
import { cleanEnv } from './proc';

/** dockerd and containerd: the machine's, or at the same paths in the engine's root. */
export const DOCKERD = '/usr/sbin/dockerd';
export const CONTAINERD = '/usr/bin/containerd';
/** Debian's client, matching the 20.10 daemon; a DockerHost's own is DockerHost.client. */
export const DOCKER_CLIENT = DEBIAN_DOCKER_CLIENT;
/** Where dockerd 20.10 looks for plugin sockets; hard-coded in moby's pkg/plugins (no flag). */
export const DOCKER_PLUGIN_SOCKET_DIR = '/run/docker/plugins';
/** Where containerd 1.6's runc shims keep their sockets and state; hard-coded too. */
const CONTAINERD_RUN_DIR = '/run/containerd';
const SYS_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Run by /bin/sh inside `unshare --mount` (a private mount namespace):
 *   $1 plugin dir, $2 containerd run dir, $3 containerd dir (config.toml; the socket and pid file
 *   go there), $4 seconds to wait for containerd's socket, $5 the engine's root ('' for the
 *   machine's own), $6 the Docker host's directory, then the dockerd command line.
 * Binds the two directories, starts containerd in the background (same network and mount
 * namespace), waits for its socket against a deadline (never a try count: one try can take
 * seconds under load), then execs dockerd, which is told the socket with --containerd. dockerd
 * 20.10 gives a containerd it spawns itself only ~15 s, which a loaded machine can exceed.
 * With an engine root (ENGINE_ROOT_SETUP), the namespace pivots into it first.
 */
const MOUNT_SCRIPT = `set -e
ctrd=$3; wait_s=$4; root=$5; hostdir=$6
if [ -z "$root" ]; then
  mount --bind "$1" ${DOCKER_PLUGIN_SOCKET_DIR}
  mount --bind "$2" ${CONTAINERD_RUN_DIR}
else
  plugins=$1
  ENGINE_ROOT_SETUP
fi
shift 6
deadline=$(( $(date +%s) + wait_s ))
${CONTAINERD} --config "$ctrd/config.toml" &
pid=$!
echo "$pid" > "$ctrd/containerd.pid"
until [ -S "$ctrd/containerd.sock" ]; do
  state=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null || true)
  case "$state" in ''|Z|X) echo "lab: containerd exited before its socket appeared" >&2; exit 1;; esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "lab: containerd's socket did not appear within $wait_s s" >&2; kill "$pid"; exit 1
  fi
  sleep 0.1
done
exec "$@"`.replace(
  'ENGINE_ROOT_SETUP',
  // The engine's root (sid's) becomes this mount namespace's root, by pivot_root and not chroot:
  // runc's `docker exec` enters a container's mount namespace, which puts it at that namespace's
  // root; under a chroot that is the machine's tree, not the container's (seen with runc 1.3). The
  // root is bound onto itself (pivot_root needs a mount point) read-only (every Docker host shares
  // it) and gets /proc, a fresh /sys (showing this network namespace's links), the machine's
  // cgroups and /dev, its own tmpfs /run and /tmp. The Docker host's directory (under /tmp) is
  // bound at the same path inside as a shared peer of the same directory in the machine's tree,
  // which stays mounted at /${ENGINE_HOST_TREE}: the network namespaces dockerd mounts under its
  // exec-root are seen there too (lanplug runs in this mount namespace with that tree as its
  // root, and opens them).
  `mount --bind "$root" "$root"
  mount -o remount,bind,ro "$root"
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mkdir -p "$root${DOCKER_PLUGIN_SOCKET_DIR}" "$root$hostdir"
  mount --bind "$plugins" "$root${DOCKER_PLUGIN_SOCKET_DIR}"
  mount --bind "$hostdir" "$hostdir"
  mount --make-shared "$hostdir"
  mount --bind "$hostdir" "$root$hostdir"
  cd "$root"
  pivot_root . ${ENGINE_HOST_TREE}
  cd /`,
);

/** TOML basic string (JSON's escaping is a subset TOML accepts). */
const tomlString = (s: string): string => JSON.stringify(s);

/** What dockerd and containerd are told: every path under the Docker host's own directory. */
export interface DockerdPaths {
  /** The Docker host's directory (daemon.json and the trust key go there). */
  dir: string;
  dataRoot: string;
  execRoot: string;
  sock: string;
  pidFile: string;
  cgroupParent: string;
  containerdDir: string;
  containerdSock: string;
}

/** containerd's configuration: everything under containerdDir, nothing read from /etc or written to /opt. */
export function writeContainerdConfig(paths: DockerdPaths): void {
  const d = paths.containerdDir;
  fs.writeFileSync(
    path.join(d, 'config.toml'),
    [
      'version = 2',
      `root = ${tomlString(path.join(d, 'root'))}`,
      `state = ${tomlString(path.join(d, 'state'))}`,
      // as dockerd configures the containerd it starts itself: no Kubernetes CRI
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${tomlString(paths.containerdSock)}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${tomlString(path.join(d, 'opt'))}`,
      '',
    ].join('\n'),
  );
}

/** dockerd's arguments (its config file is written here): kept by the host for a restart. */
export function dockerdArguments(paths: DockerdPaths, extra: readonly string[]): string[] {
  const config = path.join(paths.dir, 'daemon.json');
  // keep the daemon's trust key out of /etc/docker/key.json (20.10 has no flag for it, only this
  // key; Docker 28 keeps no trust key and accepts the key as a no-op)
  fs.writeFileSync(config, JSON.stringify({ 'deprecated-key-path': path.join(paths.dir, 'key.json') }) + '\n');
  return [
    '--containerd',
    paths.containerdSock,
    '--iptables=false',
    '--ip6tables=false',
    '--bridge=none',
    '--userland-proxy=false',
    '--data-root',
    paths.dataRoot,
    '--exec-root',
    paths.execRoot,
    '-H',
    `unix://${paths.sock}`,
    '--pidfile',
    paths.pidFile,
    '--config-file',
    config,
    '--cgroup-parent',
    paths.cgroupParent,
    '--shutdown-timeout',
    '2',
    ...extra,
  ];
}

/**
 * The command line that enters the host's network namespace, makes the private mount namespace
 * (MOUNT_SCRIPT), starts containerd and execs dockerd with `dockerdArgv`.
 */
export function launchArgv(opts: {
  netns: string;
  pluginDir: string;
  containerdRunDir: string;
  containerdDir: string;
  readyMs: number;
  engineRoot: string | undefined;
  hostDir: string;
  dockerdArgv: readonly string[];
}): string[] {
  // mount points for the binds inside dockerd's mount namespace (empty dirs; docker.io makes them too)
  fs.mkdirSync(DOCKER_PLUGIN_SOCKET_DIR, { recursive: true });
  fs.mkdirSync(CONTAINERD_RUN_DIR, { recursive: true });
  return [
    'nsenter',
    `--net=/run/netns/${opts.netns}`,
    '--',
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--',
    '/bin/sh',
    '-c',
    MOUNT_SCRIPT,
    'sh',
    opts.pluginDir,
    opts.containerdRunDir,
    opts.containerdDir,
    String(Math.ceil(opts.readyMs / 1000)),
    opts.engineRoot ?? '',
    opts.hostDir,
    DOCKERD,
    ...opts.dockerdArgv,
  ];
}

/** Starts `argv` detached, its output appended to `logPath`; its pid (every wrapper execs, so it is dockerd's). */
export function spawnDetached(argv: readonly string[], logPath: string): number {
  const log = fs.openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(argv[0] as string, argv.slice(1), {
      stdio: ['ignore', log, log],
      detached: true,
      env: cleanEnv({ PATH: SYS_PATH }),
    });
  } finally {
    fs.closeSync(log);
  }
  child.on('error', () => undefined);
  child.unref();
  if (child.pid === undefined) throw new Error(`lab: could not start dockerd: ${argv.join(' ')}`);
  return child.pid;
}
