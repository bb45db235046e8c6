// A Podman host of the lab: Podman 5.8 (the sid root's) or 6.1 (the experimental root's) chrooted
// in that root, in one mount namespace that lives as long as the host, held by a process that does
// nothing else (as a Docker host's mount namespace is dockerd's). Every podman command enters it
// with nsenter, so what one command leaves (a detached container's conmon and runc state under
// /run, its netns mount) is there for the next: `podman run -d`, `podman restart`, `podman rm -f`.
//
// The namespace: the root bound onto itself (runc refuses to remount `/` otherwise), /proc, a
// fresh /sys, the host's cgroups (for Podman 6 their cgroup v2 hierarchy) and /dev, a tmpfs /run
// whose netns directory is the host's /run/netns bound in (the namespaces Podman makes there are
// seen by lanplug's daemon, which runs outside the root), and the host's directory and the daemon's
// socket directory at their own paths. Everything of Podman's (containers.conf, networks, storage,
// run root, plugins) is in the host's directory, under the lab's; its containers and conmons are in
// the cgroup lp-lab-<id>-podman, so the lab's sweep finds them (and their network namespaces) after
// a crash.
//
// Only the netns mounts may reach the machine's mount namespace (see HOLDER).

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { busyboxRootfsTar } from './image';
import { podmanHostCgroup } from './names';
import { delNetns } from './ns';
import { isAlive, sleepSync, terminateSync } from './proc';
import { registerLab, unregisterLab } from './registry';
import { findCgroupDirs, mountPointsUnder, podmanNetnsOf, rmdirTree, sweepProcesses, umountUnder } from './sweep';

/**
 * Sets the namespace up, says so, then holds it: $1 root, $2 the host's directory, $3 socket dir,
 * $4 the cgroup tree seen as the root's /sys/fs/cgroup (see cgroupTree).
 *
 * The namespace is made with `--propagation unchanged`, so its /run/netns stays a peer of the
 * machine's (iproute2 makes that a shared mount): a netns Podman mounts under the root's
 * /run/netns shows in the machine's /run/netns, where lanplug's daemon opens the path Podman
 * gave netavark. Every other mount that is a peer of the machine's is made a slave before
 * anything is mounted on or under it: the mount holding the root (else, where `/` is shared, as
 * systemd makes it, binding the root onto itself and all that follows would be mounted in the
 * machine's tree too, and stay after the holder: seen in a namespace whose `/` was made rshared;
 * runc's pivot_root also refuses a root whose parent mount is shared), and the copies of /dev,
 * the cgroups and the two directories bound in (else Podman's shm and other mounts under them
 * would be). What is new here is private (its parent is no longer shared). A slave namespace
 * (`--propagation slave`) would keep everything in, the netns mounts too: the daemon, outside,
 * would no longer find them.
 */
