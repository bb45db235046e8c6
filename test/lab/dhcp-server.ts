// A real DHCP server on the lab's LAN: Debian's dnsmasq, in the LAN namespace on br0, DHCP only
// (no DNS: --port=0) unless told a domain (then also the LAN's DNS server, answering the names its
// clients register), its lease file and log in the LAN's temp dir. It goes with the LAN (the sweep
// kills every process in the LAN namespace) or earlier with stop(); restart() keeps the lease file,
// as a server restarted on a real LAN would.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Lan } from './lan';
import { nsExecArgv } from './ns';
import { cleanEnv, isAlive, sleep, sleepSync, tail, terminateSync } from './proc';

export const DNSMASQ = '/usr/sbin/dnsmasq';

export interface DhcpServerOptions {
  /** First and last address handed out, e.g. ['172.16.86.100', '172.16.86.150']. */
  range: [string, string];
  netmask?: string;
  /** Lease time in seconds (dnsmasq's floor is 120). */
  leaseSeconds?: number;
  /** T1/T2 in seconds, to see renewals long before a 2-minute lease ends. */
  renewSeconds?: number;
  rebindSeconds?: number;
  router?: string;
  dns?: string;
  /** `dhcp-host=` lines (reservations): '02:00:00:00:00:09,172.16.86.140' or 'id:...,172.16.86.141'. */
  hosts?: string[];
  /** DHCPv6 too: first and last address, in the prefix of an address br0 holds. */
  range6?: [string, string];
  /** DNS on port 53 too, for this local domain: clients' names (option 12/81, DHCPv6 39) resolve as NAME and NAME.domain. */
  domain?: string;
}

/** One line of dnsmasq's lease file: expiry (s since the epoch), MAC, address, hostname, client id. */
export interface DhcpLeaseLine {
  expiry: number;
  mac: string;
  address: string;
  hostname: string;
  clientId: string;
}

export class DhcpServer {
  private child: ChildProcess | null = null;
  readonly leaseFile: string;
  readonly logFile: string;
  private readonly stderrFile: string;

  constructor(
    readonly lan: Lan,
    private options: DhcpServerOptions,
  ) {
    this.leaseFile = path.join(lan.dir, 'dnsmasq.leases');
    this.logFile = path.join(lan.dir, 'dnsmasq.log');
    this.stderrFile = path.join(lan.dir, 'dnsmasq.stderr');
  }

