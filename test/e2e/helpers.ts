/** Assertions shared by the Docker end-to-end tests. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, beforeEach } from 'node:test';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { createLan, type Lan } from '../lab/lan';
import { startLanplug, type Lanplug } from '../lab/lanplug';
import { runOk, sleepSync } from '../lab/proc';
import { repoRoot } from '../support/repo';

export interface ContainerNetwork {
  Gateway: string;
  IPAddress: string;
  IPPrefixLen: number;
  IPv6Gateway: string;
  GlobalIPv6Address: string;
  GlobalIPv6PrefixLen: number;
  MacAddress: string;
}

/** `docker container inspect` -> NetworkSettings.Networks[network]. */
export function containerNetwork(host: DockerHost, container: string, network: string): ContainerNetwork {
  const [inspected] = JSON.parse(host.dockerOk(['container', 'inspect', container])) as {
    NetworkSettings: { Networks: Record<string, ContainerNetwork> };
  }[];
  const net = inspected?.NetworkSettings.Networks[network];
  assert.ok(net, `container ${container} is not on network ${network}`);
  return net;
}

/** No link lanplug makes (lp-*, dm-*) is left in the Docker host's namespace. */
export function assertNoLanplugLinks(host: DockerHost): void {
  const links = host.execOk(['ip', '-o', 'link', 'show']);
  const ours = links.split('\n').filter((l) => /^\d+: (lp-|lh-|lpp-|lpe-|dm-)/.test(l));
  assert.deepEqual(ours, [], 'links left behind in the Docker host namespace');
}

/** What `lanplug status` prints for the daemon's state directory. */
export function lanplugStatus(plugin: Lanplug): string {
  return runOk([process.execPath, join(repoRoot(), 'bin', 'lanplug'), 'status', '--state-dir', plugin.stateDir]).trim();
}

/** Output lines with trailing blanks removed (busybox pads some), empty lines dropped. */
export function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');
}

/** Removes every container and every non-builtin network: a clean start for the next test. */
export function resetDocker(host: DockerHost): void {
  const containers = lines(host.dockerOk(['ps', '-aq']));
  if (containers.length > 0) host.docker(['rm', '-f', ...containers]);
  // dockerd 20.10 answers `rm -f` before it has left the container's networks: a network may still have
  // "active endpoints" for a moment.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const networks = lines(host.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).filter(
      (n) => !['bridge', 'host', 'none'].includes(n),
    );
    if (networks.length === 0 || host.docker(['network', 'rm', ...networks]).status === 0 || Date.now() > deadline)
      return;
    sleepSync(100);
  }
}

/** Retries `fn` until it stops throwing, for at most `ms` (for things the kernel finishes in the background, like DAD). */
export async function eventually<T>(fn: () => T, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

export interface LabContext {
  lan: Lan;
  host: DockerHost;
  plugin: Lanplug;
}

/**
 * Registers the hooks every Docker test file needs: a LAN with `addresses` on
 * its bridge, a Docker host plugged into it with the lanplug daemon, an empty
 * Docker host before each test (unless resetEachTest is false), and
 * everything torn down after the file. The returned object is filled in
 * before the first test runs.
 */
export function useLab(
  opts: { addresses?: string[]; daemonArgs?: string[]; resetEachTest?: boolean } = {},
): LabContext {
  const lab = {} as LabContext;
  before(async () => {
    lab.lan = createLan(opts.addresses === undefined ? {} : { addresses: opts.addresses });
    lab.host = await createDockerHost(lab.lan);
    lab.plugin = await startLanplug(lab.host, opts.daemonArgs === undefined ? {} : { args: opts.daemonArgs });
  });
  if (opts.resetEachTest !== false) beforeEach(() => resetDocker(lab.host));
  after(async () => {
    // A daemon that died during the file is a failure of its own: say how it ended.
    if (lab.plugin !== undefined && !lab.plugin.running) {
      process.stderr.write(
        `lanplug daemon exited (code ${String(lab.plugin.exitCode)}, signal ${String(lab.plugin.exitSignal)}); its last words:\n${lab.plugin.stderr().split('\n').slice(-15).join('\n')}\n`,
      );
    }
    await lab.plugin?.stop();
    lab.lan?.destroy();
  });
  return lab;
}
