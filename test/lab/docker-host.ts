// A Docker host on the lab's LAN: network namespace lp-dh-<id>-<n> whose eth0 is a veth into the
// LAN bridge, running a dockerd and its own containerd in a private mount namespace where the
// host's plugin directory is bind-mounted over /run/docker/plugins (and its containerd run
// directory over /run/containerd). The engine (engine.ts) is Debian's dockerd 20.10, or sid's
// dockerd 28.5 in the sid root (the mount namespace pivots into it; the host's directory is at the
// same path inside).
// Everything the host keeps is under <lab dir>/dh<n>. It owns its processes' life (start, restart,
// teardown that leaves no process, mount, cgroup or file behind; how they are launched is
// dockerd-launch.ts), the Docker client calls (docker/dockerOk) and exec in its namespaces. Why it
// is built this way: README.md here.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DOCKERD, dockerdArguments, launchArgv, spawnDetached, writeContainerdConfig } from './dockerd-launch';
import { engineAnswered, ENGINE_HOST_TREE, labEngine, resolveEngine, type Engine, type EngineName } from './engine';
import { busyboxRootfsTar } from './image';
import type { Lan } from './lan';
import { dockerHostCgroup, dockerHostNs } from './names';
import { addNetns, addrArgs, delNetns, nsExecArgv, sysctlsNoDad, type MountNs } from './ns';
import {
  CommandError,
  cleanEnv,
  isAlive,
  nsIdentity,
  readOr,
  run,
  runOk,
  sleep,
  tail,
  terminateSync,
  type RunOptions,
  type RunResult,
} from './proc';
import { findCgroupDirs, rmdirTree, sweepProcesses, umountUnder } from './sweep';

export { CONTAINERD, DOCKER_CLIENT, DOCKER_PLUGIN_SOCKET_DIR, DOCKERD } from './dockerd-launch';

/** Default for DockerHostOptions.readyTimeoutMs: containerd's socket, then `docker info`, under load. */
const READY_TIMEOUT_MS = 120_000;
/**
 * Default limit of one docker client call: a guard against a hung call, not a performance bound
 * (a cold `docker run` in the VM reads runc, the shim and docker-init over 9p under TCG).
 */
const DOCKER_CALL_TIMEOUT_MS = 300_000;

/** Where a DockerHost's processes stop on teardown; Lanplug implements it (lanplug.ts). */
export interface HostDaemon {
  stopSync(): void;
}

export interface DockerHostOptions {
  /** Addresses for eth0 (none by default: macvlan/ipvlan children carry the containers' addresses). */
  addresses?: string[];
  /** Enable hairpin on this host's bridge port (for macvlan vepa mode). */
  hairpin?: boolean;
  /** Import the busybox image as alpine:latest (default true). */
  image?: boolean;
  /** Extra dockerd arguments, e.g. ['--experimental']. */
  dockerdArgs?: string[];
  /** The Docker engine (default: labEngine(), Debian's 20.10 unless the test file chose another). */
  engine?: EngineName;
  /** How long to wait for containerd's socket and then for `docker info` to answer (default 120 s). */
  readyTimeoutMs?: number;
}

export class DockerHost {
  readonly ns: string;
  /** This host's port on the LAN bridge (in the LAN namespace). */
  readonly port: string;
  readonly dir: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly sock: string;
  readonly pidFile: string;
  /** dockerd's and containerd's output. */
  readonly logPath: string;
  /** The directory dockerd sees as /run/docker/plugins: put plugin sockets here. */
  readonly pluginDir: string;
  readonly cgroupParent: string;
  readonly clientConfigDir: string;
  /** containerd's config, root, state, socket and pid file. */
  readonly containerdDir: string;
  readonly containerdSock: string;
  /** @internal */ readonly containerdRunDir: string;
  /** @internal */ readonly lanplugs = new Set<HostDaemon>();
  dockerdPid = 0;
  /** What dockerd says its version is (`docker info`), once it answered. */
  serverVersion = '';
  private mntId: string | undefined;
  private netId: string | undefined;
  private destroyed = false;
  private lanplugCount = 0;
  /** dockerd's arguments, kept for a restart. */
  private dockerdArgv: string[] = [];