  async start(): Promise<void> {
    const o = this.options;
    const argv = [
      DNSMASQ,
      '--no-daemon',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      ...(o.domain === undefined ? ['--port=0'] : [`--domain=${o.domain}`, `--local=/${o.domain}/`]),
      '--user=root',
      '--interface=br0',
      '--bind-interfaces',
      '--dhcp-authoritative',
      '--no-ping',
      '--log-dhcp',
      `--log-facility=${this.logFile}`,
      `--dhcp-leasefile=${this.leaseFile}`,
      `--dhcp-range=${o.range[0]},${o.range[1]},${o.netmask ?? '255.255.255.0'},${o.leaseSeconds ?? 120}`,
      `--dhcp-option=option:router,${o.router ?? '172.16.86.1'}`,
      `--dhcp-option=option:dns-server,${o.dns ?? '172.16.86.53'}`,
      ...(o.renewSeconds === undefined ? [] : [`--dhcp-option=option:T1,${o.renewSeconds}`]),
      ...(o.rebindSeconds === undefined ? [] : [`--dhcp-option=option:T2,${o.rebindSeconds}`]),
      ...(o.hosts ?? []).map((h) => `--dhcp-host=${h}`),
      ...(o.range6 === undefined ? [] : [`--dhcp-range=${o.range6[0]},${o.range6[1]},64,${o.leaseSeconds ?? 120}`]),
    ];
    // Its stderr goes to a file, never to a pipe: in --no-daemon mode dnsmasq writes every log line there too,
    // and a pipe this process does not drain while it runs a synchronous command (docker, ip) fills up and
    // blocks dnsmasq mid-answer -- a server that stops answering for the rest of the file.
    // The log outlives restarts: only what this process writes says it is ready.
    const logBefore = this.log().length;
    const stderrFd = fs.openSync(this.stderrFile, 'w');
    const child = spawn(nsExecArgv(this.lan.ns, argv)[0] as string, nsExecArgv(this.lan.ns, argv).slice(1), {
      stdio: ['ignore', 'ignore', stderrFd],
      env: cleanEnv(),
    });
    fs.closeSync(stderrFd);
    const stderr = (): string => fs.readFileSync(this.stderrFile, 'utf8');
    child.on('error', () => undefined);
    child.unref();
    this.child = child;
    // Ready once it has written its log's first lines (it binds before it logs the DHCP range).
    const deadline = Date.now() + 10_000;
    while (!this.log().slice(logBefore).includes('DHCP, IP range')) {
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`lab: dnsmasq did not start: ${tail(stderr() + this.log(), 20)}`);
      await sleep(25);
    }
  }

  /**
   * Stops it and starts it again with `changes` to its options; the lease file stays. `forgetLeases`: the
   * server comes back without its bindings but as the same server (the file keeps only its DUID line,
   * which DHCPv6 clients address their Renew to).
   */
  async restart(changes: Partial<DhcpServerOptions> = {}, opts: { forgetLeases?: boolean } = {}): Promise<void> {
    this.stop();
    if (opts.forgetLeases === true && fs.existsSync(this.leaseFile)) {
      const identity = fs
        .readFileSync(this.leaseFile, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('duid '));
      fs.writeFileSync(this.leaseFile, identity.map((l) => `${l}\n`).join(''));
    }
    this.options = { ...this.options, ...changes };
    await this.start();
  }

  /** Sends dnsmasq `sig`: SIGSTOP and it hears nothing and answers nothing (SIGCONT: on again); SIGKILL and it is gone, mid-exchange. */
  signal(sig: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid !== undefined && isAlive(pid)) process.kill(pid, sig);
  }

  stop(): void {
    const pid = this.child?.pid;
    if (pid !== undefined && isAlive(pid)) terminateSync(pid, 5_000);
    this.child = null;
  }

  log(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * The lease file as dnsmasq last wrote it. dnsmasq writes it at every change, after it has logged
   * the exchange (a test that saw the log line waits for the file: `eventually`), and in place:
   * truncated, then written, so a read in between sees it empty (for up to 6.5 ms, in 11 of 25
   * renewals here). Two reads 25 ms apart that agree are a whole file.
   */
  leases(): DhcpLeaseLine[] {
    const read = (): string => {
      try {
        return fs.readFileSync(this.leaseFile, 'utf8');
      } catch {
        return '';
      }
    };
    let text = read();
    for (let tries = 0; tries < 40; tries++) {
      sleepSync(25);
      const again = read();
      if (again === text) break;
      text = again;
    }
    // DHCPv6 lines (after the server's "duid" line) read as expiry, IAID, address, hostname, client DUID.
    return text
      .split('\n')
      .filter((l) => /^\d+ /.test(l))
      .map((l) => {
        const [expiry, mac, address, hostname, clientId] = l.split(' ');
        return {
          expiry: Number(expiry),
          mac: mac ?? '',
          address: address ?? '',
          hostname: hostname ?? '*',
          clientId: clientId ?? '*',
        };
      });
  }

  /** Those of `addresses` the server still holds a lease on (either family). */
  stillLeased(addresses: readonly string[]): string[] {
    return this.leases()
      .map((l) => l.address)
      .filter((a) => addresses.includes(a));
  }

  /** How many times the log shows `what` (e.g. 'DHCPDISCOVER', 'DHCPRELEASE') for `mac`. */
  count(what: string, mac: string): number {
    return this.log()
      .split('\n')
      .filter((l) => l.includes(`${what}(`) && l.toLowerCase().includes(mac.toLowerCase())).length;
  }
}

export async function startDhcpServer(lan: Lan, options: DhcpServerOptions): Promise<DhcpServer> {
  const server = new DhcpServer(lan, options);
  await server.start();
  return server;
}

/** `docker network create` for a network whose containers take their address from the LAN's DHCP server. */
export function dhcpNetworkArgs(name: string, extra: readonly string[] = []): string[] {
  return [
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'null',
    '-o',
    'parent=eth0',
    '-o',
    'dhcp=true',
    ...extra,
    name,
  ];
}

/**
 * `docker network create` for a dual-stack network whose IPv4 and IPv6 addresses both come from the
 * LAN's server, asked by the lanplug-dhcp IPAM driver (the lab LAN's fd77::/64, and 172.16.86.0/24 unless told).
 */
export function dualStackDhcpNetworkArgs(
  name: string,
  extra: readonly string[] = [],
  subnet4 = '172.16.86.0/24',
): string[] {
  return [
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug-dhcp',
    '--subnet',
    subnet4,
    '--ipv6',
    '--subnet',
    'fd77::/64',
    '-o',
    'parent=eth0',
    ...extra,
    name,
  ];
}