const HOLDER = `#!/bin/sh
set -e
root=$1; dir=$2; sockets=$3; cgroups=$4
mount --make-slave "$(findmnt -n -o TARGET -T "$root")"
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind "$cgroups" "$root/sys/fs/cgroup"
mount --make-rslave "$root/sys/fs/cgroup"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -p "$root/run/netns"
mount --bind /run/netns "$root/run/netns"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mkdir -p "$root$dir" "$root$sockets"
mount --bind "$dir" "$root$dir"
mount --make-rslave "$root$dir"
mount --bind "$sockets" "$root$sockets"
mount --make-rslave "$root$sockets"
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

export interface PodmanHostOptions {
  /** The sid root Podman runs chrooted in. */
  root: string;
  /** The lab's id: the host's cgroup is lp-lab-<id>-podman. */
  labId: string;
  /** Podman's everything (containers.conf and plugins written there first); under the lab's directory. */
  dir: string;
  /** The lab host's network namespace every command runs in. */
  netns: string;
  /** The lanplug daemon's socket directory, bound in at its own path. */
  socketDir: string;
  /**
   * Podman 6 refuses cgroup v1 ("Cgroups v1 not supported"): give it the cgroup v2 hierarchy as its
   * /sys/fs/cgroup (cgroupTree). Podman 5 gets the machine's /sys/fs/cgroup as it is.
   */
  cgroupV2?: boolean;
}

/**
 * The cgroup tree a Podman host sees as /sys/fs/cgroup: the machine's, or for `v2` its cgroup v2
 * hierarchy: the whole tree on a cgroup v2 machine, the `unified` mount of systemd's hybrid layout on
 * a cgroup v1 one (as here: it has no controllers but what no v1 hierarchy took, hugetlb here, so
 * the containers must ask for none, such as Podman's default pids limit). Throws where there is none.
 */
export function cgroupTree(v2: boolean): string {
  if (!v2 || isCgroup2('/sys/fs/cgroup')) return '/sys/fs/cgroup';
  if (isCgroup2('/sys/fs/cgroup/unified')) return '/sys/fs/cgroup/unified';
  throw new Error('lab: this machine has no cgroup v2 hierarchy (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified)');
}

/** The controllers a cgroup v2 directory hands its children (`cgroup.subtree_control`). */
function subtreeControllers(dir: string): string[] {
  try {
    return fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8').split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

function isCgroup2(dir: string): boolean {
  return spawnSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).stdout.trim() === 'cgroup2fs';
}

/**
 * containers.conf of a lab Podman host: netavark, with its networks under `dir` and, given
 * `plugins`, lanplug's plugins there. runc and cgroupfs: crun fails on this machine's cgroup v1
 * layout (DESIGN: "Newer engines, run here"). With `cgroupV2` (cgroupTree), `pids_limit = 0`: the
 * cgroup v2 hierarchy here has no controllers, and runc fails writing pids.max otherwise.
 */
export function labContainersConf(opts: { dir: string; plugins?: string; cgroupV2?: boolean }): string {
  return [
    '[network]',
    'network_backend = "netavark"',
    `network_config_dir = "${path.join(opts.dir, 'networks')}"`,
    ...(opts.plugins === undefined ? [] : [`netavark_plugin_dirs = ["${opts.plugins}"]`]),
    '[engine]',
    'runtime = "runc"',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    '[containers]',
    'log_driver = "k8s-file"',
    ...(opts.cgroupV2 === true ? ['pids_limit = 0'] : []),
    '',
  ].join('\n');
}

export interface LanplugPodmanHostOptions extends Omit<PodmanHostOptions, 'socketDir'> {
  /** lanplug's executable, built for the daemon's CNI socket: installed as both of its netavark plugins. */
  plugin: string;
  /** The daemon's CNI socket (its directory is bound in). */
  socket: string;
  /** The busybox image is imported under this name. */
  image: string;
}

export class PodmanHost {
  private holderPid = 0;
  private closed = false;
  /**
   * The hybrid layout's v2 root and the controllers it handed down before this host ran (null: the
   * machine's own tree, left alone). runc, making a container's cgroup on v2, turns on every
   * controller the root has (here hugetlb, which no v1 hierarchy took); left on, the machine's own
   * Podman 4 (crun) refuses every container after ("cgroups in hybrid mode not supported").
   */
  private hybridRoot: { dir: string; before: string[] } | null = null;
  readonly root: string;
  readonly dir: string;
  readonly netns: string;
  /** The cgroup (every hierarchy) of the host's containers and conmons: `podman run --cgroup-parent`. */
  readonly cgroup: string;

  private constructor(opts: PodmanHostOptions) {
    this.root = opts.root;
    this.dir = opts.dir;
    this.netns = opts.netns;
    this.cgroup = podmanHostCgroup(opts.labId);
  }

  /**
   * The holder's command (its script written into dir): it says it is ready by creating
   * dir/holder.ready. For start(), and for a test that runs it where `/` is shared.
   */
  static holderArgv(root: string, dir: string, socketDir: string, cgroupV2 = false): string[] {
    const script = path.join(dir, 'holder.sh');
    fs.writeFileSync(script, HOLDER, { mode: 0o755 });
    return [
      'unshare',
      '--mount',
      '--propagation',
      'unchanged',
      '--',
      script,
      root,
      dir,
      socketDir,
      cgroupTree(cgroupV2),
    ];
  }

  /** Starts the holder and waits until its namespace is set up. */
  static start(opts: PodmanHostOptions): PodmanHost {
    const host = new PodmanHost(opts);
    const { root, dir, netns, socketDir } = opts;
    const tree = cgroupTree(opts.cgroupV2 === true);
    if (tree !== '/sys/fs/cgroup') host.hybridRoot = { dir: tree, before: subtreeControllers(tree) };
    // torn down on exit and SIGINT/SIGTERM too (the LAN's teardown ends the holder and conmons, not containers)
    registerLab(host);
    const log = fs.openSync(path.join(dir, 'holder.log'), 'a');
    // In the lab host's network namespace: the lab's sweep (every process of a lab namespace) ends a
    // holder a crashed test left. nsenter and unshare exec without forking: the child is the holder.
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${netns}`, '--', ...PodmanHost.holderArgv(root, dir, socketDir, opts.cgroupV2)],
      { detached: true, stdio: ['ignore', log, log] },
    );
    fs.closeSync(log);
    child.unref();
    host.holderPid = child.pid ?? 0;
    const ready = path.join(dir, 'holder.ready');
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!fs.existsSync(ready)) {
      if (!isAlive(host.holderPid) || Date.now() > deadline) {
        host.destroy();
        throw new Error(
          `lab: the Podman host's namespace holder failed: ${fs.readFileSync(path.join(dir, 'holder.log'), 'utf8')}`,
        );
      }
      sleepSync(20);
    }
    return host;
  }

  /**
   * The Podman host a lanplug lane runs: `dir` made (under the lab's directory: a crashed run's is
   * removed by the lab's sweep) with lanplug's executable as lanplug-macvlan and lanplug-ipvlan in
   * dir/plugins (netavark finds a plugin by the driver's name) and labContainersConf, the host
   * started, and busybox imported as `image`.
   */
  static startWithLanplug(opts: LanplugPodmanHostOptions): PodmanHost {
    const { dir, plugin, socket, image } = opts;
    fs.mkdirSync(dir);
    const plugins = path.join(dir, 'plugins');
    fs.mkdirSync(plugins);
    for (const name of ['lanplug-macvlan', 'lanplug-ipvlan']) fs.copyFileSync(plugin, path.join(plugins, name));
    fs.writeFileSync(
      path.join(dir, 'containers.conf'),
      labContainersConf({ dir, plugins, cgroupV2: opts.cgroupV2 === true }),
    );
    const host = PodmanHost.start({ ...opts, socketDir: path.dirname(socket) });
    const tar = path.join(dir, 'busybox.tar');
    fs.copyFileSync(busyboxRootfsTar(), tar);
    const imported = host.podman('import', tar, image);
    if (imported.code !== 0) {
      host.destroy();
      throw new Error(`lab: podman import of busybox failed: ${imported.stderr}`);
    }
    return host;
  }

  /** Where startWithLanplug put lanplug's plugins. */
  get plugins(): string {
    return path.join(this.dir, 'plugins');
  }

  /** nsenter's arguments for one command in the root: the lab host's network namespace, the held mount namespace, the root. */
  chrootArgv(command: readonly string[]): string[] {
    return [
      `--net=/run/netns/${this.netns}`,
      `--mount=/proc/${this.holderPid}/ns/mnt`,
      '--',
      'env',
      `CONTAINERS_CONF=${path.join(this.dir, 'containers.conf')}`,
      'PODMAN_IGNORE_CGROUPSV1_WARNING=1',
      'chroot',
      this.root,
      ...command,
    ];
  }

  /** nsenter's arguments for one Podman command (chrootArgv). */
  argv(args: readonly string[]): string[] {
    return this.chrootArgv([
      'podman',
      '--root',
      path.join(this.dir, 'storage'),
      '--runroot',
      path.join(this.dir, 'run'),
      '--storage-driver',
      'vfs',
      ...args.slice(0, 1),
      // the sweep knows the host's containers (and their conmons) by this cgroup
      ...(args[0] === 'run' || args[0] === 'create' ? ['--cgroup-parent', `/${this.cgroup}`] : []),
      ...args.slice(1),
    ]);
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

  /**
   * Any command of the root (netavark, say) run as Podman runs it: `input` written to its stdin,
   * which is then closed; stderr passed through.
   */
  exec(command: readonly string[], input: string): Promise<PodmanOutcome> {
    if (!isAlive(this.holderPid)) throw new Error("lab: the Podman host's namespace holder is gone");
    const started = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      const child = spawn('nsenter', this.chrootArgv(command), { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) =>
        resolve({ code: code ?? -1, stdout, stderr, ms: Number(process.hrtime.bigint() - started) / 1e6 }),
      );
      child.stdin.end(input);
    });
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

  /**
   * Every container removed (their teardowns run) while the holder lives; then the holder ended
   * (the namespace goes with its last process), and whatever outlived it killed: the processes in
   * the host's cgroup, the network namespaces Podman made for them, the cgroup. Idempotent; never throws.
   */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.holderPid !== 0 && isAlive(this.holderPid)) {
        this.podman('rm', '--all', '--force', '--time', '0');
        terminateSync(this.holderPid, 5_000);
      }
      const ours = (name: string): boolean => name === this.cgroup;
      const namespaces = podmanNetnsOf(ours);
      sweepProcesses({ netIds: new Set(), mntIds: new Set(), cgroup: ours, dirs: [] });
      for (const ns of namespaces) delNetns(ns);
      for (const cg of findCgroupDirs(ours)) rmdirTree(cg);
      this.restoreHybridRoot();
    } finally {
      unregisterLab(this);
    }
  }

  /** The hybrid v2 root's controllers as they were (hybridRoot): what runc turned on goes off again. */
  private restoreHybridRoot(): void {
    if (this.hybridRoot === null) return;
    const { dir, before } = this.hybridRoot;
    for (const controller of subtreeControllers(dir).filter((c) => !before.includes(c))) {
      try {
        fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), `-${controller}`);
      } catch (err) {
        // Busy: a cgroup below still uses it (this host's if it outlived destroy(): close() names it).
        process.stderr.write(`lab: could not turn ${controller} off again in ${dir}: ${String(err)}\n`);
      }
    }
  }

  /**
   * destroy(), then the proof that the host left the machine as it found it: throws naming a
   * controller it left on in the hybrid v2 root, or any mount under the root or the host's directory
   * here (after unmounting it).
   */
  close(): void {
    this.destroy();
    const problems: string[] = [];
    const left = [...mountPointsUnder(this.root), ...mountPointsUnder(this.dir)];
    if (left.length > 0) {
      umountUnder(this.root);
      umountUnder(this.dir);
      problems.push(
        `${left.length} mount(s) of the Podman host reached this mount namespace (unmounted now): ${left.slice(0, 8).join(', ')}`,
      );
    }
    if (this.hybridRoot !== null) {
      const { dir, before } = this.hybridRoot;
      const added = subtreeControllers(dir).filter((c) => !before.includes(c));
      // Named with what still uses it: a cgroup of this host's that outlived destroy().
      const ours = findCgroupDirs((name) => name === this.cgroup).filter((cg) => cg.startsWith(`${dir}/`));
      if (added.length > 0)
        problems.push(
          `the Podman host left ${added.join(' ')} on in ${dir}/cgroup.subtree_control${ours.length > 0 ? ` (still there: ${ours.join(' ')})` : ''}`,
        );
    }
    if (problems.length > 0) throw new Error(`lab: ${problems.join('; ')}`);
  }
}
