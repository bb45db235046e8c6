/**
 * A CNI runtime as the tests play it: exec the plugin with the CNI_*
 * variables and the configuration on stdin, exactly as libcni does, and read
 * the exit code and stdout. The plugin is lanplug's executable, compiled from
 * native/cni-shim.c into a temp directory by the product's own builder.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { buildCniExecutable } from '../../src/install/cni';
import { createLan, type Lan, type LanHost } from '../lab/lan';
import { DaemonLab, type DaemonProcess } from './daemon';
import { repoRoot } from './repo';

/** The lab LAN's gateway (on its bridge). */
export const CNI_LAB_GATEWAY = '172.16.86.1';
/** The lab daemon's arguments (a test restarting it gives them again). */
export const CNI_DAEMON_ARGS = ['--cni-network-idle', '1'];

export interface CniLab {
  lan: Lan;
  /** The host the runtime and the daemon run on: eth0 172.16.86.2/24 on the LAN. */
  host: LanHost;
  daemon: DaemonLab;
  /** The daemon running now (a test that kills and restarts it sets it again). */
  daemonProcess: DaemonProcess;
  /** The daemon's CNI socket, compiled into `plugin`. */
  socket: string;
  plugin: string;
  close(): void;
}

/**
 * A LAN with its gateway, a host on it running the real daemon (idle CNI
 * networks go after 1 s, 60 s by default, so that their removal is seen),
 * and lanplug's executable built for that daemon's socket.
 */
export async function startCniLab(): Promise<CniLab> {
  const lan = createLan();
  const host = lan.addLanHost('host', '172.16.86.2/24', { gateway: CNI_LAB_GATEWAY });
  const daemon = new DaemonLab(host.ns);
  const socket = join(daemon.stateDir, 'cni.sock');
  // In the daemon lab's directory: gone with daemon.close().
  const plugin = buildPlugin(socket, daemon.dir);
  const daemonProcess = await daemon.start({}, CNI_DAEMON_ARGS);
  return {
    lan,
    host,
    daemon,
    daemonProcess,
    socket,
    plugin,
    close(): void {
      daemon.close();
      lan.destroy();
    },
  };
}

export interface CniCall {
  command: 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  /** Extra or overriding environment (e.g. to drop a variable: set it to undefined). */
  env?: NodeJS.ProcessEnv;
  /**
   * The network namespace (a name under /run/netns) the plugin runs in, as a runtime on that host would
   * run it. lanplug's executable does nothing in its own namespace; a reference plugin makes its link there.
   */
  hostNamespace?: string;
}

export interface CniOutcome {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed, or null when it is not JSON. */
  json: Record<string, unknown> | null;
}

/** Builds the executable into `dir` (a directory its lab removes); returns its path. */
export function buildPlugin(socket: string, dir: string): string {
  const out = join(dir, 'lanplug-macvlan');
  buildCniExecutable(repoRoot(), out, socket);
  return out;
}

export function runPlugin(plugin: string, call: CniCall, stdin: string): Promise<CniOutcome> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    CNI_COMMAND: call.command,
    CNI_PATH: '/opt/cni/bin',
    ...(call.containerId === undefined ? {} : { CNI_CONTAINERID: call.containerId }),
    ...(call.netns === undefined ? {} : { CNI_NETNS: call.netns }),
    ...(call.ifname === undefined ? {} : { CNI_IFNAME: call.ifname }),
    ...(call.args === undefined ? {} : { CNI_ARGS: call.args }),
    ...call.env,
  };
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key];
  return new Promise((resolve, reject) => {
    const [file, args] =
      call.hostNamespace === undefined
        ? [plugin, []]
        : ['nsenter', [`--net=/run/netns/${call.hostNamespace}`, '--', plugin]];
    const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, unknown> | null = null;
      try {
        json = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        json = null;
      }
      resolve({ code: code ?? -1, stdout, stderr, json });
    });
    // As Go's os/exec (libcni) does: a plugin that exits before reading all of stdin is not an error here.
    child.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    child.stdin.end(stdin);
  });
}
