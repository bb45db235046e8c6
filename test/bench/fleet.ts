/**
 * A fleet on etcd (`npm run bench -- --scale`): 2, 5 and 10 lanplug daemons,
 * each a host of its own (its own network namespace on one lab LAN, its own
 * state directory and host id), all with `--store etcd://…` on one 3-member
 * etcd cluster (Debian's etcd 3.4, on a LAN host of its own), allocating from
 * one shared pool at once through the IPAM API as dockerd calls it
 * (RequestAddress over each daemon's lanplug.sock, with the container's MAC).
 * Allocations per second over the wall time, each request's p50/p99, and
 * duplicates counted over the whole fleet; then the same with one member
 * killed.
 */
import { Agent } from 'node:http';
import { join } from 'node:path';
import { controlSocketPath } from '../../src/api/control';
import { unixHttp } from '../../src/api/unix-http';
import { createLan, type Lan } from '../lab/lan';
import { startEtcdCluster, type EtcdCluster } from '../lab/etcd-cluster';
import { post } from '../support/plugin-http';
import { ScaleDaemon } from './scale';
import { quantile, sinceMs, type Results } from './stats';

export interface FleetOptions {
  /** Fleet sizes, ascending (e.g. [2, 5, 10]); the largest is started once and the smaller use its first hosts. */
  hosts: readonly number[];
  /** RequestAddress calls each host makes per round. */
  perHost: number;
  /** Calls each host has in flight at once (dockerd starting that many containers). */
  concurrency: number;
}

export interface FleetPoint {
  hosts: number;
  etcdMembers: number;
  allocations: number;
  perSecond: number;
  p50: number;
  p99: number;
  duplicates: number;
  failed: number;
  /** etcd round trips (the daemons' lanplug_etcd_requests_total, ok and error) per allocation made. */
  etcdTripsPerAllocation: number;
  /** The mean etcd round trip (lanplug_etcd_request_duration_seconds), ms. */
  etcdTripMs: number;
}

