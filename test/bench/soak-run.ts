/**
 * The soak's engine, shared by `npm run soak` (soak.ts) and the short
 * version in the Docker lane (test/e2e/soak-short.test.ts): hours of a
 * Docker host's use compressed into rounds, on one lab LAN with a real
 * dockerd, the lanplug daemon and dnsmasq. Each round runs, side by side,
 *
 * - driver-API attach/detach cycles over the plugin socket as dockerd sends
 *   them (CreateEndpoint, Join with a real network namespace as SandboxKey,
 *   Leave, DeleteEndpoint), several clients at once, on three networks: one
 *   with Docker's IPAM (the soak hands out the lowest free address, as
 *   Docker's does), one with the lanplug IPAM driver (RequestAddress and
 *   ReleaseAddress around the cycle), one with DHCP from dnsmasq;
 * - a batch of `docker run -d` then `docker rm -f`, spread over three more
 *   such networks that dockerd itself drives;
 *
 * while containers on the DHCP network renew their leases every few seconds
 * for the whole run. Every network but the DHCP ones has host access on, and
 * every one asks the LAN before an address is used (the default). After each
 * round the daemon's own figures (Lanplug.Stats), the links and host-access
 * routes of the Docker host and the server's leases are sampled. Traffic
 * stays in the lab's namespaces; every count is bounded by the options.
 */
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import type { DaemonStats } from '../../src/api/control';
import { openRtnl, type Rtnl } from '../../src/link/rtnl';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { dhcpNetworkArgs, startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import { createLan, type Lan } from '../lab/lan';
import { startLanplug, type Lanplug } from '../lab/lanplug';
import { lanHostNs } from '../lab/names';
import { addNetns, delNetns, nsExecArgv } from '../lab/ns';
import { runOk, sleep } from '../lab/proc';

export type ApiKind = 'dockerIpam' | 'lanplugIpam' | 'dhcp';
export const API_KINDS: readonly ApiKind[] = ['dockerIpam', 'lanplugIpam', 'dhcp'];

export interface SoakOptions {
  rounds: number;
  /** Driver-API cycles per round, by the address source of the network they run on. */
  apiPerRound: Record<ApiKind, number>;
  /** Clients sending those cycles at once, per kind. */
  workers: Record<ApiKind, number>;
  /** `docker run -d` + `docker rm -f` per round, spread over the three Docker-driven networks. */
  dockerPerRound: number;
  /** Containers on the DHCP network for the whole run. */
  residents: number;
  /** T1 the server gives (dnsmasq's lease is at least 120 s; T1 and T2 are options of their own). */
  renewSeconds: number;
  /** Progress lines (stderr in `npm run soak`). */
  log: (line: string) => void;
}

/** One sample, taken after a round: every figure by its key (see soak-metrics.ts). */
export interface Sample {
  round: number;
  apiCycles: number;
  dockerCycles: number;
  elapsedS: number;
  values: Record<string, number>;
}

export interface SoakRun {
  samples: Sample[];
  /** Each count's least value once the run had stopped (sampled for at most SETTLE_MS); bytes: the last. */
  settled: Record<string, number>;
  /** DHCP renewals the residents made (REQUESTs dnsmasq logged after their first). */
  renewals: number;
  /** Residents that kept one address from start to end. */
  residentsKept: number;
  environment: { docker: string; elapsedS: number };
}

const SETTLE_MS = 20_000;
const RECHECK_S = 30;
const READINGS = 6;
const READING_GAP_MS = 350;
/** Readings of the daemon's figures until the client-held connections are the same before and after (figures). */
const HELD_STABLE_TRIES = 5;
/** dnsmasq's range on the lab LAN (172.16.0.0/16, the bridge holds 172.16.86.1). */
const DHCP_RANGE: [string, string] = ['172.16.200.1', '172.16.215.254'];

interface ApiNetwork {
  kind: ApiKind;
  id: string;
}

/**
 * A driver or IPAM request as dockerd sends it, on one keep-alive connection (the plugin sockets
 * never close an idle one): each API client has its own, so that the daemon's count of unix sockets
 * is the same after every round, not the most a round happened to need at once.
 */
class PluginClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  constructor(private readonly socketPath: string) {}

  call(path: string, body: unknown): Promise<Record<string, unknown>> {
    const data = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          agent: this.agent,
          path,
          method: 'POST',
          headers: { 'Content-Length': Buffer.byteLength(data) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const json = JSON.parse(text) as Record<string, unknown>;
            const error = json['Err'] ?? json['Error'];
            if (res.statusCode !== 200 || (typeof error === 'string' && error !== ''))
              reject(new Error(`soak: ${path} answered ${res.statusCode ?? 0}: ${text}`));
            else resolve(json);
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The lowest free address of a /16 from .0.2 on, as Docker's IPAM hands them out (first free, not serial). */
class LowestFree {
  private readonly used = new Set<number>();
  constructor(private readonly prefix: string) {}
  take(): string {
    let n = 2;
    while (this.used.has(n)) n++;
    this.used.add(n);
    return `${this.prefix}.${n >> 8}.${n & 0xff}`;
  }
  give(address: string): void {
    const [, , c, d] = address.split('.').map(Number);
    this.used.delete(((c ?? 0) << 8) + (d ?? 0));
  }
}

/** lanplug names a link after an endpoint id's first 12 digits (as Docker's are random, those differ): the worker's 2, the count's 10. */
function endpointId(worker: string, n: number): string {
  return `${worker}${n.toString(16).padStart(10, '0')}`.padEnd(64, '0');
}

export class SoakLab {
  private api!: Record<ApiKind, ApiNetwork>;
  /** Per API client (worker): its connection to the driver socket and to the IPAM socket. */
  private readonly clients: { driver: PluginClient; ipam: PluginClient; sandboxKey: string }[] = [];
  private rtnl!: Rtnl;
  private readonly sandboxes: string[] = [];
  private readonly dockerIpam = new LowestFree('10.33');
  private apiCycles = 0;
  private dockerCycles = 0;
  private readonly started = Date.now();
  readonly samples: Sample[] = [];
  private residentAddresses = new Map<string, string>();
  private residentMacs: string[] = [];
  private requestsBefore = 0;

  private constructor(
    readonly options: SoakOptions,
    readonly lan: Lan,
    readonly host: DockerHost,
    readonly plugin: Lanplug,
    readonly server: DhcpServer,
  ) {}

  static async open(options: SoakOptions): Promise<SoakLab> {
    const lan = createLan({ addresses: ['172.16.86.1/16'] });
    try {
      const host = await createDockerHost(lan);
      const plugin = await startLanplug(host, {
        sockets: ['lanplug-macvlan.sock', 'lanplug.sock'],
        // Compressed like the rest: the periodic passes (every 5 minutes by default) every RECHECK_S.
        args: ['--recheck-interval', String(RECHECK_S)],
      });
      const server = await startDhcpServer(lan, {
        range: DHCP_RANGE,
        netmask: '255.255.0.0',
        leaseSeconds: 120,
        renewSeconds: options.renewSeconds,
        rebindSeconds: options.renewSeconds * 2,
      });
      const lab = new SoakLab(options, lan, host, plugin, server);
      await lab.setUp();
      return lab;
    } catch (err) {
      lan.destroy();
      throw err;
    }
  }

  private async setUp(): Promise<void> {
    const { host, plugin, options } = this;
    const hostAccess = (subnet: string): string[] => [
      `--subnet=${subnet}.0.0/16`,
      `--gateway=${subnet}.0.1`,
      '--aux-address',
      `host=${subnet}.255.254`,
      '-o',
      'parent=eth0',
      '-o',
      'host_access=true',
    ];
    /** `docker network create` with `args` (which end with the name); the network's id. */
    const create = (args: string[]): string => {
      host.dockerOk(args);
      return host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', args[args.length - 1] ?? '']).trim();
    };
    const lanplugNetwork = (name: string, args: string[]): string[] => [
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      ...args,
      name,
    ];
    // Driven by dockerd (docker run/rm)...
    create(lanplugNetwork('run-docker-ipam', hostAccess('10.31')));
    create(lanplugNetwork('run-lanplug-ipam', ['--ipam-driver', 'lanplug', ...hostAccess('10.32')]));
    create(dhcpNetworkArgs('run-dhcp'));
    // ...and by the soak's own driver-API clients (dockerd only created them).
    this.api = {
      dockerIpam: { kind: 'dockerIpam', id: create(lanplugNetwork('api-docker-ipam', hostAccess('10.33'))) },
      lanplugIpam: {
        kind: 'lanplugIpam',
        id: create(lanplugNetwork('api-lanplug-ipam', ['--ipam-driver', 'lanplug', ...hostAccess('10.34')])),
      },
      dhcp: { kind: 'dhcp', id: create(dhcpNetworkArgs('api-dhcp')) },
    };
    const connections = API_KINDS.reduce((n, k) => n + options.workers[k], 0);
    this.rtnl = openRtnl({ netns: `/run/netns/${host.ns}` });
    for (let i = 0; i < connections; i++) {
      const name = lanHostNs(this.lan.id, `sb${i}`);
      addNetns(name);
      this.sandboxes.push(name);
      this.clients.push({
        driver: new PluginClient(join(plugin.pluginDir, 'lanplug-macvlan.sock')),
        ipam: new PluginClient(join(plugin.pluginDir, 'lanplug.sock')),
        sandboxKey: `/run/netns/${name}`,
      });
    }
    for (let i = 0; i < options.residents; i++)
      host.dockerOk([
        'run',
        '-d',
        '--network',
        'run-dhcp',
        '--name',
        `resident-${i}`,
        'alpine:latest',
        'sleep',
        '86400',
      ]);
    this.residentAddresses = this.residentIps();
    this.residentMacs = [...this.residentAddresses.keys()].map((name) =>
      host.dockerOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "run-dhcp").MacAddress}}', name]).trim(),
    );
    this.requestsBefore = this.residentRequests();
    // One housekeeping pass before the first round, as `lanplug gc` asks for it: what the first pass does
    // once (the engine's id noted, its queries prepared) is then in every sample, not a step in the middle.
    await this.control('/Lanplug.Gc', {});
    this.log(`lab ready: ${options.residents} resident DHCP containers, ${connections} API clients`);
  }

  private log(line: string): void {
    this.options.log(`[${((Date.now() - this.started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
  }

  /** Every round, then the settled counts. */
  async run(sampleAfterRound: (sample: Sample) => void = () => undefined): Promise<SoakRun> {
    for (let round = 1; round <= this.options.rounds; round++) {
      await this.round(round);
      const sample = await this.sample(round);
      this.samples.push(sample);
      sampleAfterRound(sample);
    }
    const settled = await this.settle();
    const now = this.residentIps();
    const kept = [...this.residentAddresses].filter(([name, ip]) => now.get(name) === ip && ip !== '').length;
    return {
      samples: this.samples,
      settled,
      renewals: this.residentRequests() - this.requestsBefore,
      residentsKept: kept,
      environment: {
        docker: `dockerd ${this.host.dockerOk(['version', '--format', '{{.Server.Version}}']).trim()}`,
        elapsedS: (Date.now() - this.started) / 1000,
      },
    };
  }

  private async round(round: number): Promise<void> {
    const { options } = this;
    const start = Date.now();
    const apiEnd: Partial<Record<ApiKind, number>> = {};
    const api = Promise.all(
      API_KINDS.map(async (kind) => {
        let left = options.apiPerRound[kind];
        await Promise.all(
          Array.from({ length: options.workers[kind] }, async (_, w) => {
            const worker = `${API_KINDS.indexOf(kind)}${w.toString(16)}`;
            const client = this.clients[this.clientIndex(kind, w)];
            if (client === undefined) throw new Error(`soak: no client ${kind} ${w}`);
            while (left > 0) {
              left--;
              await this.cycle(client, this.api[kind], endpointId(worker, this.apiCycles++));
            }
          }),
        );
        apiEnd[kind] = Date.now();
      }),
    );
    const docker = this.dockerBatch(round).then(() => Date.now());
    const [, dockerEnd] = await Promise.all([api, docker]);
    const took = (end: number | undefined): string => (((end ?? start) - start) / 1000).toFixed(1);
    this.log(
      `round ${round}/${options.rounds}: ${this.apiCycles} API cycles, ${this.dockerCycles} docker run/rm; ` +
        `${took(Date.now())} s (API ${API_KINDS.map((k) => `${k} ${took(apiEnd[k])}`).join(', ')}; docker ${took(dockerEnd)})`,
    );
  }

  private clientIndex(kind: ApiKind, worker: number): number {
    let base = 0;
    for (const k of API_KINDS) {
      if (k === kind) return base + worker;
      base += this.options.workers[k];
    }
    return base;
  }

  /** attach (CreateEndpoint + Join) and detach (Leave + DeleteEndpoint), with the network's address source around it. */
  private async cycle(
    client: { driver: PluginClient; ipam: PluginClient; sandboxKey: string },
    network: ApiNetwork,
    endpoint: string,
  ): Promise<void> {
    const { driver, ipam, sandboxKey } = client;
    const ids = { NetworkID: network.id, EndpointID: endpoint };
    let address = '';
    let release: () => Promise<unknown> = () => Promise.resolve();
    if (network.kind === 'dockerIpam') {
      const taken = this.dockerIpam.take();
      address = `${taken}/16`;
      release = () => Promise.resolve(this.dockerIpam.give(taken));
    } else if (network.kind === 'lanplugIpam') {
      const pool = 'LocalDefault/10.34.0.0/16';
      const answer = await ipam.call('/IpamDriver.RequestAddress', { PoolID: pool, Address: '', Options: {} });
      address = String(answer['Address']);
      release = () => ipam.call('/IpamDriver.ReleaseAddress', { PoolID: pool, Address: address.split('/')[0] });
    }
    try {
      await driver.call('/NetworkDriver.CreateEndpoint', {
        ...ids,
        Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
        Options: {},
      });
      try {
        await driver.call('/NetworkDriver.Join', { ...ids, SandboxKey: sandboxKey, Options: {} });
        await driver.call('/NetworkDriver.Leave', ids);
      } finally {
        await driver.call('/NetworkDriver.DeleteEndpoint', ids);
      }
    } finally {
      await release();
    }
  }

  /** `docker run -d` of a batch at once, spread over the three networks, then one `docker rm -f` of them all. */
  private async dockerBatch(round: number): Promise<void> {
    const networks = ['run-docker-ipam', 'run-lanplug-ipam', 'run-dhcp'];
    const names = Array.from({ length: this.options.dockerPerRound }, (_, i) => `r${round}-${i}`);
    if (names.length === 0) return;
    const runs = await Promise.all(
      names.map((name, i) =>
        this.host.dockerAsync([
          'run',
          '-d',
          '--network',
          networks[i % 3] ?? '',
          '--name',
          name,
          'alpine:latest',
          'sleep',
          '3600',
        ]),
      ),
    );
    const failed = runs.filter((r) => r.code !== 0);
    const removed = await this.host.dockerAsync(['rm', '-f', ...names]);
    if (failed.length > 0)
      throw new Error(
        `soak: ${failed.length} of ${names.length} docker run failed in round ${round}: ${failed[0]?.stderr ?? ''}`,
      );
    if (removed.code !== 0) throw new Error(`soak: docker rm -f failed in round ${round}: ${removed.stderr}`);
    this.dockerCycles += names.length;
  }

  /**
   * The daemon's figures and the Docker host's, after a round. Counts are the least of READINGS
   * readings over about two seconds: work that goes on between rounds (the warmer's probes, a
   * resident's renewal, the announcements after a start) holds a socket and a few timers while it
   * runs, and is no leak; bytes are the last reading.
   */
  private async sample(round: number): Promise<Sample> {
    const readings: Record<string, number>[] = [];
    for (let i = 0; i < READINGS; i++) {
      if (i > 0) await sleep(READING_GAP_MS);
      readings.push(await this.figures());
    }
    const last = readings[readings.length - 1] ?? {};
    const values: Record<string, number> = {};
    for (const key of Object.keys(last))
      values[key] = key.endsWith('Bytes') ? (last[key] ?? NaN) : Math.min(...readings.map((r) => r[key] ?? NaN));
    return {
      round,
      apiCycles: this.apiCycles,
      dockerCycles: this.dockerCycles,
      elapsedS: (Date.now() - this.started) / 1000,
      values,
    };
  }

  /**
   * Each count's least value once the run has stopped: samples until every count has been back where
   * it was after the warm-up's last round at least once, or SETTLE_MS. Each count is read at a quiet
   * moment of its own: what is in flight (a resident's renewal, the warmer's probes, a client's
   * keep-alive timeout) comes and goes, and a moment when every count is quiet at once may not come
   * within the wait; a leaked object is in every reading. Bytes: the last sample.
   */
  private async settle(): Promise<Record<string, number>> {
    const warmUp = this.samples[Math.max(0, Math.ceil(this.samples.length * 0.2) - 1)];
    const deadline = Date.now() + SETTLE_MS;
    const least: Record<string, number> = {};
    for (;;) {
      const now = (await this.sample(0)).values;
      for (const [key, value] of Object.entries(now))
        least[key] = key.endsWith('Bytes') ? value : Math.min(least[key] ?? Infinity, value);
      const back =
        warmUp === undefined ||
        Object.keys(least).every((k) => k.endsWith('Bytes') || (least[k] ?? 0) <= (warmUp.values[k] ?? 0));
      if (back || Date.now() > deadline) return least;
      await sleep(500);
    }
  }

  /**
   * One reading. The client-held connections are counted before and after the daemon's figures, and
   * the figures read again while the two differ: a connection opened or closed in between (dockerd's,
   * or the daemon's own to dockerd in a periodic pass) would be in one count and not in the other, and
   * the descriptors less the held connections would dip one below what they are (seen: 47 after the
   * warm-up, 48 through the run and at its end).
   */
  private async figures(): Promise<Record<string, number>> {
    let held = this.clientHeldConnections();
    let stats = await this.stats();
    for (let again = 0; again < HELD_STABLE_TRIES; again++) {
      const after = this.clientHeldConnections();
      if (after === held) break;
      held = after;
      stats = await this.stats();
    }
    const links = this.rtnl.listLinks();
    const routes = this.rtnl.listRoutes(4).filter((r) => r.protocol === 76);
    const values: Record<string, number> = {
      rssBytes: stats.process.rssBytes,
      heapUsedBytes: stats.process.heapUsedBytes,
      openFds: stats.process.openFds - held,
      packetSockets: stats.process.sockets.packet,
      netlinkSockets: stats.process.sockets.netlink,
      unixSockets: stats.process.sockets.unix - held,
      clientConnections: held,
      otherSockets: stats.process.sockets.inet + stats.process.sockets.elsewhere,
      timers: stats.process.timers,
      links: links.length,
      hostRoutes: routes.length,
      databaseBytes: stats.store.databaseBytes,
      walBytes: stats.store.walBytes,
      statements: stats.store.statements,
      serverLeases: this.server.leases().length,
    };
    let rows = 0;
    for (const [table, n] of Object.entries(stats.store.rows)) {
      values[`rows.${table}`] = n;
      rows += n;
    }
    values['rows'] = rows;
    return values;
  }

  private async stats(): Promise<DaemonStats> {
    return (await this.control('/Lanplug.Stats', {})) as unknown as DaemonStats;
  }

  /** A request on the daemon's control socket, on a connection of its own that is closed after it. */
  private async control(path: string, body: unknown): Promise<Record<string, unknown>> {
    const control = new PluginClient(join(this.plugin.stateDir, 'control.sock'));
    try {
      return await control.call(path, body);
    } finally {
      control.close();
    }
  }

  /**
   * The daemon's unix connections whose client still holds its end: dockerd's plugin client keeps
   * every connection it opened for a burst (as many as it once needed at the same time, and the
   * plugin sockets never close an idle one), so their number follows dockerd's history, not
   * lanplug's. Counted with ss: a connection of the daemon's whose peer socket is still there
   * (dockerd's in the Docker host's namespace, the soak's own in this one). One whose client is
   * gone is not counted here, so it stays in the daemon's figures: that would be a leak.
   */
  private clientHeldConnections(): number {
    const pid = this.plugin.daemonPid ?? this.plugin.pid;
    const parse = (text: string): { inode: string; peer: string; pid: boolean; state: string }[] =>
      text
        .split('\n')
        .slice(1)
        .map((line) => line.trim().split(/\s+/))
        .filter((cols) => cols.length >= 8)
        .map((cols) => ({
          state: cols[1] ?? '',
          inode: cols[5] ?? '',
          peer: cols[7] ?? '',
          pid: cols.slice(8).join(' ').includes(`pid=${pid},`),
        }));
    const inHost = parse(runOk(nsExecArgv(this.host.ns, ['ss', '-xpn'])));
    const alive = new Set([...inHost, ...parse(runOk(['ss', '-xn']))].map((s) => s.inode));
    return inHost.filter((s) => s.pid && s.state === 'ESTAB' && s.peer !== '0' && alive.has(s.peer)).length;
  }

  /** Each resident's address as dockerd shows it. */
  private residentIps(): Map<string, string> {
    const out = new Map<string, string>();
    for (let i = 0; i < this.options.residents; i++) {
      const name = `resident-${i}`;
      const ip = this.host.docker(['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'eth0']).stdout;
      out.set(name, /inet (\d+\.\d+\.\d+\.\d+)/.exec(ip)?.[1] ?? '');
    }
    return out;
  }

  /** DHCPREQUESTs dnsmasq logged from the residents: after the one of each acquisition, every renewal is one. */
  private residentRequests(): number {
    return this.residentMacs.reduce((n, mac) => n + this.server.count('DHCPREQUEST', mac), 0);
  }

  close(): void {
    for (const c of this.clients) {
      c.driver.close();
      c.ipam.close();
    }
    this.rtnl?.close();
    // The containers go first, while lanplug still answers (see test/lab/README.md, teardown order).
    this.lan.destroy();
    for (const name of this.sandboxes) delNetns(name);
  }
}
