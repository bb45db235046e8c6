/**
 * `npm run bench`: a first measurement of attach and detach, printed as a
 * table, side by side in the same run:
 *  - lanplug's plugin calls as dockerd makes them (CreateEndpoint, Join,
 *    DeleteEndpoint), straight over the plugin socket;
 *  - whole `docker run -d` / `docker rm -f` with Docker's built-in macvlan
 *    driver and with lanplug-macvlan, on the same lab and parent;
 *  - the daemon's resident memory.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { createLan } from '../lab/lan';
import { startLanplug } from '../lab/lanplug';
import { openRtnl } from '../../src/link/rtnl';

const PLUGIN_CYCLES = Number(process.env['BENCH_PLUGIN_CYCLES'] ?? 200);
const DOCKER_CYCLES = Number(process.env['BENCH_DOCKER_CYCLES'] ?? 15);
const PROBED_CYCLES = Number(process.env['BENCH_PROBED_CYCLES'] ?? 30);

function call(socketPath: string, path: string, body: unknown): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request(
      { socketPath, path, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(data) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

async function timed(fn: () => unknown): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function quantile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

const rows: string[][] = [];
function row(what: string, samples: number[]): void {
  rows.push([what, String(samples.length), quantile(samples, 0.5).toFixed(2), quantile(samples, 0.99).toFixed(2)]);
}

async function pluginCalls(socket: string, networkId: string): Promise<void> {
  const create: number[] = [];
  const join: number[] = [];
  const del: number[] = [];
  for (let i = 0; i < PLUGIN_CYCLES; i++) {
    const endpointId = `be${i.toString(16).padStart(10, '0')}${'0'.repeat(52)}`;
    const address = `172.16.${87 + Math.floor(i / 250)}.${(i % 250) + 2}/16`;
    const ids = { NetworkID: networkId, EndpointID: endpointId };
    create.push(
      await timed(() =>
        call(socket, '/NetworkDriver.CreateEndpoint', {
          ...ids,
          Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
        }),
      ),
    );
    join.push(
      await timed(() =>
        call(socket, '/NetworkDriver.Join', { ...ids, SandboxKey: '/var/run/docker/netns/bench', Options: {} }),
      ),
    );
    await call(socket, '/NetworkDriver.Leave', ids);
    del.push(await timed(() => call(socket, '/NetworkDriver.DeleteEndpoint', ids)));
  }
  row('lanplug CreateEndpoint (socket round trip)', create);
  row('lanplug Join: creates the macvlan link', join);
  row('lanplug DeleteEndpoint: deletes the link', del);
}

/**
 * Attach as `docker run` paces it (one every 400 ms), with conflict probing on and the warmer
 * keeping the next candidates fresh: Docker's default IPAM (the address Docker would give, then
 * CreateEndpoint + Join) beside the lanplug IPAM driver (RequestAddress, then the same two).
 */