  constructor(
    readonly lan: Lan,
    readonly index: number,
    /** The engine this host runs: its binaries, its root, its client. */
    readonly engine: Engine,
  ) {
    this.ns = dockerHostNs(lan.id, index);
    this.port = `dh${index}`;
    this.dir = path.join(lan.dir, `dh${index}`);
    this.dataRoot = path.join(this.dir, 'data');
    this.execRoot = path.join(this.dir, 'run');
    this.sock = path.join(this.dir, 'docker.sock');
    this.pidFile = path.join(this.dir, 'docker.pid');
    this.logPath = path.join(this.dir, 'dockerd.log');
    this.pluginDir = path.join(this.dir, 'plugins');
    this.containerdRunDir = path.join(this.dir, 'containerd');
    this.containerdDir = path.join(this.dir, 'ctrd');
    this.containerdSock = path.join(this.containerdDir, 'containerd.sock');
    this.clientConfigDir = path.join(this.dir, 'client');
    this.cgroupParent = dockerHostCgroup(lan.id, index);
  }

  /**
   * The private mount namespace of dockerd and containerd (where the overlay and netns mounts, and
   * the plugin dir bind, live): dockerd's, or containerd's while dockerd is stopped for a restart.
   */
  get mntNs(): string | undefined {
    if (this.dockerdPid !== 0 && isAlive(this.dockerdPid)) return `/proc/${this.dockerdPid}/ns/mnt`;
    const containerd = this.containerdPid();
    return containerd === undefined ? undefined : `/proc/${containerd}/ns/mnt`;
  }

  /**
   * That mount namespace with the root the lab's programs (lanplug, ip, node) run in: dockerd's
   * own root on the machine's engine (the VM's dockerd runs in a chroot of the host root); the
   * machine's tree kept at /ENGINE_HOST_TREE when dockerd's root is the engine's.
   */
  get mount(): MountNs | undefined {
    const ns = this.mntNs;
    if (ns === undefined) return undefined;
    const root = ns.replace(/\/ns\/mnt$/, '/root');
    return { ns, root: this.engine.root === undefined ? root : `${root}/${ENGINE_HOST_TREE}` };
  }

  /** The docker client this host's engine is driven with (sid's 28.5 for docker28). */
  get client(): string {
    return this.engine.client;
  }

  /** Stops dockerd as systemd would (SIGTERM), leaving containerd, the mounts and lanplug as they are. */
  stopDockerd(): void {
    if (this.dockerdPid !== 0) terminateSync(this.dockerdPid, 60_000);
  }

  /**
   * Starts dockerd again with the same command line, in the same network namespace and in the
   * mount namespace containerd kept alive; resolves when `docker info` answers, with how long that
   * took (dockerd must never wait on a plugin at boot).
   */
  async startDockerdAgain(readyMs = READY_TIMEOUT_MS): Promise<number> {
    const mnt = this.mount;
    if (mnt === undefined) throw new Error('lab: containerd is gone; the Docker host cannot be restarted');
    if (this.dockerdPid !== 0 && isAlive(this.dockerdPid)) throw new Error('lab: dockerd is still running');
    const started = Date.now();
    // dockerd's root: the mount namespace's own (the engine's root after its pivot), or dockerd's
    const root = this.engine.root === undefined ? mnt.root : undefined;
    const argv = nsExecArgv(this.ns, [DOCKERD, ...this.dockerdArgv], { ns: mnt.ns, root });
    this.dockerdPid = spawnDetached(argv, this.logPath);
    await this.waitForDocker(readyMs);
    return Date.now() - started;
  }

