/**
 * lanplug's driver API as dockerd drives it, straight over the plugin
 * socket (keep-alive, as Docker's plugin client does): attach
 * (CreateEndpoint + Join) and detach (Leave + DeleteEndpoint) with 0, 200
 * and 1,000 other endpoints alive, the daemon's memory at each point, and
 * attach with conflict probing on beside the lanplug IPAM driver.
 */
import { Agent, request } from 'node:http';
import { readFileSync } from 'node:fs';
import { sinceMs, sleep, type Results } from './stats';

const agents = new Map<string, Agent>();

export interface Answer {
  status: number;
  json: unknown;
}

export function call(socketPath: string, path: string, body: unknown): Promise<Answer> {
  let agent = agents.get(socketPath);
  if (agent === undefined) {
    agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.set(socketPath, agent);
  }
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request(
      { socketPath, agent, path, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(data) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
          const error = (json as { Err?: unknown; Error?: unknown }).Err ?? (json as { Error?: unknown }).Error;
          if (res.statusCode !== 200 || (typeof error === 'string' && error !== ''))
            reject(new Error(`bench: ${path} answered ${res.statusCode}: ${JSON.stringify(json)}`));
          else resolve({ status: res.statusCode, json });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

export function closeAgents(): void {
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
}

export function rssMB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return (Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) * 1024) / 1e6;
}

/** Docker's endpoint ids are random: lanplug names links after their first 12 digits, so those differ here too. */
function endpointId(prefix: string, i: number): string {
  if (!/^[0-9a-f]{2}$/.test(prefix)) throw new Error(`bench: endpoint id prefix must be 2 hex digits: ${prefix}`);
  return `${prefix}${i.toString(16).padStart(10, '0')}`.padEnd(64, '0');
}

/** Endpoints as Docker makes them: CreateEndpoint with Docker's address, then Join. */
export class DriverClient {
  constructor(
    private readonly socket: string,
    private readonly networkId: string,
  ) {}

  async attach(id: string, address: string): Promise<void> {
    const ids = { NetworkID: this.networkId, EndpointID: id };
    await call(this.socket, '/NetworkDriver.CreateEndpoint', {
      ...ids,
      Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
      Options: {},
    });
    await call(this.socket, '/NetworkDriver.Join', { ...ids, SandboxKey: '/var/run/docker/netns/bench', Options: {} });
  }

  async detach(id: string): Promise<void> {
    const ids = { NetworkID: this.networkId, EndpointID: id };
    await call(this.socket, '/NetworkDriver.Leave', ids);
    await call(this.socket, '/NetworkDriver.DeleteEndpoint', ids);
  }
}

/** The floor under every call: one request that does nothing (Plugin.Activate) over the same socket. */
export async function roundTripFloor(results: Results, socket: string, cycles: number): Promise<void> {
  const samples: number[] = [];
  for (let i = 0; i < cycles + 50; i++) {
    const start = process.hrtime.bigint();
    await call(socket, '/Plugin.Activate', {});
    if (i >= 50) samples.push(sinceMs(start));
  }
  results.add('driver API', 'one request that does nothing (Plugin.Activate)', samples);
}

const WARM_UP_CYCLES = 300;

/**
 * Attach/detach cycles with `levels` endpoints alive (in 172.16.100.0-172.16.120.255; the cycles
 * use 172.16.87.x). Returns the alive endpoints' ids for the caller to detach.
 */
export async function attachDetachAtScale(
  results: Results,
  client: DriverClient,
  daemonPid: number,
  options: { levels: readonly number[]; cycles: number },
): Promise<string[]> {
  const alive: string[] = [];
  // Warm-up: the first requests pay for the JIT (V8 optimises a function after some hundreds of calls) and the
  // first SQLite pages; a daemon that has run for a while has paid that, and no level should carry it.
  for (let i = 0; i < WARM_UP_CYCLES; i++) {
    const id = endpointId('f0', i);
    await client.attach(id, `172.16.87.${(i % 250) + 2}/16`);
    await client.detach(id);
  }
  for (const [n, level] of options.levels.entries()) {
    while (alive.length < level) {
      const i = alive.length;
      const id = endpointId('a1', i);
      await client.attach(id, `172.16.${100 + Math.floor(i / 250)}.${(i % 250) + 2}/16`);
      alive.push(id);
    }
    await sleep(500); // let the reaper and the LAN watch settle after the fill
    const attach: number[] = [];
    const detach: number[] = [];
    for (let i = 0; i < options.cycles; i++) {
      const id = endpointId(`c${n.toString(16)}`, i);
      let start = process.hrtime.bigint();
      await client.attach(id, `172.16.87.${(i % 250) + 2}/16`);
      attach.push(sinceMs(start));
      start = process.hrtime.bigint();
      await client.detach(id);
      detach.push(sinceMs(start));
    }
    results.add('driver API', `attach (CreateEndpoint + Join), ${level} alive`, attach);
    results.add('driver API', `detach (Leave + DeleteEndpoint), ${level} alive`, detach);
    results.figure(`daemon RSS with ${level} endpoints alive`, rssMB(daemonPid), 'MB');
  }
  return alive;
}

/**
 * Attach as `docker run` paces it (one every 400 ms), with conflict probing on and the warmer
 * keeping the next candidates fresh: Docker's default IPAM (the address Docker would give, then
 * CreateEndpoint + Join) beside the lanplug IPAM driver (RequestAddress, then the same two).
 */
export async function probedAttach(
  results: Results,
  driverSocket: string,
  ipamSocket: string,
  networks: { defaultIpam: string; lanplugIpam: string; poolId: string },
  cycles: number,
): Promise<void> {
  const defaultClient = new DriverClient(driverSocket, networks.defaultIpam);
  const ipamClient = new DriverClient(driverSocket, networks.lanplugIpam);
  const defaultIpam: number[] = [];
  const lanplugIpam: number[] = [];
  for (let i = 0; i < cycles; i++) {
    await sleep(400);
    let start = process.hrtime.bigint();
    await defaultClient.attach(endpointId('d0', i), `10.99.0.${i + 2}/24`);
    defaultIpam.push(sinceMs(start));
    await sleep(400);
    start = process.hrtime.bigint();
    const answer = await call(ipamSocket, '/IpamDriver.RequestAddress', {
      PoolID: networks.poolId,
      Address: '',
      Options: {},
    });
    await ipamClient.attach(endpointId('e0', i), String((answer.json as { Address?: unknown }).Address));
    lanplugIpam.push(sinceMs(start));
  }
  results.add('conflict probing on, cache warm', 'attach, default IPAM (CreateEndpoint + Join)', defaultIpam);
  results.add(
    'conflict probing on, cache warm',
    'attach, lanplug IPAM (RequestAddress + CreateEndpoint + Join)',
    lanplugIpam,
  );
}
