/**
 * DHCP beside the reference (`npm run bench -- --scale`): on one lab LAN
 * with one dnsmasq, from one runtime host (a LAN host's namespace, its eth0
 * the parent), in one run: the CNI reference `macvlan` + `dhcp` (its plugin
 * forwards to the reference's `dhcp daemon`, started here with a socket of
 * its own) and lanplug's `lanplug-macvlan` + `lanplug-dhcp` (served by a
 * lanplug daemon on that host), each exec'd as a runtime does
 * (dhcp-timer.ts): ADD/DEL one after another, then 100 ADDs at once, whose
 * leases are then held past their renewal time (T1, short on this server)
 * while a capture on the LAN (dhcp-capture.ts) sees each renewal and the
 * holding daemon's CPU time is read.
 * lanplug's CNI always probes the acknowledged address (no CNI key turns it
 * off); probe on and off are both measured on the Docker front end, over the
 * same daemon's driver socket, against the same server.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { buildCniExecutable } from '../../src/install/cni';
import { createLan } from '../lab/lan';
import { startDhcpServer } from '../lab/dhcp-server';
import { benchNs } from '../lab/names';
import { nsExecArgv } from '../lab/ns';
import { runOk } from '../lab/proc';
import { repoRoot } from '../support/repo';
import { dhcpAttach } from './dhcp';
import { DhcpCapture, renewalsIn, type Renewals } from './dhcp-capture';
import { closeAgents } from './driver-api';
import { ScaleDaemon } from './scale';
import { quantile, sleep, type Results } from './stats';

export interface DhcpBeside {
  kind: 'reference' | 'lanplug';
  add: { p50: number; p99: number };
  del: { p50: number; p99: number };
  burst: { n: number; p50: number; p99: number; wallMs: number; failed: number };
  /** The burst's leases held past their T1: the renewals as the LAN saw them, and the holder's CPU meanwhile. */
  renewal: Renewals & { t1Seconds: number; holdMs: number; daemonCpuMs: number };
}

export interface DhcpBesideOptions {
  cycles: number;
  burst: number;
  /**
   * The server's renewal time (option 58) for every lease: short, so that the burst's leases renew in
   * the run. dnsmasq takes it above 2 s only, and sends it less a few per cent of fuzz.
   */
  t1Seconds: number;
  /** How long past T1 the burst's leases are held after the burst (every one renews in it). */
  holdPastT1Ms: number;
}

interface Timings {
  add: number[];
  del: number[];
  burstAdd: number[];
  wall: number;
  failed: number;
  firstError: string;
  burstStart: number;
  holdEnd: number;
  holdCpuMs: number;
}

const REFERENCE = '/usr/lib/cni';