  private async waitForDocker(readyMs: number): Promise<void> {
    const deadline = Date.now() + readyMs;
    for (;;) {
      if (!isAlive(this.dockerdPid)) {
        throw new Error(
          `lab: dockerd exited during start-up; log ${this.logPath}:\n${tail(readOr(this.logPath, ''), 30)}`,
        );
      }
      const r = this.docker(['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 20_000 });
      if (r.status === 0) {
        this.serverVersion = r.stdout.trim();
        // a lane must never pass on another engine than the one it names
        if (!this.engine.version.test(this.serverVersion)) {
          throw new Error(`lab: ${this.engine.name} expected, but dockerd says it is ${this.serverVersion}`);
        }
        engineAnswered(this.engine.name, this.serverVersion);
        return;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `lab: dockerd did not answer \`docker info\` within ${readyMs} ms; last error: ${r.stderr.trim()}\nlog:\n${tail(readOr(this.logPath, ''), 30)}`,
        );
      }
      await sleep(100);
    }
  }

  /** The pid of this host's containerd while it runs (checked against its command line). */
  containerdPid(): number | undefined {
    const pid = Number(readOr(path.join(this.containerdDir, 'containerd.pid'), '').trim());
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
    const argv = readOr(`/proc/${pid}/cmdline`, '').split('\0');
    return argv.includes(path.join(this.containerdDir, 'config.toml')) ? pid : undefined;
  }

  /** @internal */ async setUp(opts: DockerHostOptions): Promise<void> {
    for (const d of [
      this.dataRoot,
      this.execRoot,
      this.pluginDir,
      this.containerdRunDir,
      this.containerdDir,
      this.clientConfigDir,
    ]) {
      fs.mkdirSync(d, { recursive: true });
    }
    // unix socket paths are limited to 108 bytes; containerd's longest one is its ttrpc socket
    const longest = `${this.containerdSock}.ttrpc`;
    if (longest.length > 100) throw new Error(`lab: Docker host directory too long for unix sockets: ${longest}`);
    addNetns(this.ns);
    this.netId = nsIdentity('net', `/run/netns/${this.ns}`);
    sysctlsNoDad(this.ns);
    this.lan.plug(this.port, this.ns);
    for (const a of opts.addresses ?? []) runOk(['ip', '-n', this.ns, ...addrArgs(a, 'eth0')]);
    if (opts.hairpin === true) this.setHairpin(true);
    await this.startDockerd(opts);
    if (opts.image !== false) this.importImage();
  }

  private async startDockerd(opts: DockerHostOptions): Promise<void> {
    writeContainerdConfig(this);
    const readyMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS;
    this.dockerdArgv = dockerdArguments(this, opts.dockerdArgs ?? []);
    const argv = launchArgv({
      netns: this.ns,
      pluginDir: this.pluginDir,
      containerdRunDir: this.containerdRunDir,
      containerdDir: this.containerdDir,
      readyMs,
      engineRoot: this.engine.root,
      hostDir: this.dir,
      dockerdArgv: this.dockerdArgv,
    });
    this.dockerdPid = spawnDetached(argv, this.logPath);
    await this.waitForDocker(readyMs);
    this.mntId = nsIdentity('mnt', `/proc/${this.dockerdPid}/ns/mnt`);
  }

  /** Imports the cached busybox rootfs as alpine:latest (CMD ["ash"]). */
  importImage(tag = 'alpine:latest'): void {
    this.dockerOk(['import', '--change', 'CMD ["ash"]', busyboxRootfsTar(), tag]);
  }

  /** Runs the engine's docker client against this host's dockerd (limit: opts.timeoutMs, default 300 s). Never throws. */
  docker(args: readonly string[], opts: RunOptions = {}): RunResult {
    return run([this.client, '-H', `unix://${this.sock}`, ...args], {
      timeoutMs: DOCKER_CALL_TIMEOUT_MS,
      ...opts,
      env: cleanEnv({ DOCKER_CONFIG: this.clientConfigDir, ...(opts.env ?? {}) }),
    });
  }

  /** Like docker(), but throws CommandError (naming the command and its stderr) on failure; returns stdout. */
  dockerOk(args: readonly string[], opts: RunOptions = {}): string {
    const argv = [this.client, '-H', `unix://${this.sock}`, ...args];
    const r = this.docker(args, opts);
    if (r.status !== 0) throw new CommandError(argv, r);
    return r.stdout;
  }

  /** Runs the Docker client without blocking (for bursts of concurrent commands); never rejects. */
  dockerAsync(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(this.client, ['-H', `unix://${this.sock}`, ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: cleanEnv({ DOCKER_CONFIG: this.clientConfigDir }),
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('error', (err) => resolve({ code: null, stderr: String(err) }));
      child.on('close', (code) => resolve({ code, stderr }));
    });
  }

  /** Runs argv in this host's network namespace and dockerd's mount namespace (via nsenter). */
  exec(argv: readonly string[], opts?: RunOptions): RunResult {
    return run(nsExecArgv(this.ns, argv, this.mount), opts);
  }
  execOk(argv: readonly string[], opts?: RunOptions): string {
    return runOk(nsExecArgv(this.ns, argv, this.mount), opts);
  }

  /** Turns hairpin mode of this host's bridge port on or off (needed for macvlan vepa mode). */
  setHairpin(on: boolean): void {
    runOk([
      'ip',
      '-n',
      this.lan.ns,
      'link',
      'set',
      'dev',
      this.port,
      'type',
      'bridge_slave',
      'hairpin',
      on ? 'on' : 'off',
    ]);
  }

  /** dockerd's (and its containerd's) log so far. */
  dockerdLog(): string {
    return readOr(this.logPath, '');
  }

  /** @internal */ nextLanplugIndex(): number {
    return ++this.lanplugCount;
  }

  /**
   * Removes all containers, stops dockerd, then containerd (SIGTERM, then SIGKILL), stops lanplug
   * daemons started here, kills anything left in the namespaces/cgroups (shims, container
   * processes), deletes the namespace and the cgroup dirs, unmounts and removes the temp dirs.
   * Idempotent and synchronous.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      if (this.dockerdPid !== 0 && isAlive(this.dockerdPid)) {
        const ids = this.docker(['ps', '-aq'], { timeoutMs: 30_000 })
          .stdout.split('\n')
          .filter((s) => s !== '');
        if (ids.length > 0) this.docker(['rm', '-f', ...ids], { timeoutMs: 60_000 });
        terminateSync(this.dockerdPid, 15_000);
      }
      const containerd = this.containerdPid();
      if (containerd !== undefined) terminateSync(containerd, 10_000);
      for (const lp of [...this.lanplugs]) lp.stopSync();
      sweepProcesses({
        netIds: new Set([this.netId ?? nsIdentity('net', `/run/netns/${this.ns}`) ?? '-']),
        mntIds: new Set(this.mntId !== undefined ? [this.mntId] : []),
        cgroup: (n) => n === this.cgroupParent,
        dirs: [this.dir],
      });
      delNetns(this.ns);
      for (const d of findCgroupDirs((n) => n === this.cgroupParent)) rmdirTree(d);
      umountUnder(this.dir);
      fs.rmSync(this.dir, { recursive: true, force: true });
    } finally {
      this.lan.dockerHosts.delete(this);
    }
  }
}

/**
 * Creates a Docker host on the LAN: namespace lp-dh-<id>-<n> whose eth0 is a veth into br0, and a
 * real dockerd in it (own data-root, exec-root, containerd, cgroup parent, socket; the plugin
 * socket directory is DockerHost.pluginDir). Resolves once `docker info` answers and the image is imported.
 */
export async function createDockerHost(lan: Lan, opts: DockerHostOptions = {}): Promise<DockerHost> {
  const engine = resolveEngine(opts.engine ?? labEngine());
  const dh = new DockerHost(lan, lan.nextHost++, engine);
  lan.dockerHosts.add(dh);
  try {
    await dh.setUp(opts);
  } catch (e) {
    dh.destroy();
    throw e;
  }
  return dh;
}