/** A daemon's etcd counters, from its /metrics on the control socket. */
async function etcdCounters(daemon: ScaleDaemon): Promise<{ trips: number; seconds: number }> {
  const answer = await unixHttp(controlSocketPath(daemon.stateDir), 'GET', '/metrics');
  const sum = (re: RegExp): number =>
    answer.body
      .split('\n')
      .filter((l) => re.test(l))
      .reduce((total, l) => total + Number(l.split(' ').pop()), 0);
  return {
    trips: sum(/^lanplug_etcd_requests_total\{/),
    seconds: sum(/^lanplug_etcd_request_duration_seconds_sum /),
  };
}

async function fleetEtcdCounters(fleet: readonly FleetHost[]): Promise<{ trips: number; seconds: number }> {
  let trips = 0;
  let seconds = 0;
  for (const host of fleet) {
    const c = await etcdCounters(host.daemon);
    trips += c.trips;
    seconds += c.seconds;
  }
  return { trips, seconds };
}

const ETCD_ADDRESS = '10.231.0.2';

class FleetHost {
  private readonly agent: Agent;
  constructor(
    readonly daemon: ScaleDaemon,
    concurrency: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  }

  async ipam(path: string, body: unknown): Promise<Record<string, unknown>> {
    const answer = await post(join(this.daemon.pluginDir, 'lanplug.sock'), path, JSON.stringify(body), {
      agent: this.agent,
    });
    const err = answer.json['Err'];
    if (answer.status !== 200 || (typeof err === 'string' && err !== ''))
      throw new Error(`bench: ${path} answered ${answer.status}: ${JSON.stringify(answer.json)}`);
    return answer.json;
  }

  close(): void {
    this.agent.destroy();
  }
}

const mac = (host: number, n: number): string =>
  `02:f1:${host.toString(16).padStart(2, '0')}:00:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;

/** One round: `fleet` hosts, each `perHost` RequestAddress with `concurrency` in flight, all at once; then all released. */
async function round(
  fleet: readonly FleetHost[],
  pool: string,
  options: FleetOptions,
): Promise<Omit<FleetPoint, 'etcdMembers'>> {
  const poolIds: string[] = [];
  for (const host of fleet) {
    const answer = await host.ipam('/IpamDriver.RequestPool', {
      AddressSpace: 'LocalDefault',
      Pool: pool,
      Options: {},
      V6: false,
    });
    poolIds.push(String(answer['PoolID']));
  }
  const each: number[] = [];
  const got: { host: number; poolId: string; address: string }[] = [];
  let failed = 0;
  const before = await fleetEtcdCounters(fleet);
  const start = process.hrtime.bigint();
  await Promise.all(
    fleet.flatMap((host, h) =>
      Array.from({ length: options.concurrency }, async (_, stream) => {
        for (let n = stream; n < options.perHost; n += options.concurrency) {
          const t = process.hrtime.bigint();
          try {
            const answer = await host.ipam('/IpamDriver.RequestAddress', {
              PoolID: poolIds[h],
              Address: '',
              Options: { 'com.docker.network.endpoint.macaddress': mac(h, n) },
            });
            each.push(sinceMs(t));
            got.push({ host: h, poolId: poolIds[h] ?? '', address: String(answer['Address']).split('/')[0] ?? '' });
          } catch {
            failed++;
          }
        }
      }),
    ),
  );
  const wall = sinceMs(start);
  const after = await fleetEtcdCounters(fleet);
  const trips = after.trips - before.trips;
  const duplicates = got.length - new Set(got.map((g) => g.address)).size;
  for (const g of got)
    await (fleet[g.host] as FleetHost).ipam('/IpamDriver.ReleaseAddress', { PoolID: g.poolId, Address: g.address });
  for (const [h, host] of fleet.entries()) await host.ipam('/IpamDriver.ReleasePool', { PoolID: poolIds[h] });
  return {
    hosts: fleet.length,
    allocations: got.length,
    perSecond: got.length / (wall / 1000),
    p50: quantile(each, 0.5),
    p99: quantile(each, 0.99),
    duplicates,
    failed,
    etcdTripsPerAllocation: trips / Math.max(1, got.length),
    etcdTripMs: trips === 0 ? NaN : ((after.seconds - before.seconds) * 1000) / trips,
  };
}

export async function fleetOnEtcd(results: Results, options: FleetOptions): Promise<FleetPoint[]> {
  const lan: Lan = createLan({ addresses: ['10.231.0.1/16'] });
  const daemons: ScaleDaemon[] = [];
  const hosts: FleetHost[] = [];
  const points: FleetPoint[] = [];
  let cluster: EtcdCluster | undefined;
  try {
    const etcdHost = lan.addLanHost('etcd', `${ETCD_ADDRESS}/16`);
    const etcd = await startEtcdCluster({
      dir: join(lan.dir, 'etcd'),
      address: ETCD_ADDRESS,
      basePort: 32700,
      ns: etcdHost.ns,
    });
    cluster = etcd;
    const most = Math.max(...options.hosts);
    for (let i = 0; i < most; i++) {
      const lanHost = lan.addLanHost(`f${i}`, `10.231.1.${10 + i}/16`);
      const daemon = new ScaleDaemon(lanHost.ns, lan.dir, ['--store', etcd.storeUrl, '--host-id', `fleet${i}`]);
      daemons.push(daemon);
      await daemon.start();
      hosts.push(new FleetHost(daemon, options.concurrency));
    }
    // Each round its own /16: no round meets another's claims or a release still on its way.
    let subnet = 100;
    for (const members of [3, 2]) {
      if (members === 2) etcd.kill(2);
      for (const n of options.hosts) {
        // One unmeasured round first: the daemons' first etcd calls open connections and pay the JIT.
        if (members === 3) await round(hosts.slice(0, n), `10.${subnet++}.0.0/16`, { ...options, perHost: 10 });
        const point = { ...(await round(hosts.slice(0, n), `10.${subnet++}.0.0/16`, options)), etcdMembers: members };
        points.push(point);
        const what = `RequestAddress, ${n} hosts × ${options.perHost} at once, ${members} of 3 etcd members up`;
        results.figure(`fleet: ${what}: allocations per second`, point.perSecond, '/s');
        results.figure(`fleet: ${what}: duplicates`, point.duplicates, '');
      }
    }
  } finally {
    for (const h of hosts) h.close();
    // The daemons before etcd: their SIGTERM shutdown talks to the cluster as the rounds left it,
    // not to one already stopped.
    for (const d of daemons) {
      await d.stop().catch(() => undefined);
      d.close();
    }
    cluster?.stop();
    lan.destroy();
  }
  return points;
}