export async function dhcpBesideReference(results: Results, options: DhcpBesideOptions): Promise<DhcpBeside[]> {
  const lan = createLan({ addresses: ['172.30.0.1/16'] });
  let daemon: ScaleDaemon | null = null;
  try {
    const server = await startDhcpServer(lan, {
      range: ['172.30.1.1', '172.30.9.254'],
      netmask: '255.255.0.0',
      // dnsmasq's shortest lease, with a T1 far shorter: the renewals come within the run. An acquire
      // does not depend on either.
      leaseSeconds: 120,
      renewSeconds: options.t1Seconds,
      rebindSeconds: 100,
      router: '172.30.0.1',
    });
    const capture = new DhcpCapture(lan, join(lan.dir, 'dhcp-frames.txt'));
    await capture.start();
    const runtime = lan.addLanHost('rt', '172.30.0.5/16');
    // Without the bench's loop probe: its CPU time over the renewals is read beside the reference's.
    daemon = new ScaleDaemon(runtime.ns, lan.dir, [], { loopProbe: false });
    await daemon.start();
    const lanplugPlugin = join(daemon.dir, 'cni', 'lanplug-macvlan');
    runOk(['mkdir', '-p', join(daemon.dir, 'cni')]);
    buildCniExecutable(repoRoot(), lanplugPlugin, join(daemon.stateDir, 'cni.sock'));
    const referenceSocket = join(daemon.dir, 'reference-dhcp.sock');
    const referenceDaemon = spawn(
      nsExecArgv(runtime.ns, [join(REFERENCE, 'dhcp'), 'daemon', '-socketpath', referenceSocket])[0] ?? 'nsenter',
      nsExecArgv(runtime.ns, [join(REFERENCE, 'dhcp'), 'daemon', '-socketpath', referenceSocket]).slice(1),
      { stdio: 'ignore' },
    );
    try {
      await sleep(500); // its socket
      const script = join(repoRoot(), 'dist', 'test', 'bench', 'dhcp-timer.js');
      const holdMs = options.t1Seconds * 1000 + options.holdPastT1Ms;
      const time = (kind: 'reference' | 'lanplug', executable: string, holder: number): Timings =>
        JSON.parse(
          runOk(
            nsExecArgv(runtime.ns, [
              process.execPath,
              script,
              kind,
              executable,
              'eth0',
              String(options.cycles),
              String(options.burst),
              referenceSocket,
              // the containers' namespaces named with the lab's id: the LAN's teardown removes any left
              benchNs(lan.id, ''),
              String(holdMs),
              String(holder),
            ]),
            { timeoutMs: 600_000 },
          ),
        ) as Timings;
      const out: DhcpBeside[] = [];
      const windows: [number, number, number][] = [];
      for (const [kind, executable, holder] of [
        ['reference', join(REFERENCE, 'macvlan'), referenceDaemon.pid ?? 0],
        ['lanplug', lanplugPlugin, daemon.pid],
      ] as const) {
        const t = time(kind, executable, holder);
        windows.push([t.burstStart, t.holdEnd, t.holdCpuMs]);
        const name =
          kind === 'reference'
            ? 'reference CNI macvlan + dhcp (dhcp daemon)'
            : 'lanplug CNI lanplug-macvlan + lanplug-dhcp (probe on)';
        const add = results.add('DHCP beside the reference', `${name} ADD (exec)`, t.add);
        const del = results.add('DHCP beside the reference', `${name} DEL (exec)`, t.del);
        const burst = results.add(
          'DHCP beside the reference',
          `${name}, ${options.burst} ADDs at once (each)`,
          t.burstAdd,
        );
        results.figure(`${name}: ${options.burst} ADDs at once (wall)`, t.wall, 'ms');
        if (t.failed > 0)
          process.stderr.write(`bench: ${t.failed} ${kind} ADDs of the burst failed: ${t.firstError}\n`);
        out.push({
          kind,
          add: { p50: add.p50, p99: add.p99 },
          del: { p50: del.p50, p99: del.p99 },
          burst: {
            n: t.burstAdd.length,
            p50: quantile(t.burstAdd, 0.5),
            p99: burst.p99,
            wallMs: t.wall,
            failed: t.failed,
          },
          renewal: { ...renewalsIn([], 0, 0), t1Seconds: options.t1Seconds, holdMs, daemonCpuMs: t.holdCpuMs },
        });
      }
      const frames = await capture.stop();
      for (const [i, d] of out.entries()) {
        const [from = 0, to = 0] = windows[i] ?? [];
        d.renewal = { ...d.renewal, ...renewalsIn(frames, from, to) };
      }
      // The probe on and off, on the Docker front end of the same daemon, against the same server.
      const network = async (id: string, probe: boolean): Promise<void> => {
        const conflict: Record<string, string> = probe ? {} : { 'lanplug.conflict': 'off' };
        await (daemon as ScaleDaemon).call('/NetworkDriver.CreateNetwork', {
          NetworkID: id,
          Options: { 'com.docker.network.generic': { parent: 'eth0', dhcp: 'true', ...conflict } },
          IPv4Data: [{ AddressSpace: 'null', Pool: '0.0.0.0/0' }],
          IPv6Data: [],
        });
      };
      const probed = 'd0'.padEnd(64, '1');
      const unprobed = 'd0'.padEnd(64, '2');
      await network(probed, true);
      await network(unprobed, false);
      await dhcpAttach(results, daemon.socket, { probed, unprobed }, daemon.pid, {
        cycles: options.cycles,
        held: options.burst,
      });
      closeAgents();
      return out;
    } finally {
      referenceDaemon.kill('SIGTERM');
      await capture.stop().catch(() => undefined);
      server.stop();
    }
  } finally {
    if (daemon !== null) {
      await daemon.stop().catch(() => undefined);
      daemon.close();
    }
    lan.destroy();
  }
}