async function probedAttach(
  pluginDir: string,
  defaultNetworkId: string,
  ipamNetworkId: string,
  poolId: string,
): Promise<void> {
  const driver = join(pluginDir, 'lanplug-macvlan.sock');
  const ipam = join(pluginDir, 'lanplug.sock');
  const cycle = async (networkId: string, i: number, address: () => Promise<string>): Promise<number> => {
    const ids = {
      NetworkID: networkId,
      EndpointID: `${networkId.slice(0, 4)}${i.toString(16).padStart(8, '0')}${'0'.repeat(52)}`,
    };
    const start = process.hrtime.bigint();
    const chosen = await address();
    await call(driver, '/NetworkDriver.CreateEndpoint', {
      ...ids,
      Interface: { Address: chosen, AddressIPv6: '', MacAddress: '' },
    });
    await call(driver, '/NetworkDriver.Join', { ...ids, SandboxKey: '/var/run/docker/netns/bench', Options: {} });
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  const defaultIpam: number[] = [];
  const lanplugIpam: number[] = [];
  for (let i = 0; i < PROBED_CYCLES; i++) {
    await new Promise((r) => setTimeout(r, 400));
    defaultIpam.push(await cycle(defaultNetworkId, i, () => Promise.resolve(`10.99.0.${i + 2}/24`)));
    await new Promise((r) => setTimeout(r, 400));
    lanplugIpam.push(
      await cycle(ipamNetworkId, i, async () => {
        const answer = await call(ipam, '/IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} });
        return String((answer.json as { Address?: unknown }).Address);
      }),
    );
  }
  row('attach, probing on, default IPAM (CreateEndpoint + Join)', defaultIpam);
  row('attach, probing on, lanplug IPAM (RequestAddress + CreateEndpoint + Join)', lanplugIpam);
}

function dockerCycle(host: DockerHost, network: string, runs: number[], removes: number[]): void {
  for (let i = 0; i < DOCKER_CYCLES; i++) {
    const name = `bench-${network}-${i}`;
    let start = process.hrtime.bigint();
    host.dockerOk(['run', '-d', '--network', network, '--name', name, 'alpine:latest', 'sleep', '1000']);
    runs.push(Number(process.hrtime.bigint() - start) / 1e6);
    start = process.hrtime.bigint();
    host.dockerOk(['rm', '-f', name]);
    removes.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
}

function rssMiB(pid: number): string {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return (kb / 1024).toFixed(1);
}

/**
 * The floor under every attach and detach: one RTM_NEWLINK (macvlan, read back) and one
 * RTM_DELLINK, straight through lanplug's netlink layer in the Docker host's namespace.
 */
function kernelFloor(host: DockerHost): void {
  const rtnl = openRtnl({ netns: `/run/netns/${host.ns}` });
  try {
    const parent = rtnl.getLink('eth0');
    if (parent === null) throw new Error('bench: no eth0 in the Docker host');
    const create: number[] = [];
    const remove: number[] = [];
    for (let i = 0; i < 50; i++) {
      let start = process.hrtime.bigint();
      const link = rtnl.createMacvlan({ name: 'lp-bench-floor', parentIndex: parent.index, mode: 'bridge' });
      create.push(Number(process.hrtime.bigint() - start) / 1e6);
      start = process.hrtime.bigint();
      rtnl.deleteLink(link);
      remove.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    row('kernel floor: create a macvlan and read it back (netlink)', create);
    row('kernel floor: delete a macvlan (netlink; waits for RCU)', remove);
  } finally {
    rtnl.close();
  }
}

async function main(): Promise<void> {
  const lan = createLan({ addresses: ['172.16.86.1/16'] });
  try {
    const host = await createDockerHost(lan);
    const plugin = await startLanplug(host);
    const rssIdle = rssMiB(plugin.pid);
    host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.0.0/16',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      // The driver's own cost, without asking the LAN (measured apart below).
      '-o',
      'lanplug.conflict=off',
      'lp',
    ]);
    const networkId = host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'lp']).trim();
    kernelFloor(host);
    await pluginCalls(join(plugin.pluginDir, 'lanplug-macvlan.sock'), networkId);
    const rssAfter = rssMiB(plugin.pid);

    const probedNetwork = (name: string, subnet: string, ipam: string[]): string => {
      host.dockerOk([
        'network',
        'create',
        '-d',
        'lanplug-macvlan',
        ...ipam,
        `--subnet=${subnet}`,
        '-o',
        'parent=eth0',
        name,
      ]);
      return host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', name]).trim();
    };
    const defaultId = probedNetwork('probed', '10.99.0.0/24', []);
    const ipamId = probedNetwork('probed-ipam', '10.98.0.0/24', ['--ipam-driver', 'lanplug']);
    await new Promise((r) => setTimeout(r, 3000)); // the warmer's first round
    await probedAttach(plugin.pluginDir, defaultId, ipamId, 'LocalDefault/10.98.0.0/24');

    // Built-in macvlan and lanplug-macvlan can share eth0 (both bridge mode); alternate to share drift.
    host.dockerOk(['network', 'create', '-d', 'macvlan', '--subnet=10.77.0.0/24', '-o', 'parent=eth0', 'builtin']);
    const builtinRun: number[] = [];
    const builtinRm: number[] = [];
    const lanplugRun: number[] = [];
    const lanplugRm: number[] = [];
    dockerCycle(host, 'builtin', [], []); // warm-up
    for (let round = 0; round < 2; round++) {
      dockerCycle(host, 'builtin', builtinRun, builtinRm);
      dockerCycle(host, 'lp', lanplugRun, lanplugRm);
    }
    row('docker run -d, built-in macvlan', builtinRun);
    row('docker run -d, lanplug-macvlan', lanplugRun);
    row('docker rm -f, built-in macvlan', builtinRm);
    row('docker rm -f, lanplug-macvlan', lanplugRm);
    host.dockerOk(['network', 'rm', 'builtin', 'lp', 'probed', 'probed-ipam']);
    await plugin.stop();

    const header = ['what', 'n', 'p50 ms', 'p99 ms'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const format = (r: string[]): string =>
      r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
    process.stdout.write(
      `${format(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(format).join('\n')}\n`,
    );
    process.stdout.write(
      `\nlanplug daemon RSS: ${rssIdle} MiB idle, ${rssAfter} MiB after ${PLUGIN_CYCLES} attach/detach cycles\n`,
    );
  } finally {
    lan.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
